"""The learnable synthetic set, in its two representations.

* ``windows``: one learnable tensor ``[S, N_w, L]``, L = seq_len + pred_len; the first
  seq_len steps of a window are its input, the last pred_len its label.
* ``series``: one learnable sequence per real channel ``[C, M]``, cut into overlapping windows of
  length L with ``stride`` (CondTSF's representation, stride 4 in its code). Under the standard
  (multivariate) protocol it gives ``W`` windows ``[W, C, L]``; under the channel-independent
  ``condtsf`` protocol it gives ``[C * W, 1, L]``. ``W`` windows per channel need
  ``M = (W - 1) * stride + L`` steps; ``samples`` S asks for W = S (standard) or
  W = ceil(S / C) (channel-independent), so the set holds about S windows either way.

Both are initialised from real training data chosen with a seeded generator: S random training
windows (``windows``), or one random contiguous stretch of the training series (``series``).

Optional soft labels (DATM): a separate learnable tensor ``[S_w, N_w, pred_len]`` that replaces
the label part of every window; the CondTSF value update then moves the soft labels.
"""
from __future__ import annotations

import math

import torch

from ddtime.driver.checks import check_int

__all__ = ["SyntheticSet", "REPRESENTATIONS", "SERIES_WRITES"]

REPRESENTATIONS = ("windows", "series")
SERIES_WRITES = ("sequential", "average")


class SyntheticSet:
    """Learnable synthetic data.

    Args:
        values: the learnable tensor, ``[S, N_w, L]`` (windows) or ``[C, M]`` (series); copied.
        representation: ``"windows"`` or ``"series"``.
        seq_len, pred_len: input and horizon lengths.
        stride: window stride of the ``series`` representation.
        channel_independent: series only; cut each channel into its own univariate windows.
    """

    def __init__(self, values: torch.Tensor, *, representation: str = "windows", seq_len: int, pred_len: int,
                 stride: int = 4, channel_independent: bool = False):
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation: expected one of {REPRESENTATIONS}, got {representation!r}")
        if not isinstance(values, torch.Tensor) or not values.is_floating_point():
            raise TypeError(f"values: expected a floating-point tensor, got {type(values).__name__}")
        for name, v in (("seq_len", seq_len), ("pred_len", pred_len), ("stride", stride)):
            check_int(name, v)
        self.representation = representation
        self.seq_len, self.pred_len, self.stride = seq_len, pred_len, stride
        self.channel_independent = bool(channel_independent)
        length = seq_len + pred_len
        if representation == "windows":
            if values.dim() != 3 or values.shape[-1] != length:
                raise ValueError(f"values: expected [S, N, {length}] windows, got shape {tuple(values.shape)}")
        else:
            if values.dim() != 2 or values.shape[-1] < length:
                raise ValueError(f"values: expected a [C, M >= {length}] series, got shape {tuple(values.shape)}")
        self.values = values.detach().clone().requires_grad_(True)
        self.soft_labels: torch.Tensor | None = None

    # construction -----------------------------------------------------------------------
    @classmethod
    def from_data(cls, data, *, samples: int, representation: str = "windows", stride: int = 4,
                  generator: torch.Generator, device: str | torch.device = "cpu") -> "SyntheticSet":
        """Initialise from random real training data of a :class:`ddtime.driver.data.ForecastData`."""
        check_int("samples", samples)
        seq_len, pred_len = data.seq_len, data.pred_len
        length = seq_len + pred_len
        channel_independent = data.protocol == "condtsf"
        if representation == "windows":
            real = data.windows("train")
            if samples > real.shape[0]:
                raise ValueError(f"samples: expected at most {real.shape[0]} (training windows), got {samples}")
            idx = torch.randperm(real.shape[0], generator=generator)[:samples]
            values = real[idx]
        elif representation == "series":
            series = data.train
            per_channel = math.ceil(samples / series.shape[0]) if channel_independent else samples
            m = (per_channel - 1) * stride + length
            if m > series.shape[1]:
                raise ValueError(f"samples: {samples} windows with stride {stride} need {m} steps per channel, "
                                 f"the training series has {series.shape[1]}")
            start = int(torch.randint(0, series.shape[1] - m + 1, (1,), generator=generator))
            values = series[:, start:start + m]
        else:
            raise ValueError(f"representation: expected one of {REPRESENTATIONS}, got {representation!r}")
        return cls(values.to(device=device, dtype=torch.float32), representation=representation, seq_len=seq_len,
                   pred_len=pred_len, stride=stride, channel_independent=channel_independent)

    # views ------------------------------------------------------------------------------
    def _raw_windows(self) -> torch.Tensor:
        if self.representation == "windows":
            return self.values
        cut = self.values.unfold(1, self.seq_len + self.pred_len, self.stride)  # [C, W, L]
        if self.channel_independent:
            return cut.reshape(-1, 1, cut.shape[-1])
        return cut.permute(1, 0, 2)

    def windows(self) -> torch.Tensor:
        """Differentiable synthetic windows ``[S_w, N_w, seq_len + pred_len]``."""
        raw = self._raw_windows()
        if self.soft_labels is None:
            return raw
        return torch.cat([raw[..., : self.seq_len], self.soft_labels], dim=-1)

    def inputs(self) -> torch.Tensor:
        """``[S_w, N_w, seq_len]``"""
        return self.windows()[..., : self.seq_len]

    def labels(self) -> torch.Tensor:
        """``[S_w, N_w, pred_len]``"""
        return self.windows()[..., self.seq_len:]

    def windows_vjp(self, grad: torch.Tensor) -> list[torch.Tensor]:
        """The gradients of :meth:`parameters` from a gradient ``[S_w, N_w, L]`` of :meth:`windows`,
        computed directly (the backward of the slicing / cutting, no autograd pass)."""
        raw = grad
        if self.soft_labels is not None:
            raw = torch.cat([grad[..., : self.seq_len], torch.zeros_like(grad[..., self.seq_len:])], dim=-1)
        if self.representation == "windows":
            values = raw
        else:
            c = self.values.shape[0]
            cut = raw.reshape(c, -1, raw.shape[-1]) if self.channel_independent else raw.transpose(0, 1)
            values = torch.ops.aten.unfold_backward(cut, list(self.values.shape), 1, raw.shape[-1], self.stride)
        return [values] + ([grad[..., self.seq_len:]] if self.soft_labels is not None else [])

    @property
    def num_windows(self) -> int:
        return self._raw_windows().shape[0]

    def window_rows(self) -> torch.Tensor:
        """Row indices of :meth:`windows` ``[W, R]``, one line per time window: its R channel rows.

        On a channel-independent ``series`` set (rows ``c * W + w``) a time window is the C rows
        of its C channels, as CondTSF's ``backbone.py`` batches ``(W, N, 24, 1)``; otherwise every
        row is a window of its own (R = 1).
        """
        rows = torch.arange(self.num_windows)
        if self.representation == "series" and self.channel_independent:
            return rows.view(self.values.shape[0], -1).t()
        return rows.view(-1, 1)

    def parameters(self) -> list[torch.Tensor]:
        """The learnable leaves: the values, then the soft labels when enabled."""
        return [self.values] + ([self.soft_labels] if self.soft_labels is not None else [])

    # label handling ---------------------------------------------------------------------
    def enable_soft_labels(self, init: torch.Tensor | None = None) -> None:
        """Give the windows a separate learnable label tensor (DATM), initialised from ``init``
        ``[S_w, N_w, pred_len]`` or, by default, from the current labels."""
        current = self.labels().detach()
        if init is None:
            init = current
        if init.shape != current.shape:
            raise ValueError(f"init: expected soft labels of shape {tuple(current.shape)}, got {tuple(init.shape)}")
        self.soft_labels = init.detach().to(current).clone().requires_grad_(True)

    @torch.no_grad()
    def blend_labels(self, prediction: torch.Tensor, beta: float, *, series_write: str = "sequential") -> None:
        """In place (keeps the leaves): move the labels toward ``prediction`` ``[S_w, N_w, pred_len]``.

        ``labels <- (1 - beta) * labels + beta * prediction`` window by window. On the ``series``
        representation overlapping windows share label steps: ``series_write="sequential"`` writes
        the windows one after another, as CondTSF's code does, so a step covered by k windows
        moves by ``1 - (1 - beta)^k`` toward the predictions; ``"average"`` (a departure) sets each
        step to the mean of its windows' blended values (a move of ``beta``).
        """
        expected = (self.num_windows, self._raw_windows().shape[1], self.pred_len)
        if tuple(prediction.shape) != expected:
            raise ValueError(f"prediction: expected shape {expected}, got {tuple(prediction.shape)}")
        if series_write not in SERIES_WRITES:
            raise ValueError(f"series_write: expected one of {SERIES_WRITES}, got {series_write!r}")
        prediction = prediction.to(self.values)
        if self.soft_labels is not None:
            self.soft_labels.mul_(1.0 - beta).add_(prediction, alpha=beta)
            return
        if self.representation == "windows":
            self.values[..., self.seq_len:] = (1.0 - beta) * self.values[..., self.seq_len:] + beta * prediction
            return
        c = self.values.shape[0]
        per = prediction.reshape(c, -1, self.pred_len) if self.channel_independent else prediction.permute(1, 0, 2)
        if series_write == "sequential":
            for w in range(per.shape[1]):
                step = self.values[:, w * self.stride + self.seq_len:][:, : self.pred_len]
                step.mul_(1.0 - beta).add_(per[:, w], alpha=beta)
            return
        total, count = torch.zeros_like(self.values), torch.zeros_like(self.values)
        for w in range(per.shape[1]):
            begin = w * self.stride + self.seq_len
            total[:, begin:begin + self.pred_len] += (1.0 - beta) * self.values[:, begin:begin + self.pred_len] \
                + beta * per[:, w]
            count[:, begin:begin + self.pred_len] += 1
        covered = count > 0
        self.values[covered] = total[covered] / count[covered]

    # checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"values": self.values.detach().clone()}
        if self.soft_labels is not None:
            state["soft_labels"] = self.soft_labels.detach().clone()
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy saved tensors into the existing leaves (so an optimiser built on them stays valid)."""
        if state["values"].shape != self.values.shape:
            raise ValueError(f"state: synthetic values of shape {tuple(state['values'].shape)} do not match "
                             f"{tuple(self.values.shape)}")
        if ("soft_labels" in state) != (self.soft_labels is not None):
            raise ValueError("state: soft labels present in exactly one of the checkpoint and the run")
        self.values.copy_(state["values"])
        if self.soft_labels is not None:
            self.soft_labels.copy_(state["soft_labels"])
