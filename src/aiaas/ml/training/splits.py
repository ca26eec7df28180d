"""Train, validation and test rows: reproducible from the seed, stratified by class."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from aiaas.ml.training.data import TrainingData


def _split_sizes(rows: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    n_test = max(1, round(rows * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(rows * val_fraction)) if val_fraction > 0 else 0
    # Training needs a row more than evaluation does: give up validation rows first.
    excess = n_test + n_val - (rows - 1)
    if excess > 0:
        cut = min(excess, n_val)
        n_val, n_test = n_val - cut, n_test - (excess - cut)
    return n_val, n_test


def split_indices(
    data: TrainingData, *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted ``(train, val, test)`` row indices, the same for the same data and seed.

    Classification splits are stratified: each class's rows are spread evenly over [0, 1)
    in random order, and test, validation and train take consecutive stretches of that line
    in this order. Every class contributes its share to each split (within a row), and as
    the last row of a class sits at or past the middle, rare classes keep a training row
    while validation and test take less than half of the rows.
    """
    data.check()
    rows = len(data.x)
    n_val, n_test = _split_sizes(rows, val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    if data.task == "classification":
        labels = np.asarray(data.y, dtype=np.int64)
        position = np.empty(rows)
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            position[members] = (rng.permutation(len(members)) + 0.5) / len(members)
        # Classes of equal size land on equal positions; a random tie-break mixes them.
        order = np.lexsort((rng.permutation(rows), position))
    else:
        order = rng.permutation(rows)
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return np.sort(train), np.sort(val), np.sort(test)
