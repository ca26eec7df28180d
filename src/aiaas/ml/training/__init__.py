"""Training a model on a dataset: split, standardize, fit, evaluate, checkpoint every epoch.

``train`` (``loop``) is the entry point. Around it, one concept a module: ``data`` (what a run
is given), ``splits`` (which rows train, validate and test), ``scaling`` (standardization
folded into the weights), ``prepare`` (the data as the loop uses it) and ``checkpoint`` (the
format a run resumes from). The returned state dict serves raw inputs to raw outputs.
"""

from __future__ import annotations

from aiaas.ml.training.checkpoint import Checkpoint, History
from aiaas.ml.training.data import Hyperparameters, TrainingData, seeded_model
from aiaas.ml.training.loop import EpochReport, TrainingResult, train
from aiaas.ml.training.splits import split_indices

__all__ = [
    "Checkpoint",
    "EpochReport",
    "History",
    "Hyperparameters",
    "TrainingData",
    "TrainingResult",
    "seeded_model",
    "split_indices",
    "train",
]
