"""Settings: one class, read from the environment (prefix ``AIAAS_``) or a ``.env`` file.

The defaults describe the embedded mode: SQLite and artifacts under ``./var``, jobs run in
process. Setting ``AIAAS_DATABASE_URL`` and ``AIAAS_BROKER_URL`` switches to the distributed mode.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(RuntimeError):
    """The settings cannot run a platform (for example production without a secret key)."""


RATE_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")


def parse_rate(text: str) -> tuple[int, float] | None:
    """A rate setting (``"2000/second"``, ``"60/minute"``...) as (count, period in seconds);
    None for ``"0"`` or a count of 0, which mean no limit."""
    if text.strip() == "0":
        return None
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate such as '100/second' or '0' (no limit)")
    count = int(match.group(1))
    return None if count == 0 else (count, RATE_PERIODS[match.group(2)])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AIAAS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        use_attribute_docstrings=True,
    )

    env: Literal["development", "test", "production"] = "development"
    """Where this runs. Production refuses to start without an explicit secret key."""

    var_dir: Path = Path("var")
    """Working directory of the embedded mode: SQLite file, artifacts, generated secret."""

    database_url: str | None = None
    """SQLAlchemy URL. Unset: SQLite at ``<var_dir>/aiaas.db``. PostgreSQL:
    ``postgresql+psycopg://user:pass@host:5432/db``."""

    db_timeout_s: float = Field(default=5.0, gt=0, le=300)
    """Longest wait for the database: a connection, a free pooled connection, SQLite's write
    lock, a PostgreSQL row or table lock. Past it the request answers 503 rather than queueing
    behind whoever holds the database."""

    artifacts_url: str | None = None
    """Where weights, datasets and checkpoints live. Unset: ``<var_dir>/artifacts``. Any fsspec
    URL (``s3://bucket/prefix``, ``file:///shared/volume``) for the distributed mode."""

    broker_url: str | None = None
    """Redis URL of the Celery broker. Unset: jobs run in process (embedded mode)."""

    broker_timeout_s: float = Field(default=2.0, gt=0)
    """Connect and socket timeout towards the broker: past it the gateway answers 503."""

    broker_visibility_timeout_s: float = Field(default=300.0, gt=0)
    """An unacknowledged task is delivered again after this long (its worker died)."""

    secret_key: SecretStr | None = None
    """Signs login tokens. Generated into ``<var_dir>/secret_key`` in development when unset."""

    password_hash_time_cost: int = Field(default=3, ge=1)
    """argon2id iterations for password hashes."""

    password_hash_memory_kib: int = Field(default=65536, ge=1024)
    """argon2id memory per password hash, in KiB."""

    access_token_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    """Lifetime of the bearer token that ``POST /v1/auth/login`` returns."""

    web_session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600)
    """Lifetime of a dashboard sign-in (its cookie and server-side session)."""

    max_json_mb: float = Field(default=1.0, gt=0)
    """Body limit of JSON routes other than predictions."""

    max_request_mb: float = Field(default=8.0, gt=0)
    """Body limit of prediction requests (sync and async)."""

    max_upload_mb: float = Field(default=64.0, gt=0)
    """Body limit of multipart uploads (weights, datasets)."""

    demo_models: bool = True
    """Train the public demo models (digits-cnn, iris-mlp, waves-lstm) at first start."""

    max_model_parameters: int = Field(default=50_000_000, ge=1)
    """Largest model (in parameters) a version may declare; bigger configs get 422."""

    max_activation_mb: float = Field(default=256.0, gt=0)
    """Most activation memory one example's forward pass may need, computed from a version's
    or a training's config before anything is built; bigger configs get 422 at ``config``."""

    max_sequence_length: int = Field(default=4096, ge=1)
    """Most steps a recurrent model may take: its config's ``seq_len``, and a variable-length
    input's axis at predict time (422 naming the axis)."""

    max_batch_size: int = Field(default=64, ge=1, le=4096)
    """Rows per forward pass, unless a version sets its own."""

    max_delay_ms: float = Field(default=0.0, ge=0, le=1000)
    """How long a non-full batch may wait for more rows, unless a version sets its own. Zero
    batches only what queued up while the previous batch ran, so an idle model adds no delay."""

    inline_forward_max_ms: float = Field(default=1.0, ge=0, le=50)
    """Embedded mode: a lone request that finds its model and the forward thread idle runs
    on the event loop itself when the model's forwards take less than this per row (measured
    on the last ones), saving the thread hop. Longer forwards, and every request under load,
    go to the forward thread, so the loop never stalls for longer than this. 0: never."""

    max_batches_in_flight: int = Field(default=2, ge=1, le=64)
    """Distributed mode: batches of one model version a gateway may have at the workers at
    once. Two let the gateway assemble the next batch while one travels (one left it idle a
    fifth of the time under load; three made batches smaller for nothing, one worker); raise
    it towards the number of workers serving the model."""

    max_batch_rows: int = Field(default=1024, ge=1)
    """Most examples one prediction request may carry."""

    predict_timeout_s: float = Field(default=30.0, gt=0)
    """A prediction no worker answers within this gets 504."""

    explain_max_evaluations: int = Field(default=65_536, ge=1)
    """Examples one explanation may run through the model (rows times integrated gradients'
    steps, or times occlusion's patches); past it, 422. One request costs one call of the
    predict rate limit, so this bounds what a call may take from the forward thread."""

    shadow_max_in_flight: int = Field(default=64, ge=1)
    """Copies of requests to alias shadows running at once in a gateway; past it, copies are
    dropped (and counted) rather than queued: a shadow must never hold up live traffic."""

    device: str = "auto"
    """Where workers run models: auto (CUDA when present), cpu, cuda or cuda:N."""

    worker_cache_mb: float = Field(default=2048.0, gt=0)
    """Memory budget of the loaded models kept by each worker process (LRU beyond it)."""

    worker_warmup: bool = True
    """Run one forward pass when a model is loaded, so the first request is not the slow one."""

    sched_batch: bool = True
    """Run ``aiaas serve`` and ``aiaas worker`` under Linux's SCHED_BATCH scheduling policy:
    the event loop and the torch thread then hand requests to each other without preempting
    one another (see docs/performance.md). Off, they keep the default policy, which wakes a
    thread sooner when other processes keep the cores busy."""

    worker_trace: bool = True
    """On CPUs, run forward passes as one frozen TorchScript graph wherever the trace
    reproduces the eager model (checked at load), and batches, from the size where it timed
    faster at load, through a graph prepacked for oneDNN; off, every model runs eagerly."""

    auth_cache_ttl_s: float = Field(default=5.0, ge=0)
    """How long the predict path trusts a checked credential before refreshing it in the
    background (revocation is seen at once on the gateway that revoked; other gateways see it
    within about twice this)."""

    model_cache_ttl_s: float = Field(default=2.0, ge=0)
    """How long the predict path trusts a resolved model version (same rule as above: changes
    made through another gateway are seen within about twice this)."""

    job_lease_s: float = Field(default=60.0, gt=0)
    """How long a worker holds a running job before others may take it over."""

    reconcile_interval_s: float = Field(default=10.0, gt=0)
    """How often the gateway looks for jobs whose worker vanished or whose message was lost."""

    requeue_after_s: float = Field(default=120.0, gt=0)
    """A job still queued after this long is published again (the broker may have lost it)."""

    webhook_allow_private: bool = False
    """Let webhooks target private, loopback and link-local addresses (tests, private nets)."""

    rate_limit_predict: str = "2000/second"
    """Sync predictions per API key (or per account's login tokens): ``N/second``,
    ``N/minute``, ``N/hour`` or ``N/day``; ``0`` switches the limit off. Refused calls get
    429 with ``Retry-After``; every answer carries ``RateLimit-Limit``, ``-Remaining`` and
    ``-Reset``. Distributed mode keeps the buckets in Redis, shared by every gateway."""

    rate_limit_jobs: str = "500/second"
    """Async prediction calls (``/v1/predictions``) per API key."""

    rate_limit_train: str = "100/second"
    """Training and dataset calls (``/v1/trainings``, ``/v1/datasets``) per API key."""

    rate_limit_registry: str = "500/second"
    """Registry and account calls (models, versions, aliases, keys, ``/v1/me``) per API key."""

    rate_limit_auth: str = "100/second"
    """Sign-ups and logins per client address."""

    rate_limit_account_multiplier: float = Field(default=4.0, ge=1)
    """An account's limit per route class, as a multiple of one key's: its keys together may
    go this many times faster than one of them."""

    login_failures_before_backoff: int = Field(default=5, ge=1)
    """Wrong passwords in a row for one email (or failures from one address) before each
    further attempt waits: 1 s, then doubling up to 15 minutes."""

    # Quotas: each a default an admin may override per account (users.limits["quotas"]);
    # see aiaas.quotas and docs/operations.md. High enough that ordinary use never meets them.
    quota_models: int = Field(default=100, ge=0)
    """Models an account may own."""

    quota_versions_per_model: int = Field(default=100, ge=0)
    """Versions one model may have (uploaded or trained)."""

    quota_stored_bytes: int = Field(default=10 * 1024**3, ge=0)
    """Bytes an account may keep in the artifact store: its versions' weights, its uploaded
    datasets and the inputs of its prediction jobs kept there."""

    quota_async_jobs: int = Field(default=100, ge=0)
    """Async prediction jobs an account may have queued or running at once."""

    quota_trainings: int = Field(default=4, ge=0)
    """Trainings an account may have queued or running at once."""

    quota_training_seconds_per_month: int = Field(default=360_000, ge=0)
    """Seconds of training (from each training's start to its end) an account may use per
    calendar month (UTC); once used up, new trainings are refused until the month ends."""

    metrics_token: SecretStr | None = None
    """Bearer token a Prometheus scrape must send for ``/metrics`` (the gateway's, and each
    worker's ``--metrics-port``). Metrics name every tenant's models: never leave them open on
    a public port."""

    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Serve the gateway's metrics on this port instead of the public one (whose ``/metrics``
    then answers 404); bound to ``metrics_host``."""

    metrics_host: str = "127.0.0.1"
    """Address of ``metrics_port`` (``0.0.0.0`` in a container, behind a NetworkPolicy)."""

    log_format: Literal["json", "text"] = "json"
    """``aiaas serve`` and ``aiaas worker`` log one JSON object per line on stderr (``ts``,
    ``level``, ``logger``, ``event``, ``request_id``, ``account_id`` and the event's fields);
    ``text`` for reading by eye."""

    access_log: bool = True
    """One line per HTTP request answered (request id, account, method, route, status,
    latency); successful probes and scrapes are not logged. Costs about 5% of a small
    prediction's CPU on the gateway (docs/operations.md, "Logs and traces")."""

    otel_endpoint: str | None = None
    """OTLP/HTTP traces URL (``http://collector:4318/v1/traces``): when set, gateways and
    workers send OpenTelemetry spans there (needs ``pip install 'aiaas[otel]'``). Off when
    unset."""

    max_output_mb: float = Field(default=16.0, gt=0)
    """Most output one async job may produce (rows x outputs x 4 bytes); a job over it is
    refused when created. Outputs over 64 KiB are kept in the artifact store, not the row."""

    job_retention_days: float = Field(default=30.0, gt=0)
    """Finished async jobs keep their inputs and outputs this long; then they are dropped
    (the job's status and timings stay)."""

    usage_flush_s: float = Field(default=10.0, gt=0)
    """How often each gateway and worker process adds what its usage meter counted (predictions,
    trainings) to the usage table: figures from other processes lag by at most this much."""

    webhook_workers: int = Field(default=4, ge=1, le=64)
    """Webhook deliveries a gateway sends at once (its threads for them, however many are
    pending); each attempt ends within 10 s, the answer's reading included."""

    readiness_timeout_s: float = Field(default=2.0, gt=0)
    """How long ``/readyz`` waits for each dependency before calling it down."""

    @model_validator(mode="after")
    def _rates_parse(self) -> Settings:
        for name in ("predict", "jobs", "train", "registry", "auth"):
            parse_rate(getattr(self, f"rate_limit_{name}"))
        return self

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.env == "production" and (
            self.secret_key is None or not self.secret_key.get_secret_value()
        ):
            raise ValueError(
                "AIAAS_SECRET_KEY must be set when AIAAS_ENV=production "
                "(a generated development key would not survive a redeploy)"
            )
        if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("AIAAS_SECRET_KEY must be at least 32 characters")
        if self.env == "production" and self.secret_key is not None:
            problem = weak_secret(self.secret_key.get_secret_value())
            if problem:
                raise ValueError(
                    f"AIAAS_SECRET_KEY {problem}; make one with "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.var_dir / 'aiaas.db'}"

    @property
    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or str(self.var_dir / "artifacts")

    def with_secret_key(self) -> Settings:
        """Return settings whose secret key is set, generating a development key on first start.

        The generated key is kept in ``<var_dir>/secret_key`` so tokens survive restarts.
        """
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self
        if self.env == "production":
            raise ConfigurationError("AIAAS_SECRET_KEY must be set when AIAAS_ENV=production")
        path = self.var_dir / "secret_key"
        if path.exists():
            key = path.read_text(encoding="utf-8").strip()
        else:
            self.var_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48)
            # O_EXCL: two processes starting together must not each write a different key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                key = path.read_text(encoding="utf-8").strip()
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(key)
        return self.model_copy(update={"secret_key": SecretStr(key)})

    def check_gateway(self) -> None:
        """Refuse what a gateway must not run with in production (workers and the migration
        never serve the public port, so they are not held to it)."""
        if self.env == "production" and self.metrics_token is None and self.metrics_port is None:
            raise ConfigurationError(
                "AIAAS_ENV=production needs AIAAS_METRICS_TOKEN or AIAAS_METRICS_PORT: the "
                "gateway's /metrics would otherwise show every tenant's model names to anyone"
            )

    @property
    def scrape_token(self) -> str | None:
        return self.metrics_token.get_secret_value() if self.metrics_token else None

    @property
    def secret(self) -> str:
        if self.secret_key is None:
            raise ConfigurationError("secret key not resolved; call with_secret_key() first")
        return self.secret_key.get_secret_value()


# Placeholders from the project's own examples (deploy/k8s/secret.example.yaml and docs):
# anyone can read them, so a key that contains one signs tokens anyone can forge.
_EXAMPLE_SECRET_MARKERS = ("change-me", "changeme", "example", "your-secret", "replace-me")
# A 32-character hex key (128 random bits) estimates at ~118 bits from its character counts.
MIN_SECRET_BITS = 96.0


def weak_secret(key: str) -> str | None:
    """Why ``key`` must not sign production tokens, or None. Keys from the docs' examples
    and keys whose characters carry under 96 bits of Shannon entropy (``"a" * 32``, a
    repeated word) are weak."""
    lowered = key.lower()
    if any(marker in lowered for marker in _EXAMPLE_SECRET_MARKERS):
        return "is an example value from the documentation"
    counts = Counter(key)
    bits = len(key) * -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    if bits < MIN_SECRET_BITS:
        return (
            f"is too predictable (about {max(bits, 0.0):.0f} bits of entropy, need "
            f"{MIN_SECRET_BITS:.0f})"
        )
    return None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
