"""One gloo rank of a distillation, for tests/test_distill_distributed.py (run in a spawned process).

``rank_main(rank, world, job)`` joins the group through ``job["init_file"]``, distils the generated
dataset (24 -> 12) with the experts of ``job["experts"]`` and the flat config record ``job["config"]``
into ``job["out"]/rank{rank}``, and saves what it got to ``job["results"]/rank{rank}.pt``. With
``job["hang"] = (rank, iteration, seconds)`` that rank sleeps as it starts that iteration's update
(the test then kills it). A collective failure is saved as ``{"error": message}``.
"""
import datetime
import pathlib
import time

import torch
import torch.distributed as dist

SEQ, PRED = 24, 12


def score(windows: torch.Tensor) -> float:
    """Deterministic stand-in for student training."""
    return float(windows.pow(2).mean())


def rank_main(rank: int, world: int, job: dict) -> None:
    from ddtime.driver.data import load_forecasting
    from ddtime.driver.distill import distill
    from ddtime.driver.distill.distributed import RankLost, TrajectoryBatch
    from ddtime.driver.experts import ExpertStore
    from distill_configs import distill_config

    torch.set_num_threads(1)
    data, store = load_forecasting(None, seq_len=SEQ, pred_len=PRED), ExpertStore(job["experts"])
    dist.init_process_group("gloo", init_method=f"file://{job['init_file']}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=job.get("timeout", 30)))
    step = TrajectoryBatch.step

    def hanging_step(self, iteration):
        if (job.get("hang") or (None, None))[:2] == (rank, iteration):
            time.sleep(job["hang"][2])
        return step(self, iteration)

    TrajectoryBatch.step = hanging_step
    results = pathlib.Path(job["results"])
    try:
        result = distill(data, distill_config(**job["config"]), experts=store,
                         out_dir=pathlib.Path(job["out"]) / f"rank{rank}", resume=job.get("resume", False),
                         validate=score)
        torch.save({"final_windows": result.final_windows, "windows": result.windows, "history": result.history,
                    "val_history": result.val_history, "resumed_from": result.resumed_from},
                   results / f"rank{rank}.pt")
    except RankLost as exc:
        torch.save({"error": str(exc)}, results / f"rank{rank}.pt")
    finally:
        if job.get("hang") is None:
            dist.destroy_process_group()
