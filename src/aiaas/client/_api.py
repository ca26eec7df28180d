"""Every call of the API, once: what to send and how to read the answer. ``Client`` and
``AsyncClient`` run these; they add no knowledge of routes of their own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import numpy as np

from aiaas.client._http import JSON, NPY, Call, encode_npy, path
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
    Prediction,
    PredictResult,
    Training,
    Usage,
    Version,
    build,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _one(cls: type[T]) -> Callable[[httpx.Response], T]:
    def parse(response: httpx.Response) -> T:
        return build(cls, response.json())

    return parse


def _page(cls: type[T]) -> Callable[[httpx.Response], Page[T]]:
    def parse(response: httpx.Response) -> Page[T]:
        body = response.json()
        return Page([build(cls, item) for item in body["data"]], body.get("next_cursor"))

    return parse


def _nothing(response: httpx.Response) -> None:
    return None


def _paged(cursor: str | None, limit: int) -> dict[str, Any]:
    return {"cursor": cursor, "limit": limit}


PAGE_SIZE = 100

# ---- accounts and keys


def register(email: str, password: str) -> Call[Account]:
    body = {"email": email, "password": password}
    return Call("POST", path("auth", "register"), _one(Account), json=body)


def login(email: str, password: str) -> Call[AccessToken]:
    body = {"email": email, "password": password}
    return Call("POST", path("auth", "login"), _one(AccessToken), json=body)


def me() -> Call[Account]:
    return Call("GET", path("me"), _one(Account), retryable=True)


def create_key(name: str, scopes: Sequence[str], expires_in_days: int | None) -> Call[ApiKey]:
    body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    return Call("POST", path("api-keys"), _one(ApiKey), json=body)


def list_keys(cursor: str | None) -> Call[Page[ApiKey]]:
    params = _paged(cursor, PAGE_SIZE)
    return Call("GET", path("api-keys"), _page(ApiKey), params=params, retryable=True)


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", path("api-keys", key_id), _nothing, retryable=True)


# ---- registry


def architectures() -> Call[list[Architecture]]:
    def parse(response: httpx.Response) -> list[Architecture]:
        return [build(Architecture, a) for a in response.json()["data"]]

    return Call("GET", path("architectures"), parse, retryable=True)


def create_model(
    name: str,
    task: str,
    *,
    labels: Sequence[str] | None,
    description: str,
    visibility: str,
) -> Call[Model]:
    body: dict[str, Any] = {
        "name": name,
        "task": task,
        "description": description,
        "visibility": visibility,
    }
    if labels is not None:
        body["labels"] = list(labels)
    return Call("POST", path("models"), _one(Model), json=body)


def list_models(cursor: str | None) -> Call[Page[Model]]:
    params = _paged(cursor, PAGE_SIZE)
    return Call("GET", path("models"), _page(Model), params=params, retryable=True)


def get_model(name: str) -> Call[Model]:
    return Call("GET", path("models", name), _one(Model), retryable=True)


def update_model(name: str, changes: Mapping[str, Any]) -> Call[Model]:
    # A PATCH sets the same values however often it is sent.
    return Call("PATCH", path("models", name), _one(Model), json=dict(changes), retryable=True)


def delete_model(name: str) -> Call[None]:
    return Call("DELETE", path("models", name), _nothing, retryable=True)


def push(
    name: str,
    weights: bytes,
    *,
    architecture: str,
    config: Mapping[str, Any],
    labels: Sequence[str] | None,
) -> Call[Version]:
    spec: dict[str, Any] = {"architecture": architecture, "config": dict(config)}
    if labels is not None:
        spec["labels"] = list(labels)
    return Call(
        "POST",
        path("models", name, "versions"),
        _one(Version),
        data={"spec": json.dumps(spec)},
        files={"weights": ("weights.safetensors", weights, "application/octet-stream")},
    )


def list_versions(name: str, cursor: str | None) -> Call[Page[Version]]:
    params = _paged(cursor, PAGE_SIZE)
    return Call(
        "GET", path("models", name, "versions"), _page(Version), params=params, retryable=True
    )


def get_version(name: str, version: int | str) -> Call[Version]:
    return Call("GET", path("models", name, "versions", version), _one(Version), retryable=True)


def card(name: str, version: int | str) -> Call[ModelCard]:
    url = path("models", name, "versions", version, "card")
    return Call("GET", url, _one(ModelCard), retryable=True)


def card_markdown(name: str, version: int | str) -> Call[str]:
    def parse(response: httpx.Response) -> str:
        return response.text

    url = path("models", name, "versions", version, "card")
    return Call("GET", url, parse, headers={"accept": "text/markdown"}, retryable=True)


def set_card(name: str, version: int | str, changes: Mapping[str, str | None]) -> Call[ModelCard]:
    # A PATCH sets the same values however often it is sent.
    url = path("models", name, "versions", version, "card")
    return Call("PATCH", url, _one(ModelCard), json=dict(changes), retryable=True)


def set_alias(name: str, alias: str, version: int | str) -> Call[Alias]:
    return Call(
        "PUT",
        path("models", name, "aliases", alias),
        _one(Alias),
        json={"version": version},
        retryable=True,
    )


def list_aliases(name: str) -> Call[list[Alias]]:
    def parse(response: httpx.Response) -> list[Alias]:
        return [build(Alias, a) for a in response.json()["data"]]

    return Call("GET", path("models", name, "aliases"), parse, retryable=True)


def delete_alias(name: str, alias: str) -> Call[None]:
    return Call("DELETE", path("models", name, "aliases", alias), _nothing, retryable=True)


# ---- predictions


def predict(name: str, inputs: Any, version: int | str | None) -> Call[PredictResult]:
    return _with_inputs(name, "predict", _predict_result, inputs, version=version)


def _with_inputs(
    name: str,
    route: str,
    parse: Callable[[httpx.Response], T],
    inputs: Any,
    *,
    version: int | str | None,
    **options: Any,
) -> Call[T]:
    """A call of a route that runs the model on ``inputs``: numpy arrays travel as .npy
    (exact dtype, no JSON round trip; ``options`` then go as query parameters), anything else
    as JSON with the ``options`` given beside ``inputs``. It changes nothing on the server, so
    it may be sent again."""
    if isinstance(inputs, np.ndarray):
        return Call(
            "POST",
            path("models", name, route),
            parse,
            params={"version": version, **options},
            content=encode_npy(inputs),
            headers={"content-type": NPY, "accept": JSON},
            retryable=True,
        )
    given = {key: value for key, value in options.items() if value is not None}
    return Call(
        "POST",
        path("models", name, route),
        parse,
        params={"version": version},
        json={"inputs": inputs, **given},
        retryable=True,
    )


def _predict_result(response: httpx.Response) -> PredictResult:
    body = response.json()
    return PredictResult(
        outputs=np.asarray(body["outputs"], dtype=np.float32),
        predictions=body["predictions"],
        model=body["model"],
        version=body["version"],
        id=body.get("id"),
    )


def explain(
    name: str,
    inputs: Any,
    *,
    method: str | None,
    target: int | str | None,
    version: int | str | None,
) -> Call[ExplainResult]:
    return _with_inputs(
        name, "explain", _explain_result, inputs, version=version, method=method, target=target
    )


def _explain_result(response: httpx.Response) -> ExplainResult:
    body = response.json()
    return ExplainResult(
        attributions=np.asarray(body["attributions"], dtype=np.float32),
        target=body["target"],
        predictions=body["predictions"],
        outputs=np.asarray(body["outputs"], dtype=np.float32),
        method=body["method"],
        model=body["model"],
        version=body["version"],
        completeness_gap=body.get("completeness_gap"),
    )


def create_prediction(
    model: str,
    inputs: Any,
    *,
    version: int | str | None,
    webhook: str | None,
    idempotency_key: str | None,
) -> Call[Prediction]:
    """A job, created at most once however often the call is sent: the key makes a retry
    find the job its first try made."""
    body: dict[str, Any] = {"model": model, "inputs": _plain(inputs)}
    if version is not None:
        body["version"] = version
    if webhook is not None:
        body["webhook"] = webhook
    key = idempotency_key or str(uuid.uuid4())
    return Call(
        "POST",
        path("predictions"),
        _one(Prediction),
        json=body,
        headers={"idempotency-key": key},
        retryable=True,
    )


def get_prediction(job_id: str) -> Call[Prediction]:
    return Call("GET", path("predictions", job_id), _one(Prediction), retryable=True)


def list_predictions(cursor: str | None) -> Call[Page[Prediction]]:
    params = _paged(cursor, PAGE_SIZE)
    return Call("GET", path("predictions"), _page(Prediction), params=params, retryable=True)


def cancel_prediction(job_id: str) -> Call[Prediction]:
    # Cancelling twice leaves the job as cancelling once does.
    return Call("POST", path("predictions", job_id, "cancel"), _one(Prediction), retryable=True)


def feedback(job_id: str, label: Any) -> Call[Prediction]:
    body = {"label": _plain(label)}
    return Call("POST", path("predictions", job_id, "feedback"), _one(Prediction), json=body)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy arrays and scalars as lists and numbers."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


# ---- datasets


def upload_dataset(
    file: str | Path | bytes,
    *,
    name: str,
    task: str,
    label_column: str | None,
    input_shape: Sequence[int] | None,
    filename: str | None,
) -> Call[Dataset]:
    if isinstance(file, bytes):
        content, filename = file, filename or "dataset.csv"
    else:
        source = Path(file)
        content, filename = source.read_bytes(), filename or source.name
    data = {"name": name, "task": task}
    if label_column is not None:
        data["label_column"] = label_column
    if input_shape is not None:
        data["input_shape"] = json.dumps(list(input_shape))
    return Call(
        "POST",
        path("datasets"),
        _one(Dataset),
        data=data,
        files={"file": (filename, content, "application/octet-stream")},
    )


def list_datasets(cursor: str | None) -> Call[Page[Dataset]]:
    params = _paged(cursor, PAGE_SIZE)
    return Call("GET", path("datasets"), _page(Dataset), params=params, retryable=True)


def get_dataset(dataset_id: str) -> Call[Dataset]:
    return Call("GET", path("datasets", dataset_id), _one(Dataset), retryable=True)


def delete_dataset(dataset_id: str) -> Call[None]:
    return Call("DELETE", path("datasets", dataset_id), _nothing, retryable=True)


# ---- trainings


def create_training(
    model: str,
    dataset: str | Sequence[str],
    *,
    architecture: str | None,
    config: Mapping[str, Any] | None,
    base_version: int | str | None,
    hyperparameters: Mapping[str, Any] | None,
) -> Call[Training]:
    body: dict[str, Any] = {
        "model": model,
        "dataset": dataset if isinstance(dataset, str) else list(dataset),
    }
    if architecture is not None:
        body["architecture"] = architecture
    if config is not None:
        body["config"] = dict(config)
    if base_version is not None:
        body["base_version"] = base_version
    if hyperparameters:
        body["hyperparameters"] = dict(hyperparameters)
    return Call("POST", path("trainings"), _one(Training), json=body)


def get_training(training_id: str) -> Call[Training]:
    return Call("GET", path("trainings", training_id), _one(Training), retryable=True)


def list_trainings(cursor: str | None) -> Call[Page[Training]]:
    params = _paged(cursor, PAGE_SIZE)
    return Call("GET", path("trainings"), _page(Training), params=params, retryable=True)


def cancel_training(training_id: str) -> Call[Training]:
    return Call("POST", path("trainings", training_id, "cancel"), _one(Training), retryable=True)


def training_events_path(training_id: str) -> str:
    return path("trainings", training_id, "events")


# ---- usage


def usage(start: datetime | None, end: datetime | None, granularity: str | None) -> Call[Usage]:
    params = {
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "granularity": granularity,
    }

    def parse(response: httpx.Response) -> Usage:
        body = dict(response.json())
        body["start"] = body.pop("from", None)
        return build(Usage, body)

    return Call("GET", path("usage"), parse, params=params, retryable=True)
