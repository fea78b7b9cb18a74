"""Dataset distillation for classification: DM and TGDD on images ``[N, C, H, W]`` or vectors ``[N, D]``.

Modules: :mod:`.data` (digits loader, any labelled tensor), :mod:`.networks` (ConvNet, MLP; their
flat-parameter calls are :mod:`ddtime.driver.models.params`'s: ``flat_params``,
``functional_forward(net, flat, x)`` for logits, ``method="embed"`` for features),
:mod:`.trajectories` (expert trajectories trained into the expert store of
:mod:`ddtime.driver.experts.store`, read back with its ``ExpertStore``), :mod:`.classwise` (TGDD's
constraint term), :mod:`.distill` (the class-conditional loop), :mod:`.evaluate` (training fresh classifiers).
scikit-learn is needed only by :func:`load_digits` and is imported there.
"""
from ddtime.driver.classification.data import ClassificationData, load_digits
from ddtime.driver.classification.distill import ClassifierDistillResult, distill_classifier
from ddtime.driver.classification.evaluate import accuracy, evaluate_synthetic, train_classifier
from ddtime.driver.classification.networks import MLP, ConvNet, build_network
from ddtime.driver.classification.trajectories import classifier_network, train_trajectories, trajectory_settings

__all__ = ["ClassificationData", "load_digits", "ClassifierDistillResult", "distill_classifier", "accuracy",
           "evaluate_synthetic", "train_classifier", "MLP", "ConvNet", "build_network", "train_trajectories",
           "trajectory_settings", "classifier_network"]
