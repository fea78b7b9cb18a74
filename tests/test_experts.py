"""Expert trajectories: storage layout, resume after interruption, corruption checks, CLI, torchrun."""
import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import ddtime.driver.data
from ddtime.driver.commands.experts import configure_parser, run
from ddtime.driver.experts import ExpertStore, train_experts
from ddtime.driver.experts.train import forecasting_network
from ddtime.driver.models import assign_flat_params, build_model, flat_params, num_params
from ddtime.driver.training import evaluate

REPO = Path(__file__).resolve().parents[1]
SETTINGS = dict(model="dlinear", num_experts=2, expert_epochs=2, seed=10, quiet=True)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """A complete 2-expert run, trained once for the module."""
    out = tmp_path_factory.mktemp("reference")
    train_experts(data, out_dir=out, **SETTINGS)
    return out


def test_layout_and_contents(data, reference):
    store = ExpertStore(reference)
    assert store.num_experts == store.manifest["num_experts"] == 2 and store.indices == [0, 1]
    manifest = json.loads((reference / "manifest.json").read_text())
    s = manifest["settings"]
    assert (s["model"], s["optimizer"], s["lr"], s["momentum"], s["batch_size"]) == ("dlinear", "sgd", 5e-4, 0.9, 64)
    assert (s["seq_len"], s["pred_len"], s["channels"], s["expert_epochs"]) == (24, 12, 7, 2)
    assert sorted(p.name for p in reference.iterdir()) == [".lock", "expert_000.safetensors", "expert_001.safetensors",
                                                           "manifest.json"]
    model = build_model("dlinear", seq_len=24, pred_len=12, channels=7)
    assert s["num_params"] == num_params(model)
    for i, entry in enumerate(manifest["experts"]):
        trajectory = store.trajectory(i)
        assert trajectory.shape == (3, num_params(model)) and trajectory.dtype == torch.float32
        # row 0 = the initial parameters of seed + i; every epoch moves the parameters
        init = build_model("dlinear", seq_len=24, pred_len=12, channels=7, seed=SETTINGS["seed"] + i)
        torch.testing.assert_close(trajectory[0], flat_params(init))
        assert all(not torch.equal(trajectory[k], trajectory[k + 1]) for k in range(2))
        # the stored test metrics are those of the final parameters
        metrics = evaluate(assign_flat_params(forecasting_network(s), trajectory[-1]), data.windows("test"), seq_len=24)
        assert entry["test_mse"] == pytest.approx(metrics["mse"], rel=1e-5)
        assert entry["test_mae"] == pytest.approx(metrics["mae"], rel=1e-5)
    assert not torch.equal(store.trajectory(0), store.trajectory(1))
    with pytest.raises(IndexError, match=r"i must be in \[0, 2\), got 2"):
        store.trajectory(2)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_resume_after_deleted_expert_file(data, reference, tmp_path):
    out = _copy(reference, tmp_path / "run")
    (out / "expert_001.safetensors").unlink()
    trained = []
    store = train_experts(data, out_dir=out, on_expert_end=lambda i, e: trained.append(i), **SETTINGS)
    assert trained == [1] and store.num_experts == 2
    torch.testing.assert_close(store.trajectory(1), ExpertStore(reference).trajectory(1))  # deterministic


class Interrupt(Exception):
    pass


def test_resume_after_interrupted_run(data, reference, tmp_path):
    def crash(i, entry):
        raise Interrupt

    with pytest.raises(Interrupt):
        train_experts(data, out_dir=tmp_path, on_expert_end=crash, **SETTINGS)
    partial = ExpertStore(tmp_path)
    assert partial.indices == [0] and partial.manifest["num_experts"] == 2
    assert not list(tmp_path.glob("*.tmp"))
    trained = []
    store = train_experts(data, out_dir=tmp_path, on_expert_end=lambda i, e: trained.append(i), **SETTINGS)
    assert trained == [1] and store.indices == [0, 1]
    ref = ExpertStore(reference)
    for i in range(2):
        torch.testing.assert_close(store.trajectory(i), ref.trajectory(i))
    # nothing left to do: a rerun trains no expert
    train_experts(data, out_dir=tmp_path, on_expert_end=crash, **SETTINGS)


def test_truncated_file_is_rejected(data, reference, tmp_path):
    out = _copy(reference, tmp_path / "run")
    path = out / "expert_000.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"expert_000\.safetensors: truncated or corrupt"):
        ExpertStore(out)
    with pytest.raises(ValueError, match=r"expert_000\.safetensors: truncated or corrupt"):
        train_experts(data, out_dir=out, **SETTINGS)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"expert_000\.safetensors: truncated or corrupt"):
        ExpertStore(out)


def test_wrong_shape_or_foreign_file_is_rejected(reference, tmp_path):
    out = _copy(reference, tmp_path / "run")
    path = out / "expert_001.safetensors"
    meta = json.loads((out / "manifest.json").read_text())
    P = meta["settings"]["num_params"]
    save_file({"trajectory": torch.zeros(2, P)}, str(path), metadata={"settings_hash": meta["settings_hash"]})
    with pytest.raises(ValueError, match=r"expert_001\.safetensors: trajectory has shape \[2, \d+\]"):
        ExpertStore(out)
    save_file({"trajectory": torch.zeros(3, P)}, str(path), metadata={"settings_hash": "0" * 16, "expert": "1"})
    with pytest.raises(ValueError, match=r"expert_001\.safetensors: file belongs to another run"):
        ExpertStore(out)


def test_mismatched_or_corrupt_manifest(data, reference, tmp_path):
    out = _copy(reference, tmp_path / "run")
    with pytest.raises(ValueError, match=r"manifest\.json: experts stored here were trained with other settings "
                                         r"\(differ in: expert_epochs, model, num_params, param_spec\)"):
        train_experts(data, out_dir=out, **{**SETTINGS, "expert_epochs": 3, "model": "linear"})
    other = ddtime.driver.data.load_forecasting(None, seq_len=24, pred_len=12, protocol="condtsf")
    with pytest.raises(ValueError, match=r"differ in: channels, data_fingerprint, protocol"):
        train_experts(other, out_dir=out, **SETTINGS)
    manifest = out / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"lr": 0.0005', '"lr": 0.001'))
    with pytest.raises(ValueError, match=r"manifest\.json: settings_hash does not match"):
        ExpertStore(out)
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"manifest\.json: expert manifest is not readable JSON"):
        ExpertStore(out)
    with pytest.raises(FileNotFoundError, match="no expert manifest"):
        ExpertStore(tmp_path / "missing")


def test_argument_errors(data, tmp_path):
    with pytest.raises(ValueError, match="model must be one of"):
        train_experts(data, model="gru", out_dir=tmp_path)
    with pytest.raises(ValueError, match="optimizer must be one of sgd, sam"):
        train_experts(data, optimizer="adam", out_dir=tmp_path)
    with pytest.raises(ValueError, match="num_experts: expected an int >= 1"):
        train_experts(data, num_experts=0, out_dir=tmp_path)


def test_command_line_with_sam(tmp_path, capsys):
    parser = configure_parser(argparse.ArgumentParser())
    args = parser.parse_args(["--protocol", "condtsf", "--num-experts", "1", "--expert-epochs", "1",
                              "--optimizer", "sam", "--batch-size", "4096", "--out", str(tmp_path), "--quiet"])
    assert args.data is None and args.model == "dlinear" and args.rho is None  # the optimizer's default
    assert run(args) == 0
    assert "1 experts (dlinear, synthetic, condtsf 24->24)" in capsys.readouterr().out
    store = ExpertStore(tmp_path)
    s = store.settings
    assert (s["optimizer"], s["rho"], s["seq_len"], s["pred_len"], s["channels"], s["protocol"]) == \
        ("sam", 0.05, 24, 24, 1, "condtsf")
    assert store.trajectory(0).shape[0] == 2


def test_torchrun_two_ranks(reference, tmp_path):
    """Two gloo ranks split the experts (i % 2 == rank); rank 0 writes the manifest; the result
    equals the single-process run."""
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, sys
        sys.path.insert(0, {str(REPO)!r})
        from ddtime.driver.commands.experts import configure_parser, run
        sys.exit(run(configure_parser(argparse.ArgumentParser()).parse_args(sys.argv[1:])))
    """))
    out = tmp_path / "experts"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           "--seq-len", "24", "--pred-len", "12", "--num-experts", "2", "--expert-epochs", "2", "--seed", "10",
           "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("2 experts (dlinear") == 1  # only rank 0 reports
    store, ref = ExpertStore(out), ExpertStore(reference)
    assert store.indices == [0, 1] and store.manifest["num_experts"] == 2
    assert store.manifest["settings"] == ref.manifest["settings"]
    for i in range(2):
        torch.testing.assert_close(store.trajectory(i), ref.trajectory(i), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("protocol,stride", [("standard", 1), ("condtsf", 4)])
@pytest.mark.parametrize("optimizer", ["sgd", "sam", "gsam"])
def test_stacked_training_equals_one_train_model_run_per_expert(protocol, stride, optimizer):
    """Experts train in lockstep; each must follow the batches and steps of its own train_model run."""
    import ddtime.driver.data
    from ddtime.driver.models import build_model, flat_params
    from ddtime.driver.training.lockstep import train_stacked
    from ddtime.driver.training import train_model

    data = ddtime.driver.data.load_forecasting(None, protocol=protocol, seq_len=24, pred_len=12, stride=stride)
    build = lambda i: build_model("dlinear", seq_len=24, pred_len=12, channels=data.window_channels, seed=i)  # noqa: E731
    nets, got = [build(i) for i in (3, 4)], [[], []]
    train_stacked(nets, data, seeds=[3, 4], optimizer=optimizer, lr=5e-4, epochs=2,
                  on_epoch_end=lambda _e, flats: [got[g].append(f) for g, f in enumerate(flats)])
    for g, i in enumerate((3, 4)):
        single, want = build(i), []
        train_model(single, data, optimizer=optimizer, lr=5e-4, epochs=2, batch_size=64, patience=None, seed=i,
                    quiet=True, lr_schedule="constant", on_epoch_end=lambda _e, m: want.append(flat_params(m)))
        torch.testing.assert_close(torch.stack(got[g]), torch.stack(want), rtol=0, atol=1e-6)
        torch.testing.assert_close(flat_params(nets[g]), want[-1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="seeds"):
        train_stacked(nets, data, seeds=[1], lr=5e-4, epochs=1)
    with pytest.raises(ValueError, match="optimizer"):
        train_stacked(nets, data, seeds=[1, 2], optimizer="adam", lr=5e-4, epochs=1)


def test_teacher_is_the_best_validation_epoch(tmp_path):
    """With a validation split the teacher checkpoint is the expert's best epoch on it (lr 0.5 overshoots: epoch 3
    of 5), without one the last."""
    from ddtime.driver.distill.teacher import sample_teacher

    data = ddtime.driver.data.load_forecasting(None, seq_len=24, pred_len=12)
    store = train_experts(data, num_experts=2, expert_epochs=5, lr=0.5, out_dir=tmp_path / "std", quiet=True)
    probe = build_model("dlinear", seq_len=24, pred_len=12, channels=data.window_channels)
    val = data.windows("val", stride=1)
    for i, entry in enumerate(store.entries):
        scores = [evaluate(probe_with(probe, row), val, seq_len=24)["mse"] for row in store.trajectory(i)[1:]]
        assert entry["teacher_epoch"] == 1 + min(range(5), key=scores.__getitem__) == store.teacher_epoch(i)
        best = probe_with(probe, store.trajectory(i)[entry["teacher_epoch"]])
        assert entry["teacher_test_mse"] == pytest.approx(evaluate(best, data.windows("test", stride=1),
                                                                   seq_len=24)["mse"], rel=1e-5)
    gen = torch.Generator().manual_seed(3)
    index = int(torch.randint(0, 2, (1,), generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(sample_teacher(store, gen), store.trajectory(index)[store.teacher_epoch(index)])
    condtsf = ddtime.driver.data.load_forecasting(None, protocol="condtsf", seq_len=24, pred_len=12, stride=4)
    ci = train_experts(condtsf, num_experts=1, expert_epochs=3, out_dir=tmp_path / "ci", quiet=True)
    assert ci.teacher_epoch(0) == 3 and ci.teacher_test_mse() == pytest.approx(ci.entries[0]["test_mse"])


def probe_with(model, flat):
    from ddtime.driver.models import assign_flat_params

    return assign_flat_params(model, flat)


def test_experts_package_builds_no_classifier():
    """The expert store serves both tasks without importing the classification side: each task builds its
    own network from the stored settings (forecasting_network here, classifier_network there)."""
    import ast

    for path in sorted((REPO / "ddtime" / "driver" / "experts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("ddtime.driver.classification") for n in names), f"{path.name} imports {names}"


def test_cache_reuses_only_the_settings_training_would_write(data, tmp_path):
    """ensure_experts reuses a store only when every stored setting is the one train_experts would write:
    experts trained with another momentum (a setting ensure_experts does not take) are not reused."""
    from ddtime.driver.experts import ensure_experts

    other = train_experts(data, num_experts=1, expert_epochs=1, momentum=0.5, out_dir=tmp_path, quiet=True)
    store = ensure_experts(data, directory=tmp_path, num_experts=1, expert_epochs=1, quiet=True)
    assert store.out_dir != other.out_dir and store.settings["momentum"] == 0.9
    assert store.settings == {k: v for k, v in other.settings.items() if k != "momentum"} | {"momentum": 0.9}
    assert ensure_experts(data, directory=tmp_path, num_experts=1, expert_epochs=1, quiet=True).out_dir == store.out_dir


def test_cache_follows_a_new_setting(data, tmp_path, monkeypatch):
    """A setting added to forecasting_settings takes part in the cache's decision without the cache listing it:
    stored experts without it are not reused."""
    from ddtime.driver.experts import cache, ensure_experts, train

    old = ensure_experts(data, directory=tmp_path, num_experts=1, expert_epochs=1, quiet=True)
    original = train.forecasting_settings

    def with_new_setting(*args, **kwargs):
        return {**original(*args, **kwargs), "new_setting": 1}

    monkeypatch.setattr(train, "forecasting_settings", with_new_setting)
    monkeypatch.setattr(cache, "forecasting_settings", with_new_setting, raising=False)
    new = ensure_experts(data, directory=tmp_path, num_experts=1, expert_epochs=1, quiet=True)
    assert new.out_dir != old.out_dir and new.settings["new_setting"] == 1
