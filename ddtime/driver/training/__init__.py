"""Training forecasting models on window tensors: one model (:mod:`.trainer`), several in lockstep
(:mod:`.lockstep`, the expert recipe), and the SAM / GSAM optimisers (:mod:`.sam`)."""
from ddtime.driver.training.lockstep import train_stacked
from ddtime.driver.training.sam import GSAM, SAM
from ddtime.driver.training.trainer import (DEFAULT_GSAM_ALPHA, DEFAULT_LR, DEFAULT_RHO, LR_SCHEDULES, OPTIMIZERS,
                                           evaluate, make_optimizer, train_model, window_row_groups)

__all__ = ["train_model", "evaluate", "make_optimizer", "window_row_groups", "train_stacked", "SAM", "GSAM",
           "DEFAULT_LR", "DEFAULT_RHO", "DEFAULT_GSAM_ALPHA", "OPTIMIZERS", "LR_SCHEDULES"]
