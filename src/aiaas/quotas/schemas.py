from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

QuotaName = Literal[
    "models",
    "versions_per_model",
    "stored_bytes",
    "async_jobs",
    "trainings",
    "training_seconds_per_month",
]


class QuotaRead(BaseModel):
    quota: QuotaName
    limit: int | None = Field(description="The account's limit; null: unlimited.")
    current: int = Field(
        description="What the account uses now (versions_per_model: the most versions any of "
        "its models has; training_seconds_per_month: this calendar month, UTC)."
    )
    unit: Literal["models", "versions", "bytes", "jobs", "trainings", "seconds"]
    model: str | None = Field(
        default=None, description="versions_per_model: the model with the most versions."
    )


class QuotaList(BaseModel):
    data: list[QuotaRead]
