"""The Python SDK: ``Client`` and ``AsyncClient`` over the REST API.

::

    from aiaas.client import Client

    client = Client(base_url="http://127.0.0.1:8000", api_key="aiaas_...")
    result = client.models.predict("iris", [[5.1, 3.5, 1.4, 0.2]])

It imports nothing of the server (no torch, FastAPI, SQLAlchemy or Celery): httpx and numpy.
"""

from aiaas.client._async import AsyncClient, AsyncPredictionJob, AsyncTrainingJob
from aiaas.client._http import RetryPolicy
from aiaas.client._sync import Client, PredictionJob, TrainingJob
from aiaas.client.errors import AiaasError, RateLimited, ServiceUnavailable, TransportError
from aiaas.client.types import (
    AccessToken,
    Account,
    Alias,
    ApiKey,
    Architecture,
    Dataset,
    ExplainResult,
    Model,
    ModelCard,
    ModelUsage,
    Prediction,
    PredictResult,
    Training,
    TrainingEvent,
    Usage,
    UsageBucket,
    Version,
)

__all__ = [
    "AccessToken",
    "Account",
    "AiaasError",
    "Alias",
    "ApiKey",
    "Architecture",
    "AsyncClient",
    "AsyncPredictionJob",
    "AsyncTrainingJob",
    "Client",
    "Dataset",
    "ExplainResult",
    "Model",
    "ModelCard",
    "ModelUsage",
    "PredictResult",
    "Prediction",
    "PredictionJob",
    "RateLimited",
    "RetryPolicy",
    "ServiceUnavailable",
    "Training",
    "TrainingEvent",
    "TrainingJob",
    "TransportError",
    "Usage",
    "UsageBucket",
    "Version",
]
