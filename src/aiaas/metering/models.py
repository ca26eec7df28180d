from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, Integer, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from aiaas.db import Base, UTCDateTime


class UsageHour(Base):
    """What one account used of one model in one hour (predictions, and trainings that made
    or retrained it), added to by each flush of the gateways' and workers' meters. No foreign
    keys: usage outlives the model and the account's jobs."""

    __tablename__ = "usage_hours"
    __table_args__ = (UniqueConstraint("account_id", "model_id", "hour"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    model_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    hour: Mapped[datetime] = mapped_column(UTCDateTime)
    predictions: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    compute_s: Mapped[float] = mapped_column(Float, default=0.0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    trainings: Mapped[int] = mapped_column(Integer, default=0)
    training_compute_s: Mapped[float] = mapped_column(Float, default=0.0)
