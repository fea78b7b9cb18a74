"""Distillation over ``torchrun`` ranks: a batch of B trajectories per update, its gradient averaged.

Under ``torchrun`` (``torch.distributed`` initialised: gloo on CPU, NCCL on CUDA) the P ranks share
every update. ``DistillConfig.trajectories_per_update`` B (a multiple of P) is the update's batch:
rank r unrolls the slots ``r * B/P, ..., (r + 1) * B/P - 1``; one all-reduce sums the slots' base
gradients over the ranks, which divide it by B, and every rank steps the same Adam on the same set.
The batch's base loss is ``L_base = (1/B) sum_j L_j / detach(L_j)``: each trajectory normalised by
its own loss, as the loop normalises a single one. :class:`TrajectoryBatch` hands it to the loop as a
``MethodOutput`` whose loss has the value ``(1/B) sum_j L_j`` and, after the loop's division by its
detached value, exactly that gradient. CondTSF's update and DDTime's terms are not per trajectory:
the loop computes them once per update, on each rank's (identical) set, outside the all-reduce.

Randomness (all derived from ``config.seed``):

* the run's generator draws the initial set and the teachers of CondTSF's update and DDTime's terms;
  every rank holds the same one, so every rank draws the same teacher;
* with B = 1 (then P = 1) the trajectory draws from it too: the single-process run, unchanged;
* with B > 1 slot j of iteration ``it`` draws from a generator seeded with ``slot_seed(seed, j, it)``,
  and the global torch RNG (dropout) is forked and seeded from that generator while the slot steps.
  The batch is the same for every P, and a resumed run rebuilds it from the iteration number.

Rank 0 alone writes (checkpoints, selection, history, results: :func:`is_writer`); on resume it
reads its checkpoint and broadcasts it (:func:`checkpoint_for_resume`), so ranks on other machines
need no shared file system. A failed collective (a rank died, or stopped answering within the
process group's timeout) raises :class:`RankLost`, one line naming the rank and the iteration (under
NCCL the library's watchdog may end the rank first, with its own message, after the same timeout).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import hashlib
import os
import pathlib
import tempfile

import torch
import torch.distributed as dist

from ddtime.driver.distill.methods import DistillContext, DistillMethod, MethodOutput
from ddtime.driver.experts.train import dist_rank_world

__all__ = ["TrajectoryBatch", "RankLost", "slot_seed", "is_writer", "checkpoint_for_resume", "torchrun_group",
           "all_reduce_sum"]


class RankLost(RuntimeError):
    """A collective failed: a rank died or stopped answering within the process group's timeout."""


def is_writer() -> bool:
    """Whether this process writes the run's files (rank 0, or no process group)."""
    return dist_rank_world()[0] == 0


def slot_seed(seed: int, slot: int, iteration: int) -> int:
    """The 64-bit seed of trajectory slot ``slot`` of iteration ``iteration`` (B > 1)."""
    digest = hashlib.blake2b(f"ddtime-trajectory/{seed}/{slot}/{iteration}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _first_line(exc: BaseException) -> str:
    """The first sentence of ``exc``'s message (at most 160 characters)."""
    lines = str(exc).strip().splitlines()
    return lines[0].split(". ")[0][:160] if lines else type(exc).__name__


def all_reduce_sum(buffer: torch.Tensor, what: str) -> None:
    """In place: ``buffer`` summed over the ranks; a failure raises :class:`RankLost` naming ``what``."""
    try:
        dist.all_reduce(buffer)
        if buffer.is_cuda:  # NCCL reports on the stream: wait here, where a failure gets its line
            torch.cuda.current_stream(buffer.device).synchronize()
    except RuntimeError as exc:  # gloo: RuntimeError; NCCL: DistBackendError, a RuntimeError
        rank, world = dist_rank_world()
        raise RankLost(f"rank {rank} of {world}: {what} failed: a rank died or stopped answering "
                       f"({_first_line(exc)}); rerun with --resume to continue from the last checkpoint") from exc


@contextlib.contextmanager
def _slot_rng(generator: torch.Generator, device):
    """The global torch RNG forked and seeded from ``generator`` for the block."""
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        yield


class TrajectoryBatch:
    """This rank's share of the update's B trajectories (see the module docstring).

    method, ctx: the run's method (after ``prepare``) and context; params: the tensors the run's
    optimiser steps (the base gradient is taken w.r.t. them); trajectories: B; seed: the run's seed.
    Each local slot steps a shallow copy of ``method`` (its own sampling state, the shared learnables);
    ``after_step``, ``final_windows`` and checkpoints stay with ``method``.
    """

    def __init__(self, method: DistillMethod, ctx: DistillContext, params: list[torch.Tensor], *,
                 trajectories: int, seed: int):
        rank, world = dist_rank_world()
        if isinstance(trajectories, bool) or not isinstance(trajectories, int) or trajectories < 1:
            raise ValueError(f"trajectories_per_update: expected a positive int, got {trajectories!r}")
        if trajectories % world:
            raise ValueError(f"trajectories_per_update: {trajectories} trajectories do not split evenly over "
                             f"{world} ranks; use a multiple of {world}")
        share = trajectories // world
        self.method, self.ctx, self.params, self.seed = method, ctx, list(params), seed
        self.total, self.world = trajectories, world
        self.slots = list(range(rank * share, (rank + 1) * share))
        self.methods = [copy.copy(method) for _ in self.slots] if trajectories > 1 else []
        self._contexts: tuple[int, list[DistillContext]] | None = None

    def _slot_contexts(self, iteration: int) -> list[DistillContext]:
        if self._contexts is None or self._contexts[0] != iteration:
            generators = [torch.Generator().manual_seed(slot_seed(self.seed, j, iteration)) for j in self.slots]
            self._contexts = (iteration, [dataclasses.replace(self.ctx, generator=g) for g in generators])
        return self._contexts[1]

    def step(self, iteration: int) -> MethodOutput:
        """The update's base output: the method's own for B = 1, else the batch's (module docstring), its
        metrics (e.g. MTT's ``start_epoch``) averaged over the batch."""
        if self.total == 1:
            return self.method.step(self.ctx, iteration)
        sums, counts, scalars, names = self._local_sums(iteration)
        buffer = torch.cat([s.reshape(-1) for s in sums] + [counts, scalars])
        if self.world > 1:
            all_reduce_sum(buffer, f"the gradient all-reduce of iteration {iteration}")
        sizes = [s.numel() for s in sums]
        flat, counts, scalars = buffer.split([sum(sizes), len(sums), len(scalars)])
        grads = [g.view_as(s) / self.total if c > 0 else None
                 for g, s, c in zip(flat.split(sizes), sums, counts.tolist())]
        means = (scalars / self.total).tolist()
        mean_loss = torch.tensor(means[0], dtype=flat.dtype, device=flat.device)
        linear = sum((p * g).sum() for p, g in zip(self.params, grads) if g is not None)
        loss = mean_loss * (1.0 + (linear - linear.detach()))  # value mean_loss, gradient mean_loss * mean grad
        return MethodOutput(loss=loss, metrics=dict(zip(names, means[1:])))

    def _local_sums(self, iteration: int):
        """Over this rank's slots: the sums of the normalised base gradients (one per parameter), how many
        slots reached each parameter ``[len(params)]``, ``[sum of L_j, sum of each metric]`` and the metric names."""
        sums = [torch.zeros_like(p) for p in self.params]
        counts = torch.zeros(len(self.params), dtype=sums[0].dtype, device=sums[0].device)
        loss_sum, metric_sums = torch.zeros((), dtype=counts.dtype, device=counts.device), {}
        for method, ctx in zip(self.methods, self._slot_contexts(iteration)):
            with _slot_rng(ctx.generator, ctx.device):
                out = method.step(ctx, iteration)
            if out.stepped:
                raise ValueError(f"trajectories_per_update: method {method.name!r} updates the set itself; it runs "
                                 "with one trajectory per update on one process")
            grads = torch.autograd.grad(out.loss / out.loss.detach().clamp_min(1e-12), self.params, allow_unused=True)
            for n, (s, g) in enumerate(zip(sums, grads)):
                if g is not None:
                    s.add_(g)
                    counts[n] += 1
            loss_sum = loss_sum + out.loss.detach().to(counts.dtype)  # tensors: no host sync per slot
            for k, v in sorted(out.metrics.items()):
                metric_sums[k] = metric_sums.get(k, 0.0) + torch.as_tensor(v, dtype=counts.dtype, device=counts.device)
        scalars = torch.stack([loss_sum, *metric_sums.values()])
        return sums, counts, scalars, list(metric_sums)


@contextlib.contextmanager
def checkpoint_for_resume(path: pathlib.Path | None):
    """The checkpoint every rank resumes from: rank 0's ``path``, broadcast to the other ranks (each
    reads it from a temporary copy); yields its path, or None when rank 0 has none (or ``path`` is None)."""
    rank, world = dist_rank_world()
    if world == 1 or path is None:
        yield path if path is not None and path.exists() else None
        return
    payload = [path.read_bytes() if rank == 0 and path.exists() else None]
    try:
        dist.broadcast_object_list(payload, src=0)
    except RuntimeError as exc:
        raise RankLost(f"rank {rank} of {world}: the checkpoint broadcast failed: a rank died or stopped answering "
                       f"({_first_line(exc)})") from exc
    if payload[0] is None or rank == 0:
        yield path if payload[0] is not None else None
        return
    with tempfile.TemporaryDirectory(prefix="ddtime-resume-") as tmp:
        copy_path = pathlib.Path(tmp) / path.name
        copy_path.write_bytes(payload[0])
        yield copy_path


@contextlib.contextmanager
def torchrun_group(device: str, *, timeout_s: float):
    """Join the ``torchrun`` job's process group for the block (when ``WORLD_SIZE`` > 1 and none is
    initialised): NCCL on ``device="cuda"`` with this rank on ``cuda:LOCAL_RANK``, gloo on the CPU;
    a collective that waits longer than ``timeout_s`` seconds fails. Yields this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield device
        return
    if not timeout_s > 0:
        raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout_s!r}")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                            timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield device
    finally:
        dist.destroy_process_group()
