"""Webhooks: where they may go, how they are signed, and one delivery attempt.

Targets are checked when a job is created and again right before each delivery (DNS answers
change): every address the host resolves to must be a public unicast address, unless
``AIAAS_WEBHOOK_ALLOW_PRIVATE`` is set (a test or an all-private deployment).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

# Seconds to wait before each retry after a failed delivery (network error or non-2xx).
RETRY_DELAYS_S = (1, 4, 16, 64, 256)
SIGNATURE_HEADER = "Aiaas-Signature"
DELIVERY_TIMEOUT_S = 10.0

Resolver = Callable[[str, int], list[str]]


class WebhookRefused(ValueError):
    """The URL must not receive webhooks; the message says why."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(f"the host '{host}' does not resolve") from exc
    return sorted({str(info[4][0]) for info in infos})


def address_problem(address: str) -> str | None:
    """Why a webhook must not go to this IP address, or None if it is a public unicast one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # Most specific first: 127.0.0.1 is also "private" to the ipaddress module.
    for name, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return f"{address} is a {name} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def check_url(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
    """Raise WebhookRefused unless ``url`` is an http(s) URL whose host resolves to public
    addresses only (or anywhere resolvable, when private targets are allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookRefused("the URL must be http or https")
    if not parts.hostname:
        raise WebhookRefused("the URL has no host")
    if parts.username or parts.password:
        raise WebhookRefused("the URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookRefused("the URL's port is not valid") from exc
    addresses = resolver(parts.hostname, port)
    if not addresses:
        raise WebhookRefused(f"the host '{parts.hostname}' does not resolve")
    if allow_private:
        return
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise WebhookRefused(f"webhooks may not target {parts.hostname}: {problem}")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` keyed with the account's webhook secret."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance_s: int = 300) -> bool:
    """What a receiver does: check the signature and that it is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split(",", 1)[1][len("v1=") :]
    return hmac.compare_digest(expected, fields.get("v1", ""))


@dataclass(frozen=True, slots=True)
class Attempt:
    delivered: bool
    status: int | None
    error: str | None


def deliver(
    url: str, body: bytes, *, secret: str, allow_private: bool, client: httpx.Client | None = None
) -> Attempt:
    """One signed POST. Redirects are not followed: they could lead to a private address."""
    try:
        check_url(url, allow_private=allow_private)
    except WebhookRefused as exc:
        return Attempt(False, None, str(exc))
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        "User-Agent": "aiaas-webhooks/1",
    }
    own = client is None
    http = client or httpx.Client(timeout=DELIVERY_TIMEOUT_S, follow_redirects=False)
    try:
        response = http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}")
    finally:
        if own:
            http.close()
    ok = 200 <= response.status_code < 300
    return Attempt(ok, response.status_code, None if ok else f"answered {response.status_code}")
