"""The servers under test and what they stand on: processes pinned to a core and stopped as a
group, the reference apps, the platform's gateways and workers (with an account and a model
to call), and the Redis databases and PostgreSQL database they share.

Each server is started as a subprocess on a free 127.0.0.1 port, waited for, and killed with
its group once measured; its log stays under ``bench/results/logs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.layout import BENCH, CLIENT_CPU, HOST, ROOT, SERVER_CPU, VENV_BIN
from bench.workloads import Workload

LITSERVE_PY = BENCH / ".venv-litserve" / "bin" / "python"
LITSERVE_READY = BENCH / ".venv-litserve" / ".installed"
REDIS = "redis://127.0.0.1:6379"
PLATFORM_REDIS_DB = 11
CELERY_REDIS_DB = 12
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_DATABASE = "aiaas_bench"
SECRET_KEY = "bench-only-secret-key-0123456789abcdefgh"  # 40 characters, never used elsewhere
# A limit no run meets, so the check runs on every request without refusing any.
BENCH_RATE_LIMIT = "100000000/second"


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


# --------------------------------------------------------------------------- references


def start_reference(
    fleet: Fleet,
    module: str,
    work: Workload,
    extra_env: dict[str, str],
    *,
    attr: str = "app",
) -> str:
    """A reference app under uvicorn; its predict URL."""
    port = free_port()
    env = base_env(
        {"BENCH_SPEC": json.dumps(work.spec), "BENCH_WEIGHTS": str(work.weights_path)} | extra_env
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


def start_reference_celery_worker(fleet: Fleet, work: Workload, celery_url: str) -> None:
    """The Celery worker of the ``obvious_celery`` reference, on the client core."""
    env = base_env(
        {
            "BENCH_SPEC": json.dumps(work.spec),
            "BENCH_WEIGHTS": str(work.weights_path),
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


def start_litserve(fleet: Fleet, work: Workload) -> str:
    """The LitServe reference, in its own virtualenv; its predict URL."""
    port = free_port()
    env = base_env({"BENCH_SPEC": json.dumps(work.spec), "BENCH_WEIGHTS": str(work.weights_path)})
    cmd = [str(LITSERVE_PY), "-m", "bench.references.litserve_app", "--port", str(port)]
    proc = fleet.start("litserve", cmd, env=env)
    wait_http(f"http://{HOST}:{port}/health", proc, timeout=120.0)
    return f"http://{HOST}:{port}/predict"


# --------------------------------------------------------------------------- the platform


def platform_env(tmp: Path, name: str, extra: dict[str, str]) -> tuple[dict[str, str], Path]:
    """The environment of a platform process and its home directory under ``tmp``."""
    home = tmp / name
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


def start_gateway(fleet: Fleet, name: str, env: dict[str, str], home: Path) -> str:
    """``aiaas serve``; its base URL once it answers."""
    port = free_port()
    cmd = [
        str(VENV_BIN / "aiaas"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        # The default level: the gateway writes its JSON access line per request, as deployed.
        "--log-level",
        "info",
    ]
    proc = fleet.start(name, cmd, env=env, cwd=home)
    base = f"http://{HOST}:{port}"
    wait_http(f"{base}/healthz", proc, timeout=120.0)
    return base


def upgrade_database(env: dict[str, str], home: Path) -> None:
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


def start_platform_worker(fleet: Fleet, env: dict[str, str], home: Path) -> None:
    """``aiaas worker`` on the predict queue, on the client core."""
    worker_cmd = [
        str(VENV_BIN / "aiaas"),
        "worker",
        "--queues",
        "predict",
        # The default level: a JSON line per batch, as deployed.
        "--log-level",
        "info",
    ]
    fleet.start("platform-worker", worker_cmd, env=env, cwd=home, cpu=CLIENT_CPU)


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


def platform_model(
    base: str, key: str, name: str, work: Workload, *, visibility: str = "private"
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=60.0, headers=headers) as c:
        model = {"name": name, "task": "classification", "visibility": visibility}
        _ok(c.post("/v1/models", json=model), "create model")
    platform_version(base, key, name, work.spec, work.weights)


def platform_version(base: str, key: str, name: str, spec: dict[str, Any], weights: bytes) -> None:
    with httpx.Client(base_url=base, timeout=60.0, headers={"Authorization": f"Bearer {key}"}) as c:
        _ok(
            c.post(
                f"/v1/models/{name}/versions",
                data={"spec": json.dumps(spec)},
                files={"weights": ("weights.safetensors", weights, "application/octet-stream")},
            ),
            "upload version",
        )


def platform_alias(base: str, key: str, name: str, alias: str, body: dict[str, Any]) -> None:
    with httpx.Client(base_url=base, timeout=60.0, headers={"Authorization": f"Bearer {key}"}) as c:
        _ok(c.put(f"/v1/models/{name}/aliases/{alias}", json=body), f"alias {alias}")


def nudged_weights(weights: bytes) -> bytes:
    """The same network with 1e-6 added to its last bias: another blob whose answers differ
    from the original's by about that much."""
    from safetensors.numpy import load, save

    tensors = load(weights)
    last = sorted(k for k in tensors if k.endswith("bias"))[-1]
    tensors[last] = tensors[last] + np.float32(1e-6)
    return save(tensors)


def without_predict_limit(base: str, key: str, env: dict[str, str], home: Path) -> None:
    """Switch the predict rate limit off for the account of ``key`` only (an admin's
    override, made with ``aiaas users create-admin`` on the gateway's database)."""
    email = f"bench-admin-{uuid.uuid4().hex[:8]}@example.com"
    password = "bench password 0123456789"
    command = [str(VENV_BIN / "aiaas"), "users", "create-admin", "--email", email]
    subprocess.run(
        [*command, "--password", password],
        env=env,
        cwd=home,
        check=True,
        capture_output=True,
    )
    with httpx.Client(base_url=base, timeout=60.0) as c:
        creds = {"email": email, "password": password}
        token = _ok(c.post("/v1/auth/login", json=creds), "admin login").json()["access_token"]
        me = _ok(c.get("/v1/me", headers={"Authorization": f"Bearer {key}"}), "me").json()
        _ok(
            c.patch(
                f"/v1/admin/accounts/{me['id']}",
                headers={"Authorization": f"Bearer {token}"},
                json={"rate_limits": {"predict": "0"}},
            ),
            "rate-limit override",
        )


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
