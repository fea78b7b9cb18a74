"""The loop's lean per-update path: the same synthetic set as the autograd formulation of the
update, no host synchronisation inside an iteration, the history converted at flushes only,
the teacher forecast without module swapping, the windows' backward without autograd."""
import json

import pytest
import torch

from ddtime.driver.distill import DistillRun, SyntheticSet, distill
from ddtime.driver.distill.checkpoint import load_checkpoint
from ddtime.driver.distill.loop import CHECKPOINT_NAME
from ddtime.driver.distill.teacher import TeacherForecaster, teacher_predict
from ddtime.driver.models import build_model
from distill_configs import distill_config

SEQ, PRED = 24, 12

pytestmark = pytest.mark.usefixtures("one_thread")


class AutogradUpdateRun(DistillRun):
    """The update as the loop made it before the lean path: every term through the autograd
    engine on its own, Python numbers in the history (the oracle of the lean path)."""

    def _update(self, out):
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        terms = {"base": (out.loss / out.loss.detach().clamp_min(1e-12), 1.0)}
        if self.terms is not None:
            losses = self.terms.losses(self.synthetic.windows(), seq_len=self.data.seq_len, model=self.model,
                                       teacher_params=self.teacher, student_params=out.student_params)
            terms.update({k: (v, self.terms.weights[k]) for k, v in losses.items()})
        combined = [torch.zeros_like(p) for p in params]
        record = {}
        names = [k for k, (_, w) in terms.items() if w != 0]
        for n, name in enumerate(names):
            loss, weight = terms[name]
            grads = torch.autograd.grad(loss, params, retain_graph=n < len(names) - 1, allow_unused=True)
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None))
            balance = self.config.term_balance == "grad-norm" and len(names) > 1 and norm > 0
            scale = weight / float(norm) if balance else weight
            for c, g in zip(combined, grads):
                if g is not None:
                    c.add_(g, alpha=scale)
            record[f"{name}_grad_norm"] = float(norm)
            if name != "base":
                record[name] = float(loss.detach())
        for p, c in zip(params, combined):
            p.grad = c
        self.optimizer.step()
        record["total"] = sum(terms[k][1] * (1.0 if k == "base" else record[k]) for k in names)
        return record


def _config(method="mtt", **kw):
    options = {"syn_steps": 4, "max_start_epoch": 2}
    options.update(kw.pop("method_options", {}))
    base = dict(method=method, method_options=options, samples=6, iterations=6, quiet=True, ddtime=True,
                checkpoint_every=0, select_every=0)
    base.update(kw)
    return distill_config(**base)


def _run(cls, data, config, experts, iterations):
    run = cls(data, config, experts=experts)
    for it in range(iterations):
        run.iteration(it)
    return run


def _assert_same_history(lean, oracle):
    assert [list(r) for r in lean] == [list(r) for r in oracle]  # the same keys in the same order
    for a, b in zip(lean, oracle):
        for key, value in b.items():
            assert type(a[key]) is type(value), key
            if isinstance(value, float):
                assert a[key] == pytest.approx(value, rel=1e-4, abs=1e-7), (key, a, b)
            else:
                assert a[key] == value, key


# 1. the same numbers as the autograd formulation --------------------------------------------
@pytest.mark.parametrize("loss_impl", ["fused", "reference"])
@pytest.mark.parametrize("student_side", ["labels", "student"])
@pytest.mark.parametrize("balance", ["grad-norm", "none"])
def test_lean_update_gives_the_autograd_update_s_synthetic_set(balance, student_side, loss_impl, data, experts):
    config = _config(term_balance=balance, student_side=student_side, loss_impl=loss_impl)
    lean = _run(DistillRun, data, config, experts, 6)
    oracle = _run(AutogradUpdateRun, data, config, experts, 6)
    torch.testing.assert_close(lean.synthetic.values, oracle.synthetic.values, rtol=1e-5, atol=1e-5)
    assert not torch.equal(lean.synthetic.values.detach(), lean.initial_windows)
    _assert_same_history(lean.flush_history(), oracle.flush_history())


@pytest.mark.parametrize("setup", [
    {"representation": "series"},                                   # windows cut from series (unfold backward)
    {"method": "datm", "method_options": {"initial_window": (0, 2)}},  # soft labels: a second parameter
    {"method_options": {"learn_lr": True}},                          # a method parameter the terms do not reach
    {"lambda_is": 0.0},                                              # a term switched off
    {"ddtime": False},                                               # the base update alone
    {"condtsf": True},                                               # CondTSF's iterations in between
])
def test_lean_update_matches_for_every_parameter_layout(setup, data, experts):
    config = _config(**setup)
    lean = _run(DistillRun, data, config, experts, 6)
    oracle = _run(AutogradUpdateRun, data, config, experts, 6)
    for a, b in zip(lean.synthetic.parameters(), oracle.synthetic.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    _assert_same_history(lean.flush_history(), oracle.flush_history())


@pytest.mark.parametrize("representation", ["windows", "series"])
@pytest.mark.parametrize("soft_labels", [False, True])
def test_windows_vjp_is_the_backward_of_windows(representation, soft_labels, data, condtsf_data):
    for source in (data, condtsf_data):
        syn = SyntheticSet.from_data(source, samples=5, representation=representation, stride=3,
                                     generator=torch.Generator().manual_seed(0))
        if soft_labels:
            syn.enable_soft_labels()
        windows = syn.windows()
        grad = torch.randn(windows.shape, generator=torch.Generator().manual_seed(1))
        expected = torch.autograd.grad(windows, syn.parameters(), grad_outputs=grad)
        got = syn.windows_vjp(grad)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# 2. no host synchronisation per update; the history at flushes only ------------------------
def _refuse_conversions(monkeypatch, allowed):
    """Make ``float()``, ``.item()`` and ``.tolist()`` of a floating-point tensor and ``bool()`` of any
    tensor raise, except on ``allowed`` (torch.optim keeps Adam's step counters on the CPU by design)."""
    for name in ("__float__", "__bool__", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, _name=name, _original=original):
            numeric = self.is_floating_point() or _name == "__bool__"  # bool(): comparisons' results too
            if numeric and not any(self is t for t in allowed):
                raise AssertionError(f"Tensor.{_name} called on a {tuple(self.shape)} tensor inside the update")
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, guarded)


@pytest.mark.parametrize("setup", [{}, {"term_balance": "none", "student_side": "student"}, {"ddtime": False},
                                   {"method_options": {"learn_lr": True}},
                                   {"method": "datm", "method_options": {"learn_lr": True, "window_every": 2}}])
def test_an_iteration_converts_no_tensor_to_a_number(setup, data, experts, monkeypatch):
    run = DistillRun(data, _config(**setup), experts=experts)
    run.iteration(0)  # creates the optimiser state
    steps = [state["step"] for state in run.optimizer.state.values()]
    with monkeypatch.context() as patched:
        _refuse_conversions(patched, steps)
        run.iteration(1)
        with pytest.raises(AssertionError, match="inside the update"):
            run.flush_history()
    history = run.flush_history()
    assert len(history) == 4 and all(isinstance(v, (int, float, str)) for r in history for v in r.values())


class _Killed(Exception):
    pass


def test_history_checkpoint_and_resume_hold_numbers_as_before(data, experts, tmp_path):
    config = _config(iterations=5, checkpoint_every=2, select_every=2, condtsf=True)
    score = lambda w: float(w.pow(2).mean())  # noqa: E731
    lean = distill(data, config, experts=experts, out_dir=tmp_path / "lean", validate=score)
    _assert_same_history(lean.history, _run(AutogradUpdateRun, data, config, experts, 5).flush_history())
    saved = load_checkpoint(tmp_path / "lean" / CHECKPOINT_NAME)["history"]
    assert saved == lean.history and json.loads(json.dumps(saved)) == saved  # plain numbers

    calls = {"n": 0}

    def dying(windows):  # killed at the selection of iteration 4, after the checkpoint of iteration 2
        calls["n"] += 1
        if calls["n"] == 2:
            raise _Killed
        return score(windows)

    with pytest.raises(_Killed):
        distill(data, config, experts=experts, out_dir=tmp_path / "killed", validate=dying)
    partial = load_checkpoint(tmp_path / "killed" / CHECKPOINT_NAME)
    assert partial["iteration"] == 2 and partial["history"] == lean.history[:len(partial["history"])]
    resumed = distill(data, config, experts=experts, out_dir=tmp_path / "killed", resume=True, validate=score)
    assert resumed.history == lean.history and torch.equal(resumed.windows, lean.windows)


def test_history_is_flushed_once_per_call_and_total_computed(data, experts):
    run = DistillRun(data, _config(lambda_val=0.5, lambda_is=0.25), experts=experts)
    run.iteration(0)
    assert isinstance(run.history[0]["base"], torch.Tensor)
    record = run.flush_history()[0]
    assert record["total"] == 1.0 + 0.5 * record["value"] + 0.25 * record["isib"]
    assert run.flush_history()[0] is record and record["total"] == 1.0 + 0.5 * record["value"] + 0.25 * record["isib"]


# 3. the teacher -----------------------------------------------------------------------------
class _Noisy(torch.nn.Module):
    """Dropout and a running buffer: a teacher forecast must run in eval mode and see the
    template's buffers."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(SEQ, PRED)
        self.drop = torch.nn.Dropout(0.5)
        self.register_buffer("shift", torch.zeros(PRED))

    def forward(self, x):
        return self.drop(self.linear(x)) + self.shift


def test_teacher_forecaster_equals_teacher_predict_and_follows_the_rows(experts, data):
    model = build_model("dlinear", seq_len=SEQ, pred_len=PRED, channels=data.window_channels).train()
    forecaster = TeacherForecaster(model)
    x = data.windows("train")[:5, :, :SEQ]
    for i in range(experts.num_experts):
        row = experts.teacher_row(i)
        assert torch.equal(forecaster(row, x), teacher_predict(model, row, x))
    row = experts.teacher_row(0).clone()
    first = forecaster(row, x)
    row.mul_(2.0)  # the same tensor modified in place is loaded again
    assert torch.equal(forecaster(row, x), teacher_predict(model, row, x)) and not torch.equal(first, forecaster(row, x))
    assert model.training  # the template keeps its mode

    noisy = _Noisy().train()
    flat = torch.cat([p.detach().reshape(-1) for p in noisy.parameters()]) + 0.1
    forecaster = TeacherForecaster(noisy)
    noisy.shift.fill_(3.0)  # buffers are the template's, as under functional_call
    x = torch.randn(4, 2, SEQ)
    assert torch.equal(forecaster(flat, x), teacher_predict(noisy, flat, x))
    assert torch.equal(forecaster(flat, x), forecaster(flat, x))  # eval mode: no dropout


# 3. trajectories and teacher rows read once, kept, bounded ----------------------------------
def test_the_store_reads_each_file_once_and_keeps_the_trajectories(experts, data, monkeypatch):
    from ddtime.driver.experts import ExpertStore, store as store_module

    store = ExpertStore(experts.out_dir)
    opened = []
    original = store_module.safe_open
    monkeypatch.setattr(store_module, "safe_open", lambda *a, **k: opened.append(a[0]) or original(*a, **k))
    first = store.trajectory(1)
    assert len(opened) == store.num_experts  # every file read once, on the first access
    assert store.trajectory(1).data_ptr() == first.data_ptr()  # the kept tensor, not a copy
    assert torch.equal(store.teacher_row(1), first[store.teacher_epoch(1)])
    run = DistillRun(data, _config(), experts=store)
    for it in range(3):
        run.iteration(it)
    assert len(opened) == store.num_experts  # no file opened by the loop


def test_the_store_refuses_trajectories_past_its_memory_bound(experts):
    from ddtime.driver.experts import ExpertStore

    rows, params = experts.settings["expert_epochs"] + 1, experts.settings["num_params"]
    needed = experts.num_experts * rows * params * 4
    assert ExpertStore(experts.out_dir, memory_limit=needed).trajectory(0).shape == (rows, params)
    small = ExpertStore(experts.out_dir, memory_limit=needed - 1)
    with pytest.raises(MemoryError, match=f"memory_limit={needed - 1} bytes"):
        small.trajectory(0)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="memory_limit"):
            ExpertStore(experts.out_dir, memory_limit=bad)


def test_a_trajectory_whose_start_and_target_coincide_is_refused_before_the_device(data, experts, monkeypatch):
    """The zero-distance check runs on the store's rows (host), not on the loss (device)."""
    run = DistillRun(data, _config(ddtime=False), experts=experts)
    frozen = experts.trajectory(0)[:1].expand_as(experts.trajectory(0))
    monkeypatch.setattr(type(experts), "trajectory", lambda self, i: frozen)
    with pytest.raises(RuntimeError, match="coincide"):
        run.iteration(0)
