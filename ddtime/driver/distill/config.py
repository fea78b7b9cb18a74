"""The settings of one distillation run: :class:`DistillConfig`, with the optional CondTSF update
(:class:`~ddtime.driver.distill.condtsf.CondTSFUpdate`) and DDTime terms
(:class:`~ddtime.driver.distill.terms.DDTimeTerms`) as objects of their own."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ddtime.driver.checks import check_choice, check_int, check_number
from ddtime.driver.distill.condtsf import CondTSFUpdate
from ddtime.driver.distill.methods import DistillMethod, build_method
from ddtime.driver.distill.synthetic import REPRESENTATIONS
from ddtime.driver.distill.terms import DDTimeTerms

__all__ = ["DistillConfig", "TERM_BALANCES"]

#: how the base loss and DDTime's terms combine into the synthetic data's gradient
TERM_BALANCES = ("none", "grad-norm")


@dataclass
class DistillConfig:
    """Settings of one distillation run (defaults: DDTime's paper and CondTSF's code, docs/driver.md).

    ``condtsf``: CondTSF's value update, or None (off); ``ddtime_terms``: DDTime's terms, or None (off).
    ``term_balance``: how ``L_base`` and DDTime's terms combine (see ``DistillRun._update``).
    ``trajectories_per_update``: B trajectories (MTT's expert segments, DM's networks) averaged into
    each update's base gradient, shared out over the ``torchrun`` ranks
    (:mod:`~ddtime.driver.distill.distributed`).
    """

    method: str = "mtt"
    method_options: dict[str, Any] = field(default_factory=dict)
    samples: int = 10
    representation: str = "windows"
    stride: int = 4
    iterations: int = 300
    lr: float = 0.1
    condtsf: CondTSFUpdate | None = None
    ddtime_terms: DDTimeTerms | None = None
    term_balance: str = "grad-norm"
    trajectories_per_update: int = 1
    model: str = "dlinear"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    select_every: int = 50
    select_initial: bool = False
    checkpoint_every: int = 10
    quiet: bool = False

    def __post_init__(self):
        for name in ("samples", "iterations", "stride", "trajectories_per_update"):
            check_int(name, getattr(self, name))
        for name in ("select_every", "checkpoint_every"):  # 0 = off
            check_int(name, getattr(self, name), minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_number("lr", self.lr, positive=True)
        check_choice("representation", self.representation, REPRESENTATIONS)
        check_choice("term_balance", self.term_balance, TERM_BALANCES)
        if self.condtsf is not None and not isinstance(self.condtsf, CondTSFUpdate):
            raise TypeError(f"condtsf: expected a CondTSFUpdate or None, got {type(self.condtsf).__name__}")
        terms = self.ddtime_terms
        if terms is not None and not isinstance(terms, DDTimeTerms):
            raise TypeError(f"ddtime_terms: expected a DDTimeTerms or None, got {type(terms).__name__}")
        if self.trajectories_per_update > 1 and terms is not None and terms.student_side == "student":
            raise ValueError("trajectories_per_update: student_side='student' needs one unrolled student per update "
                             f"(got {self.trajectories_per_update} trajectories); use student_side='labels'")

    @property
    def needs_teacher(self) -> bool:
        """Whether the run draws teachers from the experts (CondTSF's update or DDTime's value term)."""
        return self.condtsf is not None or self.ddtime_terms is not None

    def build_method(self) -> DistillMethod:
        """The configured method; an option it does not take, or DDTime's ``student_side="student"``
        on a method without an unrolled student, raises ``ValueError`` naming it."""
        try:
            method = build_method(self.method, **self.method_options)
        except TypeError as exc:
            raise ValueError(f"method_options: {exc}") from None
        terms = self.ddtime_terms
        if terms is not None and terms.student_side == "student" and not method.has_unrolled_student:
            raise ValueError(f"student_side: 'student' needs a method with an unrolled student, not {self.method!r}; "
                             "use student_side='labels'")
        return method

    def to_dict(self) -> dict[str, Any]:
        """The flat settings record kept in ``results.json`` and checkpoints: ``condtsf`` and ``ddtime``
        (for ``ddtime_terms``) as booleans beside their settings (``condtsf_beta``, ..., ``alpha``, ...;
        the defaults when off);
        ``trajectories_per_update`` only above 1, so that one-trajectory records and checkpoints stay
        those of earlier versions."""
        condtsf, terms = self.condtsf or CondTSFUpdate(), self.ddtime_terms or DDTimeTerms()
        record: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "condtsf":
                record["condtsf"] = value is not None
                record.update({f"condtsf_{k}": v for k, v in dataclasses.asdict(condtsf).items()})
            elif f.name == "ddtime_terms":  # recorded as "ddtime", the key of earlier records
                record["ddtime"] = value is not None
                record.update(dataclasses.asdict(terms))
            elif f.name != "trajectories_per_update" or value > 1:
                record[f.name] = copy.deepcopy(value)
        return record
