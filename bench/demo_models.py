"""Time from a fresh `aiaas serve` to the three demo models answering, on this machine.

Starts the gateway in an empty directory (embedded mode, its own SQLite and artifacts), as
`make serve` does on a fresh install, registers an account, and polls each demo model until it
has a version; then calls each once. Prints the seconds from the process start.

    python bench/demo_models.py [--timeout 180]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

DEMOS = {
    "digits-cnn": [[[0.0] * 8] * 8],
    "iris-mlp": [5.1, 3.5, 1.4, 0.2],
    "waves-lstm": [[0.0]] * 32,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    with tempfile.TemporaryDirectory() as workdir:
        start = time.monotonic()
        server = subprocess.Popen(
            [sys.executable, "-m", "aiaas", "serve", "--port", str(port), "--log-level", "warning"],
            cwd=workdir,
            env=env,
        )
        try:
            with httpx.Client(base_url=base, timeout=10) as client:
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                print(f"serving after {time.monotonic() - start:.1f} s", flush=True)
                account = {"email": "bench@example.com", "password": "correct horse battery"}
                client.post("/v1/auth/register", json=account)
                token = client.post("/v1/auth/login", json=account).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                waiting = dict(DEMOS)
                while waiting and time.monotonic() - start < args.timeout:
                    for name in list(waiting):
                        found = client.get(f"/v1/models/{name}/versions/latest", headers=headers)
                        if found.status_code == 200:
                            answer = client.post(
                                f"/v1/models/{name}/predict",
                                json={"inputs": [waiting.pop(name)]},
                                headers=headers,
                            )
                            accuracy = found.json()["metrics"]["accuracy"]
                            print(
                                f"{name}: ready after {time.monotonic() - start:.1f} s, "
                                f"test accuracy {accuracy:.4f}, predict -> {answer.status_code}",
                                flush=True,
                            )
                    time.sleep(0.2)
                total = time.monotonic() - start
                if waiting:
                    print(f"not ready after {total:.0f} s: {', '.join(waiting)}")
                    return 1
                print(f"all demo models ready {total:.1f} s after start")
                return 0
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
