"""Model cards: the owner's intended use and limitations on each version, and what a trained
version was made from.

Versions trained before this revision get their provenance from their training's row: the
datasets, hyperparameters and base version. What those rows never held (each dataset's name,
the input value range, a pooled set's rows per dataset) stays unrecorded.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-19 09:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables as this revision knows them, not as the models may describe them later.
_trainings = sa.table(
    "trainings",
    sa.column("id", sa.Uuid()),
    sa.column("model_id", sa.Uuid()),
    sa.column("status", sa.String()),
    sa.column("version", sa.Integer()),
    sa.column("datasets", sa.JSON()),
    sa.column("hyperparameters", sa.JSON()),
    sa.column("base_version", sa.Integer()),
    sa.column("metrics", sa.JSON()),
)
_versions = sa.table(
    "model_versions",
    sa.column("model_id", sa.Uuid()),
    sa.column("number", sa.Integer()),
    sa.column("provenance", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("intended_use", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("limitations", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("provenance", sa.JSON(), nullable=True))
    _backfill_provenance()


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("provenance")
        batch_op.drop_column("limitations")
        batch_op.drop_column("intended_use")


def _backfill_provenance() -> None:
    bind = op.get_bind()
    finished = bind.execute(
        sa.select(_trainings).where(
            _trainings.c.status == "succeeded", _trainings.c.version.is_not(None)
        )
    ).all()
    for row in finished:
        bind.execute(
            sa.update(_versions)
            .where(_versions.c.model_id == row.model_id, _versions.c.number == row.version)
            .values(provenance=_provenance(row))
        )


def _provenance(row: Any) -> dict[str, Any]:
    ids = list(row.datasets or [])
    splits = (row.metrics or {}).get("rows")
    # The splits together are every row trained on: one dataset's size, not a pool's parts.
    total = sum(splits.values()) if len(ids) == 1 and isinstance(splits, dict) else None
    return {
        "training_id": str(row.id),
        "datasets": [{"id": i, "name": None, "rows": total} for i in ids],
        "hyperparameters": row.hyperparameters,
        "base_version": row.base_version,
        "input_range": None,
    }
