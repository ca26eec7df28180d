"""Every ORM model, imported in one place so Alembic and the tests see the whole schema."""

from aiaas.accounts.models import ApiKey, User
from aiaas.datasets.models import Dataset
from aiaas.db import Base
from aiaas.predictions.models import Prediction
from aiaas.registry.models import Model, ModelAlias, ModelVersion
from aiaas.trainings.models import Training, TrainingEvent
from aiaas.web.models import WebSession

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "Dataset",
    "Model",
    "ModelAlias",
    "ModelVersion",
    "Prediction",
    "Training",
    "TrainingEvent",
    "User",
    "WebSession",
    "metadata",
]
