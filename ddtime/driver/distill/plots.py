"""PNG plots of a distillation run (matplotlib, Agg backend, imported lazily).

* ``windows.png``: synthetic windows next to the random real subset of :func:`ddtime.driver.evaluation.random_subset`
  (same seed: for the ``windows`` representation, the set's initialisation), first channel,
  the input/label border marked.
* ``spectra.png``: mean amplitude spectrum ``|rfft|`` over windows and channels, synthetic vs real.
* ``loss.png``: the base loss per update, DDTime's value/ISIB terms when on, and the
  validation MSE of the selection checkpoints.
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import torch

__all__ = ["plot_windows", "plot_spectra", "plot_losses", "plot_run"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_windows(synthetic: torch.Tensor, real: torch.Tensor, path, *, seq_len: int, max_windows: int = 4) -> None:
    """Synthetic vs real windows ``[S, N, L]`` (channel 0 of up to ``max_windows`` of each)."""
    plt = _pyplot()
    n = min(max_windows, synthetic.shape[0])
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.8 * n), squeeze=False, sharex=True)
    for i in range(n):
        ax = axes[i, 0]
        ax.plot(real[i % real.shape[0], 0].cpu().numpy(), color="0.6", lw=1, label="real (random subset)")
        ax.plot(synthetic[i, 0].detach().cpu().numpy(), color="C0", lw=1.2, label="synthetic")
        ax.axvline(seq_len - 0.5, color="k", ls=":", lw=0.8)
        ax.set_ylabel(f"#{i}")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time step (input | label)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_spectra(synthetic: torch.Tensor, real: torch.Tensor, path) -> None:
    """Mean ``|rfft|`` along time of synthetic and real windows ``[S, N, L]``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for windows, label, color in ((real, "real", "0.5"), (synthetic, "synthetic", "C0")):
        amplitude = torch.fft.rfft(windows.detach().float().cpu(), dim=-1).abs().mean(dim=(0, 1))
        ax.semilogy(amplitude.numpy(), label=label, color=color)
    ax.set_xlabel("frequency bin")
    ax.set_ylabel("mean |rfft|")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_losses(history: Sequence[dict], val_history: Sequence[tuple[int, float]], path) -> None:
    """Loss curves, each term's gradient norm and the selection curve from a run's histories."""
    plt = _pyplot()
    base = [(h["iteration"], h["base"]) for h in history if h.get("kind") == "base"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
    if base:
        axes[0].plot([b[0] for b in base], [b[1] for b in base], ".", ms=2, label="L_base")
    for key, label in (("value", "L_val"), ("isib", "L_IS")):
        points = [(h["iteration"], h[key]) for h in history if key in h]
        if points:
            axes[0].plot([p[0] for p in points], [p[1] for p in points], ".", ms=2, label=label)
    axes[0].set_xlabel("iteration")
    axes[0].set_title("distillation losses")
    axes[0].legend(fontsize=8)
    for key, label in (("base", "L_base / detach(L_base)"), ("value", "L_val"), ("isib", "L_IS")):
        points = [(h["iteration"], h[f"{key}_grad_norm"]) for h in history if f"{key}_grad_norm" in h]
        if points:
            axes[1].semilogy([p[0] for p in points], [p[1] for p in points], ".", ms=2, label=label)
    axes[1].set_xlabel("iteration")
    axes[1].set_title("gradient norm of each term (before balancing)")
    if axes[1].has_data():
        axes[1].legend(fontsize=8)
    if val_history:
        axes[2].plot([v[0] for v in val_history], [v[1] for v in val_history], "o-")
    axes[2].set_xlabel("iteration")
    axes[2].set_title("validation MSE (selection)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_run(out_dir, synthetic: torch.Tensor, real: torch.Tensor, history, val_history, *, seq_len: int,
             seed: int = 0) -> list[pathlib.Path]:
    """Write the three PNGs into ``out_dir``; ``real`` windows are sampled with ``seed``. Returns the paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    idx = torch.randperm(real.shape[0], generator=torch.Generator().manual_seed(seed))[: max(synthetic.shape[0], 1)]
    real = real[idx]
    paths = [out_dir / "windows.png", out_dir / "spectra.png", out_dir / "loss.png"]
    plot_windows(synthetic, real, paths[0], seq_len=seq_len)
    plot_spectra(synthetic, real, paths[1])
    plot_losses(history, val_history, paths[2])
    return paths
