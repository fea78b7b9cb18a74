"""Expert trajectories of classifiers, trained into the expert store of :mod:`ddtime.driver.experts.store`.

An expert directory holds ``manifest.json`` and ``expert_NNN.safetensors``, each expert's
trajectory float32 ``[epochs + 1, P]`` (row 0 = the initial weights, row e = after epoch e; P
in ``named_parameters()`` order), read back with :class:`~ddtime.driver.experts.store.ExpertStore`
(``trajectory(i)``, ``trajectories()`` ``[N, M, P]``); :func:`classifier_network` builds the network its
settings (:func:`trajectory_settings`) describe. The settings carry ``"task": "classification"``;
manifest entries hold each expert's final test accuracy (``test_acc``).

TGDD's default is N = 5 trajectories. Expert ``i`` starts from weights seeded with ``seed + i``
and sees its own data order; training follows
:func:`ddtime.driver.classification.evaluate.train_classifier` without the learning-rate decay
(constant-lr trajectories, as MTT's buffers).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ddtime.driver.classification.data import ClassificationData
from ddtime.driver.classification.evaluate import accuracy, train_classifier
from ddtime.driver.classification.networks import build_network, resolve_arch
from ddtime.driver.experts.store import ExpertStore
from ddtime.driver.experts.writer import ExpertWriter, exclusive
from ddtime.driver.models.params import flat_params, param_spec

__all__ = ["train_trajectories", "trajectory_settings", "classifier_network", "classification_fingerprint"]


def classification_fingerprint(data: ClassificationData) -> str:
    """sha256 (16 hex digits) of both splits (samples and labels) and the number of classes."""
    h = hashlib.sha256()
    h.update(repr((tuple(data.train_x.shape), tuple(data.test_x.shape), data.num_classes)).encode())
    for t in (data.train_x, data.train_y, data.test_x, data.test_y):
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def trajectory_settings(data: ClassificationData, *, arch: str, net_kwargs: dict | None, epochs: int, lr: float,
                        momentum: float, weight_decay: float, batch_size: int, seed: int) -> dict:
    """Everything that determines a classifier's trajectory, as stored in the manifest."""
    arch = resolve_arch(arch, data.sample_shape)
    net_kwargs = dict(sorted((net_kwargs or {}).items()))
    spec = param_spec(build_network(arch, data.sample_shape, data.num_classes, seed=0, **net_kwargs))
    return {
        "task": "classification",
        "dataset": data.name,
        "sample_shape": list(data.sample_shape),
        "num_classes": data.num_classes,
        "data_fingerprint": classification_fingerprint(data),
        "arch": arch,
        "net_kwargs": net_kwargs,
        "expert_epochs": epochs,
        "optimizer": "sgd",
        "lr": float(lr),
        "momentum": float(momentum),
        "weight_decay": float(weight_decay),
        "batch_size": batch_size,
        "seed": seed,
        "param_spec": [[name, list(shape)] for name, shape in spec],
        "num_params": sum(math.prod(shape) for _, shape in spec),
    }


def classifier_network(settings: dict) -> torch.nn.Module:
    """A fresh network of the architecture that classifier trajectory settings (:func:`trajectory_settings`,
    an ``ExpertStore``'s ``settings``) describe, weights seeded with 0 (no expert's: use it with flat
    parameters, ``assign_flat_params`` or ``functional_forward``)."""
    return build_network(settings["arch"], tuple(settings["sample_shape"]), settings["num_classes"], seed=0,
                         **settings["net_kwargs"])


def train_trajectories(data: ClassificationData, *, out_dir, arch: str = "auto", num_trajectories: int = 5,
                       epochs: int = 20, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4,
                       batch_size: int = 64, seed: int = 0, net_kwargs: dict | None = None,
                       quiet: bool = False) -> ExpertStore:
    """Train (or resume) ``num_trajectories`` experts on ``data``'s training split into ``out_dir``.

    Each expert trains ``epochs`` epochs; its trajectory ``[epochs + 1, P]`` and final test
    accuracy are written atomically as soon as it is done. Experts already stored in
    ``out_dir`` with the same settings are kept (a killed run resumes); a manifest with other
    settings raises ``ValueError``; a second process training into ``out_dir`` at the same time
    raises :class:`~ddtime.driver.experts.writer.ExpertDirectoryBusy`.
    Returns the :class:`ExpertStore` of ``out_dir``.
    """
    if num_trajectories < 1 or epochs < 1:
        raise ValueError(f"num_trajectories, epochs: expected >= 1, got {num_trajectories}, {epochs}")
    settings = trajectory_settings(data, arch=arch, net_kwargs=net_kwargs, epochs=epochs, lr=lr, momentum=momentum,
                                   weight_decay=weight_decay, batch_size=batch_size, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir):
        writer = ExpertWriter(out_dir, settings, num_trajectories)
        writer.write_manifest()
        todo = [i for i in range(num_trajectories) if i not in writer.done]
        for i in tqdm(todo, desc="experts", disable=quiet):
            net = build_network(settings["arch"], data.sample_shape, data.num_classes, seed=seed + i,
                                **settings["net_kwargs"])
            snaps = [flat_params(net)]
            train_classifier(net, data.train_x, data.train_y, epochs=epochs, lr=lr, momentum=momentum,
                             weight_decay=weight_decay, batch_size=batch_size, seed=seed + i, decay_at_half=False,
                             on_epoch_end=lambda _epoch, n: snaps.append(flat_params(n)))
            trajectory = torch.stack(snaps)
            if not torch.isfinite(trajectory).all():
                raise RuntimeError(f"expert {i} diverged (non-finite parameters); lower lr (got {lr})")
            writer.add(i, trajectory, seed=seed + i, metrics={"test_acc": accuracy(net, data.test_x, data.test_y)})
    return ExpertStore(out_dir)
