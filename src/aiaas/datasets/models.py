from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from aiaas.db import Base, UTCDateTime, new_id, utcnow


class Dataset(Base):
    """An uploaded dataset. Its arrays live in the artifact store as one NPZ (X, y), by digest;
    built-ins and feedback sets are not rows (they are made from the package and from
    predictions)."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_owner_id_created_at", "owner_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    task: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(Integer)
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    # Class labels in index order (names or integers); null for regression.
    classes: Mapped[list[Any] | None] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
