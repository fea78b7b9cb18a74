"""ddtime.driver.classification: digits loader, networks and their functional calls, expert trajectories
in the expert store, DM/TGDD loss terms against plain implementations, the distillation loop, evaluation."""
import json
import math

import pytest
import torch
from torch.nn import functional as F

pytest.importorskip("sklearn")

from ddtime.driver.classification import (ClassificationData, build_network, classifier_network,  # noqa: E402
                                          distill_classifier, evaluate_synthetic, load_digits, train_trajectories)
from ddtime.driver.classification import trajectories as trajectories_module  # noqa: E402
from ddtime.driver.classification.classwise import constraint_cross_entropy  # noqa: E402
from ddtime.driver.distill.matching import default_alpha, mean_embedding_distance  # noqa: E402
from ddtime.driver.experts import ExpertStore  # noqa: E402
from ddtime.driver.models.params import assign_flat_params, flat_params, functional_forward  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


TRAJ = dict(num_trajectories=2, epochs=3, batch_size=64, quiet=True)


@pytest.fixture(scope="module")
def trajectories(digits, tmp_path_factory):
    """An ExpertStore of 2 ConvNet trajectories x 3 epochs on digits."""
    return train_trajectories(digits, out_dir=tmp_path_factory.mktemp("cls_experts"), **TRAJ)


# --- data ---------------------------------------------------------------------------------------
def test_digits_split(digits):
    assert digits.train_x.shape == (1438, 1, 8, 8) and digits.test_x.shape == (359, 1, 8, 8)
    assert digits.num_classes == 10 and digits.sample_shape == (1, 8, 8)
    counts = torch.bincount(digits.train_y, minlength=10)
    test_counts = torch.bincount(digits.test_y, minlength=10)
    assert torch.all((test_counts.double() / (counts + test_counts) - 0.2).abs() < 0.01)
    assert abs(float(digits.train_x.mean())) < 1e-4 and abs(float(digits.train_x.std()) - 1) < 1e-4
    again, other = load_digits(seed=0), load_digits(seed=1)
    assert torch.equal(again.train_x, digits.train_x)
    assert not torch.equal(other.test_y, digits.test_y)
    assert load_digits(flatten=True).train_x.shape == (1438, 64)


def test_holdout_carves_validation_from_train_only(digits):
    split = digits.holdout(0.2, seed=0)
    assert split.train_x.shape[0] + split.test_x.shape[0] == digits.train_x.shape[0]
    counts = torch.bincount(split.test_y, minlength=10)
    assert torch.equal(counts, torch.round(0.2 * torch.bincount(digits.train_y, minlength=10).double()).long())
    rows = {tuple(v.tolist()) for v in digits.train_x.flatten(1)}
    test_rows = {tuple(v.tolist()) for v in digits.test_x.flatten(1)}
    held = [tuple(v.tolist()) for v in split.test_x.flatten(1)]
    assert all(r in rows for r in held) and not any(r in test_rows for r in held)  # train rows, no test row
    assert not torch.equal(digits.holdout(0.2, seed=1).test_y, split.test_y)


def test_from_tensors_and_subset():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 5, generator=g), torch.arange(3).repeat(20)
    data = ClassificationData.from_tensors(x, y, test_fraction=0.25, seed=3)
    assert data.train_x.shape == (45, 5) and data.num_classes == 3
    sx, sy = data.random_subset(4, seed=1)
    assert sx.shape == (12, 5) and torch.equal(sy, torch.arange(3).repeat_interleave(4))
    for row, label in zip(sx, sy):  # every picked sample is a training sample of its class
        assert any(torch.equal(row, r) for r in data.train_x[data.train_y == label])
    with pytest.raises(ValueError, match="per_class"):
        data.random_subset(16)
    with pytest.raises(TypeError, match="input_y"):
        ClassificationData.from_tensors(x, y.float())
    with pytest.raises(ValueError, match="input_x"):
        ClassificationData.from_tensors(torch.randn(60, 2, 3), y)
    with pytest.raises(ValueError, match="train_y"):
        ClassificationData(x, y, x, y, num_classes=2)


# --- networks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch, shape, embed_dim", [("convnet", (1, 8, 8), 32 * 2 * 2), ("mlp", (64,), 128)])
def test_networks_and_functional_calls(arch, shape, embed_dim):
    net = build_network(arch, shape, 10, seed=0)
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(1))
    assert net.embed(x).shape == (5, embed_dim) and net(x).shape == (5, 10)
    flat = flat_params(net)
    torch.testing.assert_close(functional_forward(net, flat, x), net(x))
    torch.testing.assert_close(functional_forward(net, flat, x, method="embed"), net.embed(x))
    other = flat_params(build_network(arch, shape, 10, seed=1))
    assert not torch.allclose(functional_forward(net, other, x), net(x))
    assert torch.equal(flat_params(build_network(arch, shape, 10, seed=0)), flat)
    with pytest.raises(ValueError, match="flat"):
        functional_forward(net, flat[:-1], x)


def test_convnet_blocks():
    net = build_network("convnet", (1, 8, 8), 10, seed=0)
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Conv2d", "GroupNorm", "ReLU", "AvgPool2d"] * 2
    assert all(m.num_groups == m.num_channels for m in net.features if isinstance(m, torch.nn.GroupNorm))
    with pytest.raises(ValueError, match="depth"):
        build_network("convnet", (1, 8, 8), 10, depth=4)
    with pytest.raises(ValueError, match="arch"):
        build_network("resnet", (1, 8, 8), 10)


# --- trajectories -------------------------------------------------------------------------------
def test_trajectories(trajectories, digits):
    snaps = torch.stack([trajectories.trajectory(i) for i in range(trajectories.num_experts)])
    net = build_network("convnet", digits.sample_shape, 10, seed=0)
    assert snaps.shape == (2, 4, flat_params(net).numel()) and snaps.dtype == torch.float32
    assert torch.equal(trajectories.trajectories(), snaps)
    assert torch.equal(snaps[0, 0], flat_params(net))          # snapshot 0 = initial weights
    assert not torch.equal(snaps[0, 0], snaps[1, 0])            # experts start from different weights
    assert all(not torch.equal(snaps[k, e], snaps[k, e + 1]) for k in range(2) for e in range(3))
    assert all(entry["test_acc"] > 0.8 for entry in trajectories.entries)
    s = trajectories.settings
    assert trajectories.task == "classification" and trajectories.indices == [0, 1]
    assert (s["arch"], s["sample_shape"], s["num_classes"], s["expert_epochs"]) == ("convnet", [1, 8, 8], 10, 3)
    assert s["num_params"] == snaps.shape[2]
    # the network of the settings is the classifier: with the last snapshot it has the stored accuracy
    template = classifier_network(s)
    assert type(template) is type(net) and flat_params(template).numel() == snaps.shape[2]
    expert = assign_flat_params(classifier_network(s), snaps[1, -1])
    x = digits.test_x[:7]
    torch.testing.assert_close(expert(x), functional_forward(template, snaps[1, -1], x))
    acc = (expert(digits.test_x).argmax(1) == digits.test_y).double().mean()
    assert float(acc) == pytest.approx(trajectories.entries[1]["test_acc"])


def test_trajectory_store_reopens_resumes_and_rejects(trajectories, digits, tmp_path, monkeypatch):
    reopened = ExpertStore(trajectories.out_dir)
    assert reopened.num_experts == 2 and torch.equal(reopened.trajectory(1), trajectories.trajectory(1))
    # a second run with the same settings trains nothing: every expert is stored already
    monkeypatch.setattr(trajectories_module, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    again = train_trajectories(digits, out_dir=trajectories.out_dir, **TRAJ)
    assert again.num_experts == 2 and torch.equal(again.trajectory(0), trajectories.trajectory(0))
    monkeypatch.undo()
    # resume: a missing expert is trained again, byte for byte the same trajectory
    out = tmp_path / "resume"
    for name in ("expert_000.safetensors", "expert_001.safetensors", "manifest.json"):
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes((trajectories.out_dir / name).read_bytes())
    (out / "expert_001.safetensors").unlink()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["experts"] = manifest["experts"][:1]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert ExpertStore(out).indices == [0] and ExpertStore(out).manifest["num_experts"] == 2
    resumed = train_trajectories(digits, out_dir=out, **TRAJ)
    assert resumed.indices == [0, 1] and torch.equal(resumed.trajectory(1), trajectories.trajectory(1))
    assert resumed.entries == trajectories.entries
    # other settings in the same directory are refused, naming what differs
    with pytest.raises(ValueError, match=r"manifest\.json: experts stored here were trained with other settings "
                                         r"\(differ in: arch, data_fingerprint, expert_epochs, num_params, param_spec, "
                                         r"sample_shape\)"):
        train_trajectories(load_digits(seed=0, flatten=True), out_dir=out, num_trajectories=2, epochs=2, quiet=True)
    # a truncated expert file: a clear error naming the file, when opening the store and when resuming
    path = out / "expert_001.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"expert_001\.safetensors: truncated or corrupt expert file"):
        ExpertStore(out)
    with pytest.raises(ValueError, match=r"expert_001\.safetensors: truncated or corrupt expert file"):
        train_trajectories(digits, out_dir=out, **TRAJ)
    # a forecasting-shaped metric set is not a classifier's entry
    manifest = json.loads((trajectories.out_dir / "manifest.json").read_text())
    del manifest["experts"][0]["test_acc"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="malformed expert entry"):
        ExpertStore(bad)


# --- loss terms against plain implementations ---------------------------------------------------
def test_mean_embedding_distance_plain():
    g = torch.Generator().manual_seed(0)
    real, syn = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    plain = 0.0
    for f in range(4):
        mr = sum(float(real[i, f]) for i in range(7)) / 7
        ms = sum(float(syn[i, f]) for i in range(3)) / 3
        plain += (mr - ms) ** 2
    assert math.isclose(float(mean_embedding_distance(real, syn)), plain, rel_tol=1e-12)
    with pytest.raises(ValueError, match="real, syn"):
        mean_embedding_distance(real, syn[:, :3])


def test_constraint_and_default_alpha_plain():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, generator=g, dtype=torch.float64)
    ce_plain = -sum(float(logits[i, 2]) - math.log(sum(math.exp(float(v)) for v in logits[i])) for i in range(4)) / 4
    assert math.isclose(float(constraint_cross_entropy(logits, 2)), ce_plain, rel_tol=1e-12)
    assert default_alpha(1) == default_alpha(10) == 2.5 and default_alpha(11) == default_alpha(50) == 0.5


def test_one_tgdd_update_matches_plain_equations(digits, trajectories):
    """The first TGDD update of class 0 equals plain SGD on ||mu_real - mu_syn||^2 + alpha * F / 2048 * CE."""
    ipc, lr = 3, 0.1
    net = classifier_network(trajectories.settings)
    result = distill_classifier(digits, ipc=ipc, method="tgdd", experts=trajectories, iterations=1, lr_per_sample=lr,
                     batch_real=10_000, quiet=True)
    # replay the run's random draws: trajectory, stage, expert stage
    g = torch.Generator().manual_seed(0)
    i = int(torch.randint(2, (1,), generator=g))
    j = int(torch.randint(4, (1,), generator=g))
    j2 = int(torch.randint(j, min(j + 6, 3) + 1, (1,), generator=g))
    x0, _ = digits.random_subset(ipc, seed=0)
    s = x0[:ipc].clone().requires_grad_(True)
    real = digits.train_x[digits.train_y == 0]
    enc, exp = trajectories.trajectory(i)[j], trajectories.trajectory(i)[j2]
    real_feat, syn_feat = (functional_forward(net, enc, v, method="embed") for v in (real, s))
    match = ((real_feat.mean(0) - syn_feat.mean(0)) ** 2).sum()
    ce = F.cross_entropy(functional_forward(net, exp, s), torch.zeros(ipc, dtype=torch.int64))
    weight = 2.5 * net.embed_dim / 2048             # alpha for a small set, rescaled to the 2048-feature reference
    (match + weight * ce).backward()
    expected = x0[:ipc] - lr * ipc * s.grad       # first SGD-momentum step: buffer = gradient
    torch.testing.assert_close(result.x[:ipc], expected, rtol=1e-4, atol=1e-5)
    assert result.settings["alpha"] == 2.5 and result.settings["constraint_weight"] == pytest.approx(weight)
    assert result.settings["lr_per_class"] == lr * ipc
    unscaled = distill_classifier(digits, ipc=ipc, method="tgdd", experts=trajectories, iterations=1, lr_per_sample=lr,
                       alpha_reference_features=None, quiet=True)
    assert unscaled.settings["constraint_weight"] == 2.5 and not torch.equal(unscaled.x, result.x)


# --- distillation loop --------------------------------------------------------------------------
@torch.no_grad()
def matching_loss(x, y, data, net, flat) -> float:
    """Sum over classes of the squared mean-embedding distance between all real training samples of the
    class and the synthetic ``x [S, ...]`` of it (labels ``y [S]``) under ``net`` with parameters ``flat``."""
    total = 0.0
    for c, idx in enumerate(data.class_indices()):
        if (y == c).any():
            real, syn = (functional_forward(net, flat, v, method="embed") for v in (data.train_x[idx], x[y == c]))
            total += float(mean_embedding_distance(real, syn))
    return total


@pytest.mark.parametrize("method", ["dm", "tgdd"])
def test_few_iterations_reduce_matching_loss(method, digits, trajectories):
    init_x, init_y = digits.random_subset(5, seed=0)
    result = distill_classifier(digits, ipc=5, method=method, experts=trajectories, iterations=15, quiet=True)
    assert result.x.shape == (50, 1, 8, 8) and torch.equal(result.y, init_y)
    assert len(result.matching) == 15 and all(math.isfinite(v) for v in result.matching)
    assert len(result.constraint) == (15 if method == "tgdd" else 0)
    net = classifier_network(trajectories.settings)
    if method == "tgdd":
        encoders = [trajectories.trajectory(i)[j] for i in range(2) for j in range(4)]
    else:
        encoders = [flat_params(build_network("convnet", (1, 8, 8), 10, seed=100 + k)) for k in range(4)]
    before = sum(matching_loss(init_x, init_y, digits, net, e) for e in encoders)
    after = sum(matching_loss(result.x, result.y, digits, net, e) for e in encoders)
    assert after < 0.7 * before, (before, after)
    again = distill_classifier(digits, ipc=5, method=method, experts=trajectories, iterations=15, quiet=True)
    assert torch.equal(again.x, result.x)                        # seeded


def test_distill_on_vectors_with_mlp(tmp_path):
    data = load_digits(seed=0, flatten=True)
    traj = train_trajectories(data, num_trajectories=1, epochs=2, quiet=True, out_dir=tmp_path)
    assert traj.settings["arch"] == "mlp" and traj.trajectory(0).shape == (3, traj.settings["num_params"])
    result = distill_classifier(data, ipc=2, method="tgdd", experts=traj, iterations=3, quiet=True)
    assert result.x.shape == (20, 64) and all(math.isfinite(v) for v in result.matching)


def test_distill_argument_errors(digits, trajectories, experts):
    with pytest.raises(ValueError, match="experts"):
        distill_classifier(digits, ipc=1, method="tgdd", iterations=1, quiet=True)
    with pytest.raises(ValueError, match="method"):
        distill_classifier(digits, ipc=1, method="mtt", iterations=1, quiet=True)
    with pytest.raises(ValueError, match="ipc"):
        distill_classifier(digits, ipc=0, method="dm", iterations=1, quiet=True)
    flat_data = load_digits(flatten=True)
    with pytest.raises(ValueError, match="experts: trained on samples"):
        distill_classifier(flat_data, ipc=1, method="tgdd", experts=trajectories, iterations=1, quiet=True)
    with pytest.raises(ValueError, match="holds forecasting experts"):    # the forecasting DLinear experts
        distill_classifier(digits, ipc=1, method="tgdd", experts=experts, iterations=1, quiet=True)


def test_evaluate_synthetic(digits):
    x, y = digits.random_subset(10, seed=0)
    res = evaluate_synthetic(x, y, digits, seeds=(0, 1), epochs=60)
    assert len(res["accs"]) == 2 and 0.75 < res["mean"] <= 1.0 and res["std"] >= 0
    assert res == evaluate_synthetic(x, y, digits, seeds=(0, 1), epochs=60)
    with pytest.raises(ValueError, match=r"^x: expected samples of shape"):
        evaluate_synthetic(x.flatten(1), y, digits)


def test_default_learning_rate_is_the_one_chosen_on_validation(digits, trajectories):
    """distill's default lr_per_sample is the best of bench/tune_tgdd_lr.py for both methods (scored on a
    validation split carved from train, never on test)."""
    import json
    import pathlib

    record = json.loads((pathlib.Path(__file__).resolve().parents[1] / "bench" / "results" /
                         "tgdd_lr_validation.json").read_text())
    assert record["settings"]["n_val"] + record["settings"]["n_train"] == digits.train_x.shape[0]
    for method in ("dm", "tgdd"):
        scores = {lr: record["results"][f"{method} {lr}"]["mean"] for lr in record["settings"]["lrs"]}
        result = distill_classifier(digits, ipc=1, method=method, experts=trajectories, iterations=1, quiet=True)
        assert result.settings["lr_per_sample"] == max(scores, key=scores.get) == record["best"][method]
