"""What a model version takes and gives, in the Open Inference Protocol's terms.

Every version takes one input, ``input``: FP32 (other numeric datatypes are cast), batch first.
What it gives depends on its task:

- classification: ``probabilities`` (FP32, ``[batch, classes]``: the same numbers as ``/v1``'s
  ``outputs``) and ``predictions`` (the most probable class of each row: INT64 indices, or
  BYTES label names when the version has labels, as ``/v1``'s ``predictions``);
- regression: ``predictions`` (FP32, ``[batch, targets]``), the model's outputs, which are
  ``/v1``'s ``outputs`` and ``predictions`` alike.

In shapes, ``-1`` stands for the batch axis and for a variable-length axis (an RNN's steps).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np

from aiaas.errors import InvalidInput
from aiaas.serving.postprocess import postprocess, predicted_classes
from aiaas.serving.spec import ServingSpec
from aiaas.v2.tensors import BYTES, InferRequest, InputTensor, Tensor

INPUT: Final = "input"
PROBABILITIES: Final = "probabilities"
PREDICTIONS: Final = "predictions"


def input_metadata(spec: ServingSpec) -> dict[str, Any]:
    shape = [-1, *(-1 if dim is None else dim for dim in spec.input_shape)]
    return {"name": INPUT, "datatype": "FP32", "shape": shape}


def model_input(request: InferRequest) -> InputTensor:
    """The request's one input, which must be named ``input``."""
    inputs = request.inputs
    if len(inputs) == 1 and inputs[0].name == INPUT:
        return inputs[0]
    names = [tensor.name for tensor in inputs]
    raise InvalidInput(
        f"this model takes one input named '{INPUT}', got {len(names)}: "
        + ", ".join(f"'{name}'" for name in names)
    )


def output_metadata(spec: ServingSpec) -> list[dict[str, Any]]:
    width = _width(spec)
    if spec.task == "regression":
        return [{"name": PREDICTIONS, "datatype": "FP32", "shape": [-1, width]}]
    labels = "INT64" if spec.labels is None else BYTES
    return [
        {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, width]},
        {"name": PREDICTIONS, "datatype": labels, "shape": [-1]},
    ]


def output_names(spec: ServingSpec) -> tuple[str, ...]:
    return (PREDICTIONS,) if spec.task == "regression" else (PROBABILITIES, PREDICTIONS)


def check_outputs(spec: ServingSpec, names: Iterable[str]) -> None:
    """Refuse a request for an output this version does not give."""
    known = output_names(spec)
    for name in names:
        if name not in known:
            raise InvalidInput(f"this model has no output '{name}'; it gives {', '.join(known)}")


def output_tensor(spec: ServingSpec, name: str, outputs: np.ndarray) -> Tensor:
    """The output ``name`` (one of ``output_names``) from what the model computed."""
    if name == PROBABILITIES or spec.task == "regression":
        return Tensor(name, "FP32", outputs.shape, outputs)
    if spec.labels is None:
        indices = predicted_classes(outputs).astype(np.int64, copy=False)
        return Tensor(name, "INT64", indices.shape, indices)
    labels = postprocess(spec, outputs)
    return Tensor(name, BYTES, (len(labels),), labels)


def _width(spec: ServingSpec) -> int:
    # Every architecture names its output size output_dim.
    return int(spec.config.get("output_dim", 1))
