"""Webhook deliveries as rows (when the next attempt is due, who holds it); job outputs in
the artifact store; expired jobs.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-05 12:50:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aiaas.db

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("webhook_due_at", aiaas.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("webhook_claimed_until", aiaas.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_predictions_webhook_due_at", ["webhook_due_at"], unique=False)
        batch_op.add_column(sa.Column("outputs_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("expired_at", aiaas.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Finished jobs whose webhook was never delivered and still has retries left are due now.
    op.execute(
        "UPDATE predictions SET webhook_due_at = finished_at WHERE webhook_url IS NOT NULL "
        "AND webhook_delivered_at IS NULL AND finished_at IS NOT NULL AND webhook_attempts < 6"
    )


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("expired_at")
        batch_op.drop_column("outputs_sha256")
        batch_op.drop_index("ix_predictions_webhook_due_at")
        batch_op.drop_column("webhook_claimed_until")
        batch_op.drop_column("webhook_due_at")
