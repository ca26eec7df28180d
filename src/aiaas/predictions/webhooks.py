"""Webhooks: where they may go, how they are signed, and one delivery attempt.

Targets are checked when a job is created and again at each delivery (DNS answers change):
every address the host resolves to must be a public unicast address, unless
``AIAAS_WEBHOOK_ALLOW_PRIVATE`` is set (a test or an all-private deployment). A delivery
resolves the host once and connects to the very address it checked (the Host header and TLS
SNI still name the host): resolving again to connect would let a DNS server that answers a
public address first and a private one second (DNS rebinding) steer the POST inside.

One attempt has a total deadline (``DELIVERY_TIMEOUT_S``, the answer's reading included): a
receiver that trickles its answer a byte at a time cannot hold a delivery slot longer.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

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
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address: judge the address they lead to.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip.teredo is not None:
            ip = ip.teredo[1]
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


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (``address``) and what to say (host, path)."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def check_url(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """Raise WebhookRefused unless ``url`` is an http(s) URL whose host resolves to public
    addresses only (or anywhere resolvable, when private targets are allowed); return the
    target, pinned to the first address checked."""
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
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise WebhookRefused(f"webhooks may not target {parts.hostname}: {problem}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port, path, addresses[0])


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


Connector = Callable[[tuple[str, int], float], socket.socket]


def deliver(
    url: str,
    body: bytes,
    *,
    secret: str,
    allow_private: bool,
    resolver: Resolver = system_resolver,
    connect: Connector = socket.create_connection,
    deadline_s: float = DELIVERY_TIMEOUT_S,
) -> Attempt:
    """One signed POST to the checked address, over within ``deadline_s`` whatever the
    receiver does. Redirects are not followed: they could lead to a private address."""
    try:
        target = check_url(url, allow_private=allow_private, resolver=resolver)
    except WebhookRefused as exc:
        return Attempt(False, None, str(exc))
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        "User-Agent": "aiaas-webhooks/1",
        "Connection": "close",
    }
    conn = _PinnedConnection(target, connect=connect, timeout=deadline_s)
    # At the deadline the socket is shut down, which ends any read or write in progress.
    watchdog = threading.Timer(deadline_s, conn.abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        if conn.aborted:
            return Attempt(False, None, f"no answer within {deadline_s:g} s")
        return Attempt(False, None, f"{type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
        conn.close()
    ok = 200 <= status < 300
    return Attempt(ok, status, None if ok else f"answered {status}")


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to the address that was checked, never a fresh lookup."""

    def __init__(self, target: Target, *, connect: Connector, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._target = target
        self._connect = connect
        self._timeout = timeout
        self._lock = threading.Lock()
        self.aborted = False

    def connect(self) -> None:
        sock = self._connect((self._target.address, self._target.port), self._timeout)
        if self._target.scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=self._target.host)
        with self._lock:
            self.sock = sock
            if self.aborted:
                raise TimeoutError("the delivery's deadline passed")

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
