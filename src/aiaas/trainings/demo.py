"""Public demo models, trained from the built-in datasets at a fresh install's first start, so
that "pick a model and call it" works before anyone uploads anything.

They belong to a system account that cannot log in (its password is random and never kept).
A gateway that finds a demo model already there, trained or training, leaves it alone.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from aiaas.accounts import security
from aiaas.accounts.models import User
from aiaas.db import Database, utcnow
from aiaas.errors import AppError
from aiaas.registry.models import Model, ModelVersion
from aiaas.trainings import service
from aiaas.trainings.models import QUEUED, RUNNING, Training
from aiaas.trainings.schemas import HyperparametersIn, TrainingCreate

log = logging.getLogger(__name__)

DEMO_OWNER = "demo@aiaas.local"


@dataclass(frozen=True)
class Demo:
    model: str
    dataset: str
    architecture: str
    description: str
    config: dict[str, Any] | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)


DEMOS = (
    Demo(
        "digits-cnn",
        "builtin:digits",
        "cnn",
        "Handwritten digit 0-9 from an 8x8 grey image, shaped [1, 8, 8] (pixel values 0-16).",
    ),
    Demo(
        "iris-mlp",
        "builtin:iris",
        "mlp",
        "Iris species from sepal length, sepal width, petal length and petal width (cm).",
    ),
    Demo(
        "waves-lstm",
        "builtin:waves",
        "rnn",
        "Wave shape of a noisy sequence of 32 steps, shaped [32, 1].",
        config={"cell": "lstm"},
    ),
)


def _owner(database: Database) -> User:
    with database.session() as session:
        owner = session.scalar(select(User).where(User.email == DEMO_OWNER))
        if owner is None:
            owner = User(
                email=DEMO_OWNER,
                password_hash=security.hash_password(secrets.token_urlsafe(32)),
                webhook_secret=security.new_webhook_secret(),
                created_at=utcnow(),
            )
            session.add(owner)
            session.commit()
        session.expunge(owner)
        return owner


def _needs_training(database: Database, demo: Demo) -> bool:
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == demo.model))
        if model is None:
            return True
        has_version = session.scalar(
            select(ModelVersion.id).where(ModelVersion.model_id == model.id).limit(1)
        )
        in_flight = session.scalar(
            select(Training.id)
            .where(Training.model_id == model.id, Training.status.in_([QUEUED, RUNNING]))
            .limit(1)
        )
        return has_version is None and in_flight is None


def ensure_demo_models(database: Database, *, max_parameters: int) -> list[str]:
    """Queue a training for each demo model that has neither a version nor one under way;
    the ids of the trainings to hand to a worker."""
    pending = [demo for demo in DEMOS if _needs_training(database, demo)]
    if not pending:
        return []
    owner = _owner(database)
    started: list[str] = []
    for demo in pending:
        with database.session() as session:
            user = session.get(User, owner.id)
            assert user is not None
            try:
                training = service.create_training(
                    session,
                    owner=user,
                    spec=TrainingCreate(
                        model=demo.model,
                        dataset=demo.dataset,
                        architecture=demo.architecture,
                        config=demo.config,
                        hyperparameters=HyperparametersIn(**demo.hyperparameters),
                    ),
                    max_parameters=max_parameters,
                    visibility="public",
                    description=demo.description,
                )
            except AppError as exc:
                # Another gateway starting at the same moment took it (409), or an account
                # owns the name (403): leave that one and go on with the others.
                log.info("demo model %s not trained: %s", demo.model, exc.detail)
                continue
            started.append(str(training.id))
            log.info("training demo model %s (%s)", demo.model, training.id)
    return started
