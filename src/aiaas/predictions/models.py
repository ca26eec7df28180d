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

__all__ = ["CANCELED", "FAILED", "FINISHED", "QUEUED", "RUNNING", "SUCCEEDED", "Prediction"]


class Prediction(Base):
    """An async prediction job, or a sync prediction kept because its model captures inputs.

    The row is the source of truth: a broker may lose its queue, a worker may die; the row says
    what is left to do, and status changes are compare-and-set updates on it.
    """

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("owner_id", "idempotency_key"),
        Index("ix_predictions_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_predictions_status_lease_expires_at", "status", "lease_expires_at"),
        Index(
            "ix_predictions_owner_id_model_id_feedback_at", "owner_id", "model_id", "feedback_at"
        ),
        # A roll-out's comparison reads a model's feedback whoever called.
        Index("ix_predictions_model_id_feedback_at", "model_id", "feedback_at"),
        Index("ix_predictions_webhook_due_at", "webhook_due_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8), default="async")
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    # Small inputs live in the row; large ones in the artifact store, by digest.
    inputs: Mapped[list[Any] | None] = mapped_column(JSON)
    inputs_sha256: Mapped[str | None] = mapped_column(String(64))
    input_rows: Mapped[int] = mapped_column(Integer)
    outputs: Mapped[list[Any] | None] = mapped_column(JSON)
    # Outputs over INLINE_OUTPUT_BYTES live in the artifact store as .npy, as large inputs do.
    outputs_sha256: Mapped[str | None] = mapped_column(String(64))
    # Set when the retention sweep dropped the job's inputs and outputs (status and timings stay).
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    predictions: Mapped[list[Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the job was last handed to the broker; the reconciler republishes from this.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_last_status: Mapped[int | None] = mapped_column(Integer)
    webhook_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The delivery queue is these columns: when the next attempt is due (null: none is), and
    # until when a sender holds the attempt it claimed (another may take it over after).
    webhook_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    webhook_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    compute_s: Mapped[float | None] = mapped_column(Float)
    # The true label(s) a client sent back (one per input row): the rows of `feedback:{model}`.
    feedback: Mapped[list[Any] | None] = mapped_column(JSON)
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
