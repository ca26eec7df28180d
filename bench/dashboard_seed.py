"""The dashboard benchmark's database: one account with a working set an active user of the
platform builds up (100 models of 10 versions each, with the metrics a training leaves on a
version), and around it what the other pages list: trainings and their events, uploaded
datasets, feedback on predictions, API keys, a month of usage, other accounts and an audit log.

Rows are written with SQLAlchemy bulk inserts of the platform's own ORM models, straight into
a migrated database, in a second or two. Version rows point at weights that are not in the
artifact store: no page the benchmark times loads weights (the benchmark checks that no page
reads a blob).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from aiaas.accounts import audit
from aiaas.accounts.models import ROLE_ADMIN, ApiKey, AuditEvent, User
from aiaas.accounts.security import hash_password
from aiaas.datasets.models import Dataset
from aiaas.db import new_id, utcnow
from aiaas.metering.models import UsageHour
from aiaas.ml.evaluation import classification_metrics
from aiaas.predictions.models import Prediction
from aiaas.registry.models import Model, ModelAlias, ModelVersion
from aiaas.trainings.models import Training, TrainingEvent

PASSWORD = "bench password 0123456789"
LABELS = [str(n) for n in range(10)]
INPUT_DIM = 64
HIDDEN = [128, 64]
EPOCHS = 50
TEST_ROWS = 360


@dataclass(frozen=True)
class Size:
    """How much of each thing the owner's account (and the platform around it) holds."""

    models: int = 100
    versions_per_model: int = 10
    trainings: int = 60
    datasets: int = 20
    api_keys: int = 25
    feedback_models: int = 10
    feedback_per_model: int = 20
    jobs: int = 2000
    usage_models: int = 20
    usage_days: int = 30
    usage_hours_per_day: int = 8
    other_accounts: int = 150
    audit_events: int = 3000


@dataclass(frozen=True)
class Seeded:
    """What the benchmark asks for: the accounts that sign in and rows its pages name."""

    owner_email: str
    owner_id: uuid.UUID
    admin_email: str
    model_names: list[str]
    training_ids: list[uuid.UUID]
    counts: dict[str, int]


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def _parameters(dims: Sequence[int]) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(dims))


def _history(rng: np.random.Generator, epochs: int) -> list[dict[str, Any]]:
    """A loss curve as the training loop records it: one entry per epoch."""
    start, floor = rng.uniform(1.8, 2.4), rng.uniform(0.05, 0.3)
    history = []
    for epoch in range(1, epochs + 1):
        train = floor + (start - floor) * math.exp(-epoch / 8) + rng.normal(0, 0.01)
        val = train * rng.uniform(1.02, 1.15)
        history.append({"epoch": epoch, "train_loss": float(train), "val_loss": float(val)})
    return history


def version_metrics(rng: np.random.Generator) -> dict[str, Any]:
    """What a finished training stores on its version: the test split's accuracy, macro
    precision/recall/F1, per-class scores, the 10x10 confusion matrix and the loss history."""
    y_true = rng.integers(0, len(LABELS), TEST_ROWS)
    wrong = rng.random(TEST_ROWS) > rng.uniform(0.85, 0.98)
    y_pred = np.where(wrong, rng.integers(0, len(LABELS), TEST_ROWS), y_true)
    metrics = classification_metrics(y_true, y_pred, LABELS)
    metrics["history"] = _history(rng, EPOCHS)
    metrics["epochs_run"] = EPOCHS
    metrics["stopped_early"] = False
    return metrics


def _insert(session: Session, entity: type[Any], rows: Iterable[dict[str, Any]]) -> int:
    batch = list(rows)
    if batch:
        session.execute(insert(entity), batch)
    return len(batch)


def seed(database_url: str, size: Size | None = None) -> Seeded:
    """Fill a migrated, empty database; return what the benchmark needs to know of it."""
    size = size or Size()
    rng = np.random.default_rng(0)
    now = utcnow()
    counts: dict[str, int] = {}
    password_hash = hash_password(PASSWORD)

    owner_id, admin_id = new_id(), new_id()
    owner_email, admin_email = "owner@bench.example.com", "admin@bench.example.com"
    users = [
        {
            "id": owner_id,
            "email": owner_email,
            "password_hash": password_hash,
            "webhook_secret": "whsec_" + _digest("owner")[:32],
            "created_at": now - timedelta(days=200),
        },
        {
            "id": admin_id,
            "email": admin_email,
            "password_hash": password_hash,
            "webhook_secret": "whsec_" + _digest("admin")[:32],
            "role": ROLE_ADMIN,
            "created_at": now - timedelta(days=300),
        },
    ]
    others = [new_id() for _ in range(size.other_accounts)]
    users += [
        {
            "id": ident,
            "email": f"user{n:04d}@bench.example.com",
            # These accounts never sign in.
            "password_hash": "x",
            "webhook_secret": "whsec_" + _digest("user", n)[:32],
            "created_at": now - timedelta(days=150, minutes=n),
            "suspended_at": now - timedelta(days=3) if n % 40 == 0 else None,
        }
        for n, ident in enumerate(others)
    ]

    models: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    aliases: list[dict[str, Any]] = []
    dims = [INPUT_DIM, *HIDDEN, len(LABELS)]
    parameters = _parameters(dims)
    for m in range(size.models):
        model_id = new_id()
        created = now - timedelta(days=180) + timedelta(hours=30 * m)
        models.append(
            {
                "id": model_id,
                "owner_id": owner_id,
                "name": f"model-{m:03d}",
                "task": "classification",
                "description": f"Digit classifier #{m}, retrained as new data comes in.",
                "labels": LABELS,
                "visibility": "public" if m % 10 == 0 else "private",
                "created_at": created,
                "updated_at": created + timedelta(hours=25),
            }
        )
        version_ids = []
        for number in range(1, size.versions_per_model + 1):
            version_id = new_id()
            version_ids.append(version_id)
            versions.append(
                {
                    "id": version_id,
                    "model_id": model_id,
                    "number": number,
                    "architecture": "mlp",
                    "config": {"input_dim": INPUT_DIM, "hidden": HIDDEN, "output_dim": 10},
                    "input_shape": [INPUT_DIM],
                    "labels": LABELS,
                    "parameters": parameters,
                    "sha256": _digest("weights", m, number),
                    "size_bytes": parameters * 4 + 400,
                    "metrics": version_metrics(rng),
                    "created_at": created + timedelta(hours=2 * number),
                }
            )
        aliases.append({"model_id": model_id, "alias": "production", "version_id": version_ids[-1]})
        if len(version_ids) > 1:
            aliases.append(
                {"model_id": model_id, "alias": "staging", "version_id": version_ids[-2]}
            )

    datasets: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "owner_id": owner_id,
            "name": f"digits export {d}",
            "task": "classification",
            "rows": 1500 + 50 * d,
            "input_shape": [INPUT_DIM],
            "classes": LABELS,
            "sha256": _digest("dataset", d),
            "size_bytes": (1500 + 50 * d) * INPUT_DIM * 4 + 300,
            "created_at": now - timedelta(days=60 - d),
        }
        for d in range(size.datasets)
    ]

    trainings: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for t in range(size.trainings):
        training_id = new_id()
        model = models[t % len(models)]
        status = "failed" if t % 12 == 5 else "canceled" if t % 12 == 9 else "succeeded"
        epochs_done = EPOCHS if status == "succeeded" else 7 + t % 20
        started = now - timedelta(days=40) + timedelta(hours=12 * t)
        metrics = version_metrics(rng) if status == "succeeded" else None
        trainings.append(
            {
                "id": training_id,
                "owner_id": owner_id,
                "model_id": model["id"],
                "model_name": model["name"],
                "datasets": [str(datasets[t % len(datasets)]["id"])]
                if datasets
                else ["builtin:digits"],
                "architecture": "mlp",
                "config": {"input_dim": INPUT_DIM, "hidden": HIDDEN, "output_dim": 10},
                "classes": LABELS,
                "hyperparameters": {
                    "epochs": EPOCHS,
                    "batch_size": 64,
                    "learning_rate": 0.001,
                    "optimizer": "adam",
                    "weight_decay": 0.0,
                    "val_fraction": 0.1,
                    "test_fraction": 0.2,
                    "seed": t,
                    "early_stopping_patience": None,
                },
                "status": status,
                "epoch": epochs_done,
                "epochs": EPOCHS,
                "metrics": metrics,
                "version": size.versions_per_model if status == "succeeded" else None,
                "error": "the worker ran out of memory" if status == "failed" else None,
                "attempts": 1,
                "epoch_seconds": 0.8,
                "created_at": started - timedelta(seconds=5),
                "started_at": started,
                "finished_at": started + timedelta(seconds=epochs_done),
            }
        )
        history = _history(rng, epochs_done)
        for seq, entry in enumerate(history, start=1):
            events.append(
                {
                    "training_id": training_id,
                    "seq": seq,
                    "event": "epoch",
                    "data": {
                        **entry,
                        "epochs": EPOCHS,
                        "metrics": {"accuracy": 0.9},
                        "progress": seq / EPOCHS,
                        "eta_s": 0.8 * (EPOCHS - seq),
                    },
                    "created_at": started + timedelta(seconds=seq),
                }
            )
        events.append(
            {
                "training_id": training_id,
                "seq": len(history) + 1,
                "event": "end",
                "data": {"status": status, "version": trainings[-1]["version"]},
                "created_at": started + timedelta(seconds=epochs_done + 1),
            }
        )

    jobs: list[dict[str, Any]] = []
    row = [round(float(v), 4) for v in rng.random(INPUT_DIM)]
    for j in range(size.jobs):
        model = models[j % len(models)]
        created = now - timedelta(days=6) + timedelta(seconds=200 * j)
        feedback = j < size.feedback_models * size.feedback_per_model
        if feedback:
            model = models[j % size.feedback_models]
        jobs.append(
            {
                "id": new_id(),
                "owner_id": owner_id,
                "model_id": model["id"],
                "model_name": model["name"],
                "version": size.versions_per_model,
                "kind": "sync" if feedback else "async",
                "status": "succeeded",
                "inputs": [row],
                "input_rows": 1,
                "outputs": [[0.1] * 10],
                "predictions": [LABELS[j % 10]],
                "attempts": 1,
                "compute_s": 0.002,
                "feedback": [LABELS[(j + 1) % 10]] if feedback else None,
                "feedback_at": created + timedelta(minutes=5) if feedback else None,
                "created_at": created,
                "started_at": created,
                "finished_at": created + timedelta(milliseconds=3),
            }
        )

    scopes = [["predict"], ["models:read", "predict"], ["models:read", "models:write", "train"]]
    keys = [
        {
            "id": new_id(),
            "user_id": owner_id,
            "name": f"service {k}",
            "prefix": f"aiaas_{_digest('prefix', k)[:8]}",
            "key_hash": _digest("key", k),
            "scopes": scopes[k % len(scopes)],
            "created_at": now - timedelta(days=90 - 3 * k),
            "last_used_at": now - timedelta(hours=k),
            "revoked_at": now - timedelta(days=1) if k % 5 == 4 else None,
        }
        for k in range(size.api_keys)
    ]

    usage: list[dict[str, Any]] = []
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for m in range(min(size.usage_models, len(models))):
        for day in range(size.usage_days):
            for h in range(size.usage_hours_per_day):
                calls = int(rng.integers(20, 400))
                usage.append(
                    {
                        "account_id": owner_id,
                        "model_id": models[m]["id"],
                        "hour": today - timedelta(days=day) + timedelta(hours=9 + h),
                        "predictions": calls,
                        "rows": calls * 4,
                        "compute_s": calls * 0.002,
                        "errors": int(calls % 7 == 0),
                        "trainings": int(h == 0 and day % 3 == 0),
                        "training_compute_s": 45.0 if h == 0 and day % 3 == 0 else 0.0,
                    }
                )

    actions = [audit.LOGIN, audit.KEY_CREATED, audit.MODEL_CREATED, audit.LOGIN_FAILED]
    actors = [owner_id, admin_id, *others]
    audit_rows = [
        {
            "at": now - timedelta(minutes=10 * (size.audit_events - n)),
            "action": actions[n % len(actions)],
            "actor_id": actors[n % len(actors)],
            "account_id": actors[n % len(actors)],
            "target": f"model-{n % 100:03d}" if n % 4 == 2 else None,
            "address": f"127.0.0.{n % 250 + 1}",
            "detail": {"visibility": "private"} if n % 4 == 2 else {},
        }
        for n in range(size.audit_events)
    ]

    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            counts["users"] = _insert(session, User, users)
            counts["models"] = _insert(session, Model, models)
            counts["model_versions"] = _insert(session, ModelVersion, versions)
            counts["model_aliases"] = _insert(session, ModelAlias, aliases)
            counts["datasets"] = _insert(session, Dataset, datasets)
            counts["trainings"] = _insert(session, Training, trainings)
            counts["training_events"] = _insert(session, TrainingEvent, events)
            counts["predictions"] = _insert(session, Prediction, jobs)
            counts["api_keys"] = _insert(session, ApiKey, keys)
            counts["usage_hours"] = _insert(session, UsageHour, usage)
            counts["audit_events"] = _insert(session, AuditEvent, audit_rows)
            session.commit()
    finally:
        engine.dispose()
    return Seeded(
        owner_email=owner_email,
        owner_id=owner_id,
        admin_email=admin_email,
        model_names=[m["name"] for m in models],
        training_ids=[t["id"] for t in trainings],
        counts=counts,
    )
