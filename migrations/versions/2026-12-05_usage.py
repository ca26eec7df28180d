"""Usage: predictions and trainings per account, model and hour, added to by the meters.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 13:20:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aiaas.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_hours",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("hour", aiaas.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("compute_s", sa.Float(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("trainings", sa.Integer(), nullable=False),
        sa.Column("training_compute_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_hours")),
        sa.UniqueConstraint(
            "account_id", "model_id", "hour", name=op.f("uq_usage_hours_account_id")
        ),
    )
    op.create_index(op.f("ix_usage_hours_account_id"), "usage_hours", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_hours_account_id"), table_name="usage_hours")
    op.drop_table("usage_hours")
