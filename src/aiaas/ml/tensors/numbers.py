"""Which numbers aiaas takes in: the accepted dtypes, the names of refused ones, and where an
array first stops being finite.

Prediction inputs and uploaded datasets refuse the same dtypes with the same words, and both
point at the first NaN or infinity in reading order, so a client learns one rule for both.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

NUMBER_KINDS: Final = "iuf"
"""The ``dtype.kind`` letters of arrays accepted as numbers: integers and floats."""

REFUSED_KINDS: Final = {
    "b": "booleans",
    "?": "booleans",
    "c": "complex numbers",
    "O": "Python objects",
    "U": "strings",
    "S": "byte strings",
    "a": "byte strings",
    "V": "raw or structured records",
    "M": "datetimes",
    "m": "timedeltas",
}
"""What a refused array holds, in words, by ``dtype.kind`` or ``.npy`` type code.

``?`` and ``a`` only occur as type codes in a ``.npy`` header's ``descr``; ``dtype.kind``
reads ``b`` and ``S`` for them.
"""

F32_MAX: Final = float(np.finfo(np.float32).max)


def first_non_finite(array: npt.NDArray[np.floating[Any]]) -> tuple[int, ...] | None:
    """The index of the first NaN or ±inf in reading (C) order; None when there is none."""
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape))
