"""Task code for trainings, the same under both transports.

The loop itself is ``ml.training.train``; this wires it to the job row (a lease renewed while it
runs, compare-and-set status changes), to the artifact store (a checkpoint per epoch, the
weights of the new version) and to the events the stream replays. A new attempt, after a worker
died, resumes from the row's last checkpoint.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from aiaas import jobs
from aiaas.accounts.models import User
from aiaas.context import WorkerContext
from aiaas.datasets import service as datasets
from aiaas.datasets.arrays import DatasetArrays
from aiaas.db import utcnow
from aiaas.dispatch.base import Dispatcher
from aiaas.errors import AppError
from aiaas.ml import architectures
from aiaas.ml.errors import Canceled
from aiaas.ml.evaluation import model_metrics
from aiaas.ml.training import (
    Checkpoint,
    EpochReport,
    Hyperparameters,
    TrainingData,
    seeded_model,
    split_indices,
    train,
)
from aiaas.ml.weights import load_safetensors, load_weights_into, save_state
from aiaas.quotas import Quotas
from aiaas.registry import versions
from aiaas.registry.models import Model, ModelVersion
from aiaas.registry.schemas import VersionSpec
from aiaas.registry.service import release_artifacts
from aiaas.trainings.models import FAILED, SUCCEEDED, Training
from aiaas.trainings.schemas import TrainingCreate
from aiaas.trainings.service import (
    END,
    EPOCH,
    add_event,
    check_quotas,
    create_training,
    release_checkpoint,
    version_labels,
)

log = logging.getLogger(__name__)


# A training whose attempts keep dying (a worker killed for memory, a crash) is given up.
MAX_ATTEMPTS = 5


class Failed(Exception):
    """The training cannot go on; the message is the job's error."""


@dataclass
class Plan:
    """What one attempt needs, read from the database in one short transaction."""

    owner_id: uuid.UUID
    model_id: uuid.UUID
    architecture: str
    config: dict[str, Any]
    classes: list[Any] | None
    hyperparameters: dict[str, Any]
    base_version: int | None
    base_weights: bytes | None
    checkpoint: bytes | None
    data: DatasetArrays
    # Each dataset as the training read it: {"id", "name", "rows"}.
    sources: list[dict[str, Any]]


def _read_plan(ctx: WorkerContext, ident: uuid.UUID) -> Plan:
    with ctx.database.session() as session:
        training = session.get(Training, ident)
        assert training is not None
        owner = session.get(User, training.owner_id)
        if owner is None or session.get(Model, training.model_id) is None:
            raise Failed("the model or its owner was deleted")
        try:
            parts = datasets.load_each(
                session, store=ctx.store, owner=owner, dataset_ids=training.datasets
            )
            data = datasets.pool_loaded(
                parts, dataset_ids=training.datasets, classes=training.classes
            )
            sources = [
                {
                    "id": dataset_id,
                    "name": datasets.display_name(session, owner=owner, dataset_id=dataset_id),
                    "rows": part.rows,
                }
                for dataset_id, part in zip(training.datasets, parts, strict=True)
            ]
        except AppError as exc:
            raise Failed(f"the dataset cannot be read: {exc.detail}") from None
        base_weights = None
        if training.base_version is not None:
            base = session.scalar(
                select(ModelVersion).where(
                    ModelVersion.model_id == training.model_id,
                    ModelVersion.number == training.base_version,
                )
            )
            if base is None:
                raise Failed(f"version {training.base_version} was deleted")
            base_weights = ctx.store.get_bytes(base.sha256)
        checkpoint = (
            ctx.store.get_bytes(training.checkpoint_sha256) if training.checkpoint_sha256 else None
        )
        return Plan(
            owner_id=training.owner_id,
            model_id=training.model_id,
            architecture=training.architecture,
            config=dict(training.config),
            classes=training.classes,
            hyperparameters=dict(training.hyperparameters),
            base_version=training.base_version,
            base_weights=base_weights,
            checkpoint=checkpoint,
            data=data,
            sources=sources,
        )


def _training_data(plan: Plan) -> TrainingData:
    data = plan.data
    if plan.classes is None:
        return TrainingData(x=data.x, y=data.y, task="regression", classes=None)
    # pool_loaded mapped the rows' classes onto plan.classes: y indexes them already.
    return TrainingData(
        x=data.x, y=data.y, task="classification", classes=[str(c) for c in plan.classes]
    )


def _build(ctx: WorkerContext, plan: Plan) -> torch.nn.Module:
    parsed = architectures.parse_config(
        plan.architecture, plan.config, max_parameters=ctx.settings.max_model_parameters
    )
    module = seeded_model(
        lambda: architectures.build_model(plan.architecture, parsed),
        int(plan.hyperparameters.get("seed", 0)),
    )
    if plan.base_weights is not None:
        load_weights_into(module, load_safetensors(plan.base_weights))
    return module


class _Progress:
    """The callbacks the loop calls: checkpoint and event per epoch, lease renewal between."""

    def __init__(self, ctx: WorkerContext, ident: uuid.UUID, attempt: int) -> None:
        self.ctx = ctx
        self.ident = ident
        self.attempt = attempt
        self.lease_s = ctx.settings.job_lease_s
        self.renewed = time.monotonic()
        self.epoch_started = time.monotonic()
        self.seconds: list[float] = []

    def should_stop(self) -> bool:
        if self.ctx.stopping.is_set():
            return True
        # A renewal is one small UPDATE; a third of the lease apart keeps it rare and safe.
        if time.monotonic() - self.renewed < self.lease_s / 3:
            return False
        self.renewed = time.monotonic()
        return not jobs.renew(
            self.ctx.database, Training, self.ident, self.attempt, lease_s=self.lease_s
        )

    def on_epoch(self, report: EpochReport, checkpoint: Checkpoint) -> None:
        self.ctx.metrics.training_epoch_seconds.observe(report.seconds)
        self.seconds.append(report.seconds)
        info = self.ctx.store.put_bytes(checkpoint.to_bytes())
        remaining = report.epochs - report.epoch
        data = {
            "epoch": report.epoch,
            "epochs": report.epochs,
            "train_loss": report.train_loss,
            "val_loss": report.val_loss,
            "metrics": report.metrics,
            "progress": report.epoch / report.epochs,
            "eta_s": round(remaining * sum(self.seconds) / len(self.seconds), 3),
        }
        with self.ctx.database.session() as session:
            previous = session.scalar(
                select(Training.checkpoint_sha256).where(Training.id == self.ident)
            )
            result = session.execute(
                update(Training)
                .where(*jobs.holds(Training, self.ident, self.attempt))
                .values(
                    epoch=report.epoch,
                    metrics=report.metrics,
                    checkpoint_sha256=info.sha256,
                    epoch_seconds=report.seconds,
                    lease_expires_at=utcnow() + timedelta(seconds=self.lease_s),
                )
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                release_checkpoint(self.ctx.database, self.ctx.store, info.sha256)
                raise Canceled()
            add_event(session, self.ident, EPOCH, data)
            try:
                session.commit()
            except IntegrityError:  # a cancel wrote the end event first
                session.rollback()
                release_checkpoint(self.ctx.database, self.ctx.store, info.sha256)
                raise Canceled() from None
        self.renewed = time.monotonic()
        if previous and previous != info.sha256:
            release_checkpoint(self.ctx.database, self.ctx.store, previous)


def _finish(
    ctx: WorkerContext,
    ident: uuid.UUID,
    attempt: int,
    values: dict[str, Any],
    end: dict[str, Any],
) -> bool:
    """Write the outcome if this attempt still holds the job; the checkpoint is spent then."""
    with ctx.database.session() as session:
        checkpoint = session.scalar(select(Training.checkpoint_sha256).where(Training.id == ident))
        result = session.execute(
            update(Training)
            .where(*jobs.holds(Training, ident, attempt))
            .values(**values, checkpoint_sha256=None, finished_at=utcnow(), lease_expires_at=None)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return False
        add_event(session, ident, END, end)
        session.commit()
    if checkpoint:
        release_checkpoint(ctx.database, ctx.store, checkpoint)
    return True


def run_training(ctx: WorkerContext, training_id: str) -> str:
    """One attempt at a training; returns the status it ended in (or 'skipped'/'dropped')."""
    ident = uuid.UUID(training_id)
    attempt = jobs.claim(ctx.database, Training, ident, lease_s=ctx.settings.job_lease_s)
    if attempt is None:
        return "skipped"
    if attempt > MAX_ATTEMPTS:
        error = f"given up after {MAX_ATTEMPTS} attempts whose workers stopped mid-run"
        _finish(ctx, ident, attempt, {"status": FAILED, "error": error},
                {"status": FAILED, "version": None, "error": error})  # fmt: skip
        ctx.metrics.trainings.labels(FAILED).inc()
        return FAILED
    # Read first: a training deleted with its model meanwhile still cost what it ran.
    owner = _owner_and_model(ctx, ident)
    ctx.metrics.trainings_running.inc()
    began = time.perf_counter()
    try:
        status = _run(ctx, ident, attempt)
    finally:
        ctx.metrics.trainings_running.dec()
    if status in (SUCCEEDED, FAILED):
        ctx.metrics.trainings.labels(status).inc()
    if owner is not None:
        # A dropped attempt's seconds were spent too; the attempt that resumes it counts it.
        ctx.usage.record_training(
            *owner, compute_s=time.perf_counter() - began, finished=status in (SUCCEEDED, FAILED)
        )
    return status


def _owner_and_model(ctx: WorkerContext, ident: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID] | None:
    with ctx.database.session() as session:
        row = session.execute(
            select(Training.owner_id, Training.model_id).where(Training.id == ident)
        ).first()
    return None if row is None else (row.owner_id, row.model_id)


def _run(ctx: WorkerContext, ident: uuid.UUID, attempt: int) -> str:
    try:
        return _attempt(ctx, ident, attempt)
    except Canceled:
        return "dropped"
    except SQLAlchemyError as exc:
        # The database is unreachable or busy: give the job up as if this worker had died;
        # its lease runs out and a later attempt resumes from the last checkpoint.
        log.warning("training %s: database error, leaving it to a later attempt: %s", ident, exc)
        return "dropped"
    except Exception as exc:
        log.warning("training %s failed: %s", ident, exc, exc_info=not isinstance(exc, Failed))
        if isinstance(exc, Failed):
            error = str(exc)
        elif isinstance(exc, AppError):
            error = exc.detail
        else:
            error = f"{type(exc).__name__}: {exc}"
        _finish(
            ctx,
            ident,
            attempt,
            {"status": FAILED, "error": error},
            {"status": FAILED, "version": None, "error": error},
        )
        return FAILED


def _attempt(ctx: WorkerContext, ident: uuid.UUID, attempt: int) -> str:
    progress = _Progress(ctx, ident, attempt)
    plan = _read_plan(ctx, ident)
    data = _training_data(plan)
    module = _build(ctx, plan)
    base_figures = None
    hp = Hyperparameters(**plan.hyperparameters)
    if plan.base_weights is not None:
        _, _, test = split_indices(
            data, val_fraction=hp.val_fraction, test_fraction=hp.test_fraction, seed=hp.seed
        )
        if len(test):
            # The base version's figures on this run's test split, for comparison with the
            # new one; the module is still on the CPU, where it was built.
            base_figures = model_metrics(
                module, data.x[test], data.y[test], data.classes, device=torch.device("cpu")
            )
    resume = Checkpoint.from_bytes(plan.checkpoint) if plan.checkpoint else None
    if resume is not None:
        log.info("training %s resumes after epoch %d", ident, resume.epoch)
    result = train(
        module,
        data,
        hp,
        device=ctx.device,
        on_epoch=progress.on_epoch,
        resume=resume,
        should_stop=progress.should_stop,
        from_base=plan.base_weights is not None,
    )

    metrics = dict(result.metrics)
    if plan.base_version is not None:
        metrics["base"] = {"version": plan.base_version, "metrics": base_figures}
    metrics["epochs_run"] = result.epochs_run
    metrics["stopped_early"] = result.stopped_early
    weights = save_state(result.state_dict)
    # The version and the training's outcome commit together: a training canceled or taken
    # over meanwhile leaves no version behind, and none is made twice.
    with ctx.database.session() as session:
        model = session.get(Model, plan.model_id)
        if model is None:
            raise Failed("the model was deleted")
        checkpoint = session.scalar(select(Training.checkpoint_sha256).where(Training.id == ident))
        version = versions.create_version(
            session,
            model=model,
            spec=VersionSpec(
                architecture=plan.architecture,
                config=plan.config,
                labels=version_labels(plan.classes),
            ),
            weights=weights,
            store=ctx.store,
            max_parameters=ctx.settings.max_model_parameters,
            metrics=metrics,
            commit=False,
        )
        version.provenance = _provenance(ident, plan)
        number, digest = version.number, version.sha256
        result_row = session.execute(
            update(Training)
            .where(*jobs.holds(Training, ident, attempt))
            .values(
                status=SUCCEEDED,
                version=number,
                metrics=metrics,
                epoch=result.epochs_run,
                checkpoint_sha256=None,
                finished_at=utcnow(),
                lease_expires_at=None,
            )
        )
        if result_row.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            release_artifacts(session, store=ctx.store, digests={digest})
            return "dropped"
        add_event(session, ident, END, {"status": SUCCEEDED, "version": number})
        session.commit()
    if checkpoint:
        release_checkpoint(ctx.database, ctx.store, checkpoint)
    return SUCCEEDED


def _provenance(ident: uuid.UUID, plan: Plan) -> dict[str, Any]:
    """What the version's card says it was made from (``ModelVersion.provenance``)."""
    x = plan.data.x
    return {
        "training_id": str(ident),
        "datasets": plan.sources,
        "hyperparameters": plan.hyperparameters,
        "base_version": plan.base_version,
        # float32's shortest text, so 0.1 reads 0.1 rather than 0.10000000149011612.
        "input_range": {"min": float(str(x.min())), "max": float(str(x.max()))},
    }


TRAINING = jobs.JobKind(
    task="aiaas.run_training", queue=jobs.TRAINING_QUEUE, run=run_training, table=Training
)


def start_training(
    session: Session,
    quotas: Quotas,
    dispatcher: Dispatcher,
    *,
    owner: User,
    spec: TrainingCreate,
    max_parameters: int,
) -> Training:
    """A caller's training, for the API and the dashboard: the quotas checked, the training
    (and its model, when new) committed, then handed to the workers."""
    check_quotas(session, quotas, owner=owner, model_name=spec.model)
    training = create_training(session, owner=owner, spec=spec, max_parameters=max_parameters)
    dispatcher.submit(TRAINING.task, str(training.id))
    return training
