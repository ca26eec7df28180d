"""Accounts and API keys: sign-up, sign-in, key lifecycle, resolving a bearer credential."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aiaas.accounts import audit, security
from aiaas.accounts.models import ROLE_ADMIN, ROLE_USER, ApiKey, User
from aiaas.accounts.schemas import ApiKeyCreate, Scope
from aiaas.accounts.throttle import SignInThrottle
from aiaas.db import utcnow
from aiaas.errors import AccountSuspended, Conflict, Forbidden, NotFound, Unauthenticated
from aiaas.pagination import PageParams, fetch_page

ALL_SCOPES: frozenset[str] = frozenset(Scope)
SUSPENDED = "This account is suspended; contact the service's administrators."
# Writing last_used_at on every request would turn each authenticated read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and with what: a login token carries every scope, a key only its own."""

    user: User
    api_key: ApiKey | None
    scopes: frozenset[str]
    expires_at: datetime | None  # of the token or key; None for a key that never expires

    @property
    def via_api_key(self) -> bool:
        return self.api_key is not None


def register(
    session: Session,
    *,
    email: str,
    password: str,
    address: str | None = None,
    throttle: SignInThrottle | None = None,
) -> User:
    """A new account. With a ``throttle``, failed sign-ups (an email already taken) count
    against the address, as they probe for accounts; successful ones never do."""
    if throttle is None:
        return _register(session, email=email, password=password, address=address)
    with throttle.attempt(email=None, address=address, failure=Conflict):
        return _register(session, email=email, password=password, address=address)


def _register(session: Session, *, email: str, password: str, address: str | None) -> User:
    if account_exists(session, email=email):
        raise Conflict("An account with this email already exists.")
    user = User(
        email=email,
        password_hash=security.hash_password(password),
        role=ROLE_USER,
        webhook_secret=security.new_webhook_secret(),
    )
    session.add(user)
    try:
        session.flush()
        audit.record(session, audit.SIGNUP, actor_id=user.id, address=address)
        session.commit()
    except IntegrityError as exc:  # a concurrent sign-up with the same email won the race
        session.rollback()
        raise Conflict("An account with this email already exists.") from exc
    return user


def login(
    session: Session,
    *,
    email: str,
    password: str,
    secret: str,
    ttl_s: int,
    address: str | None = None,
    throttle: SignInThrottle | None = None,
) -> str:
    user = sign_in(session, email=email, password=password, address=address, throttle=throttle)
    return security.issue_access_token(
        user.id, secret=secret, ttl_s=ttl_s, version=user.token_version
    )


def sign_in(
    session: Session,
    *,
    email: str,
    password: str,
    address: str | None = None,
    throttle: SignInThrottle | None = None,
) -> User:
    """The account these credentials open, audited either way: what a login token and a
    dashboard session are both issued for. With a ``throttle``, wrong passwords back off."""
    if throttle is None:
        return _sign_in(session, email=email, password=password, address=address)
    with throttle.attempt(email=email, address=address, failure=Unauthenticated):
        return _sign_in(session, email=email, password=password, address=address)


def _sign_in(session: Session, *, email: str, password: str, address: str | None) -> User:
    user = session.scalar(select(User).where(User.email == email))
    # verify_password runs argon2 even for an unknown email, so timing does not tell them apart.
    if not security.verify_password(user.password_hash if user else None, password) or not user:
        audit.record(
            session,
            audit.LOGIN_FAILED,
            actor_id=None,
            account_id=user.id if user else None,
            target=email,
            address=address,
        )
        session.commit()
        raise Unauthenticated("Email or password is wrong.")
    audit.record(session, audit.LOGIN, actor_id=user.id, address=address)
    session.commit()
    if user.suspended:
        raise AccountSuspended(SUSPENDED)
    return user


def authenticate(session: Session, *, credential: str | None, secret: str) -> Principal:
    if not credential:
        raise Unauthenticated("Send 'Authorization: Bearer <token or API key>'.")
    if security.looks_like_api_key(credential):
        principal = _authenticate_key(session, credential)
    else:
        claims = security.read_access_token(credential, secret=secret)
        user = session.get(User, claims.user_id) if claims else None
        # A password change bumps token_version: tokens issued before it stop here.
        if user is None or claims is None or claims.version != user.token_version:
            raise Unauthenticated("The bearer token is invalid or expired.")
        principal = Principal(
            user=user, api_key=None, scopes=ALL_SCOPES, expires_at=claims.expires_at
        )
    if principal.user.suspended:
        raise AccountSuspended(SUSPENDED)
    return principal


def _authenticate_key(session: Session, key: str) -> Principal:
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == security.hash_api_key(key)))
    now = utcnow()
    if api_key is None:
        raise Unauthenticated("The API key is not valid.")
    if api_key.revoked:
        raise Unauthenticated("The API key has been revoked.")
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise Unauthenticated("The API key has expired.")
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        api_key.last_used_at = now
        session.commit()
    return Principal(
        user=api_key.user,
        api_key=api_key,
        scopes=frozenset(api_key.scopes),
        expires_at=api_key.expires_at,
    )


def create_api_key(
    session: Session, *, user: User, spec: ApiKeyCreate, address: str | None = None
) -> tuple[ApiKey, str]:
    material = security.new_api_key()
    now = utcnow()
    api_key = ApiKey(
        user_id=user.id,
        name=spec.name,
        prefix=material.prefix,
        key_hash=material.key_hash,
        scopes=sorted({str(scope) for scope in spec.scopes}),
        created_at=now,
        expires_at=now + timedelta(days=spec.expires_in_days) if spec.expires_in_days else None,
    )
    session.add(api_key)
    session.flush()
    audit.record(
        session,
        audit.KEY_CREATED,
        actor_id=user.id,
        target=str(api_key.id),
        address=address,
        scopes=api_key.scopes,
    )
    session.commit()
    return api_key, material.key


def list_api_keys(
    session: Session, *, user: User, params: PageParams
) -> tuple[list[ApiKey], str | None]:
    return fetch_page(
        session,
        select(ApiKey).where(ApiKey.user_id == user.id),
        params,
    )


def revoke_api_key(
    session: Session, *, user: User, key_id: uuid.UUID, address: str | None = None
) -> None:
    api_key = session.get(ApiKey, key_id)
    if api_key is None or api_key.user_id != user.id:
        raise NotFound("No such API key.")
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        audit.record(
            session, audit.KEY_REVOKED, actor_id=user.id, target=str(key_id), address=address
        )
        session.commit()


def account_exists(session: Session, *, email: str) -> bool:
    return session.scalar(select(User.id).where(User.email == email)) is not None


def ensure_admin(session: Session, *, email: str, password: str | None) -> tuple[User, bool]:
    """Promote the account with this email to admin, or create it. Returns (user, created)."""
    user = session.scalar(select(User).where(User.email == email))
    created = user is None
    if user is None:
        if not password:
            raise NotFound(f"No account with email {email}; give a password to create one.")
        user = register(session, email=email, password=password)
    user.role = ROLE_ADMIN
    session.commit()
    return user, created


def change_password(
    session: Session, *, user: User, current: str, new: str, address: str | None = None
) -> None:
    """Set a new password and end every login token issued before (API keys stay valid:
    they are revoked one by one)."""
    if not security.verify_password(user.password_hash, current):
        raise Forbidden("The current password is wrong.")
    user.password_hash = security.hash_password(new)
    user.token_version += 1
    audit.record(session, audit.PASSWORD_CHANGED, actor_id=user.id, address=address)
    session.commit()


def rotate_webhook_secret(session: Session, *, user: User, address: str | None = None) -> str:
    user.webhook_secret = security.new_webhook_secret()
    audit.record(session, audit.WEBHOOK_SECRET_ROTATED, actor_id=user.id, address=address)
    session.commit()
    return user.webhook_secret
