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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from bench.references._model import load_model  # noqa: E402

VENV_BIN = Path(sys.executable).parent
LITSERVE_PY = BENCH / ".venv-litserve" / "bin" / "python"
LITSERVE_READY = BENCH / ".venv-litserve" / ".installed"
LUA = BENCH / "wrk" / "post.lua"
RESULTS = BENCH / "results" / "latest.json"

SERVER_CPU = "0"
CLIENT_CPU = "1"
CONNECTIONS = (1, 8, 32, 64)
# Rounds of runs for targets measured in turns (see Bench.measure_in_turns).
TURNS = 5
HOST = "127.0.0.1"
REDIS = "redis://127.0.0.1:6379"
PLATFORM_REDIS_DB = 11
CELERY_REDIS_DB = 12
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_DATABASE = "aiaas_bench"
SECRET_KEY = "bench-only-secret-key-0123456789abcdefgh"  # 40 characters, never used elsewhere
SEQUENTIAL_N = 300
STALL_MS = 50.0
# A run during which other processes used more CPU than this (in cores) is flagged.
CONTENDED_CORES = 0.10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

MLP_SPEC: dict[str, Any] = {
    "architecture": "mlp",
    "config": {"input_dim": 784, "hidden": [256, 256], "output_dim": 10},
}
CNN_SPEC: dict[str, Any] = {
    "architecture": "cnn",
    "config": {
        "in_channels": 1,
        "height": 28,
        "width": 28,
        "blocks": [{"channels": 8, "kernel": 3}, {"channels": 16, "kernel": 3}],
        "output_dim": 10,
    },
}
JSON = "application/json"
NPY = "application/x-npy"

GROUPS = (
    "obvious",
    "orjson_unbatched",
    "embedded",
    "distributed",
    "obvious_celery",
    "litserve",
    "cnn",
    "ratelimit",
)
# A limit no run meets, so the check runs on every request without refusing any.
BENCH_RATE_LIMIT = "100000000/second"


# --------------------------------------------------------------------------- results


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

    def get(self, series: str, connections: int) -> LoadResult | None:
        for r in self.load:
            if r.series == series and r.connections == connections:
                return r
        return None

    def seq(self, series: str) -> SequentialResult | None:
        return next((s for s in self.sequential if s.series == series), None)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The inherited environment minus any platform settings, plus one torch thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIAAS_", "BENCH_"))}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


class Proc:
    """A subprocess pinned to one core, in its own process group, logging to a file."""

    def __init__(
        self, name: str, cmd: Sequence[str], *, env: dict[str, str], cwd: Path, cpu: str, logs: Path
    ) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        n = 2
        while self.log_path.exists():  # a retry or a second server of the same name
            self.log_path = logs / f"{name}.{n}.log"
            n += 1
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            ["taskset", "-c", cpu, *cmd],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM to the group (the process and its children), SIGKILL after 10 s."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children that outlived their parent in the same group (LitServe's workers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._log.close()


class Fleet:
    """Every process started for one group; stopping the fleet stops them all."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[Proc] = []

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path = ROOT,
        cpu: str = SERVER_CPU,
    ) -> Proc:
        proc = Proc(name, cmd, env=env, cwd=cwd, cpu=cpu, logs=self.logs)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def wait_http(url: str, proc: Proc, timeout: float = 90.0) -> None:
    """Until ``url`` answers anything at all (a 404 proves the server is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        return
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout:.0f}s:\n{proc.tail()}")


# --------------------------------------------------------------------------- other load


def _machine_busy_ticks() -> int:
    """CPU ticks spent running anything (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return user + nice + system + irq + softirq


def _is_shared_service(pid: str, comm: str) -> bool:
    """The Redis on 6379 and PostgreSQL: part of the system under test in distributed runs."""
    if comm.startswith(("postgres", "postmaster")):
        return True
    if comm == "redis-server":
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            return b":6379" in f.read()
    return False


def _our_ticks() -> int:
    """CPU ticks of this script and every process below it (servers, workers, wrk), plus
    the shared Redis and PostgreSQL (other users of them are not told apart).

    A child's ticks count in its own /proc entry while it lives and in its parent's
    cutime/cstime once reaped, so a wrk that ran and ended inside a window is counted once.
    """
    table: dict[int, tuple[int, int]] = {}
    services: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            rest = tail.split()
        except (OSError, ValueError):
            continue
        ppid = int(rest[1])
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        table[int(entry.name)] = (ppid, ticks)
        if _is_shared_service(entry.name, head.split("(", 1)[-1]):
            services.add(int(entry.name))
    ours = {os.getpid()} | services
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in table.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    return sum(table[pid][1] for pid in ours if pid in table)


class OtherLoad:
    """Measures the CPU used by processes outside this benchmark over a window."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _machine_busy_ticks()
        self.ours0 = _our_ticks()

    def cores(self) -> float:
        wall = time.monotonic() - self.t0
        busy = _machine_busy_ticks() - self.busy0
        ours = _our_ticks() - self.ours0
        return max(0.0, (busy - ours) / CLOCK_TICKS / max(wall, 1e-3))


class WaitBudget:
    """How long, in all, the benchmark may still wait for the machine to go quiet."""

    left: float = 0.0


def wait_quiet(max_wait: float) -> float:
    """Wait until other processes use under CONTENDED_CORES; return the last level seen."""
    max_wait = min(max_wait, WaitBudget.left)
    started = time.monotonic()
    deadline = started + max_wait
    announced = False
    while True:
        sample = OtherLoad()
        time.sleep(1.0)
        level = sample.cores()
        if level <= CONTENDED_CORES or time.monotonic() >= deadline:
            WaitBudget.left = max(0.0, WaitBudget.left - (time.monotonic() - started))
            if announced:
                log(f"other load now {level:.2f} cores: going on")
            return level
        if not announced:
            log(f"other processes use {level:.2f} cores: waiting up to {max_wait:.0f}s")
            announced = True


# --------------------------------------------------------------------------- bodies


@dataclass(frozen=True)
class Body:
    path: Path
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Workload:
    """A model, its weights, and request bodies, plus the outputs every server must return."""

    spec: dict[str, Any]
    weights_path: Path
    weights: bytes
    json_body: Body
    npy_body: Body
    expected: npt.NDArray[np.float32]


def make_workload(spec: dict[str, Any], shape: tuple[int, ...], tmp: Path, tag: str) -> Workload:
    from aiaas.ml.architectures import build_model, parse_config
    from aiaas.ml.weights import save_safetensors

    torch.manual_seed(0)
    config = parse_config(spec["architecture"], spec["config"], max_parameters=50_000_000)
    weights = save_safetensors(build_model(spec["architecture"], config))
    weights_path = tmp / f"{tag}.safetensors"
    weights_path.write_bytes(weights)

    # Values with five decimals: 784 of them make the 6.2 KB body of the performance notes.
    rng = np.random.default_rng(0)
    row = np.round(rng.random((1, *shape)), 5).astype(np.float32)
    json_data = json.dumps({"inputs": row.tolist()}, separators=(",", ":")).encode()
    json_path = tmp / f"{tag}.json"
    json_path.write_bytes(json_data)
    npy_path = tmp / f"{tag}.npy"
    np.save(npy_path, row)

    model = load_model(json.dumps(spec), str(weights_path))
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(row)), dim=-1).numpy()
    return Workload(
        spec=spec,
        weights_path=weights_path,
        weights=weights,
        json_body=Body(json_path, JSON, json_data),
        npy_body=Body(npy_path, NPY, npy_path.read_bytes()),
        expected=expected,
    )


# --------------------------------------------------------------------------- platform API


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


def platform_account(base: str) -> str:
    """Register, log in, make an API key with predict scope; return the key."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    password = "bench password 0123456789"
    with httpx.Client(base_url=base, timeout=60.0) as c:
        creds = {"email": email, "password": password}
        _ok(c.post("/v1/auth/register", json=creds), "register")
        token = _ok(c.post("/v1/auth/login", json=creds), "login").json()["access_token"]
        key = _ok(
            c.post(
                "/v1/api-keys",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": "bench", "scopes": ["models:read", "models:write", "predict"]},
            ),
            "api key",
        ).json()["key"]
    return str(key)


def platform_model(base: str, key: str, name: str, work: Workload) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=60.0, headers=headers) as c:
        _ok(c.post("/v1/models", json={"name": name, "task": "classification"}), "create model")
        _ok(
            c.post(
                f"/v1/models/{name}/versions",
                data={"spec": json.dumps(work.spec)},
                files={
                    "weights": ("weights.safetensors", work.weights, "application/octet-stream")
                },
            ),
            "upload version",
        )


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Target:
    """What wrk hits: a URL, a body and the headers that go with it."""

    series: str
    url: str
    body: Body
    key: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.body.content_type}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers


def check_outputs(target: Target, expected: npt.NDArray[np.float32], timeout: float) -> str:
    """One request must answer 200 with the expected probabilities (retried until ``timeout``,
    which covers a worker that is still starting)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.post(
                target.url, content=target.body.data, headers=target.headers(), timeout=30.0
            )
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
            continue
        if r.status_code != 200:
            last = f"HTTP {r.status_code} {r.text[:300]}"
            time.sleep(0.5)
            continue
        data = r.json()
        if not data and target.series.startswith("bare"):
            return "n/a (answers {})"
        got = np.asarray(data["outputs"], dtype=np.float32).reshape(expected.shape)
        diff = float(np.abs(got - expected).max())
        if diff > 1e-4:
            raise RuntimeError(f"{target.series}: outputs differ from the model's by {diff:.2e}")
        return f"match (max |diff| {diff:.1e})"
    raise RuntimeError(f"{target.series}: no 200 within {timeout:.0f}s; last: {last}")


def wrk(target: Target, connections: int, duration: float, max_wait: float = 0.0) -> LoadResult:
    env = base_env(
        {
            "BENCH_BODY": str(target.body.path),
            "BENCH_CONTENT_TYPE": target.body.content_type,
            "BENCH_AUTH": target.key or "",
        }
    )
    cmd = [
        "taskset",
        "-c",
        CLIENT_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        target.url,
    ]
    if max_wait > 0:
        wait_quiet(max_wait)
    other = OtherLoad()
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    other_cpu = other.cores()
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]}{done.stderr}")
    s = json.loads(line.removeprefix("BENCH_RESULT "))
    socket_errors = s["connect_errors"] + s["read_errors"] + s["write_errors"] + s["timeouts"]
    return LoadResult(
        series=target.series,
        connections=connections,
        rps=s["requests"] / (s["duration_us"] / 1e6),
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        max_ms=s["max_us"] / 1000,
        requests=s["requests"],
        non_2xx=s["status_errors"],
        socket_errors=socket_errors,
        other_cpu=other_cpu,
    )


def median_run(runs: Sequence[LoadResult]) -> LoadResult:
    """The run with the median req/s, carrying every run's errors."""
    ordered = sorted(runs, key=lambda run: run.rps)
    return replace(
        ordered[len(ordered) // 2],
        non_2xx=sum(run.non_2xx for run in runs),
        socket_errors=sum(run.socket_errors for run in runs),
        other_cpu=max(run.other_cpu for run in runs),
    )


def sequential(target: Target, n: int = SEQUENTIAL_N) -> SequentialResult:
    """``n`` requests one after another on one keep-alive connection (httpx, core 1)."""
    latencies: list[float] = []
    non_2xx = 0
    other = OtherLoad()
    with httpx.Client(timeout=30.0, headers=target.headers()) as c:
        for _ in range(20):  # warm the connection and the path
            c.post(target.url, content=target.body.data)
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.post(target.url, content=target.body.data)
            latencies.append((time.perf_counter() - t0) * 1000)
            if not 200 <= r.status_code < 300:
                non_2xx += 1
    arr = np.asarray(latencies)
    return SequentialResult(
        series=target.series,
        n=n,
        p50_ms=float(np.percentile(arr, 50)),
        p99_ms=float(np.percentile(arr, 99)),
        max_ms=float(arr.max()),
        over_50ms=int((arr > STALL_MS).sum()),
        non_2xx=non_2xx,
        other_cpu=other.cores(),
    )


class Bench:
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

    def measure_in_turns(self, targets: Sequence[tuple[Target, npt.NDArray[np.float32]]]) -> None:
        """Targets compared by a ratio target, measured in turns rather than one after the
        other: at each connection count, TURNS rounds of one run per target (half the usual
        duration), the order reversed every other round, and the run with the median req/s
        reported for each. The machine's speed drifts by 10-20 % over minutes; measured in
        turns, both sides of a ratio see the same drift. A non-2xx or socket error in any of
        a target's runs is added to the reported run, so it still fails the target."""
        for target, expected in targets:
            log(f"{target.series}: outputs {check_outputs(target, expected, 60.0)}")
            wrk(target, 8, self.warmup)  # warm-up, discarded
        duration = max(float(int(self.duration / 2)), 1.0)  # wrk takes whole seconds
        for connections in CONNECTIONS:
            runs: dict[str, list[LoadResult]] = {target.series: [] for target, _ in targets}
            for turn in range(TURNS):
                order = targets if turn % 2 == 0 else targets[::-1]
                for target, _ in order:
                    runs[target.series].append(wrk(target, connections, duration, self.max_wait))
            for target, _ in targets:
                self.record(median_run(runs[target.series]))

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

    def reference(
        self,
        fleet: Fleet,
        module: str,
        work: Workload,
        extra_env: dict[str, str],
        *,
        attr: str = "app",
    ) -> str:
        port = free_port()
        env = base_env(
            {"BENCH_SPEC": json.dumps(work.spec), "BENCH_WEIGHTS": str(work.weights_path)}
            | extra_env
        )
        cmd = [
            str(VENV_BIN / "python"),
            "-m",
            "uvicorn",
            f"bench.references.{module}:{attr}",
            "--host",
            HOST,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        proc = fleet.start(module, cmd, env=env)
        wait_http(f"http://{HOST}:{port}/", proc)
        return f"http://{HOST}:{port}/predict"

    def group_obvious(self, fleet: Fleet) -> None:
        url = self.reference(fleet, "obvious", self.mlp, {})
        self.measure(Target("obvious", url, self.mlp.json_body), self.mlp.expected)

    def group_orjson_unbatched(self, fleet: Fleet) -> None:
        url = self.reference(fleet, "orjson_unbatched", self.mlp, {})
        self.measure(Target("orjson_unbatched", url, self.mlp.json_body), self.mlp.expected)

    def group_obvious_celery(self, fleet: Fleet) -> None:
        flush_redis(CELERY_REDIS_DB)
        celery_url = f"{REDIS}/{CELERY_REDIS_DB}"
        env = base_env(
            {
                "BENCH_SPEC": json.dumps(self.mlp.spec),
                "BENCH_WEIGHTS": str(self.mlp.weights_path),
                "BENCH_CELERY_URL": celery_url,
            }
        )
        worker_cmd = [
            str(VENV_BIN / "celery"),
            "-A",
            "bench.references.obvious_celery",
            "worker",
            "--pool=solo",
            "--loglevel=warning",
        ]
        fleet.start("obvious_celery-worker", worker_cmd, env=env, cpu=CLIENT_CPU)
        url = self.reference(
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
        port = free_port()
        env = base_env(
            {"BENCH_SPEC": json.dumps(self.mlp.spec), "BENCH_WEIGHTS": str(self.mlp.weights_path)}
        )
        cmd = [str(LITSERVE_PY), "-m", "bench.references.litserve_app", "--port", str(port)]
        proc = fleet.start("litserve", cmd, env=env)
        wait_http(f"http://{HOST}:{port}/health", proc, timeout=120.0)
        target = Target("litserve", f"http://{HOST}:{port}/predict", self.mlp.json_body)
        self.measure(target, self.mlp.expected)

    # ---- the platform

    def platform_env(self, name: str, extra: dict[str, str]) -> tuple[dict[str, str], Path]:
        home = self.tmp / name
        (home / "var").mkdir(parents=True)
        env = base_env(
            {
                "AIAAS_VAR_DIR": str(home / "var"),
                "AIAAS_SECRET_KEY": SECRET_KEY,
                # Demo models train at a gateway's first start: not while it is measured.
                "AIAAS_DEMO_MODELS": "false",
                "AIAAS_RATE_LIMIT_PREDICT": BENCH_RATE_LIMIT,
            }
        )
        env.update(extra)
        return env, home

    def gateway(self, fleet: Fleet, name: str, env: dict[str, str], home: Path) -> str:
        port = free_port()
        cmd = [
            str(VENV_BIN / "aiaas"),
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        proc = fleet.start(name, cmd, env=env, cwd=home)
        base = f"http://{HOST}:{port}"
        wait_http(f"{base}/healthz", proc, timeout=120.0)
        return base

    def group_embedded(self, fleet: Fleet) -> None:
        env, home = self.platform_env(f"embedded-{uuid.uuid4().hex[:6]}", {})
        base = self.gateway(fleet, "platform-embedded", env, home)
        key = platform_account(base)
        platform_model(base, key, "mlp-bench", self.mlp)
        url = f"{base}/v1/models/mlp-bench/predict"
        self.measure(Target("embedded json", url, self.mlp.json_body, key), self.mlp.expected)
        # The HTTP ceiling, in turns with the .npy path it bounds (target T2).
        bare = self.reference(fleet, "bare", self.mlp, {})
        self.measure_in_turns(
            [
                (Target("bare", bare, self.mlp.json_body), self.mlp.expected),
                (Target("bare (npy body)", bare, self.mlp.npy_body), self.mlp.expected),
                (Target("embedded npy", url, self.mlp.npy_body, key), self.mlp.expected),
            ]
        )

    def group_ratelimit(self, fleet: Fleet) -> None:
        """The rate-limit check's cost: the same embedded gateway with the predict limit on
        (never met) and off, in turns (target T8)."""
        targets = []
        for series, rate in (
            ("embedded json (limit on)", BENCH_RATE_LIMIT),
            ("embedded json (limit off)", "0"),
        ):
            name = f"rl-{uuid.uuid4().hex[:6]}"
            env, home = self.platform_env(name, {"AIAAS_RATE_LIMIT_PREDICT": rate})
            base = self.gateway(fleet, name, env, home)
            key = platform_account(base)
            platform_model(base, key, "mlp-bench", self.mlp)
            url = f"{base}/v1/models/mlp-bench/predict"
            targets.append((Target(series, url, self.mlp.json_body, key), self.mlp.expected))
        self.measure_in_turns(targets)

    def group_distributed(self, fleet: Fleet) -> None:
        flush_redis(PLATFORM_REDIS_DB)
        home_name = f"distributed-{uuid.uuid4().hex[:6]}"
        database_url = create_pg_database()
        if database_url is None:
            database_url = f"sqlite:///{self.tmp / home_name / 'shared.db'}"
            self.report.notes.append("distributed: PostgreSQL unreachable, used a shared SQLite")
        env, home = self.platform_env(
            home_name,
            {
                "AIAAS_BROKER_URL": f"{REDIS}/{PLATFORM_REDIS_DB}",
                "AIAAS_DATABASE_URL": database_url,
                "AIAAS_ARTIFACTS_URL": str(self.tmp / home_name / "artifacts"),
            },
        )
        upgrade = subprocess.run(
            [str(VENV_BIN / "aiaas"), "db", "upgrade"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if upgrade.returncode != 0:
            raise RuntimeError(f"aiaas db upgrade failed: {upgrade.stderr[-1000:]}")
        worker_cmd = [
            str(VENV_BIN / "aiaas"),
            "worker",
            "--queues",
            "predict",
            "--log-level",
            "warning",
        ]
        fleet.start("platform-worker", worker_cmd, env=env, cwd=home, cpu=CLIENT_CPU)
        base = self.gateway(fleet, "platform-distributed", env, home)
        key = platform_account(base)
        platform_model(base, key, "mlp-bench", self.mlp)
        url = f"{base}/v1/models/mlp-bench/predict"
        target = Target("distributed json", url, self.mlp.json_body, key)
        self.measure(target, self.mlp.expected, check_s=120.0)
        self.measure_sequential(target)

    def group_cnn(self, fleet: Fleet) -> None:
        env, home = self.platform_env(f"embedded-cnn-{uuid.uuid4().hex[:6]}", {})
        base = self.gateway(fleet, "platform-embedded-cnn", env, home)
        key = platform_account(base)
        platform_model(base, key, "cnn-bench", self.cnn)
        url = f"{base}/v1/models/cnn-bench/predict"
        reference = self.reference(fleet, "orjson_unbatched", self.cnn, {})
        self.measure_in_turns(
            [
                (Target("cnn embedded json", url, self.cnn.json_body, key), self.cnn.expected),
                (Target("cnn orjson_unbatched", reference, self.cnn.json_body), self.cnn.expected),
            ]
        )

    def run_group(self, name: str) -> None:
        run: Callable[[Fleet], None] = getattr(self, f"group_{name}")
        platform = name in ("embedded", "distributed", "cnn", "ratelimit")
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


# --------------------------------------------------------------------------- services


def flush_redis(db: int) -> None:
    import redis

    client = redis.Redis.from_url(f"{REDIS}/{db}")
    try:
        client.flushdb()
    finally:
        client.close()


def create_pg_database() -> str | None:
    """A fresh ``aiaas_bench`` database; None when PostgreSQL cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3) as c:
            c.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {PG_DATABASE}")
    except psycopg.OperationalError:
        return None
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"


def drop_garbage() -> list[str]:
    """Redis DBs 11/12 and the bench database: gone after every run."""
    problems = []
    for db in (PLATFORM_REDIS_DB, CELERY_REDIS_DB):
        try:
            flush_redis(db)
        except Exception as exc:
            problems.append(f"cleanup: could not flush Redis db {db}: {exc}")
    try:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3) as c:
            c.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    except Exception as exc:
        problems.append(f"cleanup: could not drop database {PG_DATABASE}: {exc}")
    return problems


# --------------------------------------------------------------------------- output


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
    if higher_is_better:
        ok, op = a >= factor * b, ">="
    elif strict:
        ok, op = a < factor * b, "<"
    else:
        ok, op = a <= factor * b, "<="
    unit = "req/s" if metric == "rps" else "ms"
    detail = (
        f"{series} {a:,.2f} {unit} / {reference} {b:,.2f} {unit} = {ratio:.2f}x "
        f"(need {op} {factor:g}x)"
    )
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


# --------------------------------------------------------------------------- main


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
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"\nresults: {RESULTS.relative_to(ROOT)}")
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
