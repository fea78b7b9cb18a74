"""DDTime's plug-in terms: ``lambda_val * L_val + lambda_IS * L_IS`` (the DDTime paper; docs/driver.md).

* ``L_val = value_loss(student_side, teacher_side, alpha)``: the teacher side is the forecast of
  the synthetic inputs by a randomly drawn expert at its teacher epoch (its best validation epoch,
  its final one where the protocol has no validation split: ``ExpertStore.teacher_epoch``), in eval
  mode, detached (:mod:`ddtime.driver.distill.teacher`). The student side is the synthetic labels
  (``student_side="labels"``, default, as CondTSF's value term) or the unrolled student's forecast of the synthetic inputs
  (``student_side="student"``; needs a method with an unrolled student, ``has_unrolled_student``:
  MTT, FTD, DATM).
* ``L_IS = isib_loss(windows, tau)`` over the whole synthetic set ``[S, N, L]``.

``loss_impl="fused"`` uses ddtime's fused operators, ``"reference"`` the plain-PyTorch twins
in :mod:`ddtime.reference` (test oracle and benchmark baseline).

:meth:`DDTimeTerms.losses` gives the terms as differentiable tensors (for a method that
backpropagates them with its own loss); :meth:`DDTimeTerms.gradients` gives each term's value and
its gradient with respect to the tensor it reads, without autograd for the fused operators (their
backward kernels called directly) and with one small autograd pass for the reference: the
distillation loop's per-update path.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ddtime.driver.checks import check_choice, check_number
from ddtime.driver.distill.teacher import teacher_predict
from ddtime.driver.models import functional_forward

__all__ = ["DDTimeTerms", "STUDENT_SIDES", "LOSS_IMPLS", "TERM_NAMES"]

STUDENT_SIDES = ("labels", "student")
LOSS_IMPLS = ("fused", "reference")
TERM_NAMES = ("value", "isib")


def _loss_functions(loss_impl: str):
    if loss_impl == "fused":
        import ddtime

        return ddtime.value_loss, ddtime.isib_loss
    from ddtime.reference import isib_loss_reference, value_loss_reference

    return value_loss_reference, isib_loss_reference


@dataclass
class DDTimeTerms:
    """The weighted DDTime terms; defaults from the DDTime paper: alpha 0.8, lambda_val 1.0,
    lambda_IS 0.6 (stable 0.4 to 0.8), tau 1.0."""

    alpha: float = 0.8
    lambda_val: float = 1.0
    lambda_is: float = 0.6
    tau: float = 1.0
    student_side: str = "labels"
    loss_impl: str = "fused"

    def __post_init__(self):
        check_number("alpha", self.alpha, minimum=0.0, maximum=1.0)
        for name in ("lambda_val", "lambda_is"):
            check_number(name, getattr(self, name), minimum=0.0)
        check_number("tau", self.tau, positive=True)
        check_choice("student_side", self.student_side, STUDENT_SIDES)
        check_choice("loss_impl", self.loss_impl, LOSS_IMPLS)
        self._value_loss, self._isib_loss = _loss_functions(self.loss_impl)
        self._gradients = _fused_gradients if self.loss_impl == "fused" else _reference_gradients

    @property
    def weights(self) -> dict[str, float]:
        """``{"value": lambda_val, "isib": lambda_IS}``"""
        return {"value": self.lambda_val, "isib": self.lambda_is}

    def __call__(self, windows: torch.Tensor, *, seq_len: int, model: torch.nn.Module, teacher_params: torch.Tensor,
                 student_params: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted terms for synthetic ``windows`` ``[S, N, seq_len + pred_len]``.

        Returns ``(lambda_val * L_val + lambda_IS * L_IS, {"value": L_val, "isib": L_IS})``.
        """
        losses = self.losses(windows, seq_len=seq_len, model=model, teacher_params=teacher_params,
                             student_params=student_params)
        total = sum(self.weights[k] * v for k, v in losses.items())
        return total, {k: float(v.detach()) for k, v in losses.items()}

    def losses(self, windows: torch.Tensor, *, seq_len: int, model: torch.nn.Module, teacher_params: torch.Tensor,
               student_params: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The unweighted terms ``{"value": L_val, "isib": L_IS}`` (0-dim, differentiable)."""
        inputs = windows[..., :seq_len]
        teacher = teacher_predict(model, teacher_params, inputs)
        if self.student_side == "labels":
            student = windows[..., seq_len:]
        else:
            if student_params is None:
                raise ValueError("student_side: 'student' needs a method with an unrolled student "
                                 "(has_unrolled_student); use student_side='labels'")
            student = functional_forward(model, student_params, inputs)
        return {"value": self._value_loss(student, teacher, alpha=self.alpha, dim=-1),
                "isib": self._isib_loss(windows, tau=self.tau)}

    def gradients(self, windows: torch.Tensor, *, seq_len: int, teacher: torch.Tensor | None = None,
                  student: torch.Tensor | None = None, names=TERM_NAMES):
        """The unweighted terms ``names`` and their gradients, for detached tensors.

        windows: synthetic windows ``[S, N, L]``; teacher: the teacher's forecast ``[S, N, L - seq_len]``
        (needed for ``"value"``); student: the value term's student side ``[S, N, L - seq_len]``, by
        default the labels ``windows[..., seq_len:]``. Returns ``({name: loss (0-dim)}, {name: grad})``
        with ``grad["value"]`` w.r.t. the student side and ``grad["isib"]`` w.r.t. ``windows``.
        """
        unknown = sorted(set(names) - set(TERM_NAMES))
        if unknown:
            raise ValueError(f"names: expected terms among {TERM_NAMES}, got {unknown}")
        if "value" in names and teacher is None:
            raise ValueError("teacher: the value term needs the teacher's forecast")
        windows = windows.detach()
        student = (windows[..., seq_len:] if student is None else student).detach()
        return self._gradients(self, windows, student, teacher, names)


def _fused_gradients(terms: DDTimeTerms, windows, student, teacher, names):
    """Each term from its fused forward kernel (which also returns what its backward needs) and
    its gradient from the backward kernel, as autograd would call them for ``mean`` reduction."""
    ops = torch.ops.ddtime
    losses, grads = {}, {}
    if "value" in names:
        rows, saved = ops.value_loss_fused(student, teacher, terms.alpha, student.dim() - 1, True)
        losses["value"] = rows.mean().to(student.dtype)
        grads["value"] = ops.value_loss_backward(rows.new_full(rows.shape, 1.0 / rows.numel()), saved,
                                                 student.dim() - 1).to(student.dtype)
    if "isib" in names:
        loss, pairwise = ops.isib_loss(windows, terms.tau)
        losses["isib"] = loss.to(windows.dtype)
        grads["isib"] = ops.isib_loss_backward(torch.ones_like(loss), pairwise, windows, terms.tau)
    return losses, grads


def _reference_gradients(terms: DDTimeTerms, windows, student, teacher, names):
    """Each term from its plain-PyTorch reference, both gradients from one autograd pass."""
    leaves, losses = {}, {}
    with torch.enable_grad():
        if "value" in names:
            leaves["value"] = student.clone().requires_grad_(True)
            losses["value"] = terms._value_loss(leaves["value"], teacher, alpha=terms.alpha, dim=-1)
        if "isib" in names:
            leaves["isib"] = windows.clone().requires_grad_(True)
            losses["isib"] = terms._isib_loss(leaves["isib"], tau=terms.tau)
        found = torch.autograd.grad(list(losses.values()), list(leaves.values()))
    return {k: v.detach() for k, v in losses.items()}, dict(zip(leaves, found))
