"""The interface every base distillation method implements, and the method registry.

One shared loop (:mod:`ddtime.driver.distill.loop`) drives every method. Per run it builds a
:class:`DistillContext` and calls, in this order::

    method.prepare(ctx)                       # once, before the optimiser is built
    params = synthetic.parameters() + method.synthetic_parameters()
    for it in range(start, iterations):
        for _ in range(method.updates_per_iteration):
            if condtsf value update is due:   # (it + 1) % 3 == 0, instead of the base update
                ...                           # the loop moves the labels toward the teacher
            else:
                out = method.step(ctx, it)    # -> MethodOutput
                if not out.stepped:           # the usual case: the loop owns the update
                    ...                       # L_base / detach(L_base) and DDTime's terms,
                    optimizer.step()          # balanced as config.term_balance says
            method.after_step(ctx, it)        # e.g. FTD's EMA of the synthetic data

A method either returns its base loss ``L_base`` (differentiable w.r.t. the synthetic
tensors, *before* normalisation by its detached value) and lets the loop normalise it, add
the DDTime terms and step the shared Adam optimiser, or it owns its update (TGDD's per-group
SGD-momentum steps): it then performs the update itself inside :meth:`DistillMethod.step`,
adds the total of ``ctx.extra_loss(...)`` to whatever it backpropagates if it wants the DDTime
terms, and returns ``MethodOutput(loss=..., stepped=True)`` with the (detached) loss and the
terms' values in ``metrics`` for logging.

Everything random inside a method must draw from ``ctx.generator`` so that a run is
reproducible and a resumed run continues the same random stream.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch

__all__ = ["DistillContext", "MethodOutput", "DistillMethod", "METHODS", "register_method", "build_method"]


@dataclass
class DistillContext:
    """What a method sees each iteration (built once per run by the loop).

    Attributes:
        data: the :class:`ddtime.driver.data.ForecastData` being distilled.
        synthetic: the :class:`ddtime.driver.distill.synthetic.SyntheticSet`; ``synthetic.windows()``
            gives the differentiable windows ``[S, N, seq_len + pred_len]``.
        experts: the :class:`ddtime.driver.experts.ExpertStore` (``trajectory(i)`` -> ``[E + 1, P]``),
            or ``None`` for a method with ``requires_experts = False``.
        model: a template :class:`ddtime.driver.models.ForecastModel` of the distillation architecture
            (use with ``ddtime.driver.models.functional_forward(model, flat, x)``; do not train it in place).
        model_name: its name in ``ddtime.driver.models.MODELS``.
        real_windows: real training windows ``[B, N, seq_len + pred_len]`` on ``device``.
        seq_len, pred_len: input and horizon lengths (T_in, T_out).
        iterations: total number of distillation iterations of the run.
        generator: the run's ``torch.Generator`` (CPU); draw every random number from it.
        device: torch device of the synthetic data, model and windows.
        extra_loss: ``extra_loss(student_params)`` -> ``(total, values)``: the lambda-weighted DDTime
            terms for the current synthetic set (0-dim tensor; zero when they are off) and each
            term's value for the history (``{"value": ..., "isib": ...}``; empty when off).
            ``student_params`` is the unrolled student's flat parameters ``[P]`` or ``None``.
        options: free-form run settings (read-only) for methods that need more.
    """

    data: Any
    synthetic: Any
    experts: Any
    model: torch.nn.Module
    model_name: str
    real_windows: torch.Tensor
    seq_len: int
    pred_len: int
    iterations: int
    generator: torch.Generator
    device: torch.device
    extra_loss: Callable[[torch.Tensor | None], tuple[torch.Tensor, dict[str, float]]]
    options: dict[str, Any] = field(default_factory=dict)

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high) drawn from the run's generator."""
        if high <= low:
            raise ValueError(f"randint: expected high > low, got low={low}, high={high}")
        return int(torch.randint(low, high, (1,), generator=self.generator).item())

    def real_batch(self, batch_size: int) -> torch.Tensor:
        """A random batch of real training windows ``[min(batch_size, B), N, L]`` (without replacement)."""
        b = self.real_windows.shape[0]
        idx = torch.randperm(b, generator=self.generator)[: min(batch_size, b)]
        return self.real_windows[idx.to(self.real_windows.device)]


@dataclass
class MethodOutput:
    """Result of one :meth:`DistillMethod.step`.

    Attributes:
        loss: the base loss ``L_base`` (0-dim). When ``stepped`` is False it must be
            differentiable w.r.t. the synthetic parameters and *not* yet normalised.
            When ``stepped`` is True it is only logged (may be detached).
        student_params: the unrolled student's final flat parameters ``[P]`` (differentiable
            w.r.t. the synthetic data) for DDTime's "student prediction" value-term variant;
            ``None`` for methods without an unrolled student.
        stepped: True when the method already updated the synthetic data itself.
        metrics: extra scalars to log (e.g. ``{"start_epoch": 3}``).
    """

    loss: torch.Tensor
    student_params: torch.Tensor | None = None
    stepped: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


class DistillMethod(abc.ABC):
    """Base class of a distillation method; subclasses register with :func:`register_method`.

    Class attributes:
        name: registry key.
        requires_experts: whether the method needs expert trajectories.
        expert_optimizer: optimiser the experts are trained with (``"sgd"``; FTD: its ``expert_optimizer`` option).
        has_unrolled_student: whether :meth:`step` returns the unrolled student's parameters
            (``MethodOutput.student_params``), which DDTime's ``student_side="student"`` needs.
        updates_per_iteration: the loop calls :meth:`step` (or the CondTSF value update) this
            many times per iteration, each followed by its own update; a method resamples its
            expert trajectory only when ``iteration`` changes.
    Constructor keyword options are method-specific hyper-parameters; unknown ones raise
    ``TypeError`` naming the option.
    """

    name: ClassVar[str] = ""
    requires_experts: ClassVar[bool] = True
    expert_optimizer: ClassVar[str] = "sgd"
    has_unrolled_student: ClassVar[bool] = False
    #: how many synthetic-data updates the loop makes per iteration (MTT: 2 per sampled trajectory)
    updates_per_iteration: int = 1

    def prepare(self, ctx: DistillContext) -> None:
        """Called once before the first iteration (and again on resume, before ``load_state_dict``)."""

    def synthetic_parameters(self) -> list[torch.Tensor | dict[str, Any]]:
        """Extra learnables optimised by the loop's Adam beside the synthetic set.

        Tensors (leaf, ``requires_grad``) join the synthetic data's learning rate; a dict is a
        torch.optim parameter group with its own ``lr`` (e.g. MTT's learnable log student lr).
        Soft labels live on the synthetic set itself (``SyntheticSet.enable_soft_labels``),
        so the CondTSF value update and checkpoints see them without method help.
        """
        return []

    @abc.abstractmethod
    def step(self, ctx: DistillContext, iteration: int) -> MethodOutput:
        """One distillation iteration: return the base loss, or update the data and set ``stepped``."""

    def after_step(self, ctx: DistillContext, iteration: int) -> None:
        """Called after every iteration's update (base or CondTSF value update)."""

    def final_windows(self, ctx: DistillContext) -> torch.Tensor:
        """The synthetic windows ``[S, N, L]`` this method hands to evaluation (detached).

        Default: the current synthetic set; FTD returns its exponential moving average.
        """
        return ctx.synthetic.windows().detach()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint for an exact resume (method-owned state, e.g. EMA, optimiser)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (called after :meth:`prepare` on resume)."""
        if state:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unexpected keys {sorted(state)}")


METHODS: dict[str, type[DistillMethod]] = {}


def register_method(cls: type[DistillMethod]) -> type[DistillMethod]:
    """Class decorator adding ``cls`` to :data:`METHODS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"register_method: {cls.__name__} has an empty name")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"register_method: method {cls.name!r} is already registered")
    METHODS[cls.name] = cls
    return cls


def build_method(name: str, **options: Any) -> DistillMethod:
    """Instantiate the registered method ``name`` with its keyword options."""
    import ddtime.driver.distill.methods  # noqa: F401  (registers the built-in methods)

    if name not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name](**options)
