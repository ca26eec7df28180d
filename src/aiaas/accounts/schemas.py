from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from aiaas.pagination import Page


class Scope(StrEnum):
    MODELS_READ = "models:read"
    MODELS_WRITE = "models:write"
    PREDICT = "predict"
    TRAIN = "train"
    # Account secrets (the webhook signing secret): a key that only predicts never sees them.
    ACCOUNT_READ = "account:read"


def _lower(value: str) -> str:
    return value.lower()


Email = Annotated[EmailStr, AfterValidator(_lower)]
Password = Annotated[str, Field(min_length=8, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(_Strict):
    email: Email
    password: Password


class LoginRequest(_Strict):
    email: Email
    # Any length: a login must not reveal the password policy of the day it was set.
    password: Annotated[str, Field(min_length=1, max_length=256)]


class UserRegistered(BaseModel):
    id: uuid.UUID
    email: str
    created_at: datetime


class Me(UserRegistered):
    role: Literal["user", "admin"]
    webhook_secret: str | None = Field(
        description="Signs webhooks. Shown to a login token or a key with `account:read`."
    )


class PasswordChange(_Strict):
    # Any length: the current password was set under whatever policy held then.
    current_password: Annotated[str, Field(min_length=1, max_length=256)]
    new_password: Password


class WebhookSecret(BaseModel):
    webhook_secret: str


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class ApiKeyCreate(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: list[Scope] = Field(max_length=len(Scope))
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    scopes: list[Scope]
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key. Shown this once: store it now.")


ApiKeyPage = Page[ApiKeyRead]
