from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from aiaas.pagination import Page

TrainingStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
DatasetId = Annotated[str, Field(min_length=1, max_length=128)]


class HyperparametersIn(BaseModel):
    """Left out, ``epochs``, ``batch_size`` and ``learning_rate`` are chosen for the
    architecture and the dataset's size."""

    model_config = ConfigDict(extra="forbid")

    epochs: int | None = Field(default=None, ge=1, le=1000)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    learning_rate: float | None = Field(default=None, gt=0, le=10, allow_inf_nan=False)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    val_fraction: float = Field(default=0.1, ge=0, le=0.5, allow_inf_nan=False)
    test_fraction: float = Field(default=0.2, ge=0, le=0.5, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    early_stopping_patience: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("test_fraction")
    @classmethod
    def _fractions(cls, value: float, info: ValidationInfo) -> float:
        # On test_fraction, so the error names a field; val_fraction is validated first.
        if value + info.data.get("val_fraction", 0.0) >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return value


class TrainingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        description="The model the new version belongs to; made (private) if it does not exist."
    )
    dataset: DatasetId | Annotated[list[DatasetId], Field(min_length=1, max_length=8)] = Field(
        description="A dataset id, or several of the same task and shape whose rows are pooled."
    )
    architecture: str | None = Field(
        default=None,
        description="Train from scratch with this architecture (see /v1/architectures).",
    )
    config: dict[str, Any] | None = Field(
        default=None,
        description="The architecture's config; input and output sizes left out are taken "
        "from the dataset, and a config left out entirely gets a default for the data.",
    )
    base_version: int | str | None = Field(
        default=None, description="Fine-tune this version (number or alias) of the model instead."
    )
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)

    @model_validator(mode="after")
    def _one_start(self) -> Self:
        if (self.architecture is None) == (self.base_version is None):
            raise ValueError("give either architecture (to train from scratch) or base_version")
        if self.base_version is not None and self.config is not None:
            raise ValueError("a fine-tuning run keeps the base version's config")
        return self

    @property
    def dataset_ids(self) -> list[str]:
        return [self.dataset] if isinstance(self.dataset, str) else list(self.dataset)


class TrainingRead(BaseModel):
    id: uuid.UUID
    status: TrainingStatus
    model: str
    dataset: str | list[str]
    architecture: str
    config: dict[str, Any]
    base_version: int | None
    hyperparameters: dict[str, Any]
    epoch: int
    epochs: int
    progress: float = Field(description="epoch / epochs while running; 1.0 once finished.")
    metrics: dict[str, Any] | None
    version: int | None = Field(description="The version this training made, once it succeeded.")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


TrainingPage = Page[TrainingRead]
