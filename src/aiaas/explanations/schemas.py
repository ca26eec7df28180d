"""What ``POST /v1/models/{name}/explain`` takes besides its inputs, and what it answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from aiaas.ml.explain import DEFAULT_STEPS, MAX_STEPS, Method

Baseline = Literal["zeros", "mean"]


class ExplainParams(BaseModel):
    """The options, from a JSON body's fields or (with a ``.npy`` body) query parameters."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(
        default="integrated_gradients",
        description="`integrated_gradients`, `saliency`, or `occlusion` (CNNs only).",
    )
    # Strict: a JSON true is no class index.
    target: StrictInt | StrictStr | None = Field(
        default=None,
        description="The class to explain, by index or label name; default the predicted "
        "class (for regression: the output index, default 0).",
    )
    baseline: Baseline = Field(
        default="zeros",
        description="Integrated gradients' starting point: all zeros, or the training mean "
        "where the version records one.",
    )
    steps: int = Field(
        default=DEFAULT_STEPS,
        ge=1,
        le=MAX_STEPS,
        description="Integrated gradients' integration points: more shrink the completeness gap.",
    )


class ExplainRead(BaseModel):
    """The JSON answer (documentation: the route writes it with orjson)."""

    model: str
    version: int
    method: Method
    attributions: list[Any] = Field(description="Shaped like the inputs, batch first.")
    target: list[int | str] = Field(description="Per row: the class (or output) explained.")
    predictions: list[Any] = Field(description="Per row, as predict answers them.")
    outputs: list[Any] = Field(description="Per row: probabilities, or regression outputs.")
    completeness_gap: list[float] | None = Field(
        description="Integrated gradients only, per row: the attributions' sum minus the "
        "target's change from the baseline to the input."
    )
