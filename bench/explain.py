"""Explain's latency at one request at a time, for each demo model and method, beside predict's.

Starts a fresh embedded `aiaas serve` (its demo models trained at start), then per demo model
sends WARMUP unmeasured and N measured sequential requests of one row to ``/predict`` and to
``/explain`` with each method the model takes, over loopback. Prints p50/p99 per series and
writes bench/results/explain.json.

    python bench/explain.py [--n 50] [--timeout 240]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.demo_models import DEMOS, free_port

RESULTS = Path(__file__).parent / "results" / "explain.json"
WARMUP = 5
# Occlusion slides a patch over an image: convolutional models only.
METHODS = {
    "digits-cnn": ("integrated_gradients", "saliency", "occlusion"),
    "iris-mlp": ("integrated_gradients", "saliency"),
    "waves-lstm": ("integrated_gradients", "saliency"),
}


def timed(client: httpx.Client, url: str, body: dict[str, Any], n: int) -> dict[str, float]:
    for _ in range(WARMUP):
        client.post(url, json=body).raise_for_status()
    took = []
    for _ in range(n):
        start = time.perf_counter()
        client.post(url, json=body).raise_for_status()
        took.append(time.perf_counter() - start)
    ms = np.array(took) * 1000
    return {
        "n": n,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def wait_ready(client: httpx.Client, headers: dict[str, str], deadline: float) -> None:
    waiting = set(DEMOS)
    while waiting:
        if time.monotonic() > deadline:
            raise SystemExit(f"demo models not ready: {', '.join(sorted(waiting))}")
        for name in list(waiting):
            if client.get(f"/v1/models/{name}/versions/latest", headers=headers).is_success:
                waiting.discard(name)
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            [sys.executable, "-m", "aiaas", "serve", "--port", str(port), "--log-level", "warning"],
            cwd=workdir,
            env=env,
        )
        start = time.monotonic()
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                account = {"email": "bench@example.com", "password": "correct horse battery"}
                client.post("/v1/auth/register", json=account)
                token = client.post("/v1/auth/login", json=account).json()["access_token"]
                client.headers["Authorization"] = f"Bearer {token}"
                wait_ready(client, dict(client.headers), start + args.timeout)
                for name, row in DEMOS.items():
                    body: dict[str, Any] = {"inputs": [row]}
                    series = f"{name} predict"
                    results[series] = timed(client, f"/v1/models/{name}/predict", body, args.n)
                    print(f"{series:40} {results[series]}", flush=True)
                    for method in METHODS[name]:
                        series = f"{name} explain {method}"
                        url = f"/v1/models/{name}/explain"
                        results[series] = timed(client, url, {**body, "method": method}, args.n)
                        print(f"{series:40} {results[series]}", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
