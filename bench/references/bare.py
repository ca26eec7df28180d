"""The HTTP ceiling: a FastAPI POST that reads the body and answers ``{}``."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> dict[str, str]:
    await request.body()
    return {}
