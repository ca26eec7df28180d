from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aiaas.db import Base, UTCDateTime, new_id, utcnow


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (Index("ix_models_owner_id_created_at", "owner_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63), unique=True)
    task: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[list[str] | None] = mapped_column(JSON)
    visibility: Mapped[str] = mapped_column(String(8), default="private", index=True)
    capture_inputs: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ModelVersion.number",
    )
    aliases: Mapped[list[ModelAlias]] = relationship(
        back_populates="model",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ModelAlias.alias",
    )


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    architecture: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # A variable axis (an RNN without seq_len) is stored as null.
    input_shape: Mapped[list[int | None]] = mapped_column(JSON)
    input_dtype: Mapped[str] = mapped_column(String(16), default="float32")
    labels: Mapped[list[str] | None] = mapped_column(JSON)
    parameters: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Batching knobs; null means the platform default (AIAAS_MAX_BATCH_SIZE, AIAAS_MAX_DELAY_MS).
    max_batch_size: Mapped[int | None] = mapped_column(Integer)
    max_delay_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The card's owner-written text. Deferred with the provenance: only the card reads them,
    # and up to 20,000 characters a version would weigh on every version listing.
    intended_use: Mapped[str | None] = mapped_column(Text, deferred=True, deferred_group="card")
    limitations: Mapped[str | None] = mapped_column(Text, deferred=True, deferred_group="card")
    # What a training made this version from, written with it: {"training_id", "datasets":
    # [{"id", "name", "rows"}], "hyperparameters", "base_version", "input_range": {"min",
    # "max"}}; a key may hold null where it was not recorded. Null for an upload.
    provenance: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, deferred=True, deferred_group="card"
    )

    model: Mapped[Model] = relationship(back_populates="versions")


class ModelAlias(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(63), primary_key=True)
    # The primary version: all the traffic, or the heaviest share of a split; what the
    # alias names wherever one version is meant (a fine-tune's base, async jobs).
    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    # A weighted split: [{"version_id": "<uuid>", "weight": 90}, ...], weights summing to 100
    # (the primary among them); null when the primary takes everything.
    split: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # Gets a copy of each request after the caller has its answer, for comparison.
    shadow_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    model: Mapped[Model] = relationship(back_populates="aliases")
    version: Mapped[ModelVersion] = relationship(lazy="joined", foreign_keys=[version_id])
    # Loaded when read (no query while the key is null): every model list loads its aliases,
    # and a joined shadow would add a version row, JSON columns and all, to each of them.
    shadow: Mapped[ModelVersion | None] = relationship(foreign_keys=[shadow_version_id])
