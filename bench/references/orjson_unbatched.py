"""Unbatched but lean: raw body, orjson + numpy in, forward inline on the event loop, orjson out."""

from __future__ import annotations

import numpy as np
import orjson
import torch
from fastapi import FastAPI, Request, Response

from bench.references._model import load_model

model = load_model()
app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> Response:
    data = orjson.loads(await request.body())
    x = torch.from_numpy(np.asarray(data["inputs"], dtype=np.float32))
    with torch.inference_mode():
        probs = torch.softmax(model(x), dim=-1)
    body = orjson.dumps({"outputs": probs.numpy()}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, media_type="application/json")
