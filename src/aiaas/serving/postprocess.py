"""Outputs to answers, with numpy alone: the gateway calls it on what a worker sent back, so
the gateway's answer path needs no torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from aiaas.serving.spec import ServingSpec


def predicted_classes(outputs: np.ndarray) -> npt.NDArray[np.intp]:
    """The index of the most probable class in each row of a classifier's outputs."""
    indices: npt.NDArray[np.intp] = outputs.argmax(axis=-1)
    return indices


def postprocess(spec: ServingSpec, outputs: np.ndarray) -> list[Any]:
    """Per row of ``predict``'s outputs: for classification the most probable class, by
    label name when the spec has labels and by index otherwise; for regression the
    output values."""
    if spec.task == "regression":
        values: list[Any] = outputs.tolist()
        return values
    classes: list[int] = predicted_classes(outputs).tolist()
    if spec.labels is None:
        return list(classes)
    labels = spec.labels
    return [labels[i] for i in classes]
