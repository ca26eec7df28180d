"""Prediction benchmark: the platform against obvious references, side by side, on one machine.

    python bench/predict.py [--quick] [--only NAME[,NAME...]] [--duration S]

Layout (a 2-core box): every server under test runs on core 0 (``taskset -c 0``), the load
generator (``wrk -t1``), this script and its sequential client run on core 1. In the
distributed runs the Celery worker (the platform's or the reference's) also runs on core 1,
beside wrk. Every server runs torch on one thread (``OMP_NUM_THREADS=1``).

Each server is started as a subprocess on a free 127.0.0.1 port, waited for, checked with one
request whose outputs must match the model computed here, warmed up, measured at 1, 8, 32 and
64 connections, and killed. Results go to stdout (a table and a TARGETS section) and to
``bench/results/latest.json``. See ``bench/README.md``.

The pieces: ``groups`` (what each group starts and measures), ``servers`` (starting and
stopping them), ``load`` (wrk and the sequential client), ``contention`` (other load on the
machine), ``targets`` (the TARGETS and their checks), ``report`` (the table and the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

# Run as a script: the sibling modules are imported as the ``bench`` package, from the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.contention import CONTENDED_CORES, WaitBudget
from bench.groups import GROUPS, Bench
from bench.layout import CLIENT_CPU, SERVER_CPU
from bench.report import Report, print_report, write_results
from bench.servers import drop_garbage
from bench.targets import evaluate


@contextlib.contextmanager
def pinned_to_client_core() -> Iterator[None]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 10 s.")
    parser.add_argument("--duration", type=float, help="Seconds per wrk run (default 10, quick 3).")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        help="Before each run, wait up to this many seconds for other processes on the machine "
        "to go quiet (0: never wait). Runs measured under other load are flagged either way.",
    )
    parser.add_argument(
        "--wait-budget",
        type=float,
        default=600.0,
        help="Most seconds spent waiting for quiet over the whole benchmark.",
    )
    parser.add_argument(
        "--only",
        help=f"Comma-separated groups to run: {', '.join(GROUPS)} (default: all).",
    )
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    groups = GROUPS if not args.only else tuple(g.strip() for g in args.only.split(","))
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {unknown}; choose from {', '.join(GROUPS)}")
    args.groups = groups
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    WaitBudget.left = args.wait_budget
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 cores: servers on core 0, load on core 1", file=sys.stderr)
        return 2
    report = Report(
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
        mode="quick" if args.quick else "full",
        duration_s=args.duration,
        layout=(
            f"servers (gateways, reference apps, LitServe) on core {SERVER_CPU}; wrk -t1, this "
            f"script, its httpx client and the Celery workers (platform and reference) on core "
            f"{CLIENT_CPU}; torch 1 thread everywhere"
        ),
        machine={
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cpu_model": _cpu_model(),
        },
    )
    report.notes.append(
        "non-2xx counts are wrk's status errors (HTTP status >= 400); socket errors are connect, "
        "read, write and timeout (10 s) errors; a run with any is never counted as PASS"
    )
    report.notes.append(
        f"'other cpu' = cores used by processes outside this benchmark during the run; "
        f"'*' marks a run above {CONTENDED_CORES:g} (numbers not trustworthy)"
    )
    report.notes.append(
        "'embedded npy' sends a (1, 784) float32 .npy body and gets the JSON answer; 'bare' reads "
        "the 6.2 KB JSON body ('bare (npy body)' the 3.2 KB .npy one) and answers {}"
    )
    report.notes.append(
        "'v2 binary' posts what tritonclient sends for one (1, 784) FP32 row in binary (its JSON, "
        "then 3,136 bytes) to /v2/models/mlp-bench/infer and gets every output back in binary; "
        "'embedded npy (beside v2)' is /v1's .npy series on the same gateway, measured in turns"
    )
    with tempfile.TemporaryDirectory(prefix="aiaas-bench-") as tmp, pinned_to_client_core():
        bench = Bench(args, Path(tmp), report)

        def stop(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            for group in args.groups:
                bench.run_group(group)
        except KeyboardInterrupt:
            report.problems.append("interrupted")
        finally:
            report.problems.extend(drop_garbage())
    evaluate(report)
    print_report(report)
    write_results(report)
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
