"""Expert trajectories: the directory layout and its checks (:mod:`.layout`), reading it (:mod:`.store`),
writing it under a lock (:mod:`.writer`), training forecasting experts into it, their settings and network
(:mod:`.train`), and the policy that finds or trains the experts a run needs (:mod:`.cache`)."""
from ddtime.driver.experts.cache import ensure_experts
from ddtime.driver.experts.layout import FORMAT_VERSION, MANIFEST, expert_file, settings_hash
from ddtime.driver.experts.store import ExpertStore
from ddtime.driver.experts.train import (EXPERT_OPTIMIZERS, ExpertDirectoryBusy, data_fingerprint, dist_rank_world,
                                         forecasting_network, forecasting_settings, train_experts)

__all__ = ["ExpertStore", "train_experts", "ensure_experts", "ExpertDirectoryBusy", "dist_rank_world",
           "EXPERT_OPTIMIZERS", "FORMAT_VERSION", "MANIFEST", "data_fingerprint", "expert_file", "forecasting_settings",
           "forecasting_network", "settings_hash"]
