"""Evaluation of a synthetic set: fresh students trained on it alone (:mod:`.students`) and the
full-data and random-subset references beside them (:mod:`.references`)."""
from ddtime.driver.evaluation.references import (FULL_DATA_RECIPE, baseline_cache_dir, evaluate_synthetic,
                                                 experts_reference, full_data_baseline)
from ddtime.driver.evaluation.students import (build_student, make_validator, random_subset, run_stats, student_recipe,
                                               train_students, validation_windows)

__all__ = ["student_recipe", "validation_windows", "train_students", "make_validator", "random_subset",
           "build_student", "run_stats", "full_data_baseline", "experts_reference", "baseline_cache_dir",
           "evaluate_synthetic", "FULL_DATA_RECIPE"]
