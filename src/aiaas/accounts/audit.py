"""The audit log: security-relevant events, appended and never changed.

Services add an event to the session of the change it records, so both commit together (or
neither does); a failed login has no change of its own and commits its event alone.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aiaas.accounts.models import AuditEvent
from aiaas.errors import InvalidInput
from aiaas.pagination import PageParams

LOGIN = "login"
LOGIN_FAILED = "login.failed"
SIGNUP = "signup"
PASSWORD_CHANGED = "password.changed"
WEBHOOK_SECRET_ROTATED = "webhook_secret.rotated"
KEY_CREATED = "api_key.created"
KEY_REVOKED = "api_key.revoked"
MODEL_CREATED = "model.created"
MODEL_DELETED = "model.deleted"
MODEL_PUBLISHED = "model.published"
MODEL_UNPUBLISHED = "model.unpublished"
ADMIN_ACCOUNT_UPDATED = "admin.account_updated"


def record(
    session: Session,
    action: str,
    *,
    actor_id: uuid.UUID | None,
    account_id: uuid.UUID | None = None,
    target: str | None = None,
    address: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEvent(
            action=action,
            actor_id=actor_id,
            account_id=account_id if account_id is not None else actor_id,
            target=target,
            address=address,
            detail=detail,
        )
    )


def list_events(
    session: Session,
    *,
    params: PageParams,
    account_id: uuid.UUID | None = None,
    action: str | None = None,
) -> tuple[list[AuditEvent], str | None]:
    """Newest first. Events are append-only with increasing ids, so the cursor is the last
    id shown."""
    query = select(AuditEvent)
    if account_id is not None:
        query = query.where(AuditEvent.account_id == account_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if params.cursor:
        if not params.cursor.isdigit():
            raise InvalidInput(
                "cursor is not one this API issued",
                errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
            )
        query = query.where(AuditEvent.id < int(params.cursor))
    rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(params.limit + 1)))
    if len(rows) > params.limit:
        return rows[: params.limit], str(rows[params.limit - 1].id)
    return rows, None
