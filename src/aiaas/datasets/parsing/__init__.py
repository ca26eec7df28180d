"""Uploaded datasets, CSV or NPZ, to :class:`DatasetArrays`, refusing anything malformed.

Every refusal is an :class:`~aiaas.errors.AppError` (:class:`InvalidInput` unless it says
otherwise) raised before anything is stored, with one ``errors`` item located at:

- ``["file"]``: the upload as a whole;
- ``["file", <line>]`` or ``["file", <line>, <column>]``: a CSV line, counted from 1 with the
  header included (what an editor shows), and a column by its header name;
- ``["file", "X" | "y"]`` or ``["file", "X" | "y", <row>]``: an NPZ array and a row, from 0;
- ``["label_column"]`` and ``["input_shape"]``: the upload's parameters.

- ``upload``: :func:`parse_upload`, which tells the formats apart;
- ``csv_files`` and ``npz``: one format each;
- ``limits``: what an upload may hold and the checks both formats share.
"""

from __future__ import annotations

from aiaas.datasets.parsing import limits
from aiaas.datasets.parsing.csv_files import parse_csv
from aiaas.datasets.parsing.limits import (
    MAX_CLASSES,
    MAX_DIM,
    MAX_DIMS,
    MAX_FEATURES,
    MAX_NPZ_BYTES,
    MAX_ROWS,
    NPZ_EXPANSION,
    NPZ_EXPANSION_FLOOR,
)
from aiaas.datasets.parsing.npz import parse_npz
from aiaas.datasets.parsing.upload import parse_upload

__all__ = [
    "MAX_CLASSES",
    "MAX_DIM",
    "MAX_DIMS",
    "MAX_FEATURES",
    "MAX_NPZ_BYTES",
    "MAX_ROWS",
    "NPZ_EXPANSION",
    "NPZ_EXPANSION_FLOOR",
    "limits",
    "parse_csv",
    "parse_npz",
    "parse_upload",
]
