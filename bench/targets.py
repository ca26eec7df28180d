"""The TARGETS: what the platform must beat, each a ratio of one series' number to a
reference's at one connection count, judged on a report's runs."""

from __future__ import annotations

from typing import Any

from bench.layout import CONNECTIONS, V2_CONNECTIONS, V2_NPY_SERIES
from bench.load import STALL_MS
from bench.report import Report


def ratio_check(
    report: Report,
    name: str,
    series: str,
    reference: str,
    connections: int,
    *,
    metric: str,
    factor: float,
    higher_is_better: bool,
    strict: bool = False,
) -> None:
    """One target: ``series.metric`` against ``factor`` x ``reference.metric``."""
    mine, theirs = report.get(series, connections), report.get(reference, connections)
    entry: dict[str, Any] = {"target": name}
    if mine is None or theirs is None:
        missing = series if mine is None else reference
        entry |= {"verdict": "SKIP", "detail": f"{missing} @{connections} not measured"}
        report.targets.append(entry)
        return
    a, b = getattr(mine, metric), getattr(theirs, metric)
    ratio = a / b if b else float("inf")
    # Two series measured in turns are judged on the median of their per-turn ratios: each
    # pair of runs saw the same minute of the machine, whose speed drifts by more than some
    # targets' margins (the ratio of the two medians is shown beside it).
    paired = (
        report.paired_ratio(series, reference, connections)
        if metric == "rps" and higher_is_better
        else None
    )
    if paired is not None:
        ok, op = paired >= factor, ">="
    elif higher_is_better:
        ok, op = a >= factor * b, ">="
    elif strict:
        ok, op = a < factor * b, "<"
    else:
        ok, op = a <= factor * b, "<="
    unit = "req/s" if metric == "rps" else "ms"
    detail = f"{series} {a:,.2f} {unit} / {reference} {b:,.2f} {unit} = {ratio:.2f}x"
    if paired is not None:
        detail += f"; per-turn ratios' median {paired:.2f}x"
        ratio = paired
    detail += f" (need {op} {factor:g}x)"
    dirty = [r.series for r in (mine, theirs) if not r.clean]
    if dirty:
        ok = False
        detail += f"; errors in {', '.join(dirty)} @{connections}"
    contended = [r.series for r in (mine, theirs) if r.contended]
    if contended:
        detail += f"; measured under other load: {', '.join(contended)}"
    entry |= {"verdict": "PASS" if ok else "FAIL", "detail": detail, "ratio": ratio}
    report.targets.append(entry)


def evaluate(report: Report) -> None:
    def rps(name: str, series: str, ref: str, factor: float, conns: int = 32) -> None:
        ratio_check(
            report, name, series, ref, conns, metric="rps", factor=factor, higher_is_better=True
        )

    def lat(
        name: str,
        series: str,
        ref: str,
        factor: float,
        metric: str,
        conns: int,
        strict: bool = False,
    ) -> None:
        ratio_check(
            report,
            name,
            series,
            ref,
            conns,
            metric=metric,
            factor=factor,
            higher_is_better=False,
            strict=strict,
        )

    rps("T1a embedded JSON @32 req/s >= 3x obvious", "embedded json", "obvious", 3)
    lat("T1b embedded JSON @32 p99 <= obvious p99", "embedded json", "obvious", 1, "p99_ms", 32)
    rps("T2 embedded npy @32 req/s >= 0.85x bare", "embedded npy", "bare", 0.85)
    lat("T3 embedded JSON @1 p50 <= obvious p50", "embedded json", "obvious", 1, "p50_ms", 1)
    rps("T4a distributed @32 req/s >= 10x obvious_celery", "distributed json", "obvious_celery", 10)
    rps("T4b distributed @32 req/s >= 1.5x obvious", "distributed json", "obvious", 1.5)
    lat("T4c distributed @32 p99 <= 2x obvious p99", "distributed json", "obvious", 2, "p99_ms", 32)
    lat(
        "T4d distributed @1 p50 <= 0.6x obvious_celery p50",
        "distributed json",
        "obvious_celery",
        0.6,
        "p50_ms",
        1,
    )
    if report.get("litserve", 32) is None:
        for name in ("T5a embedded JSON vs LitServe", "T5b distributed JSON vs LitServe"):
            report.targets.append(
                {"target": name, "verdict": "SKIP", "detail": "LitServe not measured/unavailable"}
            )
    else:
        rps("T5a embedded JSON @32 req/s >= 5x LitServe", "embedded json", "litserve", 5)
        lat(
            "T5a' embedded JSON @32 p99 < LitServe p99",
            "embedded json",
            "litserve",
            1,
            "p99_ms",
            32,
            strict=True,
        )
        rps("T5b distributed @32 req/s >= 3x LitServe", "distributed json", "litserve", 3)
        lat(
            "T5b' distributed @32 p99 < LitServe p99",
            "distributed json",
            "litserve",
            1,
            "p99_ms",
            32,
            strict=True,
        )
    for conns in CONNECTIONS:
        ratio_check(
            report,
            f"T6 small CNN @{conns} req/s >= 0.95x orjson_unbatched",
            "cnn embedded json",
            "cnn orjson_unbatched",
            conns,
            metric="rps",
            factor=0.95,
            higher_is_better=True,
        )
    rps(
        "T8 rate-limit check costs <= 5% of embedded JSON @32",
        "embedded json (limit on)",
        "embedded json (limit off)",
        0.95,
    )
    rps(
        "T10 a two-version alias (90/10) costs <= 3% of a plain alias @32",
        "embedded json (two-version alias)",
        "embedded json (plain alias)",
        0.97,
    )
    for conns in V2_CONNECTIONS:
        rps(
            f"T9 v2 binary @{conns} req/s >= 0.9x embedded npy",
            "v2 binary",
            V2_NPY_SERIES,
            0.9,
            conns,
        )
    seq = report.seq("distributed json")
    if seq is None:
        report.targets.append(
            {"target": "T7 300 sequential distributed", "verdict": "SKIP", "detail": "not measured"}
        )
    else:
        ok = seq.over_50ms == 0 and seq.non_2xx == 0
        report.targets.append(
            {
                "target": f"T7 {seq.n} sequential distributed: none over {STALL_MS:g} ms",
                "verdict": "PASS" if ok else "FAIL",
                "detail": f"{seq.over_50ms} over {STALL_MS:g} ms, max {seq.max_ms:.1f} ms, "
                f"p99 {seq.p99_ms:.2f} ms, non-2xx {seq.non_2xx}",
            }
        )
