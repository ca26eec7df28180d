from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "celery", "redis", "prometheus_client")

PROBE = f"""
import json, sys
import aiaas.serving
import torch
print(json.dumps({{
    "loaded": [m for m in {FORBIDDEN!r} if m in sys.modules],
    "cuda_initialized": torch.cuda.is_initialized(),
}}))
"""


def test_serving_imports_no_web_database_or_queue_layers() -> None:
    # A fresh interpreter: this test process has long imported the whole gateway.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"loaded": [], "cuda_initialized": False}
