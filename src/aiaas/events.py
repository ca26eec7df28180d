"""In-process change notifications between domains.

Hot-path caches (credentials, model resolution) subscribe; the domains that change the data
publish after commit. Topics are plain strings; payloads are the changed resource's key.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

log = logging.getLogger(__name__)

API_KEY_REVOKED = "api_key.revoked"
MODEL_CHANGED = "model.changed"
# An account's standing changed (suspended, resumed, limits, password): payload its user id.
ACCOUNT_CHANGED = "account.changed"

Handler = Callable[[str], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, topic: str, handler: Handler) -> None:
        with self._lock:
            self._handlers[topic].append(handler)

    def publish(self, topic: str, key: str) -> None:
        with self._lock:
            handlers = list(self._handlers.get(topic, ()))
        for handler in handlers:
            try:
                handler(key)
            except Exception:  # one broken subscriber must not fail the change itself
                log.exception("event handler failed for %s %s", topic, key)
