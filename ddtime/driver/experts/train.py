"""Training expert trajectories for trajectory matching (MTT / FTD / DATM) and snapshot-based methods.

:func:`train_experts` trains ``num_experts`` models on the full training windows and stores every
expert's parameters after every epoch, the initial ones included (DLinear, 40 experts x 80
epochs, SGD lr 5e-4, momentum 0.9, batch 64; ddtime's FTD: SAM with rho 0.05; CondTSF's FTD,
``buffer.py``: adaptive GSAM with rho 2.0 and alpha 0.4 around that SGD), into the
layout of :mod:`ddtime.driver.experts.layout` (written by :class:`ddtime.driver.experts.writer.ExpertWriter`);
the forecasting experts' settings (:func:`forecasting_settings`) and network (:func:`forecasting_network`)
live here, beside their trainer. Expert ``i`` uses seed ``seed + i`` for its initialisation and its
shuffling order. The manifest is rewritten after each expert, so a killed run resumes at the next
unfinished expert; the directory is locked against a second process.

Parallel: under ``torchrun`` (``torch.distributed`` initialised), rank r trains the experts
i with ``i % world_size == r``; rank 0 writes the manifest after a final barrier.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ddtime.driver.checks import check_int
from ddtime.driver.experts.store import ExpertStore
from ddtime.driver.experts.writer import ExpertDirectoryBusy, ExpertWriter, exclusive
from ddtime.driver.models import MODELS, assign_flat_params, build_model, flat_params, param_spec
from ddtime.driver.training import DEFAULT_GSAM_ALPHA, DEFAULT_LR, DEFAULT_RHO, evaluate, train_stacked

__all__ = ["train_experts", "ExpertDirectoryBusy", "dist_rank_world", "EXPERT_OPTIMIZERS", "forecasting_settings",
           "forecasting_network", "data_fingerprint"]

#: the optimisers experts are trained with (SGD; SAM for ddtime's FTD; GSAM for CondTSF's FTD)
EXPERT_OPTIMIZERS = ("sgd", "sam", "gsam")


def data_fingerprint(data) -> str:
    """sha256 (16 hex digits) of the scaled training series and the window lengths."""
    h = hashlib.sha256()
    train = data.train.detach().to("cpu", torch.float32).contiguous()
    h.update(repr((tuple(train.shape), data.protocol, data.seq_len, data.pred_len)).encode())
    h.update(train.numpy().tobytes())
    return h.hexdigest()[:16]


def forecasting_settings(
    data,
    *,
    model: str = "dlinear",
    model_kwargs: dict | None = None,
    expert_epochs: int,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.9,
    batch_size: int = 64,
    rho: float | None = None,
    seed: int = 0,
    gsam_alpha: float = DEFAULT_GSAM_ALPHA,
) -> dict:
    """Everything that determines a forecasting expert's trajectory, as stored in the manifest: the
    settings :func:`train_experts` writes for these arguments (its defaults; ``lr`` / ``rho`` None: the
    optimiser's), the data's shape and fingerprint, the parameter layout. ``gsam_alpha`` is kept only for
    GSAM experts, so that SGD / SAM stores keep their settings hash. The expert cache
    (:func:`ddtime.driver.experts.cache.ensure_experts`) reuses a store only when its settings are these.
    A model, optimiser, ``rho`` or ``gsam_alpha`` out of range raises ``ValueError`` naming it."""
    if not isinstance(model, str) or model.lower() not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    if optimizer not in EXPERT_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(EXPERT_OPTIMIZERS)} for experts, got {optimizer!r}")
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    rho = DEFAULT_RHO.get(optimizer, DEFAULT_RHO["sam"]) if rho is None else rho
    if optimizer in ("sam", "gsam") and not (isinstance(rho, (int, float)) and not isinstance(rho, bool) and rho > 0):
        raise ValueError(f"rho must be a float > 0, got {rho!r}")
    if optimizer == "gsam" and (isinstance(gsam_alpha, bool) or not isinstance(gsam_alpha, (int, float))
                                or not 0.0 <= gsam_alpha <= 1.0):
        raise ValueError(f"gsam_alpha must be a float in [0, 1], got {gsam_alpha!r}")
    net = build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.window_channels,
                      **(model_kwargs or {}))
    spec = param_spec(net)
    settings = {
        "dataset": data.name,
        "protocol": data.protocol,
        "seq_len": data.seq_len,
        "pred_len": data.pred_len,
        "stride": data.stride,
        "channels": data.window_channels,
        "data_fingerprint": data_fingerprint(data),
        "model": model.lower(),
        "model_kwargs": dict(sorted((model_kwargs or {}).items())),
        "expert_epochs": expert_epochs,
        "optimizer": optimizer,
        "lr": float(lr),
        "momentum": float(momentum),
        "batch_size": batch_size,
        "rho": float(rho) if optimizer in ("sam", "gsam") else None,
        "seed": seed,
        "param_spec": [[name, list(shape)] for name, shape in spec],
        "num_params": sum(math.prod(shape) for _, shape in spec),
    }
    if optimizer == "gsam":
        settings["gsam_alpha"] = float(gsam_alpha)
    return settings


def forecasting_network(settings: dict) -> torch.nn.Module:
    """A fresh model of the architecture that forecasting expert settings (:func:`forecasting_settings`, an
    ``ExpertStore``'s ``settings``) describe; its weights are no expert's: give it one's with
    ``assign_flat_params(net, store.trajectory(i)[epoch])`` or use it with ``functional_forward``."""
    return build_model(settings["model"], seq_len=settings["seq_len"], pred_len=settings["pred_len"],
                       channels=settings["channels"], **settings["model_kwargs"])


def dist_rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def train_experts(
    data,
    *,
    model: str = "dlinear",
    num_experts: int = 40,
    expert_epochs: int = 80,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.9,
    batch_size: int = 64,
    rho: float | None = None,
    gsam_alpha: float = DEFAULT_GSAM_ALPHA,
    model_kwargs: dict | None = None,
    out_dir,
    device="cpu",
    seed: int = 0,
    quiet: bool = False,
    on_expert_end=None,
    group_size: int = 20,
) -> ExpertStore:
    """Train (or resume) ``num_experts`` experts of ``model`` on ``data`` into ``out_dir``.

    Experts are trained on ``data.windows("train")`` for exactly ``expert_epochs`` epochs at a
    constant learning rate (no early stopping); test MSE/MAE of the final parameters go to the
    manifest. Already stored experts of the same settings are kept; a manifest with other
    settings raises ``ValueError``. ``on_expert_end(i, entry)`` runs after expert ``i`` is
    stored. Under an initialised ``torch.distributed`` group the experts are split by rank.
    ``group_size`` experts are trained at once, in lockstep (:func:`ddtime.driver.training.lockstep.train_stacked`:
    the same batches and steps as one ``train_model`` run each, about 10x faster for small models);
    a killed run loses at most the group in progress.
    """
    settings = forecasting_settings(data, model=model, model_kwargs=model_kwargs, expert_epochs=expert_epochs,
                                    optimizer=optimizer, lr=lr, momentum=momentum, batch_size=batch_size, rho=rho,
                                    seed=seed, gsam_alpha=gsam_alpha)  # checks model, optimizer, rho, gsam_alpha
    check_int("num_experts", num_experts)
    check_int("expert_epochs", expert_epochs)
    check_int("batch_size", batch_size)
    check_int("seed", seed, minimum=0)
    check_int("group_size", group_size)
    lr, rho = settings["lr"], settings["rho"]  # the optimiser's defaults where None (rho: None for SGD)
    rank, world = dist_rank_world()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir, enabled=world == 1):
        writer = ExpertWriter(out_dir, settings, num_experts)  # checks the stored settings, lists stored experts
        if world > 1:
            _barrier()  # every rank has read the old manifest before rank 0 rewrites it
        if rank == 0:
            writer.write_manifest()

        if world > 1 and str(device).startswith("cuda"):
            device = torch.device("cuda", torch.cuda.current_device())
        todo = [i for i in range(num_experts) if i % world == rank and i not in writer.done]
        desc = "experts" if world == 1 else f"experts (rank {rank})"
        bar = tqdm(total=len(todo) * expert_epochs, desc=f"{desc} (epochs)", disable=quiet)
        test_windows = data.windows("test", stride=1)
        val_windows = data.windows("val", stride=1) if data.val is not None else None
        probe = build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.window_channels,
                            **(model_kwargs or {})).to(device)  # evaluates snapshots
        for first in range(0, len(todo), group_size):
            chunk = todo[first:first + group_size]
            nets = [build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.window_channels,
                                seed=seed + i, **(model_kwargs or {})) for i in chunk]
            snapshots = [[flat_params(net).cpu()] for net in nets]
            val_mse: list[list[float]] = [[] for _ in chunk]

            def record(_epoch, flats, snapshots=snapshots, val_mse=val_mse, n=len(chunk)):
                for trajectory, scores, flat in zip(snapshots, val_mse, flats):
                    trajectory.append(flat)
                    if val_windows is not None:
                        scores.append(evaluate(assign_flat_params(probe, flat), val_windows, seq_len=data.seq_len,
                                               device=device)["mse"])
                bar.update(n)

            losses = train_stacked(nets, data, seeds=[seed + i for i in chunk], optimizer=optimizer, lr=lr,
                                   epochs=expert_epochs, batch_size=batch_size, momentum=momentum, rho=rho,
                                   gsam_alpha=gsam_alpha, device=device, on_epoch_end=record)
            for i, net, trajectory, loss, scores in zip(chunk, nets, snapshots, losses, val_mse):
                trajectory = torch.stack(trajectory).float()
                if not torch.isfinite(trajectory).all():
                    raise RuntimeError(f"expert {i} diverged (non-finite parameters); lower lr (got {lr})")
                test = evaluate(net, test_windows, seq_len=data.seq_len, device=device)
                best = 1 + min(range(len(scores)), key=scores.__getitem__) if scores else expert_epochs
                teacher = test if best == expert_epochs else evaluate(assign_flat_params(probe, trajectory[best]),
                                                                      test_windows, seq_len=data.seq_len, device=device)
                entry = writer.add(i, trajectory, seed=seed + i, update_manifest=world == 1,
                                   metrics={"test_mse": test["mse"], "test_mae": test["mae"], "train_loss": loss[-1],
                                            "teacher_epoch": best, "teacher_test_mse": teacher["mse"]})
                if on_expert_end is not None:
                    on_expert_end(i, entry)
        bar.close()

        if world > 1:
            _barrier()
            if rank == 0:
                writer.rescan()
                writer.write_manifest()
            _barrier()
    return ExpertStore(out_dir)
