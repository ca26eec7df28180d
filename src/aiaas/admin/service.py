"""What an administrator does to accounts: look, suspend or resume, set limits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aiaas.accounts import audit
from aiaas.accounts.models import ApiKey, User
from aiaas.admin.schemas import AccountRead, AccountUpdate
from aiaas.db import utcnow
from aiaas.errors import InvalidInput, NotFound
from aiaas.jobs import CANCELED, QUEUED, RUNNING
from aiaas.pagination import PageParams, fetch_page
from aiaas.predictions.models import Prediction
from aiaas.ratelimits.policy import parse_overrides
from aiaas.registry.models import Model
from aiaas.trainings.models import Training

CANCELED_BY_SUSPENSION = "canceled: the account was suspended"


def list_accounts(session: Session, *, params: PageParams) -> tuple[list[AccountRead], str | None]:
    users, cursor = fetch_page(session, select(User), params)
    counts = _counts(session, [user.id for user in users])
    return [_read(user, counts) for user in users], cursor


def get_account(session: Session, *, account_id: uuid.UUID) -> User:
    user = session.get(User, account_id)
    if user is None:
        raise NotFound("No such account.")
    return user


def update_account(
    session: Session,
    *,
    admin: User,
    account_id: uuid.UUID,
    change: AccountUpdate,
    address: str | None,
) -> AccountRead:
    user = get_account(session, account_id=account_id)
    if change.suspended is True and user.id == admin.id:
        # It would end this admin's own sign-in at once; a lone admin could not undo it.
        raise InvalidInput(
            "An admin cannot suspend their own account.",
            errors=[{"loc": ["body", "suspended"], "msg": "your own account"}],
        )
    limits: dict[str, Any] = dict(user.limits or {})
    detail: dict[str, Any] = change.model_dump(exclude_none=True)
    if change.rate_limits is not None:
        try:
            parse_overrides(change.rate_limits)
        except ValueError as exc:
            raise InvalidInput(
                str(exc), errors=[{"loc": ["body", "rate_limits"], "msg": str(exc)}]
            ) from None
        limits["rate_limits"] = _merged(limits.get("rate_limits", {}), change.rate_limits)
    if change.quotas is not None:
        bad = [name for name, value in change.quotas.items() if value is not None and value < 0]
        if bad:
            raise InvalidInput(
                "Quota limits are whole numbers >= 0 (null for the default).",
                errors=[{"loc": ["body", "quotas", name], "msg": "must be >= 0"} for name in bad],
            )
        limits["quotas"] = _merged(limits.get("quotas", {}), change.quotas)
    user.limits = limits
    canceled = 0
    if change.suspended is True and user.suspended_at is None:
        user.suspended_at = utcnow()
        canceled = _cancel_queued(session, user.id)
        detail["jobs_canceled"] = canceled
    elif change.suspended is False:
        user.suspended_at = None
    audit.record(
        session,
        audit.ADMIN_ACCOUNT_UPDATED,
        actor_id=admin.id,
        account_id=user.id,
        target=user.email,
        address=address,
        **detail,
    )
    session.commit()
    return _read(user, _counts(session, [user.id]))


def _merged(current: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = {**current, **change}
    return {name: value for name, value in merged.items() if value is not None}


def _cancel_queued(session: Session, owner_id: uuid.UUID) -> int:
    """Cancel the account's queued jobs: compare-and-set, so one a worker claimed meanwhile
    runs to its end (its outputs are kept) rather than being cut in two."""
    now = utcnow()
    canceled = 0
    for table in (Prediction, Training):
        result = session.execute(
            update(table)
            .where(table.owner_id == owner_id, table.status == QUEUED)
            .values(status=CANCELED, finished_at=now, error=CANCELED_BY_SUSPENSION)
        )
        canceled += int(result.rowcount)  # type: ignore[attr-defined]
    return canceled


Counts = dict[str, dict[uuid.UUID, int]]


def _counts(session: Session, ids: list[uuid.UUID]) -> Counts:
    """What each of these accounts holds, by account: a grouped count per figure for the
    whole page rather than four queries per account."""
    active = (QUEUED, RUNNING)

    def grouped(owner: Any, *where: Any) -> dict[uuid.UUID, int]:
        query = select(owner, func.count()).where(owner.in_(ids), *where).group_by(owner)
        return {ident: int(n) for ident, n in session.execute(query).all()}

    return {
        "models": grouped(Model.owner_id),
        "api_keys": grouped(ApiKey.user_id, ApiKey.revoked_at.is_(None)),
        "predictions": grouped(Prediction.owner_id, Prediction.status.in_(active)),
        "trainings": grouped(Training.owner_id, Training.status.in_(active)),
    }


def _read(user: User, counts: Counts) -> AccountRead:
    limits = user.limits or {}
    return AccountRead(
        id=user.id,
        email=user.email,
        role=user.role,
        created_at=user.created_at,
        suspended=user.suspended,
        suspended_at=user.suspended_at,
        rate_limits=limits.get("rate_limits", {}),
        quotas=limits.get("quotas", {}),
        models=counts["models"].get(user.id, 0),
        api_keys=counts["api_keys"].get(user.id, 0),
        jobs_active=counts["predictions"].get(user.id, 0) + counts["trainings"].get(user.id, 0),
    )
