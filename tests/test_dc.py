"""DC (gradient matching): options, one step against the equations written out with a plain module, the
network's inner SGD step. Every option combination, the loss going down and the exact resume of ``dc``
run in tests/test_distill.py, which covers every registered method."""
import pytest
import torch
from torch.nn import functional as F

from ddtime.driver.distill import distill
from ddtime.driver.distill.loop import DistillRun
from ddtime.driver.distill.methods import METHODS, build_method
from ddtime.driver.distill.methods.dc import DC
from ddtime.driver.models import assign_flat_params, build_model
from distill_configs import distill_config

SEQ, PRED = 24, 12


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**kw):
    base = dict(method="dc", samples=6, iterations=2, quiet=True, loss_impl="reference", checkpoint_every=0,
                select_every=0)
    base.update(kw)
    return distill_config(**base)


def test_registered_and_options():
    assert METHODS["dc"] is DC
    method = build_method("dc", updates_per_network=3)
    assert method.requires_experts and method.updates_per_iteration == 3 and not method.has_unrolled_student
    assert not build_method("dc", network="random").requires_experts
    with pytest.raises(TypeError, match="bogus"):
        build_method("dc", bogus=1)
    for bad in ({"network": "resnet"}, {"max_start_epoch": 0}, {"updates_per_network": 0}, {"syn_batch": 0},
                {"real_batch": 0}, {"student_lr": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_method("dc", **bad)


def _plain_gradient(flat: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """d MSE(f(x), y) / d theta of a DLinear holding ``flat``, by a plain backward through the module."""
    net = assign_flat_params(build_model("dlinear", seq_len=SEQ, pred_len=PRED, channels=windows.shape[1]), flat)
    net.zero_grad()
    F.mse_loss(net(windows[..., :SEQ]), windows[..., SEQ:]).backward()
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def test_two_updates_match_the_equations(data, experts):
    """One network per iteration: the base loss is the mean squared difference of the synthetic and real
    gradients at theta, then theta takes an SGD step on the synthetic batch before the second update."""
    options = {"syn_batch": 4, "real_batch": 50, "student_lr": 0.5}
    run = DistillRun(data, _config(method_options=options), experts=experts)
    replay = torch.Generator().set_state(run.generator.get_state())
    out1 = run.method.step(run.ctx, 0)
    out2 = run.method.step(run.ctx, 0)

    trajectory = experts.trajectory(int(torch.randint(0, experts.num_experts, (1,), generator=replay)))
    start = int(torch.randint(0, 4, (1,), generator=replay))
    theta = trajectory[start]
    windows, real_windows = run.synthetic.windows().detach(), run.ctx.real_windows
    for out in (out1, out2):
        syn = windows[torch.randperm(windows.shape[0], generator=replay)[:4]]
        real = real_windows[torch.randperm(real_windows.shape[0], generator=replay)[:50]]
        g_syn, g_real = _plain_gradient(theta, syn), _plain_gradient(theta, real)
        assert out.metrics["start_epoch"] == start
        torch.testing.assert_close(out.loss.detach(), (g_syn - g_real).pow(2).mean(), rtol=1e-4, atol=1e-12)
        theta = theta - 0.5 * g_syn
    # the loss reaches the synthetic inputs (not the labels)
    grad = torch.autograd.grad(out2.loss, run.synthetic.parameters()[0])[0]
    assert grad.abs().sum() > 0


def test_a_new_network_each_iteration_and_random_networks_need_no_experts(data, experts):
    run = DistillRun(data, _config(), experts=experts)
    run.method.step(run.ctx, 0)
    theta, start = run.method._network(run.ctx, 1)  # iteration 1 draws a snapshot again
    assert any(torch.equal(theta, experts.trajectory(i)[start]) for i in range(experts.num_experts))
    result = distill(data, _config(iterations=3, method_options={"network": "random"}))
    assert [h["start_epoch"] for h in result.history] == [-1.0] * 6
    with pytest.raises(ValueError, match="experts: method 'dc'"):
        distill(data, _config(iterations=1))
