"""Class-conditional dataset distillation: DM and TGDD.

Every iteration and for every class c (one synthetic update per class per iteration):

- DM: a freshly initialised encoder (seed drawn from the run's generator, one per iteration)
  embeds a batch of real samples of class c and the synthetic samples of class c; the loss is
  the squared distance of the two mean embeddings.
- TGDD: draw a stored expert trajectory i of the :class:`~ddtime.driver.experts.store.ExpertStore`
  (:func:`ddtime.driver.classification.train_trajectories`) and a stage j uniformly
  (0 <= j < M = epochs + 1); snapshot j is the encoder of the same matching loss. A second
  snapshot j' is drawn uniformly from the expert region ``j .. min(j + region, M - 1)``
  (region 6) and adds ``alpha * (F / 2048) * CE(f_j'(x_syn_c), c)``; alpha defaults to 2.5 for
  at most 10 samples per class, else 0.5 (:func:`ddtime.driver.distill.matching.default_alpha`).

Constraint weight and feature width: the matching term sums over the F features of the
embedding, the cross-entropy does not, so alpha's effect depends on F. TGDD's ConvNets
(depth 3 on 32x32, 4 on 64x64, 5 on 128x128, width 128) all embed into F = 2048 features; its
alpha values are kept for another encoder by weighting the constraint with
``alpha * F / alpha_reference_features`` (default 2048; ``None`` uses alpha as is). The 8x8
ConvNet here has F = 128, so the default weights are 0.156 (small sets) and 0.031 (large).
On digits the unscaled weights cost accuracy at 10 and 50 images per class, falling below the
random subset at both (``bench/results/tgdd_digits.md``).

The synthetic samples of each class are a separate leaf tensor with its own SGD optimiser
(momentum 0.5). Learning-rate rule: ``lr_c = lr_per_sample * n_c`` with ``n_c`` the number of
synthetic samples of class c. Both loss terms average over the class's synthetic samples, so
the gradient of one sample scales as ``1 / n_c``; multiplying by ``n_c`` gives every sample the
same step size whatever the set size. ``lr_per_sample`` defaults to 1.0 for both methods: the best
of 0.01 / 0.1 / 1.0 for each at 10 images per class on a validation split carved from digits'
training split (``holdout(0.2, seed=0)``; the test split unused; ``bench/tune_tgdd_lr.py`` ->
``bench/results/tgdd_lr_validation.md``: DM 95.3 / 97.0 / 97.2 %, TGDD 95.6 / 96.9 / 97.2 %).
Initialisation: random real training samples of each class (``data.random_subset(ipc, seed)``,
so the random-subset baseline of the same seed is exactly the starting point). No
differentiable augmentation is used (the data are 8x8 digits or feature vectors).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ddtime.driver.checks import check_choice, check_int, check_number
from ddtime.driver.classification.data import ClassificationData
from ddtime.driver.classification.classwise import constraint_cross_entropy
from ddtime.driver.classification.networks import build_network
from ddtime.driver.classification.trajectories import classifier_network
from ddtime.driver.distill.matching import default_alpha, mean_embedding_distance
from ddtime.driver.experts.store import ExpertStore
from ddtime.driver.models.params import flat_params, functional_forward

__all__ = ["ClassifierDistillResult", "distill_classifier", "DEFAULT_LR_PER_SAMPLE"]

#: chosen on a validation split carved from digits' training split (bench/results/tgdd_lr_validation.md)
DEFAULT_LR_PER_SAMPLE = 1.0


@dataclass
class ClassifierDistillResult:
    """Output of :func:`distill`.

    Attributes:
        x: synthetic samples ``[K * ipc, ...]`` (detached), class-major.
        y: their labels ``[K * ipc]``.
        matching: per iteration, the matching loss summed over classes (under that iteration's encoder).
        constraint: per iteration, the constraint CE averaged over classes (TGDD; empty for DM).
        seconds: wall time of the distillation loop (initialisation included, experts excluded).
        settings: the resolved hyper-parameters.
    """

    x: torch.Tensor
    y: torch.Tensor
    matching: list[float] = field(default_factory=list)
    constraint: list[float] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)


def _embed(net: torch.nn.Module, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Features ``(batch, F)`` of ``x`` under the flat parameters ``flat [P]``."""
    return functional_forward(net, flat, x, method="embed")


def _real_batch(x: torch.Tensor, idx: torch.Tensor, batch: int, g: torch.Generator) -> torch.Tensor:
    return x[idx[torch.randperm(idx.numel(), generator=g)[:batch]]]


def distill_classifier(data: ClassificationData, *, ipc: int, method: str = "tgdd",
            experts: ExpertStore | None = None, iterations: int = 1000, lr_per_sample: float | None = None,
            momentum: float = 0.5, batch_real: int = 256, alpha: float | None = None,
            alpha_reference_features: int | None = 2048, region: int = 6,
            arch: str = "auto", net_kwargs: dict | None = None, seed: int = 0, quiet: bool = False) -> ClassifierDistillResult:
    """Distil ``data``'s training split into ``ipc`` samples per class with ``method`` ("dm" or "tgdd").

    Args:
        experts: TGDD's expert trajectories, an :class:`ExpertStore` of classifiers
            (:func:`~ddtime.driver.classification.train_trajectories`); their architecture is the
            encoder's (``arch`` and ``net_kwargs`` then are ignored). All trajectories are read
            once, before the timed loop (:meth:`ExpertStore.trajectories`, ``[N, M, P]``, kept by
            the store for later runs). DM ignores them and uses ``arch``/``net_kwargs`` for its random encoders.
        iterations: outer iterations, each one update per class.
        lr_per_sample: per-class learning rate = ``lr_per_sample * ipc`` (None: 1.0, chosen on validation).
        momentum: SGD momentum of the synthetic data.
        batch_real: real samples of the class per update (without replacement; all when fewer).
        alpha: TGDD's constraint weight (None: 2.5 for ``ipc <= 10``, else 0.5).
        alpha_reference_features: the constraint is weighted ``alpha * F / alpha_reference_features``
            (F: the encoder's embedding width); None uses ``alpha`` unscaled.
        region: the expert region is ``j .. j + region`` (clipped to the trajectory).
        seed: seeds the initial subset and every random draw of the loop.
    Returns a :class:`ClassifierDistillResult` (``x [K * ipc, ...]`` class-major).
    """
    check_choice("method", method, ("dm", "tgdd"))
    check_int("ipc", ipc)
    check_int("iterations", iterations, minimum=0)
    check_int("region", region, minimum=0)
    check_int("batch_real", batch_real)
    if method == "tgdd":
        if experts is None:
            raise ValueError("experts: method 'tgdd' needs an ExpertStore of classifier trajectories "
                             "(train_trajectories)")
        if experts.task != "classification":
            raise ValueError(f"experts: {experts.out_dir} holds {experts.task} experts, method 'tgdd' here needs "
                             "classifier trajectories (train_trajectories)")
        shape, classes = tuple(experts.settings["sample_shape"]), experts.settings["num_classes"]
        if shape != data.sample_shape or classes != data.num_classes:
            raise ValueError(f"experts: trained on samples {shape} with {classes} classes, data has "
                             f"{data.sample_shape} and {data.num_classes}")
        template = classifier_network(experts.settings)
        snapshots = experts.trajectories()  # [N, M, P]
        num_experts, m = snapshots.shape[:2]
        alpha = default_alpha(ipc) if alpha is None else float(alpha)
        scale = 1.0 if alpha_reference_features is None else template.embed_dim / alpha_reference_features
        weight = alpha * scale
    else:
        template = build_network(arch, data.sample_shape, data.num_classes, seed=0, **(net_kwargs or {}))
        alpha = weight = 0.0
    if lr_per_sample is None:
        lr_per_sample = DEFAULT_LR_PER_SAMPLE
    check_number("lr_per_sample", lr_per_sample, positive=True)
    for p in template.parameters():
        p.requires_grad_(False)

    start = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    class_idx = data.class_indices()
    init_x, _ = data.random_subset(ipc, seed=seed)
    syn = [init_x[c * ipc:(c + 1) * ipc].clone().requires_grad_(True) for c in range(data.num_classes)]
    opts = [torch.optim.SGD([s], lr=lr_per_sample * s.shape[0], momentum=momentum) for s in syn]
    result = ClassifierDistillResult(init_x, torch.arange(data.num_classes).repeat_interleave(ipc))
    for _ in tqdm(range(iterations), desc=f"distill {method}", disable=quiet):
        if method == "tgdd":
            i = int(torch.randint(num_experts, (1,), generator=g))
            j = int(torch.randint(m, (1,), generator=g))
            j2 = int(torch.randint(j, min(j + region, m - 1) + 1, (1,), generator=g))
            encoder, expert = snapshots[i, j], snapshots[i, j2]
        else:
            net_seed = int(torch.randint(2 ** 62, (1,), generator=g))
            encoder = flat_params(build_network(arch, data.sample_shape, data.num_classes, seed=net_seed,
                                                **(net_kwargs or {})))
        match_sum, constraint_sum = 0.0, 0.0
        for c, (s, opt) in enumerate(zip(syn, opts)):
            with torch.no_grad():
                real_feat = _embed(template, encoder, _real_batch(data.train_x, class_idx[c], batch_real, g))
            match = mean_embedding_distance(real_feat, _embed(template, encoder, s))
            loss = match
            if method == "tgdd":
                constraint = constraint_cross_entropy(functional_forward(template, expert, s), c)
                loss = loss + weight * constraint
                constraint_sum += float(constraint.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            match_sum += float(match.detach())
        result.matching.append(match_sum)
        if method == "tgdd":
            result.constraint.append(constraint_sum / data.num_classes)
    result.x = torch.cat([s.detach() for s in syn])
    result.seconds = time.perf_counter() - start
    result.settings = {"method": method, "ipc": ipc, "iterations": iterations, "lr_per_sample": lr_per_sample,
                       "lr_per_class": lr_per_sample * ipc, "momentum": momentum, "batch_real": batch_real,
                       "alpha": alpha, "constraint_weight": weight, "region": region if method == "tgdd" else None,
                       "seed": seed, "arch": experts.settings["arch"] if method == "tgdd" else arch}
    return result
