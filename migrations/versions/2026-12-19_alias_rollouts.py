"""Alias roll-outs: an alias may split its traffic between versions by weight, and copy it to
a shadow version; the comparison of its versions reads a model's feedback by model.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-19 10:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_aliases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("split", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("shadow_version_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            "fk_model_aliases_shadow_version_id",
            "model_versions",
            ["shadow_version_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index(
        "ix_predictions_model_id_feedback_at", "predictions", ["model_id", "feedback_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_model_id_feedback_at", table_name="predictions")
    with op.batch_alter_table("model_aliases", schema=None) as batch_op:
        batch_op.drop_constraint("fk_model_aliases_shadow_version_id", type_="foreignkey")
        batch_op.drop_column("shadow_version_id")
        batch_op.drop_column("split")
