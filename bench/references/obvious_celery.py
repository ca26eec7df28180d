"""The obvious distributed endpoint: FastAPI -> Celery task -> ``.get()``.

Redis is both broker and result backend (db 12). The worker loads the model once::

    celery -A bench.references.obvious_celery worker --pool=solo
    uvicorn bench.references.obvious_celery:api

(The FastAPI app is ``api``: ``celery -A`` would take an attribute named ``app`` for itself.)
"""

from __future__ import annotations

import functools
import os

import torch
from celery import Celery
from fastapi import FastAPI
from pydantic import BaseModel
from torch import nn

from bench.references._model import load_model

REDIS = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/12")

celery = Celery("obvious_celery", broker=REDIS, backend=REDIS)
api = FastAPI()


@functools.cache
def model() -> nn.Module:
    return load_model()


@celery.task
def predict_task(inputs: list[list[float]]) -> list[list[float]]:
    with torch.inference_mode():
        probs = torch.softmax(model()(torch.tensor(inputs)), dim=-1)
    out: list[list[float]] = probs.tolist()
    return out


class PredictIn(BaseModel):
    inputs: list[list[float]]


@api.post("/predict")
def predict(body: PredictIn) -> dict[str, list[list[float]]]:
    outputs = predict_task.delay(body.inputs).get(timeout=30)
    return {"outputs": outputs}
