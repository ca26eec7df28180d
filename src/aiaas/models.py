"""Every ORM model, imported in one place so Alembic and the tests see the whole schema."""

from aiaas.accounts.models import ApiKey, User
from aiaas.db import Base
from aiaas.predictions.models import Prediction
from aiaas.registry.models import Model, ModelAlias, ModelVersion

metadata = Base.metadata

__all__ = ["ApiKey", "Model", "ModelAlias", "ModelVersion", "Prediction", "User", "metadata"]
