"""The benchmark's results: one record per run, the report that collects them with the
targets' verdicts, and its two forms, the table on stdout and ``bench/results/latest.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.contention import CONTENDED_CORES
from bench.layout import RESULTS, ROOT


@dataclass
class LoadResult:
    """One wrk run: a target at one connection count."""

    series: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    other_cpu: float = 0.0
    """Cores used by processes outside this benchmark while the run lasted."""

    @property
    def clean(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0 and self.requests > 0

    @property
    def contended(self) -> bool:
        return self.other_cpu > CONTENDED_CORES


@dataclass
class SequentialResult:
    series: str
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    over_50ms: int
    non_2xx: int
    other_cpu: float = 0.0


@dataclass
class Report:
    started: str
    mode: str
    duration_s: float
    layout: str
    machine: dict[str, Any]
    load: list[LoadResult] = field(default_factory=list)
    sequential: list[SequentialResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    # Series measured in turns: "series@connections" → req/s of each turn's run, in turn order.
    turns: dict[str, list[float]] = field(default_factory=dict)

    def get(self, series: str, connections: int) -> LoadResult | None:
        for r in self.load:
            if r.series == series and r.connections == connections:
                return r
        return None

    def paired_ratio(self, series: str, reference: str, connections: int) -> float | None:
        """The median of ``series``/``reference`` req/s over the turns both ran in, or None
        where they were not measured in turns together."""
        mine = self.turns.get(f"{series}@{connections}")
        theirs = self.turns.get(f"{reference}@{connections}")
        if not mine or not theirs or len(mine) != len(theirs):
            return None
        ratios = sorted(a / b for a, b in zip(mine, theirs, strict=True) if b)
        if not ratios:
            return None
        middle = len(ratios) // 2
        if len(ratios) % 2:
            return ratios[middle]
        return (ratios[middle - 1] + ratios[middle]) / 2

    def seq(self, series: str) -> SequentialResult | None:
        return next((s for s in self.sequential if s.series == series), None)


def print_report(report: Report) -> None:
    print()
    print(
        f"PREDICTION BENCHMARK  {report.started}  mode={report.mode}  {report.duration_s:g} s/run"
    )
    print(f"layout: {report.layout}")
    print(f"machine: {report.machine}")
    print()
    header = (
        f"{'series':<24} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'requests':>9} {'non-2xx':>8} {'sock err':>8} {'other cpu':>9}"
    )
    print(header)
    print("-" * len(header))
    last = None
    for r in report.load:
        if last is not None and r.series != last:
            print()
        last = r.series
        print(
            f"{r.series:<24} {r.connections:>5} {r.rps:>9,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{r.max_ms:>8.1f} {r.requests:>9,} {r.non_2xx:>8} {r.socket_errors:>8} "
            f"{r.other_cpu:>8.2f}{'*' if r.contended else ' '}"
        )
    if report.sequential:
        print()
        print(
            f"{'sequential (1 conn, httpx)':<28} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8} {'>50 ms':>7} {'non-2xx':>8} {'other cpu':>9}"
        )
        for s in report.sequential:
            print(
                f"{s.series:<28} {s.n:>4} {s.p50_ms:>8.2f} {s.p99_ms:>8.2f} {s.max_ms:>8.1f} "
                f"{s.over_50ms:>7} {s.non_2xx:>8} {s.other_cpu:>8.2f}"
                f"{'*' if s.other_cpu > CONTENDED_CORES else ' '}"
            )
    print()
    print("TARGETS")
    for t in report.targets:
        print(f"  [{t['verdict']}] {t['target']}: {t['detail']}")
    passed = sum(t["verdict"] == "PASS" for t in report.targets)
    failed = sum(t["verdict"] == "FAIL" for t in report.targets)
    skipped = sum(t["verdict"] == "SKIP" for t in report.targets)
    print(f"  {passed} passed, {failed} failed, {skipped} skipped")
    if report.notes:
        print()
        print("NOTES")
        for note in report.notes:
            print(f"  - {note}")
    print()
    print("PROBLEMS" if report.problems else "PROBLEMS: none (no non-2xx, no socket errors)")
    for problem in report.problems:
        print(f"  - {problem}")


def write_results(report: Report) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"\nresults: {RESULTS.relative_to(ROOT)}")
