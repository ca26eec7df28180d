"""Logs: one JSON object per line on stderr, each naming the request it belongs to.

Every HTTP request gets an id (the client's ``X-Request-ID`` when it sent a usable one, else a
new one), returned in the answer's ``X-Request-ID`` and carried to the workers with each job
and batch. While a request is handled, :func:`current_request` holds its
:class:`RequestContext`, and every line logged on its behalf (on the event loop or in a thread
the request started) carries its ``request_id`` and, once known, its ``account_id``.

Lines written for every request or batch (the access line, a worker's batch line) go through
:class:`EventLine`, which skips the logging module (its record and handler cost about 12 us a
line here) and hands the JSON to a :class:`LineBuffer` that writes a few KiB at a time (a
write(2) per line cost another 10 us of CPU per request), on a prediction that takes about 200 us
of the gateway's CPU in all.

Nothing logged here may hold a secret: no header, body, key, password or bound SQL parameter
is ever a field (the database engine hides its parameters, see ``db.make_engine``), and a field
whose name says it holds one is written as ``[redacted]`` should one slip in.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import IO, Any, Literal

import orjson

LogFormat = Literal["json", "text"]

REQUEST_ID_HEADER = b"x-request-id"
# The logger of the access lines (one per request answered).
ACCESS_LOGGER = "aiaas.access"
# What a client's id may look like: a uuid, a trace id, a short token. Anything else (too long,
# spaces, control or non-ASCII characters) is replaced, so a log line never carries it.
_ACCEPTED_ID = re.compile(rb"[A-Za-z0-9._:+=/-]{1,128}")
REDACTED = "[redacted]"
_SECRET_WORDS = ("password", "secret", "token", "authorization", "cookie", "api_key", "apikey")


class RequestContext:
    """What the log lines of one request share: its id, and who called once that is known.
    ``span`` is the request's tracing span when tracing is on (``aiaas.tracing``)."""

    __slots__ = ("account_id", "request_id", "route", "span")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.account_id: object = None
        # The route template, set by an answer given in front of the router (the lanes).
        self.route: str | None = None
        self.span: Any = None


_current: ContextVar[RequestContext | None] = ContextVar("aiaas_request", default=None)


def current_request() -> RequestContext | None:
    return _current.get()


def bind_request(request: RequestContext | None) -> Token[RequestContext | None]:
    return _current.set(request)


def unbind_request(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def note_account(account_id: object) -> None:
    """Name the account the current request acts for, on its remaining log lines."""
    request = _current.get()
    if request is not None:
        request.account_id = account_id


class _Ids:
    """Request ids: a random prefix per process and a counter (a uuid4 costs 3.8 us, this
    0.2 us); the prefix is drawn again in a forked child so no two processes share one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(6)
        self.counter = itertools.count(1)

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter):08x}"


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.reset)


def new_request_id() -> str:
    return _ids.new()


def accept_request_id(sent: bytes | None) -> str:
    """The client's id when it is one a log line may carry, else a new one."""
    if sent is not None and _ACCEPTED_ID.fullmatch(sent):
        return sent.decode("ascii")
    return _ids.new()


def is_secret(name: str) -> bool:
    """Whether a field of this name must be written as ``[redacted]``."""
    known = _secret_names.get(name)
    if known is None:
        lowered = name.lower()
        known = any(word in lowered for word in _SECRET_WORDS)
        # Field names come from the code: a few dozen. The bound only guards against a caller
        # that makes names up.
        if len(_secret_names) < 4096:
            _secret_names[name] = known
    return known


# Answers of is_secret: every access line asks it for the same few names (the scan costs
# about 1.5 us a line, the lookup 0.1 us).
_secret_names: dict[str, bool] = {}


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds; the part up to the second is formatted once
    a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"


_clock = _Clock()
# A LogRecord's own attributes; anything else on a record came in through ``extra``.
_RECORD_FIELDS = frozenset(
    {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"}
)


def _line(level: str, logger: str, event: str, now: float) -> dict[str, Any]:
    line: dict[str, Any] = {
        "ts": _clock.format(now),
        "level": level,
        "logger": logger,
        "event": event,
    }
    request = _current.get()
    if request is not None:
        line["request_id"] = request.request_id
        if request.account_id is not None:
            line["account_id"] = request.account_id
    return line


def _add_fields(line: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        line[name] = REDACTED if is_secret(name) else value


def _dumps(line: dict[str, Any]) -> bytes:
    # default=str: a uuid, a path or an enum reads as text rather than failing the line.
    return orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: ``ts``, ``level``, ``logger``, ``event`` (the message),
    the current request's ids, the record's ``extra`` fields and ``exc`` (the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        line = _line(record.levelname.lower(), record.name, record.getMessage(), record.created)
        extra = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        _add_fields(line, extra)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return _dumps(line)[:-1].decode()


class TextFormatter(logging.Formatter):
    """For reading by eye (``AIAAS_LOG_FORMAT=text``): the usual line, then the request id and
    the ``extra`` fields as ``name=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        request = _current.get()
        if request is not None:
            fields = {"request_id": request.request_id, **fields}
        if fields:
            shown = " ".join(f"{k}={REDACTED if is_secret(k) else v}" for k, v in fields.items())
            text = f"{text} {shown}"
        return text


class LineBuffer:
    """The lines :class:`EventLine` writes, gathered and written a few KiB at a time by one
    thread (every ``flush_s``, or at once past ``limit`` bytes): a write(2) per line cost a
    gateway about 10 us of CPU per request, measured. Each write holds whole lines and at
    most PIPE_BUF bytes, so that lines sharing a pipe with other writers never interleave.
    A line waits at most ``flush_s``; what is left is written at exit."""

    def __init__(
        self, write: Callable[[bytes], object], *, flush_s: float = 0.2, limit: int = 65536
    ) -> None:
        self._write = write
        self.flush_s = flush_s
        self.limit = limit
        self._start()

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        self._size = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aiaas-log-lines", daemon=True)
        self._thread.start()

    def add(self, line: bytes) -> None:
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            if self._size < self.limit:
                return
            lines = self._take()
        self._emit(lines)

    def flush(self) -> None:
        with self._lock:
            lines = self._take()
        self._emit(lines)

    def close(self) -> None:
        self._stop.set()
        self.flush()

    def after_fork(self) -> None:
        """In a forked child: a lock and a thread of its own, none of the parent's lines."""
        self._start()

    def _take(self) -> list[bytes]:
        lines, self._lines, self._size = self._lines, [], 0
        return lines

    def _emit(self, lines: list[bytes]) -> None:
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > PIPE_BUF:
                self._write_out(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write_out(b"".join(chunk))

    def _write_out(self, data: bytes) -> None:
        # A closed or broken stream loses the lines, never the caller (as the logging
        # module's handlers do).
        with contextlib.suppress(OSError, ValueError):
            self._write(data)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()


PIPE_BUF = 4096


class _Sink:
    """Where :class:`EventLine` writes in JSON mode; None leaves its lines to the logging
    module (not configured, or text)."""

    buffer: LineBuffer | None = None


def _write_stream(stream: IO[str], data: bytes) -> None:
    stream.write(data.decode())
    stream.flush()


def flush_logs() -> None:
    """Write the lines :class:`EventLine` holds now (tests, shutdown)."""
    if _Sink.buffer is not None:
        _Sink.buffer.flush()


class EventLine:
    """Writes the lines logged for every request or batch as ``logger``'s INFO events: one
    ``orjson.dumps`` and one write in JSON mode, a plain log record otherwise. Skipped when
    ``logger`` does not log INFO."""

    def __init__(self, logger: str) -> None:
        self.name = logger
        self._logger = logging.getLogger(logger)

    def __call__(self, event: str, /, **fields: Any) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        buffer = _Sink.buffer
        if buffer is None:
            self._logger.info(event, extra=fields)
            return
        line = _line("info", self.name, event, time.time())
        _add_fields(line, fields)
        buffer.add(_dumps(line))


class AccessLine(EventLine):
    """The one line per request answered, as :class:`EventLine` writes it, formatted by hand:
    its fields are fixed and none can hold a secret, so it needs no dict, no redaction pass
    and no general serializer (3 us a line -> 1 us)."""

    def request(
        self, request: RequestContext, method: str, route: str, status: int, seconds: float
    ) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        buffer = _Sink.buffer
        if buffer is None:
            self(
                "request",
                method=method,
                route=route,
                status=status,
                latency_ms=round(seconds * 1000, 3),
            )
            return
        account = request.account_id
        buffer.add(
            b'{"ts":"%s","level":"info","logger":"%s","event":"request","request_id":"%s"%s,'
            b'"method":%s,"route":%s,"status":%d,"latency_ms":%.3f}\n'
            % (
                _clock.format(time.time()).encode(),
                self.name.encode(),
                # Ids are checked on the way in (accept_request_id): nothing to escape.
                request.request_id.encode(),
                b"" if account is None else b',"account_id":' + orjson.dumps(account, default=str),
                orjson.dumps(method),
                orjson.dumps(route),
                status,
                seconds * 1000,
            )
        )


_handler: logging.Handler | None = None


def configure_logging(
    fmt: LogFormat = "json",
    level: str | int = "INFO",
    *,
    access_log: bool = True,
    stream: IO[str] | None = None,
) -> None:
    """Send every logger's records to ``stream`` (stderr) in ``fmt``, at ``level`` and above,
    with or without the access lines. Called once by ``aiaas serve`` and ``aiaas worker``;
    calling again replaces the handler."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET if access_log else logging.WARNING)
    _handler = handler
    _close_buffer()
    if fmt == "json":
        write = (
            functools.partial(os.write, sys.stderr.fileno())
            if stream is None
            else functools.partial(_write_stream, stream)
        )
        _Sink.buffer = LineBuffer(write)


def reset_logging() -> None:
    """Undo :func:`configure_logging` (tests)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    _close_buffer()


def _close_buffer() -> None:
    buffer, _Sink.buffer = _Sink.buffer, None
    if buffer is not None:
        buffer.close()


def _after_fork() -> None:
    if _Sink.buffer is not None:
        _Sink.buffer.after_fork()


atexit.register(flush_logs)
os.register_at_fork(after_in_child=_after_fork)
