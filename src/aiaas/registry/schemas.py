from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)

from aiaas.ml.task import Task
from aiaas.pagination import Page

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
ALIAS_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
LATEST = "latest"
DEFAULT_ALIAS = "production"

Visibility = Literal["private", "public"]
ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN)]


def _distinct_labels(labels: list[str] | None) -> list[str] | None:
    if labels is not None and len(set(labels)) != len(labels):
        raise ValueError("labels must be distinct")
    return labels


Labels = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None,
    Field(max_length=100_000),
    AfterValidator(_distinct_labels),
]


def alias_problem(alias: str) -> str | None:
    """Why ``alias`` cannot name a version, or None when it can."""
    # fullmatch: with match() the pattern's "$" would also accept a trailing newline.
    if not ALIAS_PATTERN.fullmatch(alias):
        return "an alias is a lowercase slug: letters, digits and '-', at most 63 characters"
    if alias.isdigit():
        return "an alias cannot be a number: numbers name versions"
    if alias == LATEST:
        return "'latest' always means the highest version and cannot be set"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelCreate(_Strict):
    name: ModelName = Field(description="Lowercase slug, unique on the platform.")
    task: Task
    description: Annotated[str, Field(max_length=10_000)] = ""
    labels: Labels = Field(default=None, description="Class names, in output order.")
    visibility: Visibility = "private"


class ModelUpdate(_Strict):
    description: Annotated[str, Field(max_length=10_000)] | None = None
    labels: Labels = None
    visibility: Visibility | None = None
    capture_inputs: bool | None = Field(
        default=None, description="Store sync predictions' inputs so feedback can refer to them."
    )


class ModelRead(BaseModel):
    id: uuid.UUID
    name: str
    task: Task
    description: str
    labels: list[str] | None
    visibility: Visibility
    capture_inputs: bool
    owned: bool = Field(description="Whether the caller owns this model.")
    latest_version: int | None
    aliases: dict[str, int]
    created_at: datetime
    updated_at: datetime


ModelPage = Page[ModelRead]


class VersionSpec(_Strict):
    architecture: str = Field(description="A family from GET /v1/architectures.")
    config: dict[str, Any]
    labels: Labels = None


class InputRead(BaseModel):
    shape: list[int | None]
    dtype: Literal["float32"] = "float32"


class VersionRead(BaseModel):
    version: int
    architecture: str
    config: dict[str, Any]
    input: InputRead
    labels: list[str] | None
    parameters: int
    sha256: str
    size_bytes: int
    created_at: datetime
    metrics: dict[str, Any] | None
    aliases: list[str]
    max_batch_size: int | None = Field(description="Rows per forward pass; null: the default.")
    max_delay_ms: float | None = Field(
        description="How long a non-full batch may wait; null: the default."
    )


class VersionUpdate(_Strict):
    """Batching knobs of one version; null puts a knob back to the platform default."""

    max_batch_size: Annotated[int, Field(ge=1, le=4096)] | None = None
    max_delay_ms: Annotated[float, Field(ge=0, le=1000)] | None = None


VersionPage = Page[VersionRead]


VersionRef = StrictInt | str
Weight = Annotated[int, Field(ge=1, le=100)]


class AliasSet(_Strict):
    """Either ``version`` (all the traffic) or ``versions`` (a weighted split); either may
    have a ``shadow``."""

    version: VersionRef | None = Field(
        default=None, description="A version number, another alias, or 'latest'."
    )
    versions: dict[str, Weight] | None = Field(
        default=None,
        min_length=2,
        max_length=10,
        description="Versions and their integer weights (summing to 100): requests through "
        "the alias are split by weight, sticky per `Aiaas-Routing-Key` header.",
    )
    shadow: VersionRef | None = Field(
        default=None,
        description="A version that gets a copy of each request after the caller has its "
        "answer; its agreement and latency are compared at `.../compare`.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.version is None) == (self.versions is None):
            raise ValueError("give either version or versions")
        if self.versions is not None and sum(self.versions.values()) != 100:
            raise ValueError("the weights of versions must sum to 100")
        return self


class AliasRead(BaseModel):
    alias: str
    version: int = Field(description="The primary version: the only one, or the heaviest.")
    versions: dict[str, int] | None = Field(
        default=None, description="The weighted split, when there is one."
    )
    shadow: int | None = None
    updated_at: datetime


class ArchitectureRead(BaseModel):
    name: str
    description: str
    config_schema: dict[str, Any]
    example_config: dict[str, Any]
    input: InputRead


class ArchitectureList(BaseModel):
    data: list[ArchitectureRead]


CARD_TEXT_MAX = 10_000
# C0 controls but tab and line breaks, and DEL: no prose needs them, and PostgreSQL refuses
# to store a NUL at all.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_controls(text: str) -> str:
    if _CONTROL.search(text):
        raise ValueError("control characters other than tabs and line breaks are not allowed")
    return text


CardText = Annotated[str, StringConstraints(max_length=CARD_TEXT_MAX), AfterValidator(_no_controls)]


class CardUpdate(_Strict):
    """The owner's text on a version's card; a field left out stays, null clears it."""

    intended_use: CardText | None = Field(
        default=None, description="What the version is for, and for whom."
    )
    limitations: CardText | None = Field(
        default=None, description="Where it falls short: data it has not seen, known errors."
    )


class ValueRange(BaseModel):
    min: float
    max: float


class CardInput(BaseModel):
    shape: list[int | None] = Field(description="One example's shape; null: any length.")
    dtype: str
    value_range: ValueRange | None = Field(
        description="The smallest and largest input value in the training data; null where "
        "not recorded (uploads)."
    )


class CardDataset(BaseModel):
    id: str
    name: str | None
    rows: int | None = Field(description="Rows the training read from it; null: not recorded.")


class CardTraining(BaseModel):
    datasets: list[CardDataset]
    splits: dict[str, int] | None = Field(description="Rows in the train/validation/test splits.")
    hyperparameters: dict[str, Any] | None
    epochs_run: int | None
    stopped_early: bool | None
    base_version: int | None = Field(description="The version this one was fine-tuned from.")
    base_metrics: dict[str, Any] | None = Field(
        description="The base version's figures on this training's held-out rows."
    )


class CardAuthor(BaseModel):
    owned: bool = Field(description="Whether the caller owns the model.")
    email: str | None = Field(description="The owner's address, shown to the owner only.")


class CardRead(BaseModel):
    model: str
    version: int
    aliases: list[str]
    task: Task
    source: Literal["training", "upload"]
    architecture: str
    config: dict[str, Any]
    parameters: int
    labels: list[str] | None
    input: CardInput
    training: CardTraining | None = Field(description="Null for an uploaded version.")
    metrics: dict[str, Any] | None = Field(
        description="Held-out figures: accuracy, precision, recall, F1, per class and the "
        "confusion matrix (classification), or MAE, RMSE and R² (regression), and the split "
        "they were measured on (`evaluated_on`)."
    )
    created_at: datetime
    created_by: CardAuthor
    intended_use: str | None
    limitations: str | None
    not_recorded: list[str] = Field(
        description="What the platform has no record of for this version (dotted paths)."
    )
