"""The service's state for the admin overview, read from what the platform records: job rows
(shared by every gateway and worker), the usage table every process flushes to, this
process's metrics and, in embedded mode, its model cache. Ratios come back ready to show;
sizes as bytes, for the templates' filesizeformat."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from aiaas.accounts.models import ROLE_ADMIN, User
from aiaas.db import utcnow
from aiaas.dispatch.inprocess import InProcessDispatcher
from aiaas.jobs import QUEUED, QUEUES, RUNNING
from aiaas.metering.meter import hour_of
from aiaas.metering.models import UsageHour
from aiaas.metrics import Metrics
from aiaas.predictions.models import Prediction
from aiaas.presence import seen
from aiaas.trainings.models import Training


def jobs(session: Session) -> dict[str, dict[str, int]]:
    """Jobs waiting and running, from their rows: the state every gateway and worker shares."""
    found: dict[str, dict[str, int]] = {}
    for name, table in (("predictions", Prediction), ("trainings", Training)):
        counts = dict(
            session.execute(
                select(table.status, func.count())
                .where(table.status.in_((QUEUED, RUNNING)))
                .group_by(table.status)
            ).all()
        )
        found[name] = {status: int(counts.get(status, 0)) for status in (QUEUED, RUNNING)}
    return found


def _samples(metric: MetricWrapperBase) -> Iterable[Any]:
    return (sample for family in metric.collect() for sample in family.samples)


def _counted(metric: MetricWrapperBase) -> int:
    return int(sum(s.value for s in _samples(metric) if s.name.endswith("_total")))


def broker_queues(metrics: Metrics) -> dict[str, int | None]:
    """The broker's queue lengths as this gateway's reconciler last read them (None: not read
    yet, or the broker did not answer)."""
    read = {s.labels["queue"]: int(s.value) for s in _samples(metrics.queue_depth)}
    return {queue: read.get(queue) for queue in QUEUES}


def model_cache(dispatcher: InProcessDispatcher, metrics: Metrics) -> dict[str, Any]:
    cache = dispatcher.ctx.runtimes
    hits, misses = _counted(metrics.model_cache_hits), _counted(metrics.model_cache_misses)
    return {
        "entries": len(cache),
        "bytes": cache.total_bytes,
        "budget": cache.budget_bytes,
        "hits": hits,
        "misses": misses,
        "hit_ratio": ratio(hits, hits + misses),
    }


def errors(session: Session, metrics: Metrics) -> dict[str, Any]:
    """Failed predictions over the last day, from the usage table every process flushes to,
    and the server errors this gateway answered since it started."""
    since = hour_of(utcnow() - timedelta(hours=24))
    predictions, failed = session.execute(
        select(
            func.coalesce(func.sum(UsageHour.predictions), 0),
            func.coalesce(func.sum(UsageHour.errors), 0),
        ).where(UsageHour.hour >= since)
    ).one()
    requests = server_errors = 0
    for sample in _samples(metrics.http_requests):
        if sample.name.endswith("_total"):
            requests += int(sample.value)
            server_errors += int(sample.value) if sample.labels["status"].startswith("5") else 0
    return {
        "since": since,
        "predictions": int(predictions),
        "failed": int(failed),
        "prediction_ratio": ratio(int(failed), int(predictions)),
        "requests": requests,
        "server_errors": server_errors,
        "request_ratio": ratio(server_errors, requests),
    }


def ratio(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "none yet"


def account_counts(session: Session) -> dict[str, int]:
    total, suspended, admins = session.execute(
        select(
            func.count(User.id),
            func.count(User.suspended_at),
            func.coalesce(func.sum(case((User.role == ROLE_ADMIN, 1), else_=0)), 0),
        )
    ).one()
    return {"total": int(total), "suspended": int(suspended), "admins": int(admins)}


# ---- accounts ---------------------------------------------------------------------------------


def processes(broker_url: str, *, timeout_s: float) -> dict[str, Any] | None:
    """Distributed mode: the gateways and workers alive now, from the keys each renews in
    Redis (aiaas.presence); None when the broker does not answer."""
    try:
        alive = seen(broker_url, timeout_s=timeout_s)
    except Exception:  # the page says the list is unavailable rather than failing
        return None
    now = time.time()
    rows = [
        {
            "kind": item.kind,
            "host": item.host,
            "pid": item.pid,
            "device": item.details.get("device"),
            "up_s": round(now - item.started_at),
            "beat_s": round(max(0.0, now - item.beat_at), 1),
        }
        for item in alive
    ]
    return {
        "gateways": [r for r in rows if r["kind"] == "gateway"],
        "workers": [r for r in rows if r["kind"] == "worker"],
    }
