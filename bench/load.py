"""Load on one target: a check of its answer, wrk runs at a number of connections (``wrk/post.lua``
prints each run's numbers as one ``BENCH_RESULT`` JSON line, parsed here), and a sequential
client for latency one request at a time.

The load runs on the client core (``wrk -t1``), each run with the other load it met.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import httpx
import numpy as np
import numpy.typing as npt

from bench.contention import OtherLoad, wait_quiet
from bench.layout import BENCH, CLIENT_CPU
from bench.report import LoadResult, SequentialResult
from bench.servers import base_env
from bench.workloads import Body

LUA = BENCH / "wrk" / "post.lua"
SEQUENTIAL_N = 300
STALL_MS = 50.0


@dataclass(frozen=True)
class Target:
    """What wrk hits: a URL, a body and the headers that go with it."""

    series: str
    url: str
    body: Body
    key: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.body.content_type, **dict(self.body.headers)}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers


def answered_outputs(response: httpx.Response) -> npt.NDArray[np.float32] | None:
    """The outputs a platform's answer carries (None for bare's ``{}``): /v1's ``outputs``, or
    the V2 ``probabilities``, read by tritonclient itself from a binary answer."""
    length = response.headers.get("inference-header-content-length")
    if length is not None:
        from tritonclient.http import InferResult

        result = InferResult.from_response_body(response.content, header_length=int(length))
        probabilities: npt.NDArray[np.float32] = result.as_numpy("probabilities")
        return probabilities
    data = response.json()
    if not data:
        return None
    return np.asarray(data["outputs"], dtype=np.float32)


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
        outputs = answered_outputs(r)
        if outputs is None and target.series.startswith("bare"):
            return "n/a (answers {})"
        if outputs is None:
            raise RuntimeError(f"{target.series}: the answer carries no outputs: {r.text[:300]}")
        got = outputs.reshape(expected.shape)
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
            "BENCH_HEADERS": "".join(f"{k}: {v}\n" for k, v in target.body.headers),
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
