"""Usage: the account's predictions per model and day (charts and the same numbers as a
table), its trainings and the bytes it stores, over a period of whole days (UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request, Response

from aiaas.deps import SessionDep
from aiaas.errors import AppError, InvalidInput
from aiaas.metering.meter import UsageMeter
from aiaas.usage import service
from aiaas.usage.schemas import PredictionBucket, UsageRead
from aiaas.web.pages import PageRoute, SignedIn, refused, render

router = APIRouter(route_class=PageRoute)
# The period shown unless another is asked for: the last 30 days, today included.
DEFAULT_DAYS = 30
# The figures counted per model and day, as the charts and the table name them.
FIGURES: Final = (
    ("predictions", "Predictions"),
    ("rows", "Rows"),
    ("compute_s", "Compute seconds"),
    ("errors", "Errors"),
)
# Compute seconds are shown to the millisecond: a small model answers in well under one.
DECIMALS = 3


def _meter(request: Request) -> UsageMeter:
    meter: UsageMeter = request.app.state.usage_meter
    return meter


@router.get("/usage")
def usage_page(
    request: Request,
    browser: SignedIn,
    session: SessionDep,
    first: Annotated[str, Query(alias="from")] = "",
    last: Annotated[str, Query(alias="to")] = "",
) -> Response:
    today = datetime.now(UTC).date()
    form = {
        "from": first.strip() or (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
        "to": last.strip() or today.isoformat(),
    }
    try:
        start, end = _period(form["from"], form["to"])
        report = service.usage(
            session,
            meter=_meter(request),
            account_id=browser.user.id,
            start=datetime.combine(start, time(), UTC),
            # The form's "to" is the last day shown, whole.
            end=datetime.combine(end + timedelta(days=1), time(), UTC),
            granularity="day",
        )
    except AppError as exc:
        return refused(request, "usage.html", browser, exc, form=form, usage=None)
    return render(request, "usage.html", viewer=browser, form=form, usage=_view(report, start, end))


def _period(first: str, last: str) -> tuple[date, date]:
    problems: list[dict[str, Any]] = []
    days: list[date] = []
    for field, text in (("from", first), ("to", last)):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            problems.append({"loc": [field], "msg": "a date such as 2026-03-31"})
            continue
        if day >= date.max:
            problems.append({"loc": [field], "msg": "a date before the year 10000"})
            continue
        days.append(day)
    if problems:
        raise InvalidInput("Please give the period as two dates.", errors=problems)
    start, end = days
    if end < start:
        raise InvalidInput(
            "The period ends before it starts.",
            errors=[{"loc": ["to"], "msg": "on or after the first day"}],
        )
    return start, end


def _view(report: UsageRead, start: date, end: date) -> dict[str, Any]:
    """The charts' series (every day of the period, zero where nothing happened), the table's
    rows (the days something did) and the totals."""
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    index = {day: n for n, day in enumerate(days)}
    series = []
    rows = []
    for model in report.models:
        values: dict[str, list[float]] = {key: [0] * len(days) for key, _ in FIGURES}
        for bucket in model.buckets:
            n = index.get(bucket.start.date())
            if n is None:
                continue
            figures = _figures(bucket)
            for key, value in figures.items():
                values[key][n] = value
            rows.append({"day": days[n].isoformat(), "model": model.model, **figures})
        series.append({"model": model.model, **values})
    rows.sort(key=lambda r: (r["day"], r["model"]))
    totals = [{"model": m.model, **_figures(m.totals)} for m in report.models]
    everything: dict[str, float] = {
        "predictions": sum(m.totals.predictions for m in report.models),
        "rows": sum(m.totals.rows for m in report.models),
        "compute_s": round(sum(m.totals.compute_s for m in report.models), DECIMALS),
        "errors": sum(m.totals.errors for m in report.models),
    }
    trainings = report.trainings
    return {
        "chart": {
            "days": [day.isoformat() for day in days],
            "figures": [{"key": key, "label": label} for key, label in FIGURES],
            "models": series,
        },
        "figures": FIGURES,
        "rows": rows,
        "totals": totals,
        "everything": everything,
        "trainings": {
            "count": trainings.count,
            "compute_s": round(trainings.compute_s, DECIMALS),
            "days": [
                {
                    "day": b.start.date().isoformat(),
                    "count": b.count,
                    "compute_s": round(b.compute_s, DECIMALS),
                }
                for b in trainings.buckets
            ],
        },
        "stored": [
            ("Model weights", report.stored_bytes.weights),
            ("Datasets", report.stored_bytes.datasets),
            ("Prediction jobs", report.stored_bytes.jobs),
        ],
        "stored_total": report.stored_bytes.total,
    }


def _figures(bucket: PredictionBucket) -> dict[str, float]:
    return {
        "predictions": bucket.predictions,
        "rows": bucket.rows,
        "compute_s": round(bucket.compute_s, DECIMALS),
        "errors": bucket.errors,
    }
