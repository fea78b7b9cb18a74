"""Expert trajectories: the on-disk store (:mod:`.store`), training into it (:mod:`.train`), and the
policy that finds or trains the experts a run needs (:mod:`.cache`)."""
from ddtime.driver.experts.cache import ensure_experts
from ddtime.driver.experts.store import (EXPERT_OPTIMIZERS, FORMAT_VERSION, MANIFEST, ExpertStore, data_fingerprint,
                                         expert_file, expert_settings, settings_hash)
from ddtime.driver.experts.train import ExpertDirectoryBusy, dist_rank_world, train_experts

__all__ = ["ExpertStore", "train_experts", "ensure_experts", "ExpertDirectoryBusy", "dist_rank_world",
           "EXPERT_OPTIMIZERS", "FORMAT_VERSION", "MANIFEST", "data_fingerprint", "expert_file", "expert_settings",
           "settings_hash"]
