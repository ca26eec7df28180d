"""Live figures of alias roll-outs (weighted splits and shadows), for the compare route.

Counted in this process, per roll-out and version: requests, errors, the latencies of the last
``window`` requests (for p50/p99), and for a shadow how often it agreed with the version that
answered. A roll-out's figures start again when its alias is set again. The figures are this
gateway's: with several gateways each reports its own share, and Prometheus
(``aiaas_predictions`` and ``aiaas_shadow_*``, labelled by version) has the fleet's.

Bounded: at most ``max_rollouts`` roll-outs are kept (the least recently served is dropped),
and each version keeps ``window`` latencies.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from aiaas.predictions.directory import ResolvedVersion, RolloutKey


@dataclass(slots=True)
class VersionFigures:
    window: int
    requests: int = 0
    errors: int = 0
    latencies: deque[float] = field(init=False)
    # As the shadow of the roll-out: rows compared with the answering version's, and how they
    # compared (classification: the same class; regression: the absolute difference).
    shadow_requests: int = 0
    shadow_errors: int = 0
    compared_rows: int = 0
    agreeing_rows: int = 0
    abs_difference: float = 0.0

    def __post_init__(self) -> None:
        self.latencies = deque(maxlen=self.window)

    def summary(self) -> dict[str, Any]:
        latencies = np.fromiter(self.latencies, dtype=np.float64)
        p50, p99 = (
            (float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)))
            if latencies.size
            else (None, None)
        )
        return {
            "requests": self.requests,
            "errors": self.errors,
            "latency_p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "shadow_requests": self.shadow_requests,
            "shadow_errors": self.shadow_errors,
            "compared_rows": self.compared_rows,
            "agreement": (self.agreeing_rows / self.compared_rows if self.compared_rows else None),
            "mean_abs_difference": (
                self.abs_difference / self.compared_rows if self.compared_rows else None
            ),
        }


@dataclass(slots=True)
class _Rollout:
    since: datetime
    versions: dict[int, VersionFigures] = field(default_factory=dict)


class RolloutStats:
    def __init__(self, *, max_rollouts: int = 1_000, window: int = 2_048) -> None:
        self._rollouts: OrderedDict[tuple[Any, str], _Rollout] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_rollouts
        self._window = window

    def _figures(self, key: RolloutKey, version: int) -> VersionFigures | None:
        """Under the lock: the figures of ``version`` in the roll-out ``key`` names; None for a
        request routed by an older set-up of the alias (a cached entry not yet refreshed),
        which must not count in the new one's figures."""
        slot = (key.model_id, key.alias)
        found = self._rollouts.get(slot)
        if found is not None and key.since < found.since:
            return None
        if found is None or found.since < key.since:  # the alias was set again: start over
            found = self._rollouts[slot] = _Rollout(since=key.since)
            while len(self._rollouts) > self._max:
                self._rollouts.popitem(last=False)
        self._rollouts.move_to_end(slot)
        figures = found.versions.get(version)
        if figures is None:
            figures = found.versions[version] = VersionFigures(self._window)
        return figures

    def served(self, resolved: ResolvedVersion, seconds: float, *, failed: bool) -> None:
        key = resolved.rollout
        if key is None:
            return
        with self._lock:
            figures = self._figures(key, resolved.version)
            if figures is None:
                return
            figures.requests += 1
            if failed:
                figures.errors += 1
            else:
                figures.latencies.append(seconds)

    def shadowed(
        self,
        primary: ResolvedVersion,
        shadow: ResolvedVersion,
        seconds: float,
        *,
        ours: np.ndarray | None,
        theirs: np.ndarray | None,
    ) -> tuple[int, int]:
        """Count a shadow run (``theirs`` None: it failed); the rows compared and agreeing."""
        key = primary.rollout
        if key is None:
            return 0, 0
        compared = agreeing = 0
        difference = 0.0
        if ours is not None and theirs is not None:
            compared = len(ours)
            if primary.task == "classification":
                agreeing = int((ours.argmax(axis=1) == theirs.argmax(axis=1)).sum())
            else:
                rows = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
                difference = float(rows.reshape(compared, -1).mean(axis=1).sum())
        with self._lock:
            figures = self._figures(key, shadow.version)
            if figures is None:
                return compared, agreeing
            figures.shadow_requests += 1
            if theirs is None:
                figures.shadow_errors += 1
                return 0, 0
            figures.latencies.append(seconds)
            figures.compared_rows += compared
            figures.agreeing_rows += agreeing
            figures.abs_difference += difference
        return compared, agreeing

    def report(self, model_id: Any, alias: str, since: datetime) -> dict[int, dict[str, Any]]:
        """Each version's figures for the alias as set at ``since`` (empty before traffic)."""
        with self._lock:
            found = self._rollouts.get((model_id, alias))
            if found is None or found.since != since:
                return {}
            return {number: f.summary() for number, f in found.versions.items()}
