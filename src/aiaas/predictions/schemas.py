from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from aiaas.pagination import Page

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]


class PredictionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=63)]
    version: int | str | None = Field(
        default=None, description="Number or alias; default `production` if set, else `latest`."
    )
    inputs: Any = Field(description="One example of the version's input shape, or a list.")
    webhook: AnyHttpUrl | None = Field(
        default=None, description="POSTed the finished job, signed with your webhook secret."
    )


class WebhookRead(BaseModel):
    url: str
    attempts: int
    last_status: int | None
    delivered_at: datetime | None


class Timings(BaseModel):
    queue_s: float | None = Field(description="From creation to a worker picking it up.")
    compute_s: float | None
    total_s: float | None


class PredictionRead(BaseModel):
    id: uuid.UUID
    status: JobStatus
    model: str
    version: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outputs: list[Any] | None
    predictions: list[Any] | None
    error: str | None
    webhook: WebhookRead | None
    timings: Timings
    feedback: list[Any] | None = Field(
        default=None, description="The true label(s) sent back for this prediction's inputs."
    )
    expired_at: datetime | None = Field(
        default=None,
        description="When the job's inputs and outputs were dropped (AIAAS_JOB_RETENTION_DAYS "
        "after it finished); its status and timings stay.",
    )


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Any = Field(
        description="The true class (a name when the model has labels, else an index) or value; "
        "a list, one per row, for a prediction of several rows."
    )


PredictionPage = Page[PredictionRead]


class VersionComparison(BaseModel):
    version: int
    role: Literal["primary", "canary", "shadow"]
    weight: int = Field(description="Its share of the alias's traffic, in percent (0: shadow).")
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    agreement: float | None = Field(
        description="For the shadow of a classifier: the share of rows where it predicted the "
        "answering version's class."
    )
    mean_abs_difference: float | None = Field(
        description="For the shadow of a regressor: the mean absolute difference per row."
    )
    compared_rows: int
    feedback: dict[str, float] | None = Field(
        description="`rows` with feedback since the alias was set and how the version fared on "
        "them: `accuracy` (classification) or `mean_abs_error` (regression)."
    )


class AliasComparison(BaseModel):
    """Figures since the alias was last set; live figures are this gateway's."""

    model: str
    alias: str
    since: datetime
    primary: int
    shadow: int | None
    versions: list[VersionComparison]
