"""Models: create, validate, list with pagination, change, delete (rows and artifacts), scopes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from aiaas.registry.models import Model, ModelAlias, ModelVersion
from aiaas.storage import LocalArtifactStore
from tests.factories import Account, post_version
from tests.helpers import assert_problem, bearer
from tests.registry.conftest import example_weights, files_under

CreateModel = Callable[..., dict[str, Any]]
Upload = Callable[..., Response]
CountRows = Callable[[type[Any]], int]


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_create_model_returns_its_document(client: TestClient, account: Account) -> None:
    body = {
        "name": "iris-classifier",
        "task": "classification",
        "description": "Three species.",
        "labels": ["setosa", "versicolor", "virginica"],
        "visibility": "public",
    }

    response = client.post("/v1/models", json=body, headers=account.headers)

    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in body} == body
    assert created["owned"] is True
    assert created["latest_version"] is None
    assert created["aliases"] == {}
    assert created["capture_inputs"] is False
    uuid.UUID(created["id"])
    fetched = client.get("/v1/models/iris-classifier", headers=account.headers)
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_create_model_defaults(client: TestClient, account: Account) -> None:
    response = client.post(
        "/v1/models", json={"name": "waves", "task": "regression"}, headers=account.headers
    )

    assert response.status_code == 201
    created = response.json()
    assert created["description"] == ""
    assert created["labels"] is None
    assert created["visibility"] == "private"


VALID_NAMES = ["ab", "a1", "0-model", "x" * 63, "digits-cnn-v2"]
INVALID_NAMES = {
    "uppercase": "Digits",
    "all caps": "DIGITS",
    "too short": "a",
    "empty": "",
    "leading dash": "-digits",
    "underscore": "digits_cnn",
    "dot": "digits.cnn",
    "space": "dig its",
    "too long": "x" * 64,
    "non-ascii": "dïgits",
    "trailing newline": "digits\n",
}


def test_valid_names(client: TestClient, account: Account) -> None:
    for name in VALID_NAMES:
        response = client.post(
            "/v1/models", json={"name": name, "task": "regression"}, headers=account.headers
        )
        assert response.status_code == 201, (name, response.text)
        assert response.json()["name"] == name


def test_invalid_names_are_refused(
    client: TestClient, account: Account, count_rows: CountRows
) -> None:
    for why, name in INVALID_NAMES.items():
        response = client.post(
            "/v1/models", json={"name": name, "task": "regression"}, headers=account.headers
        )

        body = assert_problem(response, 422)
        assert any("name" in e["loc"] for e in body["errors"]), why
    assert count_rows(Model) == 0


BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"name": "m1", "task": "clustering"}, "task"),
    ({"name": "m1"}, "task"),
    ({"task": "regression"}, "name"),
    ({"name": "m1", "task": "regression", "visibility": "internal"}, "visibility"),
    ({"name": "m1", "task": "classification", "labels": ["a", "a"]}, "labels"),
    ({"name": "m1", "task": "classification", "labels": "a,b"}, "labels"),
    ({"name": "m1", "task": "classification", "labels": [""]}, "labels"),
    ({"name": "m1", "task": "regression", "owner_id": str(uuid.uuid4())}, "owner_id"),
]


def test_invalid_fields_are_refused_naming_the_field(
    client: TestClient, account: Account, count_rows: CountRows
) -> None:
    for body, field in BAD_CREATES:
        response = client.post("/v1/models", json=body, headers=account.headers)

        problem = assert_problem(response, 422)
        assert any(field in e["loc"] for e in problem["errors"]), (body, problem["errors"])
    assert count_rows(Model) == 0


def test_duplicate_name_is_409(
    client: TestClient,
    account: Account,
    create_model: CreateModel,
    count_rows: CountRows,
) -> None:
    create_model("digits")

    response = client.post(
        "/v1/models", json={"name": "digits", "task": "regression"}, headers=account.headers
    )

    body = assert_problem(response, 409)
    assert "digits" in body["detail"]
    assert count_rows(Model) == 1


def test_patch_changes_only_the_given_fields(
    client: TestClient, account: Account, create_model: CreateModel
) -> None:
    created = create_model("digits", description="old", labels=["a", "b"])

    response = client.patch(
        "/v1/models/digits",
        json={"description": "new", "visibility": "public", "capture_inputs": True},
        headers=account.headers,
    )

    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["description"] == "new"
    assert patched["visibility"] == "public"
    assert patched["capture_inputs"] is True
    assert patched["labels"] == ["a", "b"]
    assert patched["created_at"] == created["created_at"]
    assert _when(patched["updated_at"]) > _when(created["updated_at"])
    assert client.get("/v1/models/digits", headers=account.headers).json() == patched

    relabelled = client.patch(
        "/v1/models/digits", json={"labels": ["x", "y", "z"]}, headers=account.headers
    ).json()
    assert relabelled["labels"] == ["x", "y", "z"]
    assert relabelled["description"] == "new"
    cleared = client.patch("/v1/models/digits", json={"labels": None}, headers=account.headers)
    assert cleared.json()["labels"] is None
    assert cleared.json()["visibility"] == "public"


def test_patch_refuses_bad_fields(
    client: TestClient, account: Account, create_model: CreateModel
) -> None:
    before = create_model("digits")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": "renamed"}, "name"),
        ({"task": "regression"}, "task"),
        ({"visibility": "everyone"}, "visibility"),
        ({"labels": ["a", "a"]}, "labels"),
        ({"capture_inputs": "maybe"}, "capture_inputs"),
    ]
    for body, field in bad:
        response = client.patch("/v1/models/digits", json=body, headers=account.headers)

        problem = assert_problem(response, 422)
        assert any(field in e["loc"] for e in problem["errors"]), (body, problem["errors"])
    assert client.get("/v1/models/digits", headers=account.headers).json() == before


def test_unknown_model_is_404(client: TestClient, account: Account) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = client.request(
            method, "/v1/models/nothing-here", json={"description": "x"}, headers=account.headers
        )
        assert assert_problem(response, 404)["detail"] == "No model named 'nothing-here'."


def test_pagination_walks_every_model_once_newest_first(
    client: TestClient, account: Account, create_model: CreateModel
) -> None:
    names = [f"model-{i}" for i in range(5)]
    for name in names:
        create_model(name)

    seen: list[str] = []
    pages = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/v1/models", params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(len(page["data"]))
        seen += [m["name"] for m in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 5, "pagination does not end"

    assert pages == [2, 2, 1]
    assert seen == list(reversed(names))
    everything = client.get("/v1/models", headers=account.headers).json()
    assert [m["name"] for m in everything["data"]] == seen
    assert everything["next_cursor"] is None
    exact = client.get("/v1/models", params={"limit": 5}, headers=account.headers).json()
    assert len(exact["data"]) == 5
    assert exact["next_cursor"] is None


def test_bad_page_parameters(client: TestClient, account: Account) -> None:
    for params in [{"limit": 0}, {"limit": 201}, {"limit": "many"}, {"cursor": "not-a-cursor"}]:
        response = client.get("/v1/models", params=params, headers=account.headers)
        body = assert_problem(response, 422)
        assert any(next(iter(params)) in e["loc"] for e in body["errors"]), params


def test_list_shows_latest_version_and_aliases(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("empty")
    create_model("busy")
    upload("busy")
    upload("busy")
    client.put("/v1/models/busy/aliases/prod", json={"version": 1}, headers=account.headers)

    listed = client.get("/v1/models", headers=account.headers).json()["data"]

    by_name = {m["name"]: m for m in listed}
    assert by_name["busy"]["latest_version"] == 2
    assert by_name["busy"]["aliases"] == {"prod": 1}
    assert by_name["empty"]["latest_version"] is None
    assert by_name["empty"]["aliases"] == {}


def test_delete_removes_rows_and_artifacts(
    client: TestClient,
    account: Account,
    create_model: CreateModel,
    upload: Upload,
    count_rows: CountRows,
    store: LocalArtifactStore,
) -> None:
    create_model("digits")
    same = example_weights("mlp")
    upload("digits", weights=same)
    upload("digits", weights=same)  # identical bytes: one blob serves both versions
    upload("digits")
    client.put("/v1/models/digits/aliases/prod", json={"version": 1}, headers=account.headers)
    assert len(list(store.iter_digests())) == 2

    response = client.delete("/v1/models/digits", headers=account.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get("/v1/models/digits", headers=account.headers), 404)
    assert count_rows(Model) == 0
    assert count_rows(ModelVersion) == 0
    assert count_rows(ModelAlias) == 0
    assert list(store.iter_digests()) == []
    assert files_under(store.root) == []
    assert_problem(client.delete("/v1/models/digits", headers=account.headers), 404)


def test_delete_keeps_a_blob_another_model_still_uses(
    client: TestClient,
    account: Account,
    make_account: Callable[..., Account],
    create_model: CreateModel,
    upload: Upload,
    store: LocalArtifactStore,
) -> None:
    other = make_account()
    shared = example_weights("mlp")
    create_model("first")
    create_model("second", owner=other)
    sha = upload("first", weights=shared).json()["sha256"]
    only_first = upload("first").json()["sha256"]
    assert upload("second", weights=shared, owner=other).json()["sha256"] == sha

    assert client.delete("/v1/models/first", headers=account.headers).status_code == 204

    assert set(store.iter_digests()) == {sha}
    assert only_first != sha
    download = client.get("/v1/models/second/versions/1/weights", headers=other.headers)
    assert download.content == shared

    assert client.delete("/v1/models/second", headers=other.headers).status_code == 204
    assert list(store.iter_digests()) == []


def test_name_is_free_again_after_delete(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("digits")
    upload("digits")
    upload("digits")
    client.delete("/v1/models/digits", headers=account.headers)

    create_model("digits")
    assert upload("digits").json()["version"] == 1


def test_requests_without_credentials_are_401(client: TestClient) -> None:
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/models"), ("GET", "/v1/models/x")]:
        response = client.request(method, path, json={"name": "xx", "task": "regression"})
        assert_problem(response, 401)
    assert client.get("/v1/architectures").status_code == 200


def _key_requests(client: TestClient, headers: dict[str, str]) -> dict[str, Callable[[], Response]]:
    """Every registry route, acting on model 'digits' (version 1, alias 'prod') or creating."""
    spec = {"architecture": "mlp", "config": {"input_dim": 64, "hidden": [32], "output_dim": 10}}
    return {
        "list-models": lambda: client.get("/v1/models", headers=headers),
        "get-model": lambda: client.get("/v1/models/digits", headers=headers),
        "list-versions": lambda: client.get("/v1/models/digits/versions", headers=headers),
        "get-version": lambda: client.get("/v1/models/digits/versions/prod", headers=headers),
        "weights": lambda: client.get("/v1/models/digits/versions/1/weights", headers=headers),
        "list-aliases": lambda: client.get("/v1/models/digits/aliases", headers=headers),
        "create-model": lambda: client.post(
            "/v1/models", json={"name": "new-one", "task": "regression"}, headers=headers
        ),
        "patch-model": lambda: client.patch(
            "/v1/models/digits", json={"description": "x"}, headers=headers
        ),
        "upload": lambda: post_version(
            client, "digits", spec=spec, weights=example_weights("mlp"), headers=headers
        ),
        "set-alias": lambda: client.put(
            "/v1/models/digits/aliases/staging", json={"version": 1}, headers=headers
        ),
        "delete-alias": lambda: client.delete("/v1/models/digits/aliases/prod", headers=headers),
        "delete-model": lambda: client.delete("/v1/models/digits", headers=headers),
    }


READ_ROUTES = {
    "list-models",
    "get-model",
    "list-versions",
    "get-version",
    "weights",
    "list-aliases",
}
WRITE_ROUTES = {
    "create-model",
    "patch-model",
    "upload",
    "set-alias",
    "delete-alias",
    "delete-model",
}


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        (["models:read"], READ_ROUTES),
        (["models:write"], WRITE_ROUTES),
        (["predict", "train"], set()),
        (["models:read", "models:write"], READ_ROUTES | WRITE_ROUTES),
    ],
    ids=["read", "write", "neither", "both"],
)
def test_api_key_scopes_are_enforced(
    scopes: list[str],
    allowed: set[str],
    client: TestClient,
    account: Account,
    create_model: CreateModel,
    upload: Upload,
    make_key: Callable[..., dict[str, Any]],
) -> None:
    create_model("digits")
    upload("digits")
    client.put("/v1/models/digits/aliases/prod", json={"version": 1}, headers=account.headers)
    key = make_key(scopes)["key"]

    requests = _key_requests(client, bearer(key))
    for route, call in requests.items():
        response = call()
        if route in allowed:
            assert response.status_code < 300, (route, response.text)
        else:
            body = assert_problem(response, 403)
            needed = "models:read" if route in READ_ROUTES else "models:write"
            assert body["required_scope"] == needed, route
            assert needed in body["detail"], route


def test_a_login_token_has_every_scope(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("digits")
    upload("digits")
    client.put("/v1/models/digits/aliases/prod", json={"version": 1}, headers=account.headers)

    for route, call in _key_requests(client, account.headers).items():
        assert call().status_code < 300, route
