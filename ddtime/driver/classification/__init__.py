"""Dataset distillation for classification: DM and TGDD on images ``[N, C, H, W]`` or vectors ``[N, D]``.

Modules: :mod:`.data` (digits loader, any labelled tensor), :mod:`.networks` (ConvNet, MLP,
functional calls), :mod:`.trajectories` (expert trajectories), :mod:`.matching` (loss terms),
:mod:`.distill` (the class-conditional loop), :mod:`.evaluate` (training fresh classifiers).
scikit-learn is needed only by :func:`load_digits` and is imported there.
"""
from ddtime.driver.classification.data import ClassificationData, load_digits
from ddtime.driver.classification.distill import DistillResult, distill, matching_loss
from ddtime.driver.classification.evaluate import accuracy, evaluate_synthetic, train_classifier
from ddtime.driver.classification.networks import MLP, ConvNet, build_network
from ddtime.driver.classification.trajectories import ExpertTrajectories, train_trajectories

__all__ = ["ClassificationData", "load_digits", "DistillResult", "distill", "matching_loss", "accuracy",
           "evaluate_synthetic", "train_classifier", "MLP", "ConvNet", "build_network", "ExpertTrajectories",
           "train_trajectories"]
