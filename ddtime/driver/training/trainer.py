"""Training and evaluation of forecasting models on window tensors.

Windows are ``[B, N, seq_len + pred_len]``: the first ``seq_len`` steps are the input, the rest
the label. Metrics are MSE and MAE over all elements of the scaled series (TSLib convention).

Recipe (Time-Series-Library / LTSF-Linear): MSE loss, Adam, learning rate halved every epoch
from the third one on (TSLib ``lradj="type1"``), early stopping on the validation MSE with
``patience`` and restoration of the best weights. Experts (trajectory matching's recipe, MTT and
CondTSF's ``buffer.py``) use SGD with momentum (or SAM / GSAM) at a constant
rate and no early stopping.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ddtime.driver.checks import check_choice, check_int, check_number
from ddtime.driver.training.sam import GSAM, SAM

OPTIMIZERS = ("adam", "sgd", "sam", "gsam")
DEFAULT_LR = {"adam": 1e-4, "sgd": 5e-4, "sam": 5e-4, "gsam": 5e-4}  # Adam: used when the model has no ``adam_lr``
#: SAM radius: ddtime's FTD experts (SAM 0.05); CondTSF's FTD experts (GSAM 2.0, ``buffer.py``)
DEFAULT_RHO = {"sam": 0.05, "gsam": 2.0}
#: GSAM's weight of the orthogonal gradient component (CondTSF's ``buffer.py``: 0.4)
DEFAULT_GSAM_ALPHA = 0.4
LR_SCHEDULES = ("auto", "type1", "constant")


def _check_windows(name: str, windows, seq_len: int) -> None:
    if not isinstance(windows, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, N, seq_len + pred_len], got {type(windows).__name__}")
    if windows.dim() != 3 or windows.shape[0] < 1 or windows.shape[-1] <= seq_len:
        raise ValueError(
            f"{name} must have shape [B >= 1, N, L] with L > seq_len = {seq_len}, got {tuple(windows.shape)}"
        )


def _check_model_fits(model: nn.Module, windows: torch.Tensor, seq_len: int) -> None:
    expected = (getattr(model, "channels", windows.shape[1]), getattr(model, "seq_len", seq_len))
    if getattr(model, "pred_len", None) is not None:
        expected += (model.pred_len,)
    got = (windows.shape[1], seq_len, windows.shape[2] - seq_len)
    if got[: len(expected)] != expected:
        raise ValueError(
            f"windows (channels, seq_len, pred_len) = {got} do not fit the model, which expects {expected}"
        )


@torch.no_grad()
def evaluate(model: nn.Module, windows: torch.Tensor, *, seq_len: int, batch_size: int = 256, device="cpu") -> dict:
    """MSE and MAE of ``model`` on ``windows`` [B, N, seq_len + pred_len], in eval mode.

    Returns {"mse": float, "mae": float} averaged over every forecast element. The model's
    train/eval mode is restored afterwards.
    """
    _check_windows("windows", windows, seq_len)
    _check_model_fits(model, windows, seq_len)
    was_training = model.training
    model.eval()
    sq, ab, count = 0.0, 0.0, 0
    try:
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start : start + batch_size].to(device, torch.float32)
            pred = model(batch[..., :seq_len])
            err = pred - batch[..., seq_len:]
            sq += float(err.pow(2).sum(dtype=torch.float64))
            ab += float(err.abs().sum(dtype=torch.float64))
            count += err.numel()
    finally:
        model.train(was_training)
    return {"mse": sq / count, "mae": ab / count}


def window_row_groups(data, windows: torch.Tensor) -> torch.Tensor:
    """Row indices ``[groups, per_window]`` that are shuffled and batched together: one window's N
    channel rows under the channel-independent ``condtsf`` protocol (CondTSF's loaders batch whole
    windows), single rows otherwise."""
    n = len(data.channels)
    per_window = n if data.protocol == "condtsf" and windows.shape[0] % n == 0 else 1
    return torch.arange(windows.shape[0]).view(-1, per_window)


def make_optimizer(params, optimizer: str, lr: float, *, momentum: float = 0.9, rho: float | None = None,
                   gsam_alpha: float = DEFAULT_GSAM_ALPHA):
    """Adam, SGD (with ``momentum``), SAM or adaptive GSAM around SGD (``rho``, default
    :data:`DEFAULT_RHO`; ``gsam_alpha``)."""
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if optimizer == "sam":
        return SAM(params, torch.optim.SGD, rho=DEFAULT_RHO["sam"] if rho is None else rho, lr=lr, momentum=momentum)
    if optimizer == "gsam":
        return GSAM(params, torch.optim.SGD, rho=DEFAULT_RHO["gsam"] if rho is None else rho, alpha=gsam_alpha,
                    adaptive=True, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")


def _epoch_lr(lr: float, epoch: int, schedule: str) -> float:
    """Learning rate of epoch ``epoch`` (1-based). type1 = TSLib: lr for epochs 1-2, then halved each epoch."""
    return lr if schedule == "constant" else lr * 0.5 ** max(epoch - 2, 0)


def train_model(
    model: nn.Module,
    data,
    *,
    optimizer: str = "adam",
    lr: float | None = None,
    epochs: int,
    batch_size: int = 32,
    patience: int | None = 3,
    seed: int = 0,
    device="cpu",
    quiet: bool = False,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
    train_windows: torch.Tensor | None = None,
    momentum: float = 0.9,
    rho: float | None = None,
    gsam_alpha: float = DEFAULT_GSAM_ALPHA,
    lr_schedule: str = "auto",
    test_stride: int = 1,
) -> dict:
    """Train ``model`` in place on ``data`` (a :class:`ddtime.driver.data.ForecastData`) and test it.

    Training uses ``data.windows("train")`` (the data's stride); validation uses every window
    (stride 1), as Time-Series-Library does, and test every ``test_stride``-th (1; CondTSF's
    ``distill.py`` scores its test range at 12). Under the channel-independent ``condtsf``
    protocol a batch holds ``batch_size`` windows with all their channels (``batch_size * N``
    rows of consecutive groups of N, as CondTSF's loaders), so an ETTh1 epoch at stride 4 is 48
    steps.

    Args:
        optimizer: "adam", "sgd" (momentum), "sam" (SAM around SGD with momentum, radius rho) or
            "gsam" (adaptive GSAM around it, radius rho, ``gsam_alpha``; CondTSF's FTD experts).
        lr: learning rate; None takes the model's ``adam_lr`` for Adam (5e-3 LTSF-Linear family,
            1e-3 MLP/CNN/LSTM, 1e-4 transformers) and 5e-4 for SGD/SAM/GSAM (the experts' rate, as CondTSF's
            ``buffer.py``).
        rho: SAM / GSAM radius (None: :data:`DEFAULT_RHO`).
        epochs: maximum number of passes over the training windows.
        patience: early stopping on the validation MSE (standard protocol): stop after
            ``patience`` epochs without improvement and restore the best weights. None disables
            it; it is also off when ``data.val`` is None (condtsf protocol).
        seed: shuffling order (and any dropout) is drawn from it; the global RNG is untouched.
        on_epoch_end: ``on_epoch_end(epoch, model)`` after every epoch (epoch counts from 1).
        train_windows: train on these windows [S, N, seq_len + pred_len] (e.g. a synthetic set)
            instead of ``data.windows("train")``; validation and test still use ``data``.
        lr_schedule: "type1" halves the rate every epoch from the third (TSLib), "constant"
            keeps it, "auto" is type1 for Adam and constant for SGD/SAM.

    Returns:
        {"test_mse", "test_mae", "val_mse" (best, None without validation), "best_epoch",
        "epochs" (run), "train_loss" (per epoch), "val_history" (per epoch)}.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    check_int("patience", patience, optional=True)
    check_int("test_stride", test_stride)
    if lr is None:
        lr = getattr(model, "adam_lr", DEFAULT_LR["adam"]) if optimizer == "adam" else DEFAULT_LR[optimizer]
    check_number("lr", lr, positive=True)
    schedule = ("type1" if optimizer == "adam" else "constant") if lr_schedule == "auto" else lr_schedule

    seq_len = data.seq_len
    windows = data.windows("train") if train_windows is None else train_windows
    _check_windows("train_windows", windows, seq_len)
    _check_model_fits(model, windows, seq_len)
    val_windows = data.windows("val", stride=1) if data.val is not None else None
    early_stopping = patience is not None and val_windows is not None

    device = torch.device(device)
    model.to(device)
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum=momentum, rho=rho, gsam_alpha=gsam_alpha)
    generator = torch.Generator().manual_seed(seed)
    rows = window_row_groups(data, windows)
    per_window = rows.shape[1]
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    best = {"val": math.inf, "epoch": 0, "state": None}
    train_losses, val_history = [], []
    bad_epochs = 0

    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        bar = tqdm(range(1, epochs + 1), desc=f"train {type(model).__name__}", disable=quiet, leave=False)
        for epoch in bar:
            for group in opt.param_groups:
                group["lr"] = _epoch_lr(lr, epoch, schedule)
            model.train()
            order = rows[torch.randperm(rows.shape[0], generator=generator)].flatten()
            total, seen = 0.0, 0
            for start in range(0, order.shape[0], batch_size * per_window):
                batch = windows[order[start : start + batch_size * per_window]].to(device, torch.float32)
                x, y = batch[..., :seq_len], batch[..., seq_len:]

                def closure():
                    opt.zero_grad(set_to_none=True)
                    loss = F.mse_loss(model(x), y)
                    loss.backward()
                    return loss

                if optimizer in ("sam", "gsam"):
                    loss = opt.step(closure)
                else:
                    loss = closure()
                    opt.step()
                total += float(loss.detach()) * x.shape[0]
                seen += x.shape[0]
            train_losses.append(total / seen)
            postfix = {"loss": f"{train_losses[-1]:.4f}"}
            if early_stopping:
                val = evaluate(model, val_windows, seq_len=seq_len, device=device)["mse"]
                val_history.append(val)
                postfix["val"] = f"{val:.4f}"
                if val < best["val"]:
                    best.update(val=val, epoch=epoch, state=copy.deepcopy(model.state_dict()))
                    bad_epochs = 0
                else:
                    bad_epochs += 1
            bar.set_postfix(postfix)
            if on_epoch_end is not None:
                on_epoch_end(epoch, model)
            if early_stopping and bad_epochs >= patience:
                break
        bar.close()

    if best["state"] is not None:
        model.load_state_dict(best["state"])
    test = evaluate(model, data.windows("test", stride=test_stride), seq_len=seq_len, device=device)
    return {
        "test_mse": test["mse"],
        "test_mae": test["mae"],
        "val_mse": best["val"] if early_stopping else None,
        "best_epoch": best["epoch"] if early_stopping else epoch,
        "epochs": epoch,
        "train_loss": train_losses,
        "val_history": val_history,
    }
