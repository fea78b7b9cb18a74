"""CondTSF's code (RafaDD/CondTSF distill.py, backbone.py, buffer.py, model/gcond.py), pinned
behaviour by behaviour, and the ``condtsf`` preset that sets its defaults."""
import argparse
import types

import pytest
import torch

from ddtime.driver.distill import DistillConfig, SyntheticSet, build_method, distill
from ddtime.driver.distill.condtsf import CondTSFUpdate
from ddtime.driver.distill.methods import DistillContext
from ddtime.driver.experts import train_experts
from ddtime.driver.models import build_model, functional_forward
from ddtime.driver.training import train_model

SEQ, PRED = 24, 12

pytestmark = pytest.mark.usefixtures("one_thread")


def _ctx(data, synthetic, experts, model):
    return DistillContext(data=data, synthetic=synthetic, experts=experts, model=model, model_name="dlinear",
                          real_windows=data.windows("train"), seq_len=SEQ, pred_len=PRED, iterations=10,
                          generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                          extra_loss=lambda _: torch.zeros(()))


def _mtt_setup(data, experts, representation="windows", **options):
    synthetic = SyntheticSet.from_data(data, samples=4, representation=representation,
                                       generator=torch.Generator().manual_seed(1))
    model = build_model("dlinear", seq_len=SEQ, pred_len=PRED, channels=data.window_channels)
    method = build_method("mtt", syn_steps=3, **options)
    ctx = _ctx(data, synthetic, experts, model)
    method.prepare(ctx)
    return method, ctx


# 1. the base gradient reaches the inputs only ------------------------------------------------
@pytest.mark.parametrize("representation", ["windows", "series"])
def test_mtt_base_gradient_does_not_reach_the_labels(data, experts, representation):
    method, ctx = _mtt_setup(data, experts, representation)
    method.step(ctx, 0).loss.backward()
    grad = ctx.synthetic.values.grad
    label_only = grad[..., SEQ:] if representation == "windows" else grad[:, -PRED:]  # steps no input covers
    assert float(label_only.abs().max()) == 0.0
    inputs = grad[..., :SEQ] if representation == "windows" else grad[:, :SEQ]
    assert float(inputs.abs().max()) > 0.0


def test_learn_labels_is_the_named_departure(data, experts):
    method, ctx = _mtt_setup(data, experts, learn_labels=True)
    method.step(ctx, 0).loss.backward()
    assert float(ctx.synthetic.values.grad[..., SEQ:].abs().max()) > 0.0


# 2. soft labels: 0.2 * y + 0.8 * f(theta*_{t+M}, x), differentiable through x ------------------
def test_soft_label_is_differentiable_through_the_inputs(data, experts):
    method, ctx = _mtt_setup(data, experts)
    assert method.label_mix == 0.2
    trajectory = experts.trajectory(0)
    start, target = trajectory[1], trajectory[3]
    windows = ctx.synthetic.windows()
    student = method.unroll(ctx, start, windows, target)
    (got,) = torch.autograd.grad(student.sum(), ctx.synthetic.values)

    x, y = windows[..., :SEQ], windows[..., SEQ:].detach()
    manual = start.clone().requires_grad_(True)
    soft = 0.2 * y + 0.8 * functional_forward(ctx.model, target, x)
    for _ in range(3):  # syn_batch >= S: every step sees all windows, the mean ignores their order
        loss = torch.nn.functional.mse_loss(functional_forward(ctx.model, manual, x), soft)
        (g,) = torch.autograd.grad(loss, manual, create_graph=True)
        manual = manual - 3e-4 * g
    (want,) = torch.autograd.grad(manual.sum(), ctx.synthetic.values)
    torch.testing.assert_close(got, want)
    no_grad_soft = soft.detach()
    manual = start.clone().requires_grad_(True)
    loss = torch.nn.functional.mse_loss(functional_forward(ctx.model, manual, x), no_grad_soft)
    (g,) = torch.autograd.grad(loss, manual, create_graph=True)
    (detached,) = torch.autograd.grad((manual - 3e-4 * g).sum(), ctx.synthetic.values)
    assert not torch.allclose(detached, want)  # the target forecast's own gradient matters


# 3. CondTSF's update on a series writes the windows one after another -------------------------
@pytest.mark.parametrize("beta", [0.01, 0.3])
def test_series_value_update_moves_a_step_covered_by_k_windows_by_one_minus_one_minus_beta_to_the_k(beta):
    values = torch.zeros(2, 3 * 4 + SEQ + PRED)  # 4 windows at stride 4 per channel
    syn = SyntheticSet(values, representation="series", seq_len=SEQ, pred_len=PRED, stride=4)
    syn.blend_labels(torch.ones(4, 2, PRED), beta)
    coverage = torch.zeros(values.shape[1])
    for w in range(4):
        coverage[w * 4 + SEQ:w * 4 + SEQ + PRED] += 1
    expected = 1.0 - (1.0 - beta) ** coverage
    torch.testing.assert_close(syn.values.detach(), expected.expand(2, -1), rtol=1e-6, atol=1e-7)
    assert float(coverage.max()) == 3.0  # some steps are covered by 3 windows

    averaged = SyntheticSet(values, representation="series", seq_len=SEQ, pred_len=PRED, stride=4)
    averaged.blend_labels(torch.ones(4, 2, PRED), beta, series_write="average")
    torch.testing.assert_close(averaged.values.detach(), beta * (coverage > 0).float().expand(2, -1))


def test_value_update_writes_sequentially(condtsf_data, condtsf_experts):
    model = build_model("dlinear", seq_len=SEQ, pred_len=PRED, channels=1)
    syn = SyntheticSet.from_data(condtsf_data, samples=14, representation="series",
                                 generator=torch.Generator().manual_seed(0))
    teacher = condtsf_experts.trajectory(0)[-1]
    before = syn.values.detach().clone()
    with torch.no_grad():
        pred = functional_forward(model.eval(), teacher, syn.inputs())  # all windows forecast first
    CondTSFUpdate(beta=0.5).apply(syn, model, teacher)
    manual = before.clone()
    per = pred.reshape(before.shape[0], -1, PRED)
    for w in range(per.shape[1]):
        manual[:, w * 4 + SEQ:w * 4 + SEQ + PRED] = 0.5 * manual[:, w * 4 + SEQ:w * 4 + SEQ + PRED] + 0.5 * per[:, w]
    torch.testing.assert_close(syn.values.detach(), manual)


def test_each_condtsf_update_draws_its_own_teacher(condtsf_data, condtsf_experts, monkeypatch):
    """On a CondTSF iteration every update slot draws a fresh teacher (CondTSF's code draws one per
    update), not one teacher for the whole iteration."""
    import ddtime.driver.distill.loop as loop

    drawn, applied = [], []

    def draw(*args, **kwargs):
        drawn.append(loop_sample(*args, **kwargs).clone())  # a new object per draw
        return drawn[-1]

    loop_sample = loop.sample_teacher
    monkeypatch.setattr(loop, "sample_teacher", draw)
    monkeypatch.setattr(CondTSFUpdate, "apply", lambda self, syn, model, teacher: applied.append(teacher))
    config = DistillConfig(method="mtt", method_options={"syn_steps": 2, "updates_per_trajectory": 2}, samples=14,
                           representation="series", iterations=3, condtsf=CondTSFUpdate(), quiet=True,
                           checkpoint_every=0, select_every=0)
    run = loop.DistillRun(condtsf_data, config, experts=condtsf_experts)
    run.iteration(2)  # (2 + 1) % 3 == 0: both slots are value updates
    assert len(applied) == 2 and [id(t) for t in applied] == [id(t) for t in drawn]


# 4. experts under condtsf: stride-4 windows, a batch is 64 windows with all their channels ------
def test_condtsf_experts_batch_whole_windows(condtsf_data):
    import ddtime.driver.data

    data = ddtime.driver.data.load_forecasting(None, protocol="condtsf", seq_len=SEQ, pred_len=PRED, stride=4)
    n = len(data.channels)
    windows = data.windows("train")
    assert windows.shape[0] == n * ((data.train.shape[1] - SEQ - PRED) // 4 + 1)
    model = build_model("dlinear", seq_len=SEQ, pred_len=PRED, channels=1)
    seen = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()) if _m.training else None)
    train_model(model, data, optimizer="sgd", lr=5e-4, epochs=1, batch_size=64, patience=None, quiet=True)
    per_window = windows.shape[0] // n
    assert len(seen) == -(-per_window // 64)  # ceil(windows / 64) steps per epoch
    assert all(b.shape[0] % n == 0 for b in seen) and seen[0].shape[0] == 64 * n
    first = seen[0].view(64, n, SEQ)  # every group of n rows is one window's n channels
    x = windows[..., :SEQ].view(per_window, n, SEQ)
    for group in first[:5]:
        assert any(torch.equal(group, x[i]) for i in range(per_window))


# 5. FTD's moving average is bias-corrected ---------------------------------------------------
def test_ftd_ema_carries_no_weight_on_the_initial_set():
    ftd = build_method("ftd", ema_decay=0.99)
    initial, current = torch.zeros(3, 1, 8), torch.full((3, 1, 8), 2.0)
    ctx = types.SimpleNamespace(synthetic=types.SimpleNamespace(windows=lambda: current))
    ftd.ema, ftd.updates = torch.zeros_like(initial), 0
    for it in range(5):
        ftd.after_step(ctx, it)
    torch.testing.assert_close(ftd.final_windows(ctx), current)  # 5 updates of a constant set: that set


# 6. the random-subset reference of a series set is its initial stretch -------------------------
def test_random_subset_reference_is_the_starting_stretch(condtsf_data, condtsf_experts, tmp_path):
    """run_distillation's random-subset row is students trained on the real stretch the set started
    from, not on random training windows of the same number."""
    from ddtime.driver.evaluation import random_subset, student_recipe, train_students
    from ddtime.driver.pipeline import EvaluationConfig, run_distillation

    config = DistillConfig(method="mtt", method_options={"syn_steps": 2}, samples=14, representation="series",
                           iterations=2, quiet=True, checkpoint_every=0, select_every=0)
    recipe = student_recipe("condtsf", epochs=3)
    results = run_distillation(condtsf_data, config, experts=condtsf_experts, out_dir=tmp_path, plots=False,
                               evaluation=EvaluationConfig(students=1, recipe=recipe))
    start = SyntheticSet.from_data(condtsf_data, samples=14, representation="series",
                                   generator=torch.Generator().manual_seed(0)).windows().detach()
    on_start = train_students(start, condtsf_data, num_students=1, recipe=recipe)["test_mse"]
    on_random = train_students(random_subset(condtsf_data, start.shape[0]), condtsf_data, num_students=1,
                               recipe=recipe)["test_mse"]
    assert on_start != on_random  # the two references are distinguishable here
    assert results["random_subset_test_mse"] == on_start


# 7. the unrolled student draws syn_batch time windows, each with all its channels -------------
def test_unrolled_student_batches_whole_time_windows(condtsf_data, condtsf_experts):
    n = len(condtsf_data.channels)
    syn = SyntheticSet.from_data(condtsf_data, samples=10 * n, representation="series",
                                 generator=torch.Generator().manual_seed(0))
    model = build_model("dlinear", seq_len=SEQ, pred_len=PRED, channels=1)
    method = build_method("mtt", syn_steps=4, syn_batch=3)
    ctx = _ctx(condtsf_data, syn, condtsf_experts, model)
    method.prepare(ctx)
    seen = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    trajectory = condtsf_experts.trajectory(0)
    windows = syn.windows()
    method.unroll(ctx, trajectory[1], windows, trajectory[3])
    x = windows[..., :SEQ].detach()  # rows c * W + w
    per_channel = x.shape[0] // n
    assert per_channel == 10 and len(seen) == 1 + 4  # the target's forecast of every row, then 4 steps
    for batch in seen[1:]:
        assert batch.shape[0] == 3 * n  # 3 time windows x n channels (not 3 rows)
        rows = [next(i for i in range(x.shape[0]) if torch.equal(row, x[i])) for row in batch]
        drawn = {i % per_channel for i in rows}
        assert len(drawn) == 3 and sorted(rows) == sorted(c * per_channel + w for w in drawn for c in range(n))


# 8. CondTSF's teacher: a fixed pool of experts of the SGD store, also beside FTD's GSAM experts --
def test_condtsf_teachers_come_from_the_pool_of_the_teacher_store(condtsf_data, condtsf_experts, tmp_path):
    from ddtime.driver.distill.loop import DistillRun
    from ddtime.driver.distill.teacher import sample_teacher

    teachers = train_experts(condtsf_data, num_experts=3, expert_epochs=2, seed=7, out_dir=tmp_path, quiet=True)
    gen = torch.Generator().manual_seed(0)
    drawn = {int(torch.argmax(torch.stack([teachers.trajectory(i)[-1] for i in range(3)])
                              .eq(sample_teacher(teachers, gen, pool=[0, 2])).all(1).int())) for _ in range(30)}
    assert drawn == {0, 2}
    with pytest.raises(ValueError, match="pool"):
        sample_teacher(teachers, gen, pool=[3])
    update = CondTSFUpdate(beta=0.5, teacher_every=3)  # pool [0] of 3 experts
    config = DistillConfig(method="mtt", method_options={"syn_steps": 2}, samples=14, representation="series",
                           iterations=3, condtsf=update, quiet=True, checkpoint_every=0, select_every=0)
    run = DistillRun(condtsf_data, config, experts=condtsf_experts, teacher_experts=teachers)
    run.iteration(0)
    run.iteration(1)
    manual = SyntheticSet(run.synthetic.values.detach(), representation="series", seq_len=SEQ, pred_len=PRED,
                          stride=4, channel_independent=True)
    run.iteration(2)  # a CondTSF iteration: two updates, each with a teacher from the pool
    for _ in range(2):
        CondTSFUpdate(beta=0.5).apply(manual, run.model, teachers.trajectory(0)[-1])
    torch.testing.assert_close(run.synthetic.values.detach(), manual.values.detach())


def test_ftd_under_the_preset_matches_gsam_experts_and_takes_sgd_teachers(condtsf_data, tmp_path):
    from ddtime.driver.pipeline import ExpertRequest, experts_for, teacher_experts_for

    config = DistillConfig(method="ftd", method_options={"ema_decay": 0.0, "expert_optimizer": "gsam"},
                           condtsf=CondTSFUpdate(teacher_every=5, teacher_optimizer="sgd"))
    method, request = config.build_method(), ExpertRequest(directory=tmp_path, num_experts=1, epochs=1)
    experts = experts_for(condtsf_data, config, method, request, quiet=True)
    assert (experts.settings["optimizer"], experts.settings["rho"], experts.settings["gsam_alpha"]) == \
        ("gsam", 2.0, 0.4)
    teachers = teacher_experts_for(condtsf_data, config, method, request, quiet=True)
    assert teachers.settings["optimizer"] == "sgd" and teachers.out_dir != experts.out_dir
    mtt = DistillConfig(method="mtt", condtsf=config.condtsf)
    assert teacher_experts_for(condtsf_data, mtt, mtt.build_method(), request) is None  # its own SGD experts


# the preset ----------------------------------------------------------------------------------
def test_condensing_rates_give_condtsf_synthetic_lengths():
    from ddtime.driver.presets import series_windows_per_channel

    # int(rows * rate) steps, windows of 48 at stride 4 (CondTSF: generate_dataset(..., 4))
    assert series_windows_per_channel("ETTh1", 17420, seq_len=24, pred_len=24, stride=4) == 6    # 69 steps
    assert series_windows_per_channel("ETTm1", 69680, seq_len=24, pred_len=24, stride=4) == 23   # 139 steps
    assert series_windows_per_channel("exchange_rate", 7588, seq_len=24, pred_len=24, stride=4) == 7  # 75
    assert series_windows_per_channel("synthetic", 4000, seq_len=24, pred_len=24, stride=4) == 6  # ddtime's rate
    with pytest.raises(ValueError, match=r"dataset: 'national_illness' has no CondTSF condensing rate.*--samples"):
        series_windows_per_channel("national_illness", 966, seq_len=24, pred_len=24, stride=4)


def _parse(argv):
    from ddtime.driver.commands import build_parser

    return build_parser().parse_args(argv)


def test_preset_sets_condtsf_defaults_and_explicit_options_win():
    from ddtime.driver.commands.options import distill_config, evaluation_config, load_data, resolve

    args = _parse(["distill", "--data", "synthetic", "--preset", "condtsf", "--iterations", "7", "--quiet"])
    resolve(args)
    assert (args.protocol, args.seq_len, args.pred_len, args.representation, args.series_stride) == \
        ("condtsf", 24, 24, "series", 4)
    assert (args.iterations, args.num_experts, args.expert_epochs, args.students) == (7, 40, 80, 5)
    data = load_data(args)
    assert data.stride == 4 and args.samples == 6 * len(data.channels)  # built-in data: 6 windows per channel
    config = distill_config(args, method="datm", condtsf=True, ddtime=False)
    assert config.method_options == {"soft_labels": False}  # CondTSF's DATM has no soft labels
    assert config.condtsf.beta == 0.01 and config.ddtime_terms is None
    # CondTSF's teacher: every 5th SGD expert (8 of 40), also for FTD, whose own experts are GSAM, without EMA
    assert (config.condtsf.teacher_every, config.condtsf.teacher_optimizer) == (5, "sgd")
    assert config.condtsf.teacher_pool(40) == [0, 5, 10, 15, 20, 25, 30, 35]
    ftd = distill_config(args, method="ftd", condtsf=True, ddtime=False).build_method()
    assert (ftd.ema_decay, ftd.expert_optimizer) == (0.0, "gsam")
    # students: range(Epoch + 1) = 251 epochs, test windows at stride 12 (utils.py, distill.py)
    recipe = evaluation_config(args, data.protocol).recipe
    assert (recipe["epochs"], recipe["test_stride"]) == (251, 12)
    own = _parse(["distill", "--data", "synthetic", "--preset", "condtsf", "--method-option", "ema_decay=0.99",
                  "--method-option", "expert_optimizer=sam", "--condtsf-teacher-every", "1",
                  "--condtsf-teacher-optimizer", "method", "--eval-epochs", "250", "--test-stride", "1",
                  "--samples", "6"])
    resolve(own)
    own_config = distill_config(own, method="ftd", condtsf=True, ddtime=False)
    ddtime_ftd = own_config.build_method()  # ddtime's FTD, the named variant
    assert (ddtime_ftd.ema_decay, ddtime_ftd.expert_optimizer) == (0.99, "sam")
    assert own_config.condtsf.teacher_pool(40) is None and own_config.condtsf.teacher_optimizer is None
    assert evaluation_config(own, "condtsf").recipe["test_stride"] == 1
    plain = build_method("ftd")  # without the preset: ddtime's FTD
    assert (plain.ema_decay, plain.expert_optimizer) == (0.99, "sam")
    explicit = _parse(["distill", "--data", "synthetic", "--preset", "condtsf", "--protocol", "standard",
                       "--samples", "3", "--method-option", "soft_labels=True"])
    resolve(explicit)
    assert explicit.protocol == "standard" and explicit.samples == 3
    explicit_config = distill_config(explicit, method="datm", condtsf=False, ddtime=False)
    assert explicit_config.method_options == {"soft_labels": True} and explicit_config.condtsf is None
    quick = _parse(["distill"])  # no --data: CondTSF's preset at quick sizes
    resolve(quick)
    assert (quick.preset, quick.protocol, quick.num_experts, quick.expert_epochs, quick.iterations, quick.students) == \
        ("condtsf", "condtsf", 4, 80, 60, 3)


def test_experts_preset(tmp_path, capsys):
    from ddtime.driver.commands import main

    assert main(["experts", "--preset", "condtsf", "--num-experts", "1", "--expert-epochs", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "preset condtsf" in out
    from ddtime.driver.experts import ExpertStore

    settings = ExpertStore(tmp_path).settings
    assert (settings["protocol"], settings["seq_len"], settings["stride"], settings["batch_size"]) == \
        ("condtsf", 24, 4, 64)


def test_experts_preset_steps_on_64_windows_with_all_their_channels(tmp_path, monkeypatch):
    """The preset's experts take each SGD step on 64 windows x all channels (CondTSF's loaders), i.e.
    64 * N channel rows, not 64 rows: the stored batch_size (64) is the same under both units."""
    import ddtime.driver.training.lockstep as lockstep
    from ddtime.driver.commands import main
    from ddtime.driver.data import generate_seasonal

    rows = []
    real_vmap = lockstep.vmap

    def spy_vmap(fn, **kwargs):
        batched = real_vmap(fn, **kwargs)

        def call(params, x, y):
            rows.append(x.shape[1])  # x: [experts, rows, 1, seq_len]
            return batched(params, x, y)

        return call

    monkeypatch.setattr(lockstep, "vmap", spy_vmap)
    assert main(["experts", "--preset", "condtsf", "--num-experts", "1", "--expert-epochs", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    channels = generate_seasonal().shape[1] - 1  # all columns but the date
    assert rows and rows[0] == 64 * channels and all(r % channels == 0 for r in rows)


@pytest.fixture(scope="module")
def condtsf_experts(condtsf_data, tmp_path_factory):
    return train_experts(condtsf_data, num_experts=2, expert_epochs=4, out_dir=tmp_path_factory.mktemp("cexp"),
                         quiet=True)
