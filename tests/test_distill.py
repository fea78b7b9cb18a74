"""Distillation driver: every method and option for a few iterations on the generated dataset,
exact resume after a simulated kill, fused vs reference DDTime terms, CondTSF's update."""
import math

import pytest
import torch

from ddtime.driver.distill import DDTimeTerms, DistillConfig, SyntheticSet, build_method, distill
from ddtime.driver.distill.checkpoint import load_checkpoint, load_synthetic, save_checkpoint, save_synthetic
from ddtime.driver.distill.condtsf import CondTSFUpdate
from ddtime.driver.distill.loop import CHECKPOINT_NAME
from ddtime.driver.distill.methods import METHODS
from ddtime.driver.experts import train_experts
from ddtime.driver.models import build_model, functional_forward
from distill_configs import distill_config

SEQ, PRED = 24, 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sam_experts(data, tmp_path_factory):
    return train_experts(data, num_experts=2, expert_epochs=6, optimizer="sam",
                         out_dir=tmp_path_factory.mktemp("sam_experts"), quiet=True)


@pytest.fixture(scope="module")
def condtsf_experts(condtsf_data, tmp_path_factory):
    return train_experts(condtsf_data, num_experts=2, expert_epochs=4, out_dir=tmp_path_factory.mktemp("cexperts"),
                         quiet=True)


def _config(method, **kw):
    options = {"syn_steps": 5} if method in ("mtt", "ftd", "datm") else {}
    options.update(kw.pop("method_options", {}))
    base = dict(method=method, method_options=options, samples=6, iterations=8, quiet=True, loss_impl="reference",
                checkpoint_every=0, select_every=0)
    base.update(kw)
    return distill_config(**base)


def _base_losses(result):
    return [h["base"] for h in result.history if h["kind"] == "base"]


# --- every method, every option -------------------------------------------------------------
@pytest.mark.parametrize("method", ["mtt", "ftd", "datm", "dm", "dc"])
def test_base_loss_goes_down(method, data, experts, sam_experts):
    store = sam_experts if METHODS[method].expert_optimizer == "sam" else experts
    extra = {"method_options": {"max_start_epoch": 1, "initial_window": (0, 1)}} if method == "datm" else {}
    if method in ("mtt", "ftd"):
        extra = {"method_options": {"max_start_epoch": 1}}
    result = distill(data, _config(method, iterations=12, **extra), experts=store)
    losses = _base_losses(result)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, losses
    assert result.windows.shape == (6, data.window_channels, SEQ + PRED)
    assert not torch.equal(result.final_windows, SyntheticSet.from_data(
        data, samples=6, generator=torch.Generator().manual_seed(0)).windows().detach())


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("representation", ["windows", "series"])
@pytest.mark.parametrize("condtsf,ddtime_on", [(True, False), (False, True), (True, True)])
def test_options_run(method, representation, condtsf, ddtime_on, data, experts, sam_experts):
    store = sam_experts if METHODS[method].expert_optimizer == "sam" else experts
    config = _config(method, representation=representation, condtsf=condtsf, ddtime=ddtime_on, iterations=4)
    result = distill(data, config, experts=store)
    kinds = [h["kind"] for h in result.history]
    per_iteration = build_method(method, **config.method_options).updates_per_iteration
    assert len(kinds) == 4 * per_iteration
    assert ("condtsf" in kinds) == condtsf  # iteration 2 is a value-update iteration
    if ddtime_on:
        terms = [h for h in result.history if "value" in h]
        assert terms and all(math.isfinite(h["value"]) and 0 <= h["isib"] <= 1 for h in terms)
    assert torch.isfinite(result.windows).all()
    assert result.windows.shape[1:] == (data.window_channels, SEQ + PRED)


def test_config_holds_the_update_and_the_terms_and_keeps_the_flat_record():
    config = DistillConfig(method="datm", condtsf=CondTSFUpdate(beta=0.05), ddtime_terms=DDTimeTerms(alpha=0.3))
    record = config.to_dict()
    assert (record["condtsf"], record["condtsf_beta"], record["condtsf_gap"], record["condtsf_series_write"]) == \
        (True, 0.05, 3, "sequential")
    assert (record["ddtime"], record["alpha"], record["lambda_val"], record["lambda_is"], record["tau"]) == \
        (True, 0.3, 1.0, 0.6, 1.0)
    off = DistillConfig().to_dict()
    assert off["condtsf"] is False and off["ddtime"] is False and off["alpha"] == 0.8 and off["condtsf_beta"] == 0.01
    assert set(off) == set(record) and not DistillConfig().needs_teacher and config.needs_teacher
    with pytest.raises(TypeError, match="ddtime_terms: expected a DDTimeTerms"):
        DistillConfig(ddtime_terms=True)
    with pytest.raises(TypeError, match="condtsf"):
        DistillConfig(condtsf=0.01)
    with pytest.raises(ValueError, match="representation"):
        DistillConfig(representation="image")


def test_build_method_checks_options_and_the_unrolled_student():
    assert {name for name, cls in METHODS.items() if cls.has_unrolled_student} == {"mtt", "ftd", "datm"}
    student = DDTimeTerms(student_side="student")
    assert DistillConfig(method="ftd", ddtime_terms=student).build_method().has_unrolled_student
    for method in ("dm", "tgdd"):
        with pytest.raises(ValueError, match="student_side.*unrolled student"):
            DistillConfig(method=method, ddtime_terms=student).build_method()
    with pytest.raises(ValueError, match="method_options.*bogus"):
        DistillConfig(method="mtt", method_options={"bogus": 1}).build_method()


def test_condtsf_protocol_and_student_side(condtsf_data, condtsf_experts):
    config = _config("datm", ddtime=True, condtsf=True, student_side="student", iterations=4,
                     representation="series", samples=14)
    result = distill(condtsf_data, config, experts=condtsf_experts)
    # series under condtsf: one series per real channel, ceil(14 / 7) = 2 univariate windows each
    assert result.windows.shape == (14, 1, SEQ + PRED)
    with pytest.raises(ValueError, match="student_side"):
        distill(condtsf_data, _config("dm", ddtime=True, student_side="student", iterations=1),
                experts=condtsf_experts)


def test_learnable_student_lr(data, experts):
    config = _config("mtt", iterations=3, method_options={"learn_lr": True})
    result = distill(data, config, experts=experts)
    lrs = [h["student_lr"] for h in result.history]
    assert lrs[0] == pytest.approx(3e-4) and lrs[-1] != lrs[0]


def test_dm_random_network_needs_no_experts(data):
    result = distill(data, _config("dm", iterations=3, method_options={"network": "random"}))
    assert result.windows.shape == (6, data.window_channels, SEQ + PRED)
    with pytest.raises(ValueError, match="experts"):
        distill(data, _config("mtt", iterations=1))


def test_reproducible_for_a_seed(data, experts):
    a = distill(data, _config("datm", iterations=3, condtsf=True, ddtime=True), experts=experts)
    b = distill(data, _config("datm", iterations=3, condtsf=True, ddtime=True), experts=experts)
    c = distill(data, _config("datm", iterations=3, condtsf=True, ddtime=True, seed=1), experts=experts)
    assert torch.equal(a.windows, b.windows)
    assert not torch.equal(a.windows, c.windows)


# --- selection, checkpoints, resume ---------------------------------------------------------
def test_selection_keeps_the_best_validation_score(data, experts):
    scores = iter([3.0, 1.0, 2.0])
    seen = []

    def validate(windows):
        seen.append(windows.clone())
        return next(scores)

    result = distill(data, _config("mtt", iterations=6, select_every=2), experts=experts, validate=validate)
    assert [v[0] for v in result.val_history] == [2, 4, 6]
    assert result.best_iteration == 4 and result.best_val_mse == 1.0
    assert torch.equal(result.windows, seen[1])


class _Killed(Exception):
    pass


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_after_kill_matches_uninterrupted(method, data, experts, sam_experts, tmp_path):
    store = sam_experts if METHODS[method].expert_optimizer == "sam" else experts
    config = _config(method, iterations=7, condtsf=True, ddtime=True, checkpoint_every=1, select_every=2,
                     representation="series" if method == "dm" else "windows")
    score = lambda w: float(w.pow(2).mean())  # noqa: E731  deterministic stand-in for student training

    full = distill(data, config, experts=store, out_dir=tmp_path / "full", validate=score)

    calls = {"n": 0}

    def dying(windows):
        calls["n"] += 1
        if calls["n"] == 2:  # at iteration 4, after the checkpoint of iteration 3
            raise _Killed
        return score(windows)

    with pytest.raises(_Killed):
        distill(data, config, experts=store, out_dir=tmp_path / "killed", validate=dying)
    assert load_checkpoint(tmp_path / "killed" / CHECKPOINT_NAME)["iteration"] == 3
    resumed = distill(data, config, experts=store, out_dir=tmp_path / "killed", resume=True, validate=score)
    assert resumed.resumed_from == 3
    assert torch.equal(resumed.final_windows, full.final_windows)
    assert torch.equal(resumed.windows, full.windows)
    assert resumed.history == full.history
    assert resumed.val_history == full.val_history


def test_resume_refuses_other_settings(data, experts, tmp_path):
    distill(data, _config("mtt", iterations=2, checkpoint_every=1), experts=experts, out_dir=tmp_path)
    with pytest.raises(ValueError, match="samples"):
        distill(data, _config("mtt", iterations=2, samples=5), experts=experts, out_dir=tmp_path, resume=True)


def test_checkpoint_files_are_atomic_and_checked(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"x": torch.arange(3), "history": [{"a": 1.0}]})
    assert not (tmp_path / "c.pt.tmp").exists()
    assert load_checkpoint(path)["history"] == [{"a": 1.0}]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(RuntimeError, match="c.pt"):
        load_checkpoint(path)
    syn = tmp_path / "s.safetensors"
    save_synthetic(syn, torch.ones(2, 3, 4), {"method": "mtt"})
    windows, meta = load_synthetic(syn)
    assert windows.shape == (2, 3, 4) and meta["method"] == "mtt"
    syn.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="s.safetensors"):
        load_synthetic(syn)


# --- DDTime terms ---------------------------------------------------------------------------
def test_fused_and_reference_terms_give_the_same_synthetic_set(data, experts):
    fused = distill(data, _config("mtt", iterations=5, ddtime=True, loss_impl="fused"), experts=experts)
    reference = distill(data, _config("mtt", iterations=5, ddtime=True, loss_impl="reference"), experts=experts)
    torch.testing.assert_close(fused.windows, reference.windows, rtol=1e-4, atol=1e-4)
    for a, b in zip(fused.history, reference.history):
        assert a["value"] == pytest.approx(b["value"], rel=1e-4)
        assert a["isib"] == pytest.approx(b["isib"], rel=1e-4)


def test_ddtime_terms_values(data, experts):
    model = build_model("dlinear", seq_len=SEQ, pred_len=PRED, channels=data.window_channels)
    windows = data.windows("train")[:5].clone()
    teacher = experts.trajectory(0)[-1]
    terms = DDTimeTerms(alpha=0.5, lambda_val=2.0, lambda_is=0.3, loss_impl="reference")
    total, parts = terms(windows, seq_len=SEQ, model=model, teacher_params=teacher)
    with torch.no_grad():
        pred = functional_forward(model.eval(), teacher, windows[..., :SEQ])
    d = windows[..., SEQ:] - pred
    expected_value = 0.5 * torch.fft.rfft(d, dim=-1).abs().mean() + 0.5 * d.pow(2).mean()
    assert parts["value"] == pytest.approx(float(expected_value), rel=1e-5)
    assert float(total) == pytest.approx(2.0 * parts["value"] + 0.3 * parts["isib"], rel=1e-5)
    for bad in ({"alpha": 1.5}, {"tau": 0.0}, {"lambda_is": -1.0}, {"student_side": "x"}, {"loss_impl": "x"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DDTimeTerms(**bad)


# --- synthetic set and CondTSF update -------------------------------------------------------
def test_synthetic_series_representation(data, condtsf_data):
    gen = torch.Generator().manual_seed(0)
    syn = SyntheticSet.from_data(data, samples=3, representation="series", stride=4, generator=gen)
    assert syn.values.shape == (data.window_channels, 2 * 4 + SEQ + PRED)
    windows = syn.windows()
    assert windows.shape == (3, data.window_channels, SEQ + PRED)
    torch.testing.assert_close(windows[1], syn.values[:, 4:4 + SEQ + PRED])
    new = torch.randn(3, data.window_channels, PRED)
    syn.blend_labels(new, 1.0)
    # steps 40..43 belong to the last window's label only; step 32 to the labels of windows
    # 0 (offset 8), 1 (offset 4) and 2 (offset 0), written in that order (the last one wins at beta 1)
    torch.testing.assert_close(syn.labels()[2][:, -4:], new[2][:, -4:])
    torch.testing.assert_close(syn.values[:, 32], new[2][:, 0])
    ci = SyntheticSet.from_data(condtsf_data, samples=10, representation="series", generator=gen)
    assert ci.windows().shape == (7 * 2, 1, SEQ + PRED)
    with pytest.raises(ValueError, match="representation"):
        SyntheticSet.from_data(data, samples=3, representation="images", generator=gen)


def test_soft_labels_are_separate(data):
    syn = SyntheticSet.from_data(data, samples=4, generator=torch.Generator().manual_seed(0))
    before = syn.values.detach().clone()
    syn.enable_soft_labels()
    assert len(syn.parameters()) == 2
    syn.blend_labels(torch.zeros(4, data.window_channels, PRED), 1.0)
    assert torch.equal(syn.values.detach(), before) and float(syn.labels().detach().abs().sum()) == 0.0


def test_condtsf_value_update(data, experts):
    assert [i for i in range(9) if CondTSFUpdate().is_due(i)] == [2, 5, 8]
    assert [i for i in range(9) if CondTSFUpdate(gap=4).is_due(i)] == [3, 7]
    model = build_model("dlinear", seq_len=SEQ, pred_len=PRED, channels=data.window_channels)
    syn = SyntheticSet.from_data(data, samples=4, generator=torch.Generator().manual_seed(0))
    teacher = experts.trajectory(1)[-1]
    x, y = syn.inputs().detach().clone(), syn.labels().detach().clone()
    CondTSFUpdate(beta=0.01).apply(syn, model, teacher)
    with torch.no_grad():
        pred = functional_forward(model.eval(), teacher, x)
    torch.testing.assert_close(syn.labels(), 0.99 * y + 0.01 * pred)
    torch.testing.assert_close(syn.inputs(), x)
    for bad in ({"beta": 2.0}, {"gap": 0}, {"series_write": "mean"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CondTSFUpdate(**bad)


def test_datm_window_schedule():
    datm = build_method("datm")
    assert datm.start_range(0) == (0, 2) and datm.start_range(39) == (0, 2) and datm.start_range(40) == (1, 3)
    assert datm.start_range(10_000) == (12, 16)
    with pytest.raises(ValueError, match="method"):
        build_method("nope")
    with pytest.raises(TypeError):
        build_method("mtt", bogus=1)


# --- term balance ---------------------------------------------------------------------------
@pytest.mark.parametrize("balance", ["none", "grad-norm"])
def test_term_balance_combines_the_terms_gradients(balance, data, experts):
    """The update's gradient is sum_k w_k g_k (none) or sum_k w_k g_k / |g_k| (grad-norm), per term k."""
    from ddtime.driver.distill.loop import DistillRun

    config = _config("mtt", ddtime=True, term_balance=balance, lambda_val=0.7, lambda_is=0.3, iterations=1)
    run = DistillRun(data, config, experts=experts)
    run.teacher = experts.trajectory(0)[-1]
    captured = {}
    run.optimizer.step = lambda: captured.setdefault("grad", run.synthetic.values.grad.clone())
    torch.manual_seed(0)
    out = run.method.step(run.ctx, 0)
    windows = run.synthetic.windows()
    losses = run.terms.losses(windows, seq_len=SEQ, model=run.model, teacher_params=run.teacher)
    expected, norms = torch.zeros_like(run.synthetic.values), {}
    for name, loss, weight in (("base", out.loss / out.loss.detach(), 1.0), ("value", losses["value"], 0.7),
                               ("isib", losses["isib"], 0.3)):
        (g,) = torch.autograd.grad(loss, run.synthetic.values, retain_graph=True)
        norms[name] = float(g.norm())
        expected += weight * (g / g.norm() if balance == "grad-norm" else g)
    record = run._update(out)
    for name, norm in norms.items():
        assert float(record[f"{name}_grad_norm"]) == pytest.approx(norm, rel=1e-4)
    torch.testing.assert_close(captured["grad"], expected, rtol=1e-4, atol=1e-9)
    assert float(record["value"]) == pytest.approx(float(losses["value"].detach()), rel=1e-5)
    with pytest.raises(ValueError, match="term_balance"):
        _config("mtt", term_balance="max")


@pytest.mark.parametrize("weights", [{"lambda_is": 0.0}, {"lambda_val": 0.0}, {"lambda_val": 0.0, "lambda_is": 0.0}])
def test_a_term_with_zero_weight_is_skipped(weights, data, experts):
    result = distill(data, _config("mtt", ddtime=True, iterations=2, **weights), experts=experts)
    record = result.history[-1]
    for name, key in (("value", "lambda_val"), ("isib", "lambda_is")):
        assert (name in record) == (weights.get(key, 1.0) != 0.0)


def test_method_options_refuse_bools_and_wrong_types():
    """One validation helper: a bool is not an int (syn_steps=True used to pass), a type error is a TypeError."""
    from ddtime.driver.distill.methods import build_method

    with pytest.raises(TypeError, match="syn_steps: expected an int, got bool True"):
        build_method("mtt", syn_steps=True)
    with pytest.raises(ValueError, match="syn_steps: expected an int >= 1, got 0"):
        build_method("mtt", syn_steps=0)
    with pytest.raises(TypeError, match="student_lr: expected a number, got str 'fast'"):
        build_method("mtt", student_lr="fast")
    with pytest.raises(ValueError, match="method_options: syn_steps: expected an int, got bool True"):
        DistillConfig(method="mtt", method_options={"syn_steps": True}).build_method()
