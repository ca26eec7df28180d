"""Whether any row still refers to a blob of the artifact store.

Blobs are stored by content, so one blob may be a model version's weights, a dataset, a job's
inputs or outputs and a training's checkpoint at once, for any number of accounts: it may go
only when none of these tables names it.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from aiaas.datasets.models import Dataset
from aiaas.predictions.models import Prediction
from aiaas.registry.models import ModelVersion
from aiaas.trainings.models import Training


def held(session: Session, sha256: str) -> bool:
    holders = (
        select(Prediction.id).where(
            or_(Prediction.inputs_sha256 == sha256, Prediction.outputs_sha256 == sha256)
        ),
        select(ModelVersion.id).where(ModelVersion.sha256 == sha256),
        select(Dataset.id).where(Dataset.sha256 == sha256),
        select(Training.id).where(Training.checkpoint_sha256 == sha256),
    )
    return any(session.scalar(query.limit(1)) is not None for query in holders)
