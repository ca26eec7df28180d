"""The roll-out figures themselves: set-ups of an alias are counted apart, bounded, and a
request routed by an older set-up never lands in a newer one's figures."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from aiaas.predictions.directory import ResolvedVersion, RolloutKey
from aiaas.predictions.rollouts import RolloutStats
from tests.serving.helpers import make_spec

MODEL = uuid.uuid4()
EARLIER = datetime(2026, 12, 1, tzinfo=UTC)
LATER = EARLIER + timedelta(minutes=5)


def served_by(version: int, since: datetime, alias: str = "production") -> ResolvedVersion:
    return ResolvedVersion(
        model_id=MODEL,
        model="m",
        owner_id=uuid.uuid4(),
        public=False,
        task="classification",
        capture_inputs=False,
        version=version,
        spec=make_spec("mlp"),
        rollout=RolloutKey(model_id=MODEL, alias=alias, since=since),
    )


def test_a_newer_set_up_starts_over_and_an_older_one_is_not_counted_in_it() -> None:
    stats = RolloutStats()
    stats.served(served_by(1, EARLIER), 0.01, failed=False)
    assert stats.report(MODEL, "production", EARLIER)[1]["requests"] == 1
    stats.served(served_by(1, LATER), 0.01, failed=False)
    stats.served(served_by(2, LATER), 0.02, failed=True)
    # A gateway's cache still routing by the older set-up:
    stats.served(served_by(1, EARLIER), 0.01, failed=False)
    later = stats.report(MODEL, "production", LATER)
    assert (later[1]["requests"], later[1]["errors"]) == (1, 0)
    assert (later[2]["requests"], later[2]["errors"]) == (1, 1)
    assert stats.report(MODEL, "production", EARLIER) == {}


def test_shadow_agreement_counts_rows() -> None:
    stats = RolloutStats()
    primary = served_by(1, EARLIER)
    shadow = replace(served_by(2, EARLIER), rollout=None)
    ours = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    theirs = np.array([[0.8, 0.2], [0.7, 0.3], [0.6, 0.4]], dtype=np.float32)
    assert stats.shadowed(primary, shadow, 0.01, ours=ours, theirs=theirs) == (3, 2)
    figures = stats.report(MODEL, "production", EARLIER)[2]
    assert figures["compared_rows"] == 3
    assert figures["agreement"] == 2 / 3
    assert stats.shadowed(primary, shadow, 0.0, ours=ours, theirs=None) == (0, 0)
    assert stats.report(MODEL, "production", EARLIER)[2]["shadow_errors"] == 1


def test_the_figures_are_bounded() -> None:
    stats = RolloutStats(max_rollouts=3, window=4)
    for i in range(10):
        stats.served(served_by(1, EARLIER, alias=f"a{i}"), 0.001 * i, failed=False)
    kept = [i for i in range(10) if stats.report(MODEL, f"a{i}", EARLIER)]
    assert kept == [7, 8, 9]
    for _ in range(10):
        stats.served(served_by(1, EARLIER, alias="a9"), 0.5, failed=False)
    figures = stats.report(MODEL, "a9", EARLIER)[1]
    assert figures["requests"] == 11
    assert figures["latency_p50_ms"] == 500.0  # only the last 4 latencies are kept
