"""Quotas per account, checked at the gateway before anything is stored or queued.

Every quota has a default in the settings (``AIAAS_QUOTA_<NAME>``), which an admin may override
per account in ``users.limits["quotas"]``:

- no entry: the setting's default;
- an integer >= 0: the account's own limit (0 allows none at all);
- ``null``: unlimited.

Use is counted from the rows every time (models, versions, sizes, job states, training times),
so it cannot drift from what is really there. Those rows belong to the domains that check their
quotas here, so this package cannot read them itself: the app factory hands :class:`Quotas` a
:class:`UsageCounter` that can (``aiaas.usage.counting.RowCounter``). A refusal is
:class:`~aiaas.errors.QuotaExceeded`: 403 ``quota-exceeded`` naming the quota, its limit and the
current use.

Concurrency: :func:`check` first locks the account's row (``SELECT ... FOR NO KEY UPDATE`` on
PostgreSQL, which still lets other transactions insert rows that reference the account; SQLite's
write transactions hold the database's one write lock from their first statement anyway), so
two creates of one account are serialized as long as the check and the insert share one
transaction: the second one counts the first one's row. Dataset uploads are the exception: their
service ends the request's transaction before parsing the file, which releases the lock, so
concurrent uploads may each pass the ``stored_bytes`` check and overshoot it by up to their
number times ``AIAAS_MAX_UPLOAD_MB``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.config import Settings
from aiaas.errors import QuotaExceeded
from aiaas.quotas.schemas import QuotaList, QuotaRead


class Quota(StrEnum):
    MODELS = "models"
    VERSIONS_PER_MODEL = "versions_per_model"
    STORED_BYTES = "stored_bytes"
    ASYNC_JOBS = "async_jobs"
    TRAININGS = "trainings"
    TRAINING_SECONDS_PER_MONTH = "training_seconds_per_month"


UNITS: dict[Quota, str] = {
    Quota.MODELS: "models",
    Quota.VERSIONS_PER_MODEL: "versions",
    Quota.STORED_BYTES: "bytes",
    Quota.ASYNC_JOBS: "jobs",
    Quota.TRAININGS: "trainings",
    Quota.TRAINING_SECONDS_PER_MONTH: "seconds",
}


def default_limit(quota: Quota, settings: Settings) -> int:
    value: int = getattr(settings, f"quota_{quota.value}")
    return value


def limits_for(user: User, settings: Settings) -> dict[str, int | None]:
    """Each quota's limit for ``user``: the settings' default unless the account overrides it
    (``None``: unlimited). An override that is not a whole number >= 0 is ignored, so a bad
    hand-edited row falls back to the default rather than opening the account up."""
    overrides: Mapping[str, Any] = (user.limits or {}).get("quotas") or {}
    limits: dict[str, int | None] = {}
    for quota in Quota:
        value = overrides.get(quota.value, ...)
        if value is None:
            limits[quota.value] = None
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            limits[quota.value] = value
        else:
            limits[quota.value] = default_limit(quota, settings)
    return limits


class UsageCounter(Protocol):
    """An account's current use of each quota, counted from the rows that hold it."""

    def usage_of(
        self, session: Session, owner_id: uuid.UUID, quota: Quota, model_id: uuid.UUID | None
    ) -> int:
        """For ``versions_per_model`` the versions of ``model_id``, or without one the most
        that any of the account's models has."""
        ...

    def most_versions(self, session: Session, owner_id: uuid.UUID) -> tuple[int, str | None]:
        """The most versions any one of the account's models has, and that model's name."""
        ...


def _lock_account(session: Session, user: User) -> None:
    # FOR NO KEY UPDATE (key_share): serializes this account's quota checks without blocking
    # inserts elsewhere that merely reference the account (they take FOR KEY SHARE).
    # SQLite renders no locking clause: its transactions already hold the write lock.
    session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit} ({n} bytes)"
        size /= 1024
    raise AssertionError("unreachable")


def _detail(quota: Quota, *, limit: int, current: int, adding: int, model_name: str | None) -> str:
    at_limit = (
        "the limit of your account" if current == limit else f"your account's limit is {limit}"
    )
    match quota:
        case Quota.MODELS:
            return f"You have {current} models, {at_limit}; delete one or ask for more."
        case Quota.VERSIONS_PER_MODEL:
            name = model_name or "This model"
            return (
                f"'{name}' has {current} versions, {at_limit}; register a new model "
                "or ask for more."
            )
        case Quota.STORED_BYTES:
            return (
                f"You store {_bytes(current)}; {_bytes(adding)} more would pass your account's "
                f"limit of {_bytes(limit)}. Delete models or datasets, or ask for more."
            )
        case Quota.ASYNC_JOBS:
            return (
                f"You have {current} prediction jobs queued or running, {at_limit}; wait for "
                "one to finish or cancel one."
            )
        case Quota.TRAININGS:
            return (
                f"You have {current} trainings queued or running, {at_limit}; wait for one to "
                "finish or cancel one."
            )
        case Quota.TRAINING_SECONDS_PER_MONTH:
            return (
                f"Your trainings ran {current} s this month (UTC); your account's limit is "
                f"{limit} s a month. Wait for the next month or ask for more."
            )


class Quotas:
    """The quota checks, with the settings' defaults and a counter of what accounts use; the
    app keeps one (``app.state.quotas``) and routes take it as ``QuotasDep``."""

    def __init__(self, settings: Settings, counter: UsageCounter) -> None:
        self.settings = settings
        self.counter = counter

    def check(
        self,
        session: Session,
        user: User,
        quota: Quota,
        *,
        adding: int = 1,
        model_id: uuid.UUID | None = None,
        model_name: str | None = None,
    ) -> None:
        """Raise QuotaExceeded unless ``user`` may add ``adding`` more of ``quota`` (bytes for
        ``stored_bytes``; for ``training_seconds_per_month`` 1, which refuses once the month's
        seconds are used up; for ``versions_per_model`` a version of ``model_id``). Call it in
        the transaction that then creates the thing: it locks the account's row until that
        transaction ends (see the module's docstring)."""
        limit = limits_for(user, self.settings)[quota.value]
        if limit is None:
            return
        _lock_account(session, user)
        current = self.counter.usage_of(session, user.id, quota, model_id)
        if current + adding > limit:
            detail = _detail(
                quota, limit=limit, current=current, adding=adding, model_name=model_name
            )
            raise QuotaExceeded(quota.value, limit=limit, current=current, detail=detail)

    def report(self, session: Session, user: User) -> QuotaList:
        """Each quota of the account: its limit (None: unlimited) and the current use."""
        limits = limits_for(user, self.settings)
        data = []
        for quota in Quota:
            model_name = None
            if quota is Quota.VERSIONS_PER_MODEL:
                current, model_name = self.counter.most_versions(session, user.id)
            else:
                current = self.counter.usage_of(session, user.id, quota, None)
            data.append(
                QuotaRead(
                    quota=quota.value,
                    limit=limits[quota.value],
                    current=current,
                    unit=UNITS[quota],
                    model=model_name,
                )
            )
        return QuotaList(data=data)
