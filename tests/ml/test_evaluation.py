from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as sk

from aiaas.ml.evaluation import classification_metrics, confusion_matrix, regression_metrics


@pytest.mark.parametrize("seed", range(6))
def test_classification_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 7))
    rows = int(rng.integers(1, 80))
    # Leaving a class out of the truth and another out of the predictions exercises the
    # zero-division paths of precision and recall.
    y_true = rng.integers(0, max(1, n_classes - 1), rows)
    y_pred = np.where(rng.random(rows) < 0.6, y_true, rng.integers(1, n_classes, rows))
    labels = [f"class {i}" for i in range(n_classes)]
    every = list(range(n_classes))

    got = classification_metrics(y_true, y_pred, labels)

    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    for name, score in (
        ("precision", sk.precision_score),
        ("recall", sk.recall_score),
        ("f1", sk.f1_score),
    ):
        expected = score(y_true, y_pred, labels=every, average="macro", zero_division=0)
        assert got[name] == pytest.approx(expected), name
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y_true, y_pred, labels=every, zero_division=0
    )
    for i, label in enumerate(labels):
        assert got["per_class"][label] == {
            "precision": pytest.approx(precision[i]),
            "recall": pytest.approx(recall[i]),
            "f1": pytest.approx(f1[i]),
            "support": int(support[i]),
        }
    assert got["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=every).tolist()


def test_classification_result_is_plain_json() -> None:
    got = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    assert json.loads(json.dumps(got)) == got
    assert type(got["accuracy"]) is float
    assert type(got["per_class"]["a"]["support"]) is int


def test_confusion_matrix_refuses_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


@pytest.mark.parametrize("outputs", [None, 1, 3])
@pytest.mark.parametrize("seed", range(4))
def test_regression_matches_sklearn(outputs: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(2, 60)),) if outputs is None else (int(rng.integers(2, 60)), outputs)
    y_true = rng.normal(3.0, 2.0, shape)
    y_pred = y_true + rng.normal(0.0, 1.0, shape)

    got = regression_metrics(y_true, y_pred)

    assert got["mae"] == pytest.approx(sk.mean_absolute_error(y_true, y_pred))
    assert got["rmse"] == pytest.approx(sk.root_mean_squared_error(y_true, y_pred))
    assert got["r2"] == pytest.approx(sk.r2_score(y_true, y_pred))
    assert json.loads(json.dumps(got)) == got


def test_r2_of_a_constant_target_follows_sklearn() -> None:
    y_true = np.array([[2.0, 1.0], [2.0, 2.0], [2.0, 3.0]])
    exact = y_true.copy()
    off = y_true + np.array([[0.5, 0.0]])
    for y_pred in (exact, off):
        assert regression_metrics(y_true, y_pred)["r2"] == pytest.approx(
            sk.r2_score(y_true, y_pred)
        )


def test_r2_needs_two_rows() -> None:
    assert regression_metrics(np.array([1.0]), np.array([2.0]))["r2"] is None
    with pytest.raises(ValueError, match="y_pred is"):
        regression_metrics(np.ones((3, 2)), np.ones((3, 1)))
