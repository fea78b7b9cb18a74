"""The shared distillation loop (every base method, with or without CondTSF / DDTime).

Per iteration (see :mod:`ddtime.driver.distill.methods.base` for the method interface):

1. when DDTime's terms are on, draw this iteration's teacher (a random expert at its teacher
   epoch, :mod:`ddtime.driver.distill.teacher`);
2. ``method.updates_per_iteration`` times: on a CondTSF iteration (``(it + 1) % 3 == 0``) the
   value update, with a teacher freshly drawn each time (CondTSF's code) from its teacher store
   and pool (``CondTSFUpdate.teacher_every`` / ``teacher_optimizer``), replaces the base
   update; otherwise the method returns ``L_base`` and the loop steps Adam (lr 0.1) on the
   synthetic set with the gradients of ``L_base / detach(L_base)``, ``lambda_val * L_val`` and
   ``lambda_IS * L_IS``, each taken on its own and combined as ``config.term_balance`` says
   (:meth:`DistillRun._update`); a method that owns its update (TGDD) adds the plain weighted
   sum ``ctx.extra_loss``; then ``after_step``. The history of an update is kept as device
   tensors and converted to numbers in one transfer at checkpoints, selections, progress-bar
   refreshes (at most every ``PROGRESS_SECONDS``) and the end (:meth:`DistillRun.flush_history`),
   so that an update never waits for the device;
3. every ``select_every`` iterations and after the last, the method's current synthetic
   windows are scored by ``validate`` (quick student training scored on the validation split,
   under ``condtsf`` the last 10% of the training windows; never test); the best is kept.
   ``select_initial=True`` also scores the initial set (CondTSF's
   code does; off by default so that the result is always a distilled set, whose
   initialisation is exactly the random-subset reference of :mod:`ddtime.driver.evaluation`);
4. every ``checkpoint_every`` iterations the whole state is checkpointed atomically to
   ``out_dir/checkpoint.pt``: synthetic tensors, optimiser state, method state, RNG states,
   iteration, loss and validation history, best set. ``resume=True`` continues from it and
   gives the same result as an uninterrupted run.

All randomness comes from one ``torch.Generator`` seeded with ``config.seed`` (with
``trajectories_per_update`` B > 1 each trajectory slot also has its own, derived from it; under
``torchrun`` the ranks share each update: :mod:`ddtime.driver.distill.distributed`).
"""
from __future__ import annotations

import math
import pathlib
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ddtime.driver.distill.checkpoint import load_checkpoint, save_checkpoint
from ddtime.driver.distill.config import DistillConfig
from ddtime.driver.distill.distributed import TrajectoryBatch, checkpoint_for_resume, is_writer
from ddtime.driver.distill.methods import DistillContext
from ddtime.driver.distill.synthetic import SyntheticSet
from ddtime.driver.distill.teacher import TeacherForecaster, sample_teacher
from ddtime.driver.fingerprint import check_fingerprint, run_fingerprint
from ddtime.driver.models import build_model, functional_forward

__all__ = ["DistillResult", "DistillRun", "distill", "CHECKPOINT_NAME", "PROGRESS_SECONDS"]

CHECKPOINT_NAME = "checkpoint.pt"
#: the progress bar shows the latest base loss at most this often (each refresh reads the history)
PROGRESS_SECONDS = 2.0


class _Total:
    """A history record's ``total`` until :meth:`DistillRun.flush_history` computes it from the
    converted values: ``sum(weight * (1 if name == "base" else record[name]))``."""

    __slots__ = ("weights",)

    def __init__(self, weights: dict[str, float]):
        self.weights = weights

    def value(self, record: dict[str, Any]) -> float:
        return sum(w * (1.0 if k == "base" else record[k]) for k, w in self.weights.items())


def _term_norms(grads: dict[str, list[torch.Tensor | None]], device) -> dict[str, torch.Tensor]:
    """``{name: ||grads[name]||_2}`` over all the term's parameter gradients, with one
    ``torch._foreach_norm`` for all terms."""
    present = {k: [g for g in v if g is not None] for k, v in grads.items()}
    flat = [g for v in present.values() for g in v]
    norms = iter(torch._foreach_norm(flat) if flat else [])
    out = {}
    for name, gs in present.items():
        parts = [next(norms) for _ in gs]
        if not parts:
            out[name] = torch.zeros((), device=device)
        elif len(parts) == 1:
            out[name] = parts[0]
        else:
            out[name] = torch.stack(parts).square().sum().sqrt()
    return out


@dataclass
class DistillResult:
    """Outcome of :func:`distill`.

    windows: the synthetic windows ``[S, N, L]`` chosen on validation (the final ones when no
    validator was given); final_windows: those after the last iteration; initial_windows: those
    before the first (the real data the set started from); history: one dict per
    update (``iteration``, ``kind`` "base"/"condtsf", ``base``, ``value``, ``isib``, ``total``);
    val_history: ``[(iteration, val_mse)]`` (iteration = number of finished iterations);
    seconds: wall time of :func:`distill`, of which select_seconds went to validation selection.
    """

    windows: torch.Tensor
    final_windows: torch.Tensor
    best_iteration: int
    best_val_mse: float | None
    history: list[dict[str, float]]
    val_history: list[tuple[int, float]]
    seconds: float
    select_seconds: float = 0.0
    initial_windows: torch.Tensor | None = None
    resumed_from: int | None = None


def _rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(generator: torch.Generator, state: dict[str, torch.Tensor]) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def _template_model(config: DistillConfig, data) -> torch.nn.Module:
    model = build_model(config.model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.window_channels,
                        seed=config.seed, **config.model_kwargs)
    return model.to(config.device)


class DistillRun:
    """The state of one distillation run; :func:`distill` drives it.

    ``DistillRun(data, config, experts=...)`` builds the synthetic set, the method, the template
    model and the optimiser; :meth:`iteration` runs one iteration (the unit the overhead
    benchmark times); :meth:`resume_from` / :meth:`checkpoint` restore and save the state.
    """

    #: what the run is computed from (:mod:`ddtime.driver.fingerprint`), saved and checked on resume
    fingerprint: dict[str, Any] | None = None

    def __init__(self, data, config: DistillConfig, *, experts=None, teacher_experts=None):
        if not isinstance(config, DistillConfig):
            raise TypeError(f"config: expected a DistillConfig, got {type(config).__name__}")
        self.data, self.config, self.experts = data, config, experts
        self.teacher_experts = experts if teacher_experts is None else teacher_experts  # CondTSF's teachers
        self.device = device = torch.device(config.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.method = config.build_method()
        if (self.method.requires_experts or config.needs_teacher) and experts is None:
            raise ValueError(f"experts: method {config.method!r}"
                             f"{' with CondTSF/DDTime' if config.needs_teacher else ''} needs an ExpertStore")
        self.synthetic = SyntheticSet.from_data(data, samples=config.samples, representation=config.representation,
                                                stride=config.stride, generator=self.generator, device=device)
        self.initial_windows = self.synthetic.windows().detach().cpu().clone()
        self.model = _template_model(config, data)
        self.terms = config.ddtime_terms
        self.teacher: torch.Tensor | None = None
        self.teacher_forecast = TeacherForecaster(self.model) if self.terms is not None else None
        self.ctx = DistillContext(
            data=data, synthetic=self.synthetic, experts=experts, model=self.model, model_name=config.model,
            real_windows=data.windows("train").to(device), seq_len=data.seq_len, pred_len=data.pred_len,
            iterations=config.iterations, generator=self.generator, device=device, extra_loss=self.extra_loss,
            options={"model_kwargs": dict(config.model_kwargs)})
        self.method.prepare(self.ctx)
        groups = [{"params": self.synthetic.parameters()}]
        groups += [g if isinstance(g, dict) else {"params": [g]} for g in self.method.synthetic_parameters()]
        self.optimizer = torch.optim.Adam(groups, lr=config.lr)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.trajectories = TrajectoryBatch(self.method, self.ctx, self.params,
                                            trajectories=config.trajectories_per_update, seed=config.seed)
        self.history: list[dict[str, Any]] = []
        self._unflushed: list[dict[str, Any]] = []  # records of self.history that still hold tensors
        self._weights: dict[tuple[float, ...], torch.Tensor] = {}  # the terms' weights as a device tensor
        self.val_history: list[tuple[int, float]] = []
        self.best: dict[str, Any] = {"val": math.inf, "iteration": 0, "windows": None}
        self.done = 0
        self.select_seconds = 0.0

    def extra_loss(self, student_params: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted DDTime terms for the current synthetic set and each term's value
        (``(0, {})`` when they are off)."""
        if self.terms is None:
            return torch.zeros((), device=self.device), {}
        return self.terms(self.synthetic.windows(), seq_len=self.data.seq_len, model=self.model,
                          teacher_params=self.teacher, student_params=student_params)

    def iteration(self, it: int) -> None:
        """Run iteration ``it``: teacher draw, ``updates_per_iteration`` updates, ``after_step``.

        Issues no host synchronisation of its own: the new history records hold tensors until
        :meth:`flush_history`."""
        config, method = self.config, self.method
        if config.ddtime_terms is not None:
            self.teacher = sample_teacher(self.experts, self.generator, self.device)
        for _ in range(method.updates_per_iteration):
            if config.condtsf is not None and config.condtsf.is_due(it):
                store = self.teacher_experts
                teacher = sample_teacher(store, self.generator, self.device,
                                         pool=config.condtsf.teacher_pool(store.num_experts))
                config.condtsf.apply(self.synthetic, self.model, teacher)
                self.history.append({"iteration": it, "kind": "condtsf"})
            else:
                out = self.trajectories.step(it)  # method.step, or B trajectories averaged over the ranks
                record: dict[str, Any] = {"iteration": it, "kind": "base", "base": out.loss.detach()}
                if not out.stepped:
                    record.update(self._update(out))
                record.update(out.metrics)
                self.history.append(record)
                self._unflushed.append(record)
            method.after_step(self.ctx, it)
        self.done = it + 1

    def flush_history(self) -> list[dict[str, Any]]:
        """Convert the tensors of the records added since the last call to floats (one transfer
        from the device) and fill in their ``total``; returns :attr:`history`."""
        records = self._unflushed
        keys = [(r, k) for r in records for k, v in r.items() if isinstance(v, torch.Tensor)]
        if keys:
            values = torch.stack([r[k].detach().reshape(()) for r, k in keys]).tolist()
            for (r, k), v in zip(keys, values):
                r[k] = v
        self._unflushed = []
        for r in records:
            if isinstance(r.get("total"), _Total):
                r["total"] = r["total"].value(r)
        return self.history

    def _update(self, out) -> dict[str, Any]:
        """One Adam step of the synthetic data from the base loss and DDTime's terms.

        Each term's gradient is taken on its own: ``term_balance="none"`` adds
        ``grad(L_base / detach(L_base)) + lambda_val grad(L_val) + lambda_IS grad(L_IS)`` (the plain
        weighted sum); ``"grad-norm"`` scales each term's gradient to unit norm (over all synthetic
        parameters) before the lambdas apply, so that no term switches another off under Adam's
        per-coordinate scaling. A base loss alone keeps its own gradient (the base method unchanged).

        Only the base loss is differentiated by autograd (one pass through the method's graph; a
        second one through the unrolled student for ``student_side="student"``): the terms read
        the windows only, so their gradients come from their own backward kernels
        (:meth:`DDTimeTerms.gradients`) and the backward of the windows' cutting
        (:meth:`SyntheticSet.windows_vjp`). Returns each term's loss and gradient norm for the
        history, as 0-dim tensors (``total`` follows at :meth:`flush_history`).
        """
        params = self.params
        weights = {"base": 1.0}
        if self.terms is not None:
            weights.update((k, w) for k, w in self.terms.weights.items() if w != 0)
        through_student = "value" in weights and self.terms.student_side == "student"
        base = out.loss / out.loss.detach().clamp_min(1e-12)
        grads = {"base": list(torch.autograd.grad(base, params, retain_graph=through_student, allow_unused=True))}
        losses: dict[str, torch.Tensor] = {}
        if len(weights) > 1:
            losses, term_grads = self._term_gradients(out, [k for k in weights if k != "base"], through_student)
            grads.update(term_grads)
        norms = _term_norms(grads, self.device)
        if len(weights) == 1:
            combined = [g if g is not None else torch.zeros_like(p) for p, g in zip(params, grads["base"])]
        else:
            key = tuple(weights.values())
            if key not in self._weights:  # made once: a tensor from Python numbers is a host-to-device copy
                self._weights[key] = torch.tensor(key, dtype=torch.float32, device=self.device)
            w = self._weights[key]
            if self.config.term_balance == "grad-norm":
                n = torch.stack([norms[k].to(w) for k in weights])
                w = torch.where(n > 0, w / n, w)
            scales = dict(zip(weights, w.unbind()))
            combined = []
            for j, p in enumerate(params):
                c = None
                for name, scale in scales.items():
                    g = grads[name][j]
                    if g is not None:
                        c = g * scale if c is None else c.addcmul_(g, scale)
                combined.append(c if c is not None else torch.zeros_like(p))
        for p, c in zip(params, combined):
            p.grad = c
        self.optimizer.step()
        record: dict[str, Any] = {}
        for name in weights:
            record[f"{name}_grad_norm"] = norms[name]
            if name != "base":
                record[name] = losses[name]
        record["total"] = _Total(weights)
        return record

    def _term_gradients(self, out, names: list[str], through_student: bool):
        """``({name: L_name}, {name: [gradient per parameter of self.params or None]})`` of DDTime's
        terms ``names`` at the current synthetic set."""
        seq_len = self.data.seq_len
        windows = self.synthetic.windows().detach()
        teacher = student = None
        if "value" in names:
            teacher = self.teacher_forecast(self.teacher, windows[..., :seq_len])
            if through_student:
                if out.student_params is None:
                    raise ValueError("student_side: 'student' needs a method with an unrolled student "
                                     "(has_unrolled_student); use student_side='labels'")
                student = functional_forward(self.model, out.student_params, self.synthetic.windows()[..., :seq_len])
        losses, window_grads = self.terms.gradients(windows, seq_len=seq_len, teacher=teacher, student=student,
                                                    names=names)
        extra = [None] * (len(self.params) - len(self.synthetic.parameters()))
        grads = {}
        for name in names:
            g = window_grads[name]
            if name == "value" and through_student:
                grads[name] = list(torch.autograd.grad(student, self.params, grad_outputs=g, allow_unused=True))
                continue
            if name == "value":
                g = torch.cat([torch.zeros_like(windows[..., :seq_len]), g], dim=-1)
            grads[name] = self.synthetic.windows_vjp(g) + extra
        return losses, grads

    def select(self, validate: Callable[[torch.Tensor], float]) -> None:
        """Score the method's current windows on validation and keep them if they are the best."""
        t0 = time.perf_counter()
        windows = self.method.final_windows(self.ctx).detach()
        score = float(validate(windows))
        self.flush_history()
        self.select_seconds += time.perf_counter() - t0
        self.val_history.append((self.done, score))
        if score < self.best["val"]:
            self.best.update(val=score, iteration=self.done, windows=windows.clone())

    def checkpoint(self, path) -> None:
        """Save everything needed for an exact resume, atomically."""
        self.flush_history()
        best = self.best
        save_checkpoint(path, {
            "config": self.config.to_dict(), "iteration": self.done, "synthetic": self.synthetic.state_dict(),
            "optimizer": self.optimizer.state_dict(), "method": self.method.state_dict(),
            "rng": _rng_state(self.generator), "history": self.history,
            "val_history": [list(v) for v in self.val_history], "best_val": best["val"],
            "best_iteration": best["iteration"],
            "best_windows": best["windows"].cpu() if best["windows"] is not None else None,
            "fingerprint": self.fingerprint,
        })

    def resume_from(self, path) -> None:
        """Restore a :meth:`checkpoint` written with the same settings and :attr:`fingerprint`."""
        state = load_checkpoint(path)
        check_fingerprint(state.get("fingerprint"), self.fingerprint, f"the checkpoint {str(path)!r}")
        saved, now = state["config"], self.config.to_dict()
        mismatched = sorted(k for k in set(saved) | set(now)
                            if k not in ("quiet", "device", "checkpoint_every") and saved.get(k) != now.get(k))
        if mismatched:
            raise ValueError(f"resume: the checkpoint {str(path)!r} was written with different settings: "
                             + ", ".join(f"{k}={saved.get(k)!r} (now {now.get(k)!r})" for k in mismatched))
        self.synthetic.load_state_dict(state["synthetic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        _set_rng_state(self.generator, state["rng"])
        self.done = int(state["iteration"])
        self.history, self.val_history = list(state["history"]), [tuple(v) for v in state["val_history"]]
        self.best = {"val": float(state["best_val"]), "iteration": int(state["best_iteration"]),
                     "windows": state["best_windows"].to(self.device) if state["best_windows"] is not None else None}


def distill(data, config: DistillConfig, *, experts=None, out_dir: str | pathlib.Path | None = None,
            resume: bool = False, validate: Callable[[torch.Tensor], float] | None = None,
            fingerprint: dict[str, Any] | None = None, teacher_experts=None) -> DistillResult:
    """Distil ``data`` (a :class:`ddtime.driver.data.ForecastData`) into a synthetic set.

    Args:
        experts: an :class:`ddtime.driver.experts.ExpertStore` (needed by trajectory methods, DM with
            expert networks, CondTSF's update and DDTime's terms).
        teacher_experts: the ExpertStore CondTSF's update draws its teachers from (default ``experts``;
            see ``CondTSFUpdate.teacher_optimizer``).
        out_dir: where ``checkpoint.pt`` goes (no checkpoints when ``None``).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (same config required).
        validate: ``validate(windows [S, N, L]) -> validation MSE``; selects the best set.
        fingerprint: what the run is computed from, stored in the checkpoint; a resume from a
            checkpoint of another fingerprint is refused (default: the data's and experts').
    """
    if resume and out_dir is None:
        raise ValueError("resume: needs out_dir (where the checkpoint lives)")
    t0 = time.perf_counter()
    run = DistillRun(data, config, experts=experts, teacher_experts=teacher_experts)
    run.fingerprint = run_fingerprint(data, experts) if fingerprint is None else fingerprint
    ckpt_path = pathlib.Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    resumed_from = None
    writer = is_writer()  # under torchrun rank 0 alone selects and writes; every rank resumes from its checkpoint
    validate = validate if writer else None
    with checkpoint_for_resume(ckpt_path if resume else None) as source:
        if source is not None:
            run.resume_from(source)
            resumed_from = run.done
    if validate is not None and config.select_initial and run.done == 0 and not run.val_history:
        run.select(validate)
    bar = tqdm(range(run.done, config.iterations), initial=run.done, total=config.iterations,
               disable=config.quiet or not writer, desc=f"distill {config.method}", leave=False)
    shown = time.perf_counter()
    for it in bar:
        run.iteration(it)
        if not config.quiet and time.perf_counter() - shown > PROGRESS_SECONDS:
            base = [h["base"] for h in run.flush_history()[-run.method.updates_per_iteration:] if "base" in h]
            if base:
                bar.set_postfix(base=f"{base[-1]:.4g}")
            shown = time.perf_counter()
        done = run.done
        if validate is not None and config.select_every and (done % config.select_every == 0
                                                               or done == config.iterations):
            run.select(validate)
        if writer and ckpt_path is not None and config.checkpoint_every and (done % config.checkpoint_every == 0
                                                                             or done == config.iterations):
            run.checkpoint(ckpt_path)
    bar.close()
    run.flush_history()
    final = run.method.final_windows(run.ctx).detach()
    best = run.best
    chosen = best["windows"] if best["windows"] is not None else final
    return DistillResult(windows=chosen.cpu(), final_windows=final.cpu(),
                         best_iteration=best["iteration"] if best["windows"] is not None else config.iterations,
                         best_val_mse=best["val"] if best["windows"] is not None else None, history=run.history,
                         val_history=run.val_history, seconds=time.perf_counter() - t0,
                         select_seconds=run.select_seconds,
                         initial_windows=run.initial_windows, resumed_from=resumed_from)
