"""TGDD: the forecasting base method in the driver (groups, loss terms, updates, DDTime terms) and,
on digits, TGDD against a random real subset of the same size. Every option combination and the
exact resume of ``tgdd`` run in tests/test_distill.py, which covers every registered method."""
import math

import pytest
import torch

from ddtime.driver.distill import DistillConfig, distill
from ddtime.driver.distill.loop import DistillRun
from ddtime.driver.distill.methods import METHODS, build_method
from ddtime.driver.distill.methods.tgdd import TGDD, _assign, kmeans
from ddtime.driver.models import functional_forward
from distill_configs import distill_config

SEQ, PRED = 24, 12


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**kw):
    base = dict(method="tgdd", samples=6, iterations=8, quiet=True, loss_impl="reference", checkpoint_every=0,
                select_every=0)
    base.update(kw)
    return distill_config(**base)


# --- pieces ---------------------------------------------------------------------------------------
def test_registered_and_options():
    assert METHODS["tgdd"] is TGDD
    method = build_method("tgdd", groups=2, alpha=0.5)
    assert method.requires_experts and method.groups == 2
    with pytest.raises(TypeError, match="bogus"):
        build_method("tgdd", bogus=1)
    for bad in ({"groups": 0}, {"alpha": -1.0}, {"region": -1}, {"lr_per_sample": 0.0}, {"momentum": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_method("tgdd", **bad)


def test_kmeans_recovers_separated_clusters_and_assignment_fills_every_group():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.3 * torch.randn(40, 2, generator=g) for c in centers])
    centroids, labels = kmeans(points, 3, generator=torch.Generator().manual_seed(1))
    for block in labels.view(3, 40):
        assert (block == block[0]).all()                 # each blob is one cluster
    assert len(set(labels.view(3, 40)[:, 0].tolist())) == 3
    torch.testing.assert_close(centroids[labels.view(3, 40)[:, 0]], centers, atol=0.2, rtol=0)
    # all synthetic points near blob 0: every group still gets one, the rest go to the nearest
    syn = 0.1 * torch.randn(5, 2, generator=g)
    assigned = _assign(syn, centroids)
    assert set(assigned.tolist()) == {0, 1, 2}
    assert int((assigned == labels[0]).sum()) == 3
    with pytest.raises(ValueError, match="groups"):
        kmeans(points[:2], 3, generator=g)


def test_group_losses_match_plain_equations(data, experts):
    run = DistillRun(data, _config(iterations=1), experts=experts)
    method = run.method
    assert method.k == 3 and method.alpha_value == 2.5               # S // 2 groups of about 2 windows
    assert sorted(set(method.syn_groups.tolist())) == [0, 1, 2]
    traj = experts.trajectory(1)
    windows = run.synthetic.windows().detach()
    real = run.ctx.real_windows[method.real_groups == 1][:50]
    match, constraint = method.group_losses(run.ctx, traj[2], traj[5], 1, windows, real)
    syn = windows[method.syn_groups == 1]
    emb_r = functional_forward(run.model, traj[2], real[..., :SEQ], method="embed")
    emb_s = functional_forward(run.model, traj[2], syn[..., :SEQ], method="embed")
    plain_match = sum((float(emb_r[:, f].mean()) - float(emb_s[:, f].mean())) ** 2 for f in range(emb_r.shape[1]))
    pred = functional_forward(run.model, traj[5], syn[..., :SEQ])
    plain_mse = float(((pred - syn[..., SEQ:]) ** 2).sum()) / pred.numel()
    assert math.isclose(float(match), plain_match, rel_tol=1e-4)
    assert math.isclose(float(constraint), plain_mse, rel_tol=1e-5)


# --- in the driver --------------------------------------------------------------------------------
def test_few_iterations_reduce_the_matching_loss(data, experts):
    run = DistillRun(data, _config(iterations=12), experts=experts)
    method, ctx = run.method, run.ctx
    traj = experts.trajectory(1)

    def matching(windows):
        return sum(float(method.group_losses(ctx, traj[j], traj[-1], g, windows,
                                             ctx.real_windows[method.real_groups == g])[0])
                   for j in range(traj.shape[0]) for g in range(method.k))

    before = matching(run.synthetic.windows().detach())
    for it in range(12):
        run.iteration(it)
    after = matching(run.synthetic.windows().detach())
    assert after < 0.5 * before, (before, after)
    assert all(h["kind"] == "base" and math.isfinite(h["base"]) and "matching" in h for h in run.history)


def test_ddtime_terms_change_the_update(data, experts):
    plain = distill(data, _config(iterations=2), experts=experts)
    with_terms = distill(data, _config(iterations=2, ddtime=True), experts=experts)
    assert not torch.equal(plain.final_windows, with_terms.final_windows)


# --- classification: TGDD vs a random real subset -------------------------------------------------
def test_tgdd_beats_random_subset_on_digits(tmp_path):
    """TGDD against the random subset it starts from, over run seeds 0, 1, 2 (about 45 s on one thread).
    Rule fixed before the run: the mean accuracy gain over the seeds exceeds its standard error
    (sample std / sqrt(3)), so a gain within the seed-to-seed spread fails, and a TGDD that leaves
    its initialisation unchanged (gain 0 on every seed) fails."""
    import statistics

    pytest.importorskip("sklearn")
    from ddtime.driver.classification import distill_classifier as cdistill
    from ddtime.driver.classification import evaluate_synthetic, load_digits, train_trajectories

    digits = load_digits(seed=0)
    trajectories = train_trajectories(digits, num_trajectories=3, epochs=8, quiet=True, out_dir=tmp_path)
    gains = []
    for seed in (0, 1, 2):
        x, y = digits.random_subset(10, seed=seed)       # = the synthetic set's initialisation
        result = cdistill(digits, ipc=10, method="tgdd", experts=trajectories, iterations=100, seed=seed, quiet=True)
        random_acc = evaluate_synthetic(x, y, digits, seeds=(0, 1), epochs=150)["mean"]
        tgdd_acc = evaluate_synthetic(result.x, result.y, digits, seeds=(0, 1), epochs=150)["mean"]
        gains.append(tgdd_acc - random_acc)
    margin = statistics.stdev(gains) / len(gains) ** 0.5
    assert statistics.fmean(gains) > margin, gains
