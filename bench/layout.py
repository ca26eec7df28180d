"""Where the benchmark runs: the repository's paths, the address servers listen on, the core
each side of a measurement is pinned to, and the connection counts every target is measured at.

Every server under test runs on core 0 (``taskset -c 0``); the load generator, the benchmark's
own process and its sequential client run on core 1, so a server's throughput is one core's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
RESULTS = BENCH / "results" / "latest.json"

SERVER_CPU = "0"
CLIENT_CPU = "1"
CONNECTIONS = (1, 8, 32, 64)
HOST = "127.0.0.1"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# The v2 group's /v1 side: its own name, so that its target never compares with the embedded
# group's .npy runs, which were not measured in turns with it.
V2_NPY_SERIES = "embedded npy (beside v2)"
V2_CONNECTIONS = (1, 32)
