"""Distillation over gloo ranks (tests/distributed_worker.py in spawned processes): a batch of B
trajectories per update on one process equals P = B ranks, a one-rank group changes nothing, a rank
that stops answering ends the others with one line and the job resumes from rank 0's checkpoint."""
import datetime
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ddtime.driver.distill import DistillConfig, DDTimeTerms, distill
from ddtime.driver.distill.distributed import TrajectoryBatch, slot_seed
from ddtime.driver.distill.methods import DistillMethod, MethodOutput
from ddtime.driver.distill.loop import CHECKPOINT_NAME
from distill_configs import distill_config
from distributed_worker import rank_main, score

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = pathlib.Path(__file__).resolve().parents[1]

RECORD = dict(method="mtt", method_options={"syn_steps": 3, "max_start_epoch": 3}, samples=6, iterations=6,
              quiet=True, condtsf=True, ddtime=True, checkpoint_every=1, select_every=2, trajectories_per_update=2)


def _spawn(world, job, tmp_path, timeout=300, only_rank0=False):
    """Run ``rank_main`` on ``world`` spawned ranks (``only_rank0``: until rank 0 ends, then kill the
    others); returns (exit codes, each rank's saved result or None)."""
    job = {**job, "init_file": str(tmp_path / f"init-{len(list(tmp_path.iterdir()))}"),
           "results": str(tmp_path)}
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=rank_main, args=(r, world, job)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs[:1] if only_rank0 else procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    saved = []
    for r in range(world):
        path = tmp_path / f"rank{r}.pt"
        saved.append(torch.load(path, weights_only=False) if path.exists() else None)
        path.unlink(missing_ok=True)
    return [p.exitcode for p in procs], saved


def _assert_same_history(got, want):
    assert [h.keys() for h in got] == [h.keys() for h in want]
    for g, w in zip(got, want):
        assert (g["iteration"], g["kind"]) == (w["iteration"], w["kind"])
        numbers = [k for k in w if k not in ("iteration", "kind")]
        assert [g[k] for k in numbers] == pytest.approx([w[k] for k in numbers], rel=1e-4, abs=1e-6)


@pytest.fixture(scope="module")
def one_process(data, experts):
    """B = 2 trajectories per update on this process."""
    return distill(data, distill_config(**RECORD), experts=experts, validate=score)


def test_two_trajectories_on_one_process_equal_two_ranks(one_process, data, experts, tmp_path):
    job = {"config": RECORD, "experts": str(experts.out_dir), "out": str(tmp_path / "out")}
    codes, (rank0, rank1) = _spawn(2, job, tmp_path)
    assert codes == [0, 0]
    for ranked in (rank0, rank1):  # every rank steps the same Adam on the same set
        torch.testing.assert_close(ranked["final_windows"], one_process.final_windows, rtol=1e-5, atol=1e-6)
        _assert_same_history(ranked["history"], one_process.history)
    torch.testing.assert_close(rank0["windows"], one_process.windows, rtol=1e-5, atol=1e-6)
    assert [v[0] for v in rank0["val_history"]] == [v[0] for v in one_process.val_history]
    assert [v[1] for v in rank0["val_history"]] == pytest.approx([v[1] for v in one_process.val_history], rel=1e-5)
    assert rank1["val_history"] == []  # rank 0 alone selects
    assert (tmp_path / "out" / "rank0" / CHECKPOINT_NAME).exists()  # rank 0 alone writes
    assert not (tmp_path / "out" / "rank1").exists()
    one = distill(data, distill_config(**{**RECORD, "trajectories_per_update": 1}), experts=experts, validate=score)
    assert not torch.allclose(one.final_windows, one_process.final_windows)  # the second trajectory counts


def test_rank_that_stops_answering_ends_the_job_and_it_resumes(one_process, experts, tmp_path):
    """Rank 1 stops answering at iteration 4 and is killed: rank 0's all-reduce times out with one line;
    a new job resumes from rank 0's checkpoint of iterations 0-3 (rank 1's directory stays empty)."""
    job = {"config": RECORD, "experts": str(experts.out_dir), "out": str(tmp_path / "out"), "hang": (1, 4, 600),
           "timeout": 10}
    codes, (rank0, rank1) = _spawn(2, job, tmp_path, only_rank0=True)
    assert codes[0] == 0 and rank1 is None
    message = rank0["error"]
    assert "\n" not in message and message.startswith("rank 0 of 2: the gradient all-reduce of iteration 4 failed")
    assert "--resume" in message
    codes, (rank0, rank1) = _spawn(2, {**job, "hang": None, "resume": True}, tmp_path)
    assert codes == [0, 0]
    for ranked in (rank0, rank1):
        assert ranked["resumed_from"] == 4
        torch.testing.assert_close(ranked["final_windows"], one_process.final_windows, rtol=1e-5, atol=1e-6)
    _assert_same_history(rank0["history"], one_process.history)
    assert not (tmp_path / "out" / "rank1").exists()


def test_one_rank_group_is_the_single_process_run(data, experts, tmp_path):
    """P = 1, B = 1 under torchrun: bit-identical to the run without a process group."""
    record = {**RECORD, "trajectories_per_update": 1}
    plain = distill(data, distill_config(**record), experts=experts, out_dir=tmp_path / "plain", validate=score)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))
    try:
        grouped = distill(data, distill_config(**record), experts=experts, out_dir=tmp_path / "grouped",
                          validate=score)
    finally:
        dist.destroy_process_group()
    assert torch.equal(grouped.final_windows, plain.final_windows)
    assert torch.equal(grouped.windows, plain.windows)
    assert grouped.history == plain.history and grouped.val_history == plain.val_history


def test_batch_settings_are_checked(data, experts, monkeypatch):
    with pytest.raises(ValueError, match="trajectories_per_update: expected an int >= 1, got 0"):
        DistillConfig(trajectories_per_update=0)
    with pytest.raises(ValueError, match="trajectories_per_update: student_side='student'"):
        DistillConfig(trajectories_per_update=2, ddtime_terms=DDTimeTerms(student_side="student"))
    with monkeypatch.context() as m:
        m.setattr("ddtime.driver.distill.distributed.dist_rank_world", lambda: (0, 2))
        with pytest.raises(ValueError, match="trajectories_per_update: 3 trajectories do not split evenly over 2"):
            TrajectoryBatch(None, None, [], trajectories=3, seed=0)
    with pytest.raises(ValueError, match="trajectories_per_update: method 'tgdd' updates the set itself"):
        distill(data, DistillConfig(method="tgdd", samples=6, iterations=1, quiet=True, select_every=0,
                                    checkpoint_every=0, trajectories_per_update=2), experts=experts)
    assert len({slot_seed(0, j, it) for j in range(4) for it in range(50)}) == 200


class _Recorder(DistillMethod):
    name = "recorder"

    def __init__(self):
        self.outputs = []

    def step(self, ctx, iteration):
        self.outputs.append(MethodOutput(loss=torch.ones((), requires_grad=True)))
        return self.outputs[-1]


def test_one_trajectory_is_the_methods_own_step():
    """B = 1: the method's output itself, from the run's context (no averaging, no slot streams)."""
    method, ctx = _Recorder(), object()
    batch = TrajectoryBatch(method, ctx, [torch.zeros(2, requires_grad=True)], trajectories=1, seed=0)
    assert batch.step(0) is method.outputs[-1] and batch.methods == []


def test_torchrun_command_two_ranks(tmp_path):
    """``torchrun --nproc-per-node 2 -m ddtime distill``: one trajectory per rank by default, rank 0 alone
    reports and writes the results."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "DDTIME_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ddtime",
           "distill", "--iterations", "3", "--num-experts", "2", "--expert-epochs", "3", "--students", "1",
           "--eval-epochs", "1", "--select-every", "3", "--quiet", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test MSE") == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["settings"]["trajectories_per_update"] == 2
