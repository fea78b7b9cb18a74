"""The command line's option groups, declared once and shared by the subcommands.

=============  =======  =======  =======  ========
group          experts  distill  compare  evaluate
=============  =======  =======  =======  ========
data           yes      yes      yes      yes
experts        yes      yes      yes
expert recipe  yes
distillation            yes      yes
evaluation              yes      yes      yes
run            yes      yes      yes      yes
=============  =======  =======  =======  ========

An option whose value a preset or the quick run may choose defaults to ``None`` here and is filled
by :func:`ddtime.driver.commands.options.resolve`; help texts read every default from the library's
own objects. Options that meant different things in different subcommands have one name per meaning
(``--train-stride`` / ``--series-stride``, ``--expert-lr`` / ``--syn-lr``); the old spelling of each
(``--stride``, ``--lr``) stays as an alias in the subcommand where it had that meaning.
"""
from __future__ import annotations

import argparse

from ddtime.driver.commands.types import (fraction, method_option, model_list, non_negative_float, non_negative_int,
                                          positive_float, positive_int)
from ddtime.driver.data import PROTOCOLS, SCALES
from ddtime.driver.data.protocols import DEFAULT_LENGTHS, TRAIN_STRIDES
from ddtime.driver.distill import TERM_BALANCES, CondTSFUpdate, DDTimeTerms, DistillConfig
from ddtime.driver.distill.condtsf import TEACHER_OPTIMIZERS
from ddtime.driver.distill.synthetic import REPRESENTATIONS
from ddtime.driver.distill.terms import LOSS_IMPLS, STUDENT_SIDES
from ddtime.driver.experts import EXPERT_OPTIMIZERS
from ddtime.driver.models import MODELS
from ddtime.driver.pipeline import EvaluationConfig, ExpertRequest
from ddtime.driver.presets import PRESETS
from ddtime.driver.training import DEFAULT_GSAM_ALPHA, DEFAULT_LR, DEFAULT_RHO

__all__ = ["add_data_options", "add_expert_options", "add_expert_recipe_options", "add_distill_options",
           "add_evaluation_options", "add_run_options"]

_LENGTHS = ", ".join(f"{DEFAULT_LENGTHS[p]} {p}" for p in PROTOCOLS)


def add_data_options(parser: argparse.ArgumentParser, *, preset: bool = True,
                     omitted: str = "the built-in generated dataset") -> None:
    """Which data: ``--data`` (``omitted``: what its absence means), ``--preset``, ``--protocol``,
    ``--seq-len``, ``--pred-len``."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", default=None, help=f"dataset name (ETTh1, ...) or CSV path; omitted = {omitted}")
    if preset:
        group.add_argument("--preset", choices=sorted(PRESETS), default=None,
                           help="every default of a published setting (condtsf: CondTSF's code; see "
                                "ddtime.driver.presets); explicit options win")
    group.add_argument("--protocol", choices=PROTOCOLS, default=None, help="default standard")
    group.add_argument("--scale", choices=SCALES, default=None,
                       help="fit each channel's mean/std on the training rows (train, leak-free) or the whole "
                            "series, test rows included (series); default: the protocol's (standard: train; "
                            "condtsf: series, as CondTSF's code)")
    group.add_argument("--seq-len", type=positive_int, default=None, help=f"look-back (default {_LENGTHS})")
    group.add_argument("--pred-len", type=positive_int, default=None, help=f"horizon (default {_LENGTHS})")


def add_expert_options(parser: argparse.ArgumentParser, *, directory: bool) -> None:
    """Which experts: ``--model``, ``--num-experts``, ``--expert-epochs`` and, for the commands that
    train them on demand (``directory=True``), ``--experts`` and ``--expert-seed``."""
    group = parser.add_argument_group("experts")
    group.add_argument("--model", type=str.lower, choices=sorted(MODELS), default=DistillConfig.model,
                       help="expert (and distillation) architecture")
    group.add_argument("--num-experts", type=positive_int, default=None,
                       help=f"expert trajectories (default {ExpertRequest.num_experts})")
    group.add_argument("--expert-epochs", type=positive_int, default=None,
                       help=f"epochs per expert (default {ExpertRequest.epochs})")
    if directory:
        group.add_argument("--expert-lr", type=positive_float, default=None,
                           help="experts' learning rate when they are trained on demand (default: the optimiser's, "
                                f"SGD {DEFAULT_LR['sgd']}; preset standard: 1e-2)")
        group.add_argument("--experts", default=None, help="expert directory (default OUT/experts)")
        group.add_argument("--expert-seed", type=non_negative_int, default=None,
                           help="seed of the experts (default --seed): several distillation seeds can share one "
                                "expert set, as CondTSF's repeated runs share one buffer")


def add_expert_recipe_options(parser: argparse.ArgumentParser) -> None:
    """How ``ddtime experts`` trains: optimiser, learning rate, momentum, SAM radius, batch, window stride."""
    group = parser.add_argument_group("expert recipe")
    group.add_argument("--optimizer", choices=EXPERT_OPTIMIZERS, default="sgd",
                       help="sam for ddtime's FTD, gsam for CondTSF's FTD (buffer.py --FTD 1)")
    group.add_argument("--expert-lr", "--lr", dest="expert_lr", type=positive_float, default=None,
                       help=f"expert learning rate (default {DEFAULT_LR['sgd']})")
    group.add_argument("--momentum", type=fraction, default=0.9)
    group.add_argument("--rho", type=positive_float, default=None,
                       help=f"SAM / GSAM radius (default {DEFAULT_RHO['sam']} sam, {DEFAULT_RHO['gsam']} gsam)")
    group.add_argument("--gsam-alpha", type=fraction, default=DEFAULT_GSAM_ALPHA,
                       help="GSAM's weight of the orthogonal gradient component (--optimizer gsam; default %(default)s)")
    group.add_argument("--batch-size", type=positive_int, default=64)
    group.add_argument("--train-stride", "--stride", dest="train_stride", type=positive_int, default=None,
                       help="step between training windows (default "
                            + ", ".join(f"{TRAIN_STRIDES[p]} {p}" for p in PROTOCOLS) + ")")


def add_distill_options(parser: argparse.ArgumentParser) -> None:
    """How the set is distilled: its size and form, the loop, CondTSF's update and DDTime's terms."""
    group = parser.add_argument_group("distillation")
    group.add_argument("--samples", type=positive_int, default=None,
                       help=f"synthetic windows S (default {DistillConfig.samples}; under a preset the dataset's "
                            "condensing rate)")
    group.add_argument("--representation", choices=REPRESENTATIONS, default=None,
                       help=f"default {DistillConfig.representation}")
    group.add_argument("--series-stride", "--stride", dest="series_stride", type=positive_int, default=None,
                       help=f"window stride of the series representation (default {DistillConfig.stride})")
    group.add_argument("--iterations", type=positive_int, default=None,
                       help=f"distillation iterations (default {DistillConfig.iterations})")
    group.add_argument("--syn-lr", "--lr", dest="syn_lr", type=positive_float, default=DistillConfig.lr,
                       help="Adam learning rate of the synthetic data (default %(default)s)")
    group.add_argument("--method-option", type=method_option, action="append", default=[], metavar="KEY=VALUE",
                       help="method hyper-parameter, e.g. syn_steps=10 (repeatable)")
    group.add_argument("--select-every", type=non_negative_int, default=None,
                       help=f"score the set every N iterations and keep the best (default "
                            f"{DistillConfig.select_every}; 0 = keep the final set); scored on the validation split, "
                            "under condtsf (no validation split) on the last 10%% of the training windows, which the "
                            "experts also train on")
    group.add_argument("--select-initial", action="store_true",
                       help="let the initial set (= the random-subset reference) compete in the selection")
    group.add_argument("--checkpoint-every", type=positive_int, default=None,
                       help=f"checkpoint every N iterations (default {DistillConfig.checkpoint_every})")
    group.add_argument("--term-balance", choices=TERM_BALANCES, default=DistillConfig.term_balance,
                       help="how L_base and DDTime's terms combine: each term's gradient scaled to unit norm before "
                            "the lambdas (grad-norm, default) or the plain weighted sum (none)")
    group.add_argument("--condtsf-beta", type=fraction, default=CondTSFUpdate.beta,
                       help="CondTSF value-update step (default %(default)s)")
    group.add_argument("--condtsf-teacher-every", type=positive_int, default=None,
                       help="CondTSF's teachers are experts 0, k, 2k, ... (default 1: every expert; preset condtsf: "
                            "5, its 8 buffer files' first experts)")
    group.add_argument("--condtsf-teacher-optimizer", choices=("method", *TEACHER_OPTIMIZERS), default=None,
                       help="expert store of CondTSF's teachers: the method's own (default) or the experts of this "
                            "optimiser (preset condtsf: sgd, also for FTD)")
    group.add_argument("--alpha", type=fraction, default=DDTimeTerms.alpha,
                       help="DDTime frequency weight in the value term (default %(default)s)")
    group.add_argument("--lambda-val", type=non_negative_float, default=DDTimeTerms.lambda_val,
                       help="DDTime value-term weight (default %(default)s)")
    group.add_argument("--lambda-is", type=non_negative_float, default=DDTimeTerms.lambda_is,
                       help="DDTime ISIB weight (default %(default)s)")
    group.add_argument("--tau", type=positive_float, default=DDTimeTerms.tau,
                       help="ISIB softmax temperature (default %(default)s)")
    group.add_argument("--student-side", choices=STUDENT_SIDES, default=DDTimeTerms.student_side,
                       help="value-term student side: synthetic labels or the unrolled student's forecast")
    group.add_argument("--loss-impl", choices=LOSS_IMPLS, default=DDTimeTerms.loss_impl,
                       help="DDTime terms with ddtime's fused ops or the plain-PyTorch reference")


def add_evaluation_options(parser: argparse.ArgumentParser, *, references: bool) -> None:
    """How a set is judged: students, their epochs and rate; for the commands that distil
    (``references=True``), extra student architectures and the full-data reference's epochs."""
    group = parser.add_argument_group("evaluation")
    group.add_argument("--students", type=positive_int, default=None,
                       help=f"fresh students per architecture (default {EvaluationConfig.students})")
    group.add_argument("--eval-epochs", type=positive_int, default=None, help="student epochs (default: recipe)")
    group.add_argument("--eval-lr", type=positive_float, default=None, help="student learning rate (default: recipe)")
    group.add_argument("--eval-optimizer", choices=("adam", "sgd"), default=None,
                       help="student optimiser (default: the protocol's; sgd = the experts' SGD with momentum 0.9; "
                            "preset standard: sgd)")
    group.add_argument("--test-stride", type=positive_int, default=None,
                       help="score every k-th test window (default 1; preset condtsf: 12, as CondTSF's distill.py)")
    if references:
        group.add_argument("--eval-models", type=model_list, default=(),
                           help="extra comma-separated student architectures")
        group.add_argument("--full-epochs", type=positive_int, default=None,
                           help="full-data reference epochs (default: its recipe's)")


def add_run_options(parser: argparse.ArgumentParser, *, threads: bool = True) -> None:
    """How the process runs: ``--seed``, ``--device``, ``--threads``, ``--quiet``."""
    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=non_negative_int, default=0)
    group.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="under torchrun, cuda means cuda:LOCAL_RANK")
    if threads:
        group.add_argument("--threads", type=positive_int, default=None,
                           help="torch CPU threads (default: torch's; 1 without --data: the small models gain "
                                "nothing from intra-op threads and a shared machine loses a lot)")
    group.add_argument("--quiet", action="store_true", help="no progress bars")
