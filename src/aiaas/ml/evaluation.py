"""A model's figures on held-out rows, with scikit-learn's definitions.

The metrics themselves are numpy alone, and their results plain Python numbers and lists so
they can be stored as JSON as they are. The conventions follow ``sklearn.metrics`` exactly,
so numbers shown to users match what they would compute themselves: macro averages over
every label (absent ones included), a ratio with a zero denominator counts as 0.0
(``zero_division=0``), multi-output regression scores are averaged uniformly over the
outputs. ``model_metrics`` measures a model by a plain forward pass on raw inputs, the way
serving will run it, so a training's test figures and its base version's are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

# Rows per forward pass when evaluating; a memory bound only, it does not change results.
_CHUNK_ROWS: Final = 1024


def _ratio(num: npt.NDArray[np.float64], den: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_matrix(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int
) -> npt.NDArray[np.int64]:
    """``[i, j]`` counts rows of true class ``i`` predicted as ``j``."""
    true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"{true.size} true labels but {pred.size} predictions")
    for name, values in (("y_true", true), ("y_pred", pred)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} holds class indices outside 0..{n_classes - 1}")
    counts = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def classification_metrics(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, per-class scores and the confusion matrix.

    ``y_true`` and ``y_pred`` hold class indices into ``labels``.
    """
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support.astype(np.float64))
    # sklearn's F-score formula: 2tp / (2tp + fp + fn), not the mean of the two ratios.
    f1 = _ratio(2 * tp, predicted + support)
    total = int(support.sum())
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "precision": float(precision.mean()) if len(labels) else 0.0,
        "recall": float(recall.mean()) if len(labels) else 0.0,
        "f1": float(f1.mean()) if len(labels) else 0.0,
        "per_class": {
            str(label): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
    }


def _as_columns(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        return array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be [n] or [n, outputs], got {list(array.shape)}")
    return array


def regression_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, Any]:
    """Mean absolute error, root mean squared error and R², each averaged over outputs.

    ``r2`` is ``None`` for fewer than two rows, where scikit-learn gives NaN (not JSON).
    """
    true, pred = _as_columns(y_true, "y_true"), _as_columns(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true is {list(true.shape)} but y_pred is {list(pred.shape)}")
    if true.shape[0] == 0:
        raise ValueError("regression metrics need at least one row")
    error = true - pred
    mae = np.abs(error).mean(axis=0)
    rmse = np.sqrt((error**2).mean(axis=0))
    r2: float | None = None
    if true.shape[0] >= 2:
        residual = (error**2).sum(axis=0)
        spread = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
        # A constant target: a perfect fit scores 1, anything else 0 (sklearn's force_finite).
        scores = np.where(residual == 0, 1.0, 0.0)
        np.subtract(
            1.0, residual / np.where(spread == 0, 1.0, spread), out=scores, where=spread != 0
        )
        r2 = float(scores.mean())
    return {"mae": float(mae.mean()), "rmse": float(rmse.mean()), "r2": r2}


@torch.inference_mode()
def infer(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The outputs of ``model`` in eval mode, a bounded number of rows per forward pass."""
    model.eval()
    return torch.cat([model(x[i : i + _CHUNK_ROWS]) for i in range(0, len(x), _CHUNK_ROWS)])


def model_metrics(
    model: nn.Module,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    classes: Sequence[str] | None,
    *,
    device: torch.device,
) -> dict[str, Any]:
    """The figures of ``model`` on the rows ``x``, whose true values are ``y``.

    With ``classes`` the outputs are logits and ``y`` holds class indices; without, the
    outputs are the predicted values, shaped like ``y``. ``x`` is taken as it is, with no
    dtype conversion or reshaping, since the caller knows what serving will be given; it is
    moved to ``device``, which must be where the model is.
    """
    inputs = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    predicted = infer(model, inputs).cpu().numpy()
    if classes is not None:
        return classification_metrics(y, predicted.argmax(1), classes)
    return regression_metrics(y, predicted.reshape(y.shape))
