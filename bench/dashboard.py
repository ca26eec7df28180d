"""Dashboard pages' latency with a realistic working set: every page must answer in under
100 ms at the 95th percentile.

    python bench/dashboard.py [-n 30] [--warmup 5] [--profile]

A fresh SQLite database in a temp folder is migrated and seeded (``bench/dashboard_seed.py``:
the owner's 100 models of 10 versions each with their metrics, trainings, datasets, feedback,
API keys, a month of usage, other accounts and an audit log). A real ``aiaas serve`` runs on it
(core 0, 127.0.0.1, a free port); this script (core 1) signs in through the login form as the
owner and as an admin, warms each page up, then times ``-n`` sequential GETs of it over one
keep-alive connection. Each page's p50/p95/max (client side, the response read whole) is
judged against the budget; a page that does not answer 200 with its expected text fails.
Beside it, the gateway's CPU time per request (from /proc, all its threads): what the page
costs the server however busy the machine is, since the 2 cores may be shared.

The gateway sends no Server-Timing header (a column shows one if it ever does), so the
client's time over loopback is the figure judged; ``GET /healthz``, timed the same way, gives
the floor that round trip and the gateway's plumbing add to every page. Afterwards the same app
is built in this process on the same database to count, per page, its SQL statements and the
rows it loads as ORM objects, and to check that no page reads a blob (the versions' weights are
not stored). A page over budget (every page with ``--profile``) gets its top functions by
cumulative time (cProfile over its route and dependencies). Results: a table on stdout and
``bench/results/dashboard.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Run as a script: the sibling modules are imported as the ``bench`` package, from the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiaas.migrate import upgrade
from aiaas.web.sessions import SESSION_COOKIE
from bench.contention import CLOCK_TICKS, CONTENDED_CORES, OtherLoad, WaitBudget, wait_quiet
from bench.dashboard_seed import PASSWORD, Seeded, Size, seed
from bench.layout import BENCH, CLIENT_CPU, ROOT, log
from bench.servers import SECRET_KEY, Fleet, platform_env, start_gateway

BUDGET_MS = 100.0
RESULTS = BENCH / "results" / "dashboard.json"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PROFILE_LINES = 25
THREADPOOL = "run_in_threadpool"
# Requests per page in the in-process pass (and again for a profile).
INSPECTED = 5


@dataclass(frozen=True)
class Page:
    path: str
    # Text the page must hold: a 200 that shows something else is not the page asked for.
    expect: str
    admin: bool = False


@dataclass
class PageResult:
    path: str
    account: str
    status: int
    n: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    max_ms: float = 0.0
    body_kb: float = 0.0
    # The gateway's CPU time per request (all its threads), from /proc: what the page costs
    # the server whatever else the machine runs, in steps of 10 ms / n.
    server_cpu_ms: float = 0.0
    other_cpu: float = 0.0
    queries: int | None = None
    orm_objects: int | None = None
    blob_reads: int | None = None
    verdict: str = "FAIL"
    detail: str = ""
    profile: str = ""
    samples_ms: list[float] = field(default_factory=list)


def pages(seeded: Seeded) -> list[Page]:
    model = seeded.model_names[len(seeded.model_names) // 2]
    training = seeded.training_ids[0]
    return [
        Page("/models", "model-0"),
        Page("/models?q=-04", "model-040"),
        Page(f"/models/{model}", model),
        Page(f"/models/{model}/versions/5", "Confusion"),
        Page("/trainings", "status-succeeded"),
        Page("/trainings/new", "digits export"),
        Page(f"/trainings/{training}", seeded.model_names[0]),
        Page("/datasets", "digits export"),
        Page("/usage", seeded.model_names[0]),
        Page("/keys", "service 1"),
        Page("/account", seeded.owner_email),
        Page("/admin", "ccounts", admin=True),
        Page("/admin/accounts", "bench.example.com", admin=True),
        Page(f"/admin/accounts/{seeded.owner_id}", seeded.owner_email, admin=True),
        Page("/admin/audit", "login", admin=True),
    ]


def nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def sign_in(client: httpx.Client, email: str) -> str:
    """Through the sign-in form, as a browser does; the session cookie's value."""
    page = client.get("/login")
    token = CSRF.search(page.text)
    if page.status_code != 200 or token is None:
        raise RuntimeError(f"GET /login: {page.status_code}, no CSRF token")
    answer = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in of {email}: HTTP {answer.status_code} {answer.text[:300]}")
    return str(client.cookies[SESSION_COOKIE])


def cpu_ticks(pid: int) -> int:
    """User and system CPU ticks of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measure(
    client: httpx.Client,
    page: Page,
    account: str,
    *,
    server: int,
    n: int,
    warmup: int,
    max_wait: float,
) -> PageResult:
    first = client.get(page.path, follow_redirects=False)
    result = PageResult(page.path, account, first.status_code)
    if first.status_code != 200 or page.expect not in first.text:
        result.detail = (
            f"HTTP {first.status_code}, expected text found: {page.expect in first.text}"
        )
        return result
    for _ in range(warmup):
        client.get(page.path)
    wait_quiet(max_wait)
    load, ticks = OtherLoad(), cpu_ticks(server)
    timings: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(page.path, follow_redirects=False)
        body = response.content
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            result.status = response.status_code
            result.detail = f"HTTP {response.status_code} during the run"
    result.other_cpu = load.cores()
    result.server_cpu_ms = (cpu_ticks(server) - ticks) * 1000 / CLOCK_TICKS / n
    result.n, result.samples_ms = n, [round(t, 3) for t in timings]
    result.p50_ms = statistics.median(timings)
    result.p95_ms = nearest_rank(timings, 0.95)
    result.max_ms = max(timings)
    result.body_kb = len(body) / 1024
    if not result.detail:
        ok = result.p95_ms < BUDGET_MS
        result.verdict = "PASS" if ok else "FAIL"
        result.detail = f"p95 {result.p95_ms:.1f} ms {'<' if ok else '>='} {BUDGET_MS:g} ms"
    return result


# ---- inside the process: SQL statements, blob reads, profiles ---------------------------------


@dataclass
class Inspection:
    queries: int
    orm_objects: int
    blob_reads: int
    profile: str = ""


class _Counters:
    def __init__(self) -> None:
        self.queries = 0
        self.orm_objects = 0
        self.blob_reads = 0
        self.profiler: cProfile.Profile | None = None


@contextlib.contextmanager
def _endpoints_profiled(counters: _Counters) -> Iterator[None]:
    """Sync routes and dependencies run in worker threads, out of reach of a profiler started
    here: run each under the profiler of ``counters`` (when set), in its own thread."""
    import anyio.to_thread
    import fastapi.dependencies.utils
    import fastapi.routing

    # Both modules call starlette's run_in_threadpool by the name they imported it under.
    modules = (fastapi.routing, fastapi.dependencies.utils)
    originals = [getattr(module, THREADPOOL) for module in modules]

    async def run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            profiler = counters.profiler
            if profiler is None:
                return func(*args, **kwargs)
            profiler.enable()
            try:
                return func(*args, **kwargs)
            finally:
                profiler.disable()

        return await anyio.to_thread.run_sync(call)

    for module in modules:
        setattr(module, THREADPOOL, run)
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            setattr(module, THREADPOOL, original)


def inspect_pages(
    home: Path, checked: list[tuple[Page, str]], *, profile: set[str]
) -> dict[str, Inspection]:
    """Each page once more, served by the app built in this process on the same database:
    the statements it runs, the rows it loads as ORM objects, the blobs it reads and (for
    ``profile``) where its time goes. Cookies are the live server's sessions (same database,
    same secret)."""
    from sqlalchemy import event

    from aiaas.config import Settings
    from aiaas.db import Base, Database
    from aiaas.main import create_app
    from aiaas.storage import open_store

    # The measured gateway's database and store, named outright: an AIAAS_ variable or a .env
    # file of this shell must not point the inspection at another one.
    var = home / "var"
    settings = Settings(
        var_dir=var,
        database_url=f"sqlite:///{var / 'aiaas.db'}",
        artifacts_url=str(var / "artifacts"),
        secret_key=SECRET_KEY,
        demo_models=False,
        _env_file=None,
    )
    database = Database.from_url(settings.resolved_database_url)
    store = open_store(settings.resolved_artifacts_url)
    counters = _Counters()

    def statement(*_: Any) -> None:
        counters.queries += 1

    def loaded(*_: Any) -> None:
        counters.orm_objects += 1

    event.listen(database.engine, "before_cursor_execute", statement)
    for name in ("get_bytes", "open", "exists", "size", "local_path"):
        read = getattr(store, name)

        def counted(*args: Any, _read: Callable[..., Any] = read, **kwargs: Any) -> Any:
            counters.blob_reads += 1
            return _read(*args, **kwargs)

        setattr(store, name, counted)
    with warnings.catch_warnings():
        # Starlette's TestClient warns that it is moving to httpx2; this script uses httpx.
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    found: dict[str, Inspection] = {}
    try:
        with (
            warnings.catch_warnings(),
            _endpoints_profiled(counters),
            TestClient(create_app(settings, database=database, store=store)) as client,
        ):
            warnings.simplefilter("ignore", DeprecationWarning)
            for page, cookie in checked:
                client.cookies.set(SESSION_COOKIE, cookie)
                for _ in range(3):
                    client.get(page.path)
                counters.queries, counters.orm_objects, counters.blob_reads = 0, 0, 0
                # Counting loaded objects costs a call per row: never while profiling.
                event.listen(Base, "load", loaded, propagate=True)
                try:
                    for _ in range(INSPECTED):
                        client.get(page.path)
                finally:
                    event.remove(Base, "load", loaded)
                found[page.path] = Inspection(
                    queries=round(counters.queries / INSPECTED),
                    orm_objects=round(counters.orm_objects / INSPECTED),
                    blob_reads=counters.blob_reads,
                )
                if page.path in profile:
                    counters.profiler = cProfile.Profile()
                    for _ in range(INSPECTED):
                        client.get(page.path)
                    out = io.StringIO()
                    stats = pstats.Stats(counters.profiler, stream=out)
                    stats.sort_stats("cumulative").print_stats(PROFILE_LINES)
                    found[page.path].profile = out.getvalue()
                    counters.profiler = None
    finally:
        database.dispose()
    return found


# ---- the run ----------------------------------------------------------------------------------


def print_table(results: list[PageResult]) -> None:
    header = (
        f"{'page':<52} {'as':<5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'cpu ms':>6} "
        f"{'KiB':>6} {'SQL':>4} {'ORM objs':>8} {'blobs':>5} {'other cpu':>9}  "
        "verdict"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        sql = "" if r.queries is None else str(r.queries)
        objects = "" if r.orm_objects is None else str(r.orm_objects)
        blobs = "" if r.blob_reads is None else str(r.blob_reads)
        flag = "*" if r.other_cpu > CONTENDED_CORES else " "
        print(
            f"{r.path[:52]:<52} {r.account:<5} {r.p50_ms:>7.1f} {r.p95_ms:>7.1f} "
            f"{r.max_ms:>7.1f} {r.server_cpu_ms:>6.1f} {r.body_kb:>6.1f} "
            f"{sql:>4} {objects:>8} {blobs:>5} "
            f"{r.other_cpu:>8.2f}{flag}  {r.verdict} ({r.detail})"
        )


def print_report(report: dict[str, Any], results: list[PageResult]) -> None:
    print()
    print(
        f"DASHBOARD PAGES  {report['started']}  n={report['n']} after {report['warmup']} "
        f"warm-up, budget p95 < {BUDGET_MS:g} ms; {report['layout']}"
    )
    print(f"rows: {report['rows']} (seeded in {report['seed_s']} s)")
    floor = report["floor"]
    print(
        f"floor: GET /healthz p50 {floor['p50_ms']:.2f} ms, p95 {floor['p95_ms']:.2f} ms, "
        f"cpu {floor['server_cpu_ms']:.1f} ms (the loopback round trip and the gateway's "
        "plumbing)"
    )
    print()
    print_table(results)
    for r in results:
        if r.profile:
            print(f"\nPROFILE {r.path} ({INSPECTED} requests in-process: route and dependencies)")
            print(r.profile)
    verdicts = [r.verdict for r in results]
    print(
        f"\n{verdicts.count('PASS')} passed, {verdicts.count('FAIL')} failed, "
        f"{verdicts.count('SKIP')} skipped"
    )
    print(
        "cpu ms: the gateway's CPU time per request (all threads, /proc; steps of "
        f"{1000 / CLOCK_TICKS:g} ms / n), what the page costs the server whatever else runs; "
        "SQL: statements per request; ORM objs: rows loaded as ORM objects per request; blobs: "
        "artifact-store reads (all three counted in-process, same database); other cpu: cores "
        f"other processes used during the page's run ('*' over {CONTENDED_CORES:g})"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("-n", type=int, default=30, help="Timed requests per page.")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed requests per page first.")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=10.0,
        help="Before each page, wait up to this many seconds for other processes to go quiet.",
    )
    parser.add_argument(
        "--wait-budget", type=float, default=60.0, help="Most seconds spent waiting in all."
    )
    parser.add_argument(
        "--profile", action="store_true", help="Profile every page, not only those over budget."
    )
    return parser.parse_args()


def run_pages(
    args: argparse.Namespace, seeded: Seeded, env: dict[str, str], home: Path
) -> tuple[list[PageResult], PageResult, dict[str, str]]:
    """Start the gateway, sign both accounts in, time every page; the results, the floor
    (``/healthz``) and each account's session cookie."""
    logs = RESULTS.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(logs)
    results: list[PageResult] = []
    try:
        base = start_gateway(fleet, "dashboard-gateway", env, home)
        log(f"gateway at {base}")
        with (
            httpx.Client(base_url=base, timeout=30.0) as owner,
            httpx.Client(base_url=base, timeout=30.0) as admin,
        ):
            cookies = {
                "owner": sign_in(owner, seeded.owner_email),
                "admin": sign_in(admin, seeded.admin_email),
            }
            # Started through taskset, which execs the gateway: the same process id.
            server = fleet.procs[-1].popen.pid
            timing = {
                "server": server,
                "n": args.n,
                "warmup": args.warmup,
                "max_wait": args.max_wait,
            }
            floor = measure(owner, Page("/healthz", ""), "owner", **timing)
            for page in pages(seeded):
                client, account = (admin, "admin") if page.admin else (owner, "owner")
                result = measure(client, page, account, **timing)
                log(f"{page.path}: {result.verdict} ({result.detail})")
                results.append(result)
    finally:
        fleet.stop()
    return results, floor, cookies


def main() -> int:
    args = parse_args()
    WaitBudget.left = args.wait_budget
    pinned = len(os.sched_getaffinity(0)) >= 2
    if pinned:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "budget_ms": BUDGET_MS,
        "n": args.n,
        "warmup": args.warmup,
        "layout": (
            "gateway on core 0, this client on core 1"
            if pinned
            else "one core: the gateway and the client share it"
        ),
    }
    with tempfile.TemporaryDirectory(prefix="aiaas-dashboard-") as tmp:
        env, home = platform_env(Path(tmp), "gateway", {})
        url = f"sqlite:///{home / 'var' / 'aiaas.db'}"
        started = time.perf_counter()
        upgrade(url)
        seeded = seed(url, Size())
        report["seed_s"] = round(time.perf_counter() - started, 2)
        report["rows"] = seeded.counts
        log(f"seeded in {report['seed_s']} s: {seeded.counts}")
        results, floor, cookies = run_pages(args, seeded, env, home)
        report["floor"] = {
            "p50_ms": floor.p50_ms,
            "p95_ms": floor.p95_ms,
            "max_ms": floor.max_ms,
            "server_cpu_ms": floor.server_cpu_ms,
        }
        measured = [r for r in results if r.n]
        by_path = {p.path: p for p in pages(seeded)}
        profile = {r.path for r in measured if args.profile or r.verdict == "FAIL"}
        found = inspect_pages(
            home, [(by_path[r.path], cookies[r.account]) for r in measured], profile=profile
        )
    for r in measured:
        seen = found[r.path]
        r.queries, r.orm_objects, r.blob_reads = seen.queries, seen.orm_objects, seen.blob_reads
        r.profile = seen.profile
        if seen.blob_reads:
            r.verdict = "FAIL"
            r.detail += "; reads blobs, which the seed does not store"
    print_report(report, results)
    report["pages"] = [asdict(r) for r in results]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {RESULTS.relative_to(ROOT)}")
    return 0 if all(r.verdict != "FAIL" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
