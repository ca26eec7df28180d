from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aiaas.pagination import Page


class AccountRead(BaseModel):
    id: uuid.UUID
    email: str
    role: Literal["user", "admin"]
    created_at: datetime
    suspended: bool
    suspended_at: datetime | None
    rate_limits: dict[str, str | None] = Field(description="Overrides of the default rates.")
    quotas: dict[str, int | None] = Field(description="Overrides of the default quotas.")
    models: int
    api_keys: int
    jobs_active: int = Field(description="Async predictions and trainings queued or running.")


class AccountPage(Page[AccountRead]):
    pass


class AccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suspended: bool | None = Field(
        default=None,
        description="true: the account's keys and tokens answer 403 at once and its queued "
        "jobs are canceled; false: it is resumed.",
    )
    rate_limits: dict[str, str | None] | None = Field(
        default=None,
        description='Per route class (predict, jobs, train, registry): "N/second" (or '
        'minute, hour, day), "0" for no limit, null to go back to the default.',
    )
    quotas: dict[str, int | None] | None = Field(
        default=None, description="Per quota name: a limit, or null for the default."
    )


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    action: str
    actor_id: uuid.UUID | None
    account_id: uuid.UUID | None
    target: str | None
    address: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    data: list[AuditEventRead]
    next_cursor: str | None
