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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# Run as a script: the sibling modules are imported as the ``bench`` package, from the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.demo_models import DEMOS
from bench.servers import Fleet, platform_account, platform_env, start_gateway

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
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        tmp = Path(workdir)
        fleet = Fleet(tmp)
        try:
            env, home = platform_env(tmp, "explain", {"AIAAS_DEMO_MODELS": "true"})
            base = start_gateway(fleet, "platform-explain", env, home)
            headers = {"Authorization": f"Bearer {platform_account(base)}"}
            with httpx.Client(base_url=base, timeout=60, headers=headers) as client:
                wait_ready(client, headers, time.monotonic() + args.timeout)
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
            fleet.stop()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
