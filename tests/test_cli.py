"""Command line smoke tests on the built-in generated dataset (tiny settings)."""
import csv
import json
import subprocess
import sys
import pathlib
import textwrap

import pytest
import torch

from ddtime.driver.commands import main
from ddtime.driver.distill import load_synthetic

REPO = pathlib.Path(__file__).resolve().parents[1]
# without --data the quick defaults take CondTSF's preset; these tests pin the standard protocol's windows
TINY = ["--protocol", "standard", "--representation", "windows", "--seq-len", "24", "--pred-len", "12", "--samples", "4", "--iterations", "3", "--num-experts", "2",
        "--expert-epochs", "3", "--students", "2", "--eval-epochs", "3", "--full-epochs", "1", "--select-every", "2",
        "--checkpoint-every", "1", "--method-option", "syn_steps=3", "--loss-impl", "reference", "--threads", "1",
        "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["distill", "--out", str(out), "--method", "datm", "--condtsf", "--ddtime", *TINY]) == 0
    return out


def test_distill_writes_results_synthetic_set_and_plots(distilled):
    results = json.loads((distilled / "results.json").read_text())
    for key in ("settings", "test_mse", "test_mae", "test_mse_std", "full_data_test_mse", "random_subset_test_mse",
                "seconds"):
        assert key in results
    assert results["settings"]["method"] == "datm" and results["settings"]["condtsf"] and results["settings"]["ddtime"]
    assert results["test_mse"] > 0
    # selection after iterations 2 and 3 (select_every 2, and the last); the kept set is the better-scored one
    scores = dict(results["val_history"])
    assert sorted(scores) == [2, 3] and scores[2] != scores[3]
    assert results["best_iteration"] == min(scores, key=scores.get)
    assert results["best_val_mse"] == min(scores.values())
    windows, meta = load_synthetic(distilled / "synthetic.safetensors")
    assert windows.shape == (4, 7, 36) and meta["method"] == "datm" and meta["protocol"] == "standard"
    for name in ("windows.png", "spectra.png", "loss.png"):
        assert (distilled / name).read_bytes()[:4] == b"\x89PNG"
    assert (distilled / "experts" / "manifest.json").exists()
    assert len(json.loads((distilled / "history.json").read_text())) == 3 * 2


def test_resume_of_a_finished_run_changes_nothing(distilled, tmp_path):
    before, _ = load_synthetic(distilled / "synthetic.safetensors")
    assert main(["distill", "--out", str(distilled), "--method", "datm", "--condtsf", "--ddtime", "--resume",
                 *TINY]) == 0
    after, _ = load_synthetic(distilled / "synthetic.safetensors")
    assert torch.equal(before, after)


def test_evaluate_subcommand(distilled, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--synthetic", str(distilled / "synthetic.safetensors"), "--models", "dlinear,linear",
                 "--students", "1", "--eval-epochs", "2", "--no-baselines", "--out", str(out), "--quiet"]) == 0
    saved = json.loads(out.read_text())
    assert saved["seq_len"] == 24 and set(saved["results"]) == {"dlinear", "linear"}
    assert "synthetic MSE" in capsys.readouterr().out


def _other_dataset(tmp_path) -> pathlib.Path:
    """A CSV with the built-in dataset's columns and length, its values reversed in time: dataset B."""
    from ddtime.driver.data import generate_seasonal

    frame = generate_seasonal()
    numeric = [c for c in frame.columns if c != "date"]
    frame[numeric] = frame[numeric].to_numpy()[::-1]
    path = tmp_path / "other.csv"
    frame.to_csv(path, index=False)
    return path


def _refused_resume(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    line = next(x for x in err.splitlines() if "error:" in x)
    return line


def test_distill_resume_on_other_data_is_refused_with_one_line(distilled, tmp_path, capsys):
    """Dataset B resumed into dataset A's directory: one line naming the data and experts that differ."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(distilled, run)
    before = (run / "results.json").read_bytes()
    line = _refused_resume(["distill", "--out", str(run), "--method", "datm", "--condtsf", "--ddtime", "--resume",
                            "--data", str(_other_dataset(tmp_path)), *TINY], capsys)
    assert "resume: the checkpoint" in line and "checkpoint.pt" in line
    assert "data.dataset='synthetic' (now 'other')" in line and "data.source_sha256=" in line
    assert "experts.settings_hash=" in line
    assert (run / "results.json").read_bytes() == before
    # the evaluation recipe is part of the fingerprint too
    line = _refused_resume(["distill", "--out", str(run), "--method", "datm", "--condtsf", "--ddtime", "--resume",
                            *TINY, "--eval-epochs", "4"], capsys)
    assert "evaluation.recipe.epochs=3 (now 4)" in line and "data." not in line


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("grid")
    assert main(["compare", "--out", str(out), "--methods", "dm,mtt", "--variants", "base,ddtime", *TINY]) == 0
    return out


def test_compare_writes_tables(compared):
    rows = list(csv.DictReader((compared / "compare.csv").open()))
    assert [(r["method"], r["variant"]) for r in rows] == [("dm", "base"), ("dm", "ddtime"), ("mtt", "base"),
                                                           ("mtt", "ddtime")]
    for r in rows:
        base = next(b for b in rows if b["method"] == r["method"] and b["variant"] == "base")
        gain = (float(base["test_mse"]) - float(r["test_mse"])) / float(base["test_mse"])
        assert float(r["gain_mse"]) == pytest.approx(gain)
        best = min(float(base["test_mse"]), float(base["random_subset_test_mse"]))
        assert float(r["gain_vs_best_mse"]) == pytest.approx((best - float(r["test_mse"])) / best)
    assert "Average relative gain" in (compared / "compare.md").read_text()


def test_compare_resume_on_other_data_is_refused_with_one_line(compared, tmp_path, capsys):
    line = _refused_resume(["compare", "--out", str(compared), "--methods", "dm,mtt", "--variants", "base,ddtime",
                            "--resume", "--data", str(_other_dataset(tmp_path)), *TINY], capsys)
    assert "dm-base/results.json" in line and "data.dataset='synthetic' (now 'other')" in line


@pytest.mark.parametrize("argv,option", [
    (["distill", "--samples", "0"], "--samples"),
    (["distill", "--alpha", "1.5"], "--alpha"),
    (["distill", "--method", "nope"], "--method"),
    (["distill", "--method-option", "syn_steps"], "--method-option"),
    (["distill", "--method-option", "bogus=1", "--out", "unused"], "--method-option"),
    (["compare", "--methods", "mtt,nope"], "--methods"),
    (["distill", "--eval-models", "dlinear,nope"], "--eval-models"),
])
def test_errors_name_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert option in capsys.readouterr().err


def test_python_m_ddtime_help():
    proc = subprocess.run([sys.executable, "-m", "ddtime", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    for sub in ("experts", "distill", "evaluate", "compare"):
        assert sub in proc.stdout


def test_busy_expert_directory_is_refused_with_one_line(tmp_path, capsys):
    """A second process training experts into the same directory is refused (exit 2, no traceback)."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        handle = open({str(tmp_path / '.lock')!r}, "a+")
        fcntl.flock(handle, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit) as exit_info:
            main(["experts", "--out", str(tmp_path), "--num-experts", "1", "--expert-epochs", "1", "--quiet"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "another process is training experts into this directory" in err and "Traceback" not in err
        assert not list(tmp_path.glob("expert_*"))
    finally:
        holder.kill()
        holder.wait()
    assert main(["experts", "--out", str(tmp_path), "--num-experts", "1", "--expert-epochs", "1", "--quiet"]) == 0


def test_missing_driver_extra_is_one_line(tmp_path):
    """Without the driver extra, a command names the extra to install instead of a traceback."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['pandas'] = None\n")  # import pandas -> ModuleNotFoundError
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{REPO}"}
    proc = subprocess.run([sys.executable, "-m", "ddtime", "distill", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "pip install 'ddtime[driver]'" in proc.stderr and "Traceback" not in proc.stderr


def test_sigkill_between_checkpoints_then_resume_matches_an_uninterrupted_run(tmp_path):
    """A real `ddtime distill` process killed with SIGKILL loses nothing: --resume ends with the same
    synthetic set and test MSE as a run that was never interrupted, and leaves no partial file."""
    import signal
    import time

    settings = [opt for opt in TINY if opt != "--quiet"]
    settings = settings[: settings.index("--iterations")] + settings[settings.index("--iterations") + 2:]
    settings = settings[: settings.index("--checkpoint-every")] + settings[settings.index("--checkpoint-every") + 2:]
    common = [*settings, "--quiet", "--iterations", "40", "--checkpoint-every", "4", "--experts",
              str(tmp_path / "experts")]
    cmd = [sys.executable, "-m", "ddtime", "distill", *common]
    subprocess.run([*cmd, "--out", str(tmp_path / "whole")], check=True, timeout=300, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed between checkpoints"
    assert not (killed / "results.json").exists()
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["iteration"] < 40
    subprocess.run([*cmd, "--out", str(killed), "--resume"], check=True, timeout=300, capture_output=True)

    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    resumed = json.loads((killed / "results.json").read_text())
    assert resumed["test_mse"] == whole["test_mse"] and resumed["best_iteration"] == whole["best_iteration"]
    a, _ = load_synthetic(tmp_path / "whole" / "synthetic.safetensors")
    b, _ = load_synthetic(killed / "synthetic.safetensors")
    assert torch.equal(a, b)
    assert not list(killed.rglob("*.tmp"))


@pytest.mark.parametrize("argv,option", [(["experts", "--out", "x", "--num-experts", "0"], "--num-experts"),
                                         (["experts", "--out", "x", "--lr", "-1"], "--lr"),
                                         (["evaluate", "--synthetic", "x", "--students", "two"], "--students"),
                                         (["distill", "--preset", "nope"], "--preset")])
def test_bad_option_values_name_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and option in capsys.readouterr().err


def test_preset_condtsf_refuses_a_dataset_without_a_condensing_rate(tmp_path, capsys):
    """CondTSF gives a dataset without a condensing rate no size: an error, not a silent 1 window a channel."""
    rows = ["date,a,OT"] + [f"2020-01-{1 + i // 24:02d} {i % 24:02d}:00:00,{i % 7},{i % 5}" for i in range(600)]
    csv_path = tmp_path / "norate.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as info:
        main(["distill", "--preset", "condtsf", "--data", str(csv_path), "--out", str(tmp_path / "run"), "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "'norate' has no CondTSF condensing rate" in err and "--samples" in err


def test_option_groups_are_shared_and_each_meaning_has_its_name():
    from ddtime.driver.commands import build_parser

    parser = build_parser()
    experts = parser.parse_args(["experts", "--out", "x", "--stride", "3", "--lr", "0.01"])
    assert (experts.train_stride, experts.expert_lr) == (3, 0.01)
    experts = parser.parse_args(["experts", "--out", "x", "--train-stride", "3", "--expert-lr", "0.01"])
    assert (experts.train_stride, experts.expert_lr) == (3, 0.01)
    for command in ("distill", "compare"):
        args = parser.parse_args([command, "--stride", "2", "--lr", "0.3"])
        assert (args.series_stride, args.syn_lr) == (2, 0.3)
        args = parser.parse_args([command, "--series-stride", "2", "--syn-lr", "0.3"])
        assert (args.series_stride, args.syn_lr) == (2, 0.3)
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    titles = {name: {g.title for g in child._action_groups} for name, child in sub.choices.items()}
    assert {"data", "experts", "expert recipe", "run"} <= titles["experts"]
    assert {"data", "experts", "distillation", "evaluation", "run"} <= titles["distill"] & titles["compare"]
    assert {"data", "evaluation", "run"} <= titles["evaluate"]


def test_scale_option_reaches_the_data():
    """--scale train fits the condtsf scaler on the training rows; the default stays the whole series."""
    from ddtime.driver.commands import build_parser
    from ddtime.driver.commands.options import load_data, resolve

    scalers = {}
    for extra in ([], ["--scale", "train"]):
        args = build_parser().parse_args(["distill", "--data", "synthetic", "--preset", "condtsf", "--threads", "1",
                                          *extra])
        resolve(args)
        data = load_data(args)
        scalers[data.scale] = data.scaler
    assert set(scalers) == {"series", "train"}
    assert not torch.equal(scalers["series"].mean, scalers["train"].mean)
