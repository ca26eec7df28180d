"""The benchmark's groups: which servers each starts, which targets it measures and how (one
after the other, or in turns where two sides of a ratio must see the same machine)."""

from __future__ import annotations

import argparse
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.layout import CONNECTIONS, RESULTS, V2_CONNECTIONS, V2_NPY_SERIES, log
from bench.load import Target, check_outputs, median_run, sequential, wrk
from bench.report import LoadResult, Report
from bench.servers import (
    BENCH_RATE_LIMIT,
    CELERY_REDIS_DB,
    LITSERVE_READY,
    PLATFORM_REDIS_DB,
    REDIS,
    Fleet,
    create_pg_database,
    flush_redis,
    nudged_weights,
    platform_account,
    platform_alias,
    platform_env,
    platform_model,
    platform_version,
    start_gateway,
    start_litserve,
    start_platform_worker,
    start_reference,
    start_reference_celery_worker,
    upgrade_database,
    without_predict_limit,
)
from bench.workloads import CNN_SPEC, MLP_SPEC, make_workload

GROUPS = (
    "obvious",
    "orjson_unbatched",
    "embedded",
    "distributed",
    "obvious_celery",
    "litserve",
    "cnn",
    "ratelimit",
    "v2",
    "canary",
)

# Rounds of runs for targets measured in turns (see Bench.measure_in_turns).
TURNS = 5
# The canary group's share of the traffic, as a canary commonly gets.
CANARY_PERCENT = 10
CANARY_CONNECTIONS = (32,)


class Bench:
    """The groups of the benchmark, each a method that starts its servers on a fleet and
    measures them into one report."""

    def __init__(self, args: argparse.Namespace, tmp: Path, report: Report) -> None:
        self.duration: float = args.duration
        self.warmup: float = 1.0 if args.quick else 3.0
        self.max_wait: float = args.max_wait
        self.tmp = tmp
        # Server logs outlive the temporary directory, for a look after a failure.
        self.logs = RESULTS.parent / "logs"
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)
        self.report = report
        self.mlp = make_workload(MLP_SPEC, (784,), tmp, "mlp")
        self.cnn = make_workload(CNN_SPEC, (1, 28, 28), tmp, "cnn")

    # ---- measuring one target

    def measure(
        self, target: Target, expected: npt.NDArray[np.float32], *, check_s: float = 60.0
    ) -> None:
        verdict = check_outputs(target, expected, check_s)
        log(f"{target.series}: outputs {verdict}")
        wrk(target, 8, self.warmup)  # warm-up, discarded
        for connections in CONNECTIONS:
            self.record(wrk(target, connections, self.duration, self.max_wait))

    def measure_in_turns(
        self,
        targets: Sequence[tuple[Target, npt.NDArray[np.float32]]],
        connections: Sequence[int] = CONNECTIONS,
    ) -> None:
        """Targets compared by a ratio target, measured in turns rather than one after the
        other: at each of ``connections``, TURNS rounds of one run per target (half the usual
        duration), the order reversed every other round, and the run with the median req/s
        reported for each. The machine's speed drifts by 10-20 % over minutes; measured in
        turns, both sides of a ratio see the same drift. A non-2xx or socket error in any of
        a target's runs is added to the reported run, so it still fails the target."""
        for target, expected in targets:
            log(f"{target.series}: outputs {check_outputs(target, expected, 60.0)}")
            wrk(target, 8, self.warmup)  # warm-up, discarded
        duration = max(float(int(self.duration / 2)), 1.0)  # wrk takes whole seconds
        for count in connections:
            runs: dict[str, list[LoadResult]] = {target.series: [] for target, _ in targets}
            for turn in range(TURNS):
                order = targets if turn % 2 == 0 else targets[::-1]
                for target, _ in order:
                    runs[target.series].append(wrk(target, count, duration, self.max_wait))
            for target, _ in targets:
                self.record(median_run(runs[target.series]))
                self.report.turns[f"{target.series}@{count}"] = [
                    run.rps for run in runs[target.series]
                ]

    def record(self, result: LoadResult) -> None:
        self.report.load.append(result)
        errors = ""
        if not result.clean:
            errors = f"  non-2xx {result.non_2xx} socket errors {result.socket_errors}"
            self.report.problems.append(
                f"{result.series} @{result.connections}: {result.non_2xx} non-2xx, "
                f"{result.socket_errors} socket errors out of {result.requests} requests"
            )
        log(
            f"{result.series} @{result.connections}: {result.rps:,.0f} req/s "
            f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms{errors}"
        )

    def measure_sequential(self, target: Target) -> None:
        result = sequential(target)
        self.report.sequential.append(result)
        if result.non_2xx:
            self.report.problems.append(f"{target.series} sequential: {result.non_2xx} non-2xx")
        log(
            f"{target.series} x{result.n} sequential: p50 {result.p50_ms:.2f} p99 "
            f"{result.p99_ms:.2f} max {result.max_ms:.2f} ms, {result.over_50ms} over 50 ms"
        )

    # ---- the references

    def group_obvious(self, fleet: Fleet) -> None:
        url = start_reference(fleet, "obvious", self.mlp, {})
        self.measure(Target("obvious", url, self.mlp.json_body), self.mlp.expected)

    def group_orjson_unbatched(self, fleet: Fleet) -> None:
        url = start_reference(fleet, "orjson_unbatched", self.mlp, {})
        self.measure(Target("orjson_unbatched", url, self.mlp.json_body), self.mlp.expected)

    def group_obvious_celery(self, fleet: Fleet) -> None:
        flush_redis(CELERY_REDIS_DB)
        celery_url = f"{REDIS}/{CELERY_REDIS_DB}"
        start_reference_celery_worker(fleet, self.mlp, celery_url)
        url = start_reference(
            fleet, "obvious_celery", self.mlp, {"BENCH_CELERY_URL": celery_url}, attr="api"
        )
        target = Target("obvious_celery", url, self.mlp.json_body)
        self.measure(target, self.mlp.expected)
        self.measure_sequential(target)

    def group_litserve(self, fleet: Fleet) -> None:
        if not LITSERVE_READY.exists():
            self.report.notes.append(
                "LitServe: unavailable (bench/.venv-litserve missing; `make bench` creates it)"
            )
            log("LitServe unavailable: no bench/.venv-litserve")
            return
        target = Target("litserve", start_litserve(fleet, self.mlp), self.mlp.json_body)
        self.measure(target, self.mlp.expected)

    # ---- the platform

    def group_embedded(self, fleet: Fleet) -> None:
        env, home = platform_env(self.tmp, f"embedded-{uuid.uuid4().hex[:6]}", {})
        base = start_gateway(fleet, "platform-embedded", env, home)
        key = platform_account(base)
        platform_model(base, key, "mlp-bench", self.mlp)
        url = f"{base}/v1/models/mlp-bench/predict"
        self.measure(Target("embedded json", url, self.mlp.json_body, key), self.mlp.expected)
        # The HTTP ceiling, in turns with the .npy path it bounds (target T2).
        bare = start_reference(fleet, "bare", self.mlp, {})
        self.measure_in_turns(
            [
                (Target("bare", bare, self.mlp.json_body), self.mlp.expected),
                (Target("bare (npy body)", bare, self.mlp.npy_body), self.mlp.expected),
                (Target("embedded npy", url, self.mlp.npy_body, key), self.mlp.expected),
            ]
        )

    def group_ratelimit(self, fleet: Fleet) -> None:
        """The rate-limit check's cost (target T8): one embedded gateway with the predict
        limit on (never met), called in turns by two accounts on one public model, one of
        them with the limit switched off by an admin's override. One process, one model
        runtime and batcher: the two series differ by the check alone, not by the luck of
        two processes' memory layouts."""
        name = f"rl-{uuid.uuid4().hex[:6]}"
        env, home = platform_env(self.tmp, name, {"AIAAS_RATE_LIMIT_PREDICT": BENCH_RATE_LIMIT})
        base = start_gateway(fleet, name, env, home)
        limited, unlimited = platform_account(base), platform_account(base)
        without_predict_limit(base, unlimited, env, home)
        platform_model(base, limited, "mlp-bench", self.mlp, visibility="public")
        url = f"{base}/v1/models/mlp-bench/predict"
        targets = [
            (Target(series, url, self.mlp.json_body, key), self.mlp.expected)
            for series, key in (
                ("embedded json (limit on)", limited),
                ("embedded json (limit off)", unlimited),
            )
        ]
        self.measure_in_turns(targets)

    def group_v2(self, fleet: Fleet) -> None:
        """The Open Inference Protocol's binary request (what tritonclient sends) against /v1's
        .npy body, on one embedded gateway, in turns (target T9)."""
        env, home = platform_env(self.tmp, f"embedded-v2-{uuid.uuid4().hex[:6]}", {})
        base = start_gateway(fleet, "platform-embedded-v2", env, home)
        key = platform_account(base)
        platform_model(base, key, "mlp-bench", self.mlp)
        v1 = f"{base}/v1/models/mlp-bench/predict"
        v2 = f"{base}/v2/models/mlp-bench/infer"
        self.measure_in_turns(
            [
                (Target(V2_NPY_SERIES, v1, self.mlp.npy_body, key), self.mlp.expected),
                (Target("v2 binary", v2, self.mlp.v2_body, key), self.mlp.expected),
            ],
            connections=V2_CONNECTIONS,
        )

    def group_canary(self, fleet: Fleet) -> None:
        """Predicts through an alias split 90/10 against a plain alias, on one embedded gateway,
        in turns. Target T10 is the alias's own cost (picking a version per request, counting
        its figures): its two versions hold the same weights, so they share a runtime and a
        batcher. The "two models" series splits between different weights (1e-6 apart on one
        bias, within the output check): another runtime and batcher, as a real canary has,
        whose smaller batches cost what running two models costs."""
        env, home = platform_env(self.tmp, f"canary-{uuid.uuid4().hex[:6]}", {})
        base = start_gateway(fleet, "platform-embedded-canary", env, home)
        key = platform_account(base)
        platform_model(base, key, "mlp-bench", self.mlp)
        platform_version(base, key, "mlp-bench", self.mlp.spec, nudged_weights(self.mlp.weights))
        platform_version(base, key, "mlp-bench", self.mlp.spec, self.mlp.weights)
        platform_alias(base, key, "mlp-bench", "plain", {"version": 1})
        for alias, canary in (("canary", "3"), ("two-models", "2")):
            split = {"1": 100 - CANARY_PERCENT, canary: CANARY_PERCENT}
            platform_alias(base, key, "mlp-bench", alias, {"versions": split})
        url = f"{base}/v1/models/mlp-bench/predict"
        series = (
            ("embedded json (plain alias)", "plain"),
            ("embedded json (two-version alias)", "canary"),
            ("embedded json (two-version alias, two models)", "two-models"),
        )
        self.measure_in_turns(
            [
                (
                    Target(name, f"{url}?version={alias}", self.mlp.json_body, key),
                    self.mlp.expected,
                )
                for name, alias in series
            ],
            connections=CANARY_CONNECTIONS,
        )

    def group_distributed(self, fleet: Fleet) -> None:
        flush_redis(PLATFORM_REDIS_DB)
        home_name = f"distributed-{uuid.uuid4().hex[:6]}"
        database_url = create_pg_database()
        if database_url is None:
            database_url = f"sqlite:///{self.tmp / home_name / 'shared.db'}"
            self.report.notes.append("distributed: PostgreSQL unreachable, used a shared SQLite")
        env, home = platform_env(
            self.tmp,
            home_name,
            {
                "AIAAS_BROKER_URL": f"{REDIS}/{PLATFORM_REDIS_DB}",
                "AIAAS_DATABASE_URL": database_url,
                "AIAAS_ARTIFACTS_URL": str(self.tmp / home_name / "artifacts"),
            },
        )
        upgrade_database(env, home)
        start_platform_worker(fleet, env, home)
        base = start_gateway(fleet, "platform-distributed", env, home)
        key = platform_account(base)
        platform_model(base, key, "mlp-bench", self.mlp)
        url = f"{base}/v1/models/mlp-bench/predict"
        target = Target("distributed json", url, self.mlp.json_body, key)
        self.measure(target, self.mlp.expected, check_s=120.0)
        self.measure_sequential(target)

    def group_cnn(self, fleet: Fleet) -> None:
        env, home = platform_env(self.tmp, f"embedded-cnn-{uuid.uuid4().hex[:6]}", {})
        base = start_gateway(fleet, "platform-embedded-cnn", env, home)
        key = platform_account(base)
        platform_model(base, key, "cnn-bench", self.cnn)
        url = f"{base}/v1/models/cnn-bench/predict"
        reference = start_reference(fleet, "orjson_unbatched", self.cnn, {})
        self.measure_in_turns(
            [
                (Target("cnn embedded json", url, self.cnn.json_body, key), self.cnn.expected),
                (Target("cnn orjson_unbatched", reference, self.cnn.json_body), self.cnn.expected),
            ]
        )

    def run_group(self, name: str) -> None:
        run: Callable[[Fleet], None] = getattr(self, f"group_{name}")
        platform = name in ("embedded", "distributed", "cnn", "ratelimit", "v2", "canary")
        for attempt in (1, 2) if platform else (1,):
            fleet = Fleet(self.logs)
            mark = (len(self.report.load), len(self.report.sequential))
            log(f"== {name}" + (f" (attempt {attempt})" if attempt > 1 else ""))
            try:
                run(fleet)
            except Exception as exc:
                tails = "\n".join(
                    f"--- {p.name} log tail:\n{p.tail()}" for p in fleet.procs if p.tail()
                )
                msg = f"{name} failed (attempt {attempt}): {type(exc).__name__}: {exc}"
                log(msg + ("\n" + tails if tails else ""))
                self.report.problems.append(msg)
                # A failed attempt's partial numbers are dropped; the retry measures again.
                del self.report.load[mark[0] :]
                del self.report.sequential[mark[1] :]
                continue
            finally:
                fleet.stop()
            return
