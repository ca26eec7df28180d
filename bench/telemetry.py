"""What the gateway's per-request telemetry costs: CPU time of the gateway process per
prediction, with the access lines on (the default) and off, and optionally against another
source tree of the platform (an earlier revision: ``git worktree add /tmp/base <rev>``).

CPU time per request (the process's user + system time over a wrk run, divided by the requests
answered) moves far less than req/s on a shared machine: the throughput of one run here swung
by 30 % between turns while its CPU per request moved by a few per cent. The arms run in turns
(the order reversed every other turn), each a 4 s wrk run at 32 connections with the .npy body,
and the per-turn ratios' median is reported.

    python bench/telemetry.py [--turns 8] [--baseline /tmp/base/src] [--body npy|json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.layout import ROOT, log
from bench.load import Target, wrk
from bench.servers import (
    Fleet,
    platform_account,
    platform_env,
    platform_model,
    start_gateway,
)
from bench.workloads import MLP_SPEC, make_workload

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system time of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--body", choices=("npy", "json"), default="npy")
    parser.add_argument("--baseline", type=Path, help="Another revision's src/ to compare.")
    args = parser.parse_args()

    arms: dict[str, dict[str, str]] = {
        "access lines on": {},
        "access lines off": {"AIAAS_ACCESS_LOG": "false"},
    }
    if args.baseline:
        arms["baseline"] = {"PYTHONPATH": f"{args.baseline.resolve()}:{ROOT}"}
    with tempfile.TemporaryDirectory(prefix="aiaas-telemetry-") as name:
        tmp = Path(name)
        (tmp / "logs").mkdir()
        fleet = Fleet(tmp / "logs")
        mlp = make_workload(MLP_SPEC, (784,), tmp, "mlp")
        targets: list[tuple[Target, int]] = []
        try:
            for arm, extra in arms.items():
                env, home = platform_env(tmp, f"gw-{uuid.uuid4().hex[:6]}", {})
                env.update(extra)
                base = start_gateway(fleet, arm.replace(" ", "-"), env, home)
                pid = fleet.procs[-1].popen.pid
                key = platform_account(base)
                platform_model(base, key, "mlp-bench", mlp)
                body = mlp.npy_body if args.body == "npy" else mlp.json_body
                url = f"{base}/v1/models/mlp-bench/predict"
                targets.append((Target(arm, url, body, key), pid))
            for target, _ in targets:
                wrk(target, 8, 3)  # warm-up, discarded
            per_request: dict[str, list[float]] = {t.series: [] for t, _ in targets}
            for turn in range(args.turns):
                for target, pid in targets if turn % 2 == 0 else targets[::-1]:
                    before = cpu_seconds(pid)
                    run = wrk(target, args.connections, 4)
                    used = cpu_seconds(pid) - before
                    per_request[target.series].append(used / max(run.requests, 1) * 1e6)
        finally:
            fleet.stop()
    for arm, values in per_request.items():
        shown = [round(v) for v in values]
        log(f"{arm}: {statistics.median(values):.1f} us CPU per request {shown}")
    reference = "baseline" if args.baseline else "access lines off"
    for arm, values in per_request.items():
        if arm == reference:
            continue
        ratios = [a / b for a, b in zip(values, per_request[reference], strict=True)]
        log(f"{arm} / {reference}: per-turn median {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
