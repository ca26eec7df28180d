"""Calling the metrics callbacks the caller passed in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

_log = logging.getLogger("aiaas.serving")
_T = TypeVar("_T")


def notify(callback: Callable[[_T], None] | None, value: _T) -> None:
    """Call ``callback(value)``; a broken metrics hook is logged, never allowed to fail
    the prediction or the cache operation it reports on."""
    if callback is None:
        return
    try:
        callback(value)
    except Exception:
        _log.exception("serving metrics callback %r failed", callback)


def call(callback: Callable[[], None] | None) -> None:
    """``notify`` for callbacks without an argument (counters)."""
    if callback is None:
        return
    try:
        callback()
    except Exception:
        _log.exception("serving metrics callback %r failed", callback)
