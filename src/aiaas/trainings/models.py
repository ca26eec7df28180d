from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from aiaas.db import Base, UTCDateTime, new_id, utcnow
from aiaas.jobs import CANCELED, FAILED, FINISHED, QUEUED, RUNNING, SUCCEEDED

__all__ = ["CANCELED", "FAILED", "FINISHED", "QUEUED", "RUNNING", "SUCCEEDED", "Training"]


class Training(Base):
    """A training job. As with prediction jobs the row is the source of truth: status changes
    are compare-and-set updates, and the last checkpoint's digest says where a new attempt
    resumes."""

    __tablename__ = "trainings"
    __table_args__ = (
        Index("ix_trainings_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_trainings_status_lease_expires_at", "status", "lease_expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(String(63))
    # Dataset ids as given (one or several, pooled).
    datasets: Mapped[list[str]] = mapped_column(JSON)
    architecture: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    base_version: Mapped[int | None] = mapped_column(Integer)
    # The class list outputs are trained against, in output order (null for regression): the
    # datasets' labels are mapped onto it.
    classes: Mapped[list[Any] | None] = mapped_column(JSON)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer)
    # Validation figures of the last epoch while running; the test split's once finished.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    version: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    epoch_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TrainingEvent(Base):
    """What the events stream replays: one row per epoch and a last one at the end. ``seq``
    counts from 1 per training and is the SSE ``id``."""

    __tablename__ = "training_events"
    __table_args__ = (UniqueConstraint("training_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    training_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trainings.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
