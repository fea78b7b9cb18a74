"""Training forecasting models on window tensors: one model (:mod:`.trainer`), several in lockstep
(:mod:`.lockstep`, the expert recipe), and the SAM optimiser (:mod:`.sam`)."""
from ddtime.driver.training.lockstep import train_stacked
from ddtime.driver.training.sam import SAM
from ddtime.driver.training.trainer import (DEFAULT_LR, LR_SCHEDULES, OPTIMIZERS, evaluate, make_optimizer, train_model,
                                           window_row_groups)

__all__ = ["train_model", "evaluate", "make_optimizer", "window_row_groups", "train_stacked", "SAM", "DEFAULT_LR",
           "OPTIMIZERS", "LR_SCHEDULES"]
