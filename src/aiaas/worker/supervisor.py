"""Keeping a worker consuming across broker outages.

A Celery worker whose Redis connection drops while it acknowledges a task can stop consuming
for good (known Celery/kombu behaviour: it logs "Couldn't ack" and never reconnects). So
``aiaas worker`` runs the Celery worker in a child process with a watchdog: when the broker stops
answering, the child exits at once, and the parent starts a new one, which connects as soon as
the broker is back. Tasks acknowledged late (async jobs) are redelivered; sync batches in flight
fail at the gateway, which answers 503 while the broker is down anyway.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

import redis

log = logging.getLogger(__name__)

CHILD_ENV = "AIAAS_WORKER_CHILD"
BROKER_LOST_EXIT = 75
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A SIGKILLed parent must not leave a worker consuming on its own (Linux only).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def supervise(argv: list[str], *, restart_delay_s: float = 1.0) -> int:
    """Run ``argv`` as the worker child, restarting it until it exits cleanly or we are told
    to stop (SIGTERM/SIGINT are passed on to it)."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    env = {**os.environ, CHILD_ENV: "1"}
    while True:
        # argv is this same command line (sys.executable -m aiaas ...), never user input.
        child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)  # noqa: S603
        code = child.wait()
        if stopping or code == 0:
            return code
        print(
            f"aiaas worker: the worker process exited ({code}); starting a new one",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(restart_delay_s)


def is_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


def start_broker_watchdog(
    broker_url: str, *, interval_s: float = 1.0, timeout_s: float = 2.0, misses: int = 2
) -> threading.Thread:
    """Exit this process when the broker misses ``misses`` pings in a row."""

    def watch() -> None:
        client = redis.Redis.from_url(
            broker_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        missed = 0
        while True:
            time.sleep(interval_s)
            try:
                client.ping()
                missed = 0
            except (redis.RedisError, OSError) as exc:
                missed += 1
                if missed >= misses:
                    print(
                        f"aiaas worker: broker unreachable ({exc}); restarting the worker",
                        file=sys.stderr,
                        flush=True,
                    )
                    os._exit(BROKER_LOST_EXIT)

    thread = threading.Thread(target=watch, name="aiaas-broker-watchdog", daemon=True)
    thread.start()
    return thread
