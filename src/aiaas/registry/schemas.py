from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

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


class AliasSet(_Strict):
    version: StrictInt | str = Field(description="A version number, another alias, or 'latest'.")


class AliasRead(BaseModel):
    alias: str
    version: int
    updated_at: datetime


class ArchitectureRead(BaseModel):
    name: str
    description: str
    config_schema: dict[str, Any]
    example_config: dict[str, Any]
    input: InputRead


class ArchitectureList(BaseModel):
    data: list[ArchitectureRead]
