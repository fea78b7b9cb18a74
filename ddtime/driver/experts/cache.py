"""Which expert directory a run uses, training what is missing (the expert cache policy of the driver)."""
from __future__ import annotations

import pathlib

from ddtime.driver.experts.layout import MANIFEST, settings_hash
from ddtime.driver.experts.store import ExpertStore
from ddtime.driver.experts.train import forecasting_settings, train_experts
from ddtime.driver.training import DEFAULT_LR

__all__ = ["ensure_experts"]


def ensure_experts(data, *, directory, model: str = "dlinear", num_experts: int, expert_epochs: int,
                   optimizer: str = "sgd", lr: float | None = None, seed: int = 0, device: str = "cpu",
                   quiet: bool = False, model_kwargs: dict | None = None):
    """An ExpertStore with at least ``num_experts`` experts for these settings, training what is missing.

    A stored run is reused only when its settings are exactly those :func:`train_experts` would
    write for these arguments (:func:`~ddtime.driver.experts.train.forecasting_settings`, compared by
    their hash as the writer does). ``directory`` itself is used when its manifest has these settings;
    otherwise a subdirectory named after the settings (so one ``--experts`` folder can hold several
    datasets/settings). ``lr``: the experts' learning rate (None: the optimiser's default).
    """
    directory = pathlib.Path(directory)
    lr = DEFAULT_LR.get(optimizer) if lr is None else float(lr)
    recipe = {"model": model, "model_kwargs": model_kwargs, "expert_epochs": expert_epochs, "optimizer": optimizer,
              "lr": lr, "seed": seed}
    wanted = forecasting_settings(data, **recipe)
    digest = settings_hash(wanted)
    target = directory
    if (directory / MANIFEST).exists():
        if ExpertStore(directory).manifest["settings_hash"] != digest:
            target = None
    elif directory.exists() and any(directory.iterdir()):
        target = None
    if target is None:
        name = (f"{data.name}-{data.protocol}-{data.seq_len}-{data.pred_len}-st{data.stride}-{model}-{optimizer}"
                f"-e{expert_epochs}" + (f"-lr{lr:g}" if lr != DEFAULT_LR.get(optimizer) else "") +
                f"-s{seed}-{wanted['data_fingerprint'][:8]}")
        target = directory / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if (target / MANIFEST).exists():
        store = ExpertStore(target)
        if store.manifest["settings_hash"] == digest and store.num_experts >= num_experts:
            return store
    return train_experts(data, num_experts=num_experts, out_dir=target, device=device, quiet=quiet, **recipe)
