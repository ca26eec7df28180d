"""What the tests make over and over, made one way: accounts, API keys, models with a version,
dataset uploads, rows written straight to the database, and waiting for something to happen.

The factories that go through the API assert each answer they depend on, so a test whose setup
fails says so there rather than at a later, puzzling assertion. The row factories skip the
routes: they are for tests of the code underneath them, and only flush (the caller commits).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import httpx
import torch
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.weights import save_safetensors
from aiaas.predictions.models import Prediction
from aiaas.registry.models import Model, ModelVersion

PASSWORD = "correct horse battery"
MLP_CONFIG: dict[str, Any] = {"input_dim": 4, "hidden": [8], "output_dim": 3}
# A job or a training in one of these states will not change again.
FINISHED = ("succeeded", "failed", "canceled")

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A name no other test uses: tests that share a committed database share its names."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---- waiting ------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.05,
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Waiting on the condition itself, rather than sleeping for a guessed time, is as quick as
    the machine allows and as patient as a loaded one needs. Past ``timeout`` seconds the test
    fails naming ``what`` it waited for (a callable is asked only then, so it may read logs)
    and the last value ``check`` returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(
                f"gave up after {timeout:g} s waiting for {described} (last: {result!r})"
            )
        time.sleep(interval)


def _finished(client: httpx.Client, url: str, headers: dict[str, str], timeout: float) -> Any:
    def state() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(url, headers=headers).json()
        return body if body.get("status") in FINISHED else None

    return wait_until(state, timeout=timeout, what=f"{url} to finish")


def wait_job(
    client: httpx.Client, job_id: str, headers: dict[str, str], *, timeout: float = 60
) -> dict[str, Any]:
    """The prediction job once it has finished, however it finished."""
    done: dict[str, Any] = _finished(client, f"/v1/predictions/{job_id}", headers, timeout)
    return done


def wait_training(
    client: httpx.Client, training_id: str, headers: dict[str, str], *, timeout: float = 120
) -> dict[str, Any]:
    """The training once it has finished, however it finished."""
    done: dict[str, Any] = _finished(client, f"/v1/trainings/{training_id}", headers, timeout)
    return done


# ---- accounts and keys --------------------------------------------------------------------


@dataclass
class Account:
    id: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(
    client: httpx.Client, *, email: str | None = None, password: str = PASSWORD
) -> Account:
    """A new account, signed up and logged in through the API."""
    email = email or f"{unique('user')}@example.com"
    body = {"email": email, "password": password}
    created = client.post("/v1/auth/register", json=body)
    assert created.status_code == 201, created.text
    login = client.post("/v1/auth/login", json=body)
    assert login.status_code == 200, login.text
    return Account(created.json()["id"], email.lower(), password, login.json()["access_token"])


def api_key(
    client: httpx.Client,
    owner: Account,
    scopes: list[str],
    *,
    name: str = "test key",
    **extra: Any,
) -> dict[str, Any]:
    """A new API key of ``owner``'s, as created (``key`` is the secret, shown this once)."""
    body = {"name": name, "scopes": scopes, **extra}
    response = client.post("/v1/api-keys", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# ---- models and versions ------------------------------------------------------------------


def create_model(
    client: httpx.Client,
    owner: Account,
    name: str | None = None,
    *,
    task: str = "classification",
    **fields: Any,
) -> dict[str, Any]:
    """A new model of ``owner``'s, without versions, as created (a unique name unless given)."""
    body = {"name": name or unique("model"), "task": task, **fields}
    response = client.post("/v1/models", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def post_version(
    client: httpx.Client,
    name: str,
    *,
    spec: dict[str, Any] | str,
    weights: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    """POST a multipart upload exactly as a client would: a JSON spec part and a file part.
    The answer is not checked: tests of refused uploads use this too."""
    return client.post(
        f"/v1/models/{name}/versions",
        data={"spec": spec if isinstance(spec, str) else json.dumps(spec)},
        files={"weights": ("model.safetensors", weights, "application/octet-stream")},
        headers=headers,
    )


def seeded_module(
    architecture: str = "mlp", config: dict[str, Any] | None = None, *, seed: int = 0
) -> torch.nn.Module:
    """A freshly initialised model of this family in eval mode: the same weights for the same
    seed, other weights (and so another blob) for another."""
    torch.manual_seed(seed)
    parsed = parse_config(architecture, config or MLP_CONFIG, max_parameters=10**8)
    module = build_model(architecture, parsed)
    module.eval()
    return module


def upload_version(
    client: httpx.Client,
    owner: Account,
    name: str,
    architecture: str = "mlp",
    config: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    labels: list[str] | None = None,
) -> torch.nn.Module:
    """A new version of the model ``name``, of seeded weights; the module those weights are."""
    config = config or MLP_CONFIG
    module = seeded_module(architecture, config, seed=seed)
    spec: dict[str, Any] = {"architecture": architecture, "config": config}
    if labels is not None:
        spec["labels"] = labels
    response = post_version(
        client, name, spec=spec, weights=save_safetensors(module), headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return module


class Published(NamedTuple):
    """A published model's name and the module its version's weights came from."""

    name: str
    module: torch.nn.Module


def publish(
    client: httpx.Client,
    owner: Account,
    *,
    name: str | None = None,
    task: str = "classification",
    architecture: str = "mlp",
    config: dict[str, Any] | None = None,
    seed: int = 0,
    **fields: Any,
) -> Published:
    """A new model of ``owner``'s with one version, ready to predict; ``fields`` go to the
    model (``labels``, ``visibility``...)."""
    created = create_model(client, owner, name, task=task, **fields)
    module = upload_version(client, owner, created["name"], architecture, config, seed=seed)
    return Published(created["name"], module)


# ---- datasets -----------------------------------------------------------------------------


def upload_dataset(
    client: httpx.Client,
    owner: Account,
    data: bytes,
    *,
    filename: str = "data.csv",
    content_type: str = "application/octet-stream",
    name: str = "my data",
    task: str = "classification",
    **fields: str,
) -> httpx.Response:
    """POST a dataset file as a client would; the answer is not checked (tests of refused
    uploads use this too)."""
    return client.post(
        "/v1/datasets",
        data={"name": name, "task": task, **fields},
        files={"file": (filename, data, content_type)},
        headers=owner.headers,
    )


# ---- rows, straight to the database ---------------------------------------------------------


def add_user(session: Session, **fields: Any) -> User:
    """A user row that can own things; it cannot log in (its password hash is no hash)."""
    values = {
        "email": f"{unique('row')}@example.com",
        "password_hash": "x",
        "webhook_secret": "whsec_test",
        **fields,
    }
    user = User(**values)
    session.add(user)
    session.flush()
    return user


def add_model(
    session: Session,
    owner_id: uuid.UUID,
    *,
    name: str | None = None,
    task: str = "classification",
    labels: list[str] | None = None,
) -> Model:
    model = Model(owner_id=owner_id, name=name or unique("row"), task=task, labels=labels)
    session.add(model)
    session.flush()
    return model


def add_version(
    session: Session,
    model: Model,
    *,
    number: int = 1,
    architecture: str = "mlp",
    config: dict[str, Any] | None = None,
    input_shape: list[int | None] | None = None,
    labels: list[str] | None = None,
    sha256: str = "0" * 64,
    size_bytes: int = 1000,
) -> ModelVersion:
    """A version row with no blob behind it: enough for what reads rows, not to load it."""
    config = config if config is not None else dict(MLP_CONFIG)
    version = ModelVersion(
        model_id=model.id,
        number=number,
        architecture=architecture,
        config=config,
        input_shape=input_shape if input_shape is not None else [config.get("input_dim", 1)],
        labels=labels,
        parameters=1,
        sha256=sha256,
        size_bytes=size_bytes,
    )
    session.add(version)
    session.flush()
    return version


def add_prediction(
    session: Session,
    model: Model,
    *,
    version: int = 1,
    rows: int = 1,
    inputs: list[Any] | None = None,
    **fields: Any,
) -> Prediction:
    """A prediction row of ``model`` by its owner, made by ``version`` from ``rows`` input rows
    (``inputs`` kept in the row if given; ``fields`` set any other column)."""
    job = Prediction(
        owner_id=model.owner_id,
        model_id=model.id,
        model_name=model.name,
        version=version,
        input_rows=rows,
        inputs=inputs,
        **fields,
    )
    session.add(job)
    session.flush()
    return job
