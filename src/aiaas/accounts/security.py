"""Secrets of accounts: password hashes, login tokens, API key material.

Passwords use argon2id. Login tokens are short-lived HS256 JWTs signed with the platform's secret
key. API keys are random, shown once, and stored as their sha256.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_KEY_PREFIX = "aiaas_sk_"
# "aiaas_sk_" plus 8 characters: enough to tell keys apart in a list, far too few to guess with.
API_KEY_DISPLAY_CHARS = len(API_KEY_PREFIX) + 8
TOKEN_ALGORITHM = "HS256"
TOKEN_AUDIENCE = "aiaas:access"

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def configure_password_hashing(*, time_cost: int, memory_kib: int) -> None:
    """Set argon2id's cost for this process (settings ``password_hash_*``)."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
    _dummy_hash = None


def _dummy() -> str:
    # Verified against when the email is unknown, so both failures cost one argon2 verification.
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        ok = _hasher.verify(password_hash or _dummy(), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key: str
    prefix: str
    key_hash: str


def new_api_key() -> NewApiKey:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return NewApiKey(key=key, prefix=key[:API_KEY_DISPLAY_CHARS], key_hash=hash_api_key(key))


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_PREFIX)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    expires_at: datetime
    # The account's token_version when the token was issued (0 for tokens older than it).
    version: int


def issue_access_token(user_id: uuid.UUID, *, secret: str, ttl_s: int, version: int = 0) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "ver": version,
        "aud": TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM)


def read_access_token(token: str, *, secret: str) -> TokenClaims | None:
    """What a valid, unexpired token says; None for anything else."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],
            audience=TOKEN_AUDIENCE,
            options={"require": ["sub", "exp", "aud"]},
        )
        return TokenClaims(
            uuid.UUID(str(claims["sub"])),
            datetime.fromtimestamp(int(claims["exp"]), UTC),
            int(claims.get("ver", 0)),
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
