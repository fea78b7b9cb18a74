"""Which expert directory a run uses, training what is missing (the expert cache policy of the driver)."""
from __future__ import annotations

import pathlib

from ddtime.driver.experts.layout import MANIFEST
from ddtime.driver.experts.store import ExpertStore
from ddtime.driver.experts.train import data_fingerprint, train_experts
from ddtime.driver.training import DEFAULT_LR

__all__ = ["ensure_experts"]


def ensure_experts(data, *, directory, model: str = "dlinear", num_experts: int, expert_epochs: int,
                   optimizer: str = "sgd", lr: float | None = None, seed: int = 0, device: str = "cpu",
                   quiet: bool = False, model_kwargs: dict | None = None):
    """An ExpertStore with at least ``num_experts`` experts for these settings, training what is missing.

    ``directory`` itself is used when its manifest has these settings; otherwise a subdirectory
    named after the settings (so one ``--experts`` folder can hold several datasets/settings).
    ``lr``: the experts' learning rate (None: the optimiser's default); part of the settings.
    """
    directory = pathlib.Path(directory)
    lr = DEFAULT_LR.get(optimizer) if lr is None else float(lr)
    wanted = {"protocol": data.protocol, "seq_len": data.seq_len, "pred_len": data.pred_len, "stride": data.stride,
              "model": model,
              "expert_epochs": expert_epochs, "optimizer": optimizer, "lr": lr, "seed": seed,
              "data_fingerprint": data_fingerprint(data), "model_kwargs": dict(sorted((model_kwargs or {}).items()))}
    target = directory
    if (directory / MANIFEST).exists():
        if not ExpertStore(directory).matches(**wanted):
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
        if store.matches(num_experts=num_experts, **wanted):
            return store
    return train_experts(data, model=model, num_experts=num_experts, expert_epochs=expert_epochs, optimizer=optimizer,
                         lr=lr, model_kwargs=model_kwargs, out_dir=target, device=device, seed=seed, quiet=quiet)
