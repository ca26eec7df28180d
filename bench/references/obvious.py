"""The obvious endpoint: FastAPI + a pydantic body model + ``torch.tensor`` + forward.

A sync ``def`` route (FastAPI runs it in its thread pool), as people write it.
"""

from __future__ import annotations

import torch
from fastapi import FastAPI
from pydantic import BaseModel

from bench.references._model import load_model

model = load_model()
app = FastAPI()


class PredictIn(BaseModel):
    inputs: list[list[float]]


@app.post("/predict")
def predict(body: PredictIn) -> dict[str, list[list[float]]]:
    with torch.inference_mode():
        probs = torch.softmax(model(torch.tensor(body.inputs)), dim=-1)
    return {"outputs": probs.tolist()}
