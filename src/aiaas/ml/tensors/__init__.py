"""Prediction inputs to float32 batches: JSON and ``.npy`` decoding with client-facing errors.

This runs on every prediction request, so the happy path stays in C (orjson, numpy, a few
substring searches) and never loops over elements in Python. When a fast check fails, a
slow walk over the structure finds the first problem in document order and reports it with
its exact location, so refusals are precise without making good requests pay for that.

Every refusal is an :class:`~aiaas.ml.errors.InputInvalid`. Its ``type`` is one of
``json_invalid``, ``object_type``, ``missing``, ``shape_mismatch``, ``ragged``,
``number_type``, ``finite_number``, ``too_short``, ``too_long``, ``npy_invalid`` and
``dtype_not_accepted``.

Shapes in messages use ``n`` for the batch axis and ``*`` for a variable-length axis, so a
model taking sequences of 1-feature steps reads as ``[n, *, 1]``.

- ``json_inputs``: JSON bodies and already-parsed lists;
- ``npy``: ``.npy`` bodies, and the encoding of outputs;
- ``batches``: the float32 batch and the shape, size and finiteness checks every decoder shares;
- ``numbers``: the accepted dtypes and the first non-finite value, shared with dataset uploads.
"""

from __future__ import annotations

from aiaas.ml.tensors.batches import FloatBatch, InputShape, check_dtype, validate_batch
from aiaas.ml.tensors.json_inputs import (
    decode_json_body,
    decode_json_inputs,
    describe_json,
    holds_bool,
)
from aiaas.ml.tensors.npy import decode_npy, encode_npy

__all__ = [
    "FloatBatch",
    "InputShape",
    "check_dtype",
    "decode_json_body",
    "decode_json_inputs",
    "decode_npy",
    "describe_json",
    "encode_npy",
    "holds_bool",
    "validate_batch",
]
