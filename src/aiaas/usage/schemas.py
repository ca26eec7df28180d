from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Granularity = Literal["day", "hour"]


class PredictionBucket(BaseModel):
    start: datetime
    predictions: int
    rows: int
    compute_s: float
    errors: int


class ModelUsage(BaseModel):
    model: str
    model_id: uuid.UUID
    buckets: list[PredictionBucket]
    totals: PredictionBucket


class TrainingBucket(BaseModel):
    start: datetime
    count: int
    compute_s: float


class TrainingUsage(BaseModel):
    count: int
    compute_s: float
    buckets: list[TrainingBucket]


class StoredBytesRead(BaseModel):
    weights: int
    datasets: int
    jobs: int
    total: int


class UsageRead(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    granularity: Granularity
    models: list[ModelUsage]
    trainings: TrainingUsage
    stored_bytes: StoredBytesRead
