"""Browser sessions and their CSRF tokens.

A sign-in makes a random token for the cookie and stores its sha256 with the account and the
account's ``token_version``; a session ends when it expires, when its owner signs out, when the
password changes (the version moves on) and, while the account is suspended, it opens nothing.

The CSRF token of a page is an HMAC of the cookie's token under the platform's secret: one per
session, nothing more to store, and a page of one session is no use to another. Visitors (the
sign-in and sign-up forms) get a cookie of their own for the same purpose, so a third site
cannot sign a browser in to an account of its choosing either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.db import utcnow
from aiaas.web.models import WebSession

SESSION_COOKIE = "aiaas_session"
VISITOR_COOKIE = "aiaas_visitor"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(session: Session, *, user: User, ttl_s: int) -> str:
    """A new session of ``user``: the token for its cookie."""
    now = utcnow()
    # Each sign-in sweeps its own account's dead sessions, so the table stays as small as the
    # sessions that can still be used.
    session.execute(
        delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at <= now)
    )
    token = new_token()
    session.add(
        WebSession(
            token_hash=_hash(token),
            user_id=user.id,
            token_version=user.token_version,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    session.commit()
    return token


def user_of(session: Session, *, token: str | None) -> User | None:
    """The account a live session opens, or None (no such session, expired, from before a
    password change, or a suspended account)."""
    if not token:
        return None
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == _hash(token))
    ).first()
    if row is None:
        return None
    web_session, user = row
    if web_session.expires_at <= utcnow() or web_session.token_version != user.token_version:
        return None
    return None if user.suspended else user


def end(session: Session, *, token: str | None) -> None:
    if token:
        session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))
        session.commit()


def csrf_token(secret: str, token: str) -> str:
    return hmac.new(secret.encode(), b"csrf:" + token.encode(), hashlib.sha256).hexdigest()


def csrf_valid(secret: str, token: str | None, given: str | None) -> bool:
    if not token or not given:
        return False
    return hmac.compare_digest(csrf_token(secret, token), given)
