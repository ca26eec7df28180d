"""Two accounts: another's private model does not exist; a public one is read-only to others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from aiaas.registry.models import ModelAlias, ModelVersion
from aiaas.storage import LocalArtifactStore
from tests.factories import Account, post_version
from tests.helpers import assert_problem
from tests.registry.conftest import example_weights

CreateModel = Callable[..., dict[str, Any]]
Upload = Callable[..., Response]
MLP_SPEC = {"architecture": "mlp", "config": {"input_dim": 64, "hidden": [32], "output_dim": 10}}


@dataclass(frozen=True)
class Route:
    id: str
    method: str
    path: str  # {name} is the model's name
    owner_status: int  # what the owner gets for the same request
    json: dict[str, Any] | None = None
    upload: bool = False

    def call(self, client: TestClient, name: str, headers: dict[str, str]) -> Response:
        path = self.path.format(name=name)
        if self.upload:
            return post_version(
                client, name, spec=MLP_SPEC, weights=example_weights("mlp"), headers=headers
            )
        return client.request(self.method, path, json=self.json, headers=headers)


READS = [
    Route("get-model", "GET", "/v1/models/{name}", 200),
    Route("list-versions", "GET", "/v1/models/{name}/versions", 200),
    Route("get-version", "GET", "/v1/models/{name}/versions/1", 200),
    Route("get-version-by-alias", "GET", "/v1/models/{name}/versions/prod", 200),
    Route("get-version-latest", "GET", "/v1/models/{name}/versions/latest", 200),
    Route("list-aliases", "GET", "/v1/models/{name}/aliases", 200),
]
DOWNLOADS = [
    Route("weights", "GET", "/v1/models/{name}/versions/1/weights", 200),
    Route("weights-by-alias", "GET", "/v1/models/{name}/versions/prod/weights", 200),
    Route("weights-latest", "GET", "/v1/models/{name}/versions/latest/weights", 200),
]
WRITES = [
    Route("patch-model", "PATCH", "/v1/models/{name}", 200, json={"description": "taken"}),
    Route("delete-model", "DELETE", "/v1/models/{name}", 204),
    Route("upload-version", "POST", "/v1/models/{name}/versions", 201, upload=True),
    Route("set-new-alias", "PUT", "/v1/models/{name}/aliases/staging", 200, json={"version": 1}),
    Route("move-alias", "PUT", "/v1/models/{name}/aliases/prod", 200, json={"version": 1}),
    Route("delete-alias", "DELETE", "/v1/models/{name}/aliases/prod", 204),
]
EVERY_ROUTE = READS + DOWNLOADS + WRITES


def _ids(routes: list[Route]) -> list[str]:
    return [r.id for r in routes]


@pytest.fixture
def intruder(make_account: Callable[..., Account]) -> Account:
    return make_account()


@pytest.fixture
def owned(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> Callable[[str], dict[str, Any]]:
    """Make the owner's model with version 1 and alias 'prod'; return its document."""

    def make(visibility: str) -> dict[str, Any]:
        create_model("secret", visibility=visibility, description="the owner's")
        assert upload("secret").status_code == 201
        alias = client.put(
            "/v1/models/secret/aliases/prod", json={"version": 1}, headers=account.headers
        )
        assert alias.status_code == 200, alias.text
        model: dict[str, Any] = client.get("/v1/models/secret", headers=account.headers).json()
        return model

    return make


@pytest.fixture
def assert_untouched(
    client: TestClient,
    account: Account,
    count_rows: Callable[[type[Any]], int],
    store: LocalArtifactStore,
) -> Callable[[dict[str, Any]], None]:
    def check(before: dict[str, Any]) -> None:
        after = client.get("/v1/models/secret", headers=account.headers)
        assert after.status_code == 200
        assert after.json() == before
        assert count_rows(ModelVersion) == 1
        assert count_rows(ModelAlias) == 1
        assert len(list(store.iter_digests())) == 1

    return check


@pytest.mark.parametrize("route", EVERY_ROUTE, ids=_ids(EVERY_ROUTE))
def test_private_model_of_another_account_is_404_everywhere(
    route: Route,
    client: TestClient,
    account: Account,
    intruder: Account,
    owned: Callable[[str], dict[str, Any]],
    assert_untouched: Callable[[dict[str, Any]], None],
) -> None:
    before = owned("private")

    response = route.call(client, "secret", intruder.headers)

    body = assert_problem(response, 404)
    # Indistinguishable from a model that does not exist at all.
    unknown = assert_problem(route.call(client, "no-such-model", intruder.headers), 404)
    assert body["detail"] == unknown["detail"].replace("no-such-model", "secret")
    assert body["detail"] == "No model named 'secret'."
    assert_untouched(before)
    # The route is real: the owner's identical request succeeds.
    assert route.call(client, "secret", account.headers).status_code == route.owner_status


@pytest.mark.parametrize("route", READS, ids=_ids(READS))
def test_public_model_can_be_read_by_anyone_with_the_scope(
    route: Route,
    client: TestClient,
    account: Account,
    intruder: Account,
    owned: Callable[[str], dict[str, Any]],
    make_key: Callable[..., dict[str, Any]],
) -> None:
    owned("public")
    reader = make_key(["models:read"], owner=intruder)["key"]
    no_scope = make_key([], owner=intruder)["key"]

    as_owner = route.call(client, "secret", account.headers)
    as_other = route.call(client, "secret", {"Authorization": f"Bearer {reader}"})

    assert as_other.status_code == 200, as_other.text
    other_body, owner_body = as_other.json(), as_owner.json()
    if route.id == "get-model":
        assert other_body["owned"] is False
        assert owner_body["owned"] is True
        other_body.pop("owned")
        owner_body.pop("owned")
    assert other_body == owner_body
    denied = assert_problem(
        route.call(client, "secret", {"Authorization": f"Bearer {no_scope}"}), 403
    )
    assert denied["required_scope"] == "models:read"


@pytest.mark.parametrize("route", WRITES + DOWNLOADS, ids=_ids(WRITES + DOWNLOADS))
def test_public_model_can_be_changed_and_downloaded_only_by_its_owner(
    route: Route,
    client: TestClient,
    account: Account,
    intruder: Account,
    owned: Callable[[str], dict[str, Any]],
    assert_untouched: Callable[[dict[str, Any]], None],
) -> None:
    before = owned("public")

    response = route.call(client, "secret", intruder.headers)

    body = assert_problem(response, 403)
    assert "owner" in body["detail"]
    assert_untouched(before)
    assert route.call(client, "secret", account.headers).status_code == route.owner_status


def test_model_list_shows_own_and_public_models_only(
    client: TestClient, account: Account, intruder: Account, create_model: CreateModel
) -> None:
    create_model("mine-private")
    create_model("mine-public", visibility="public")
    create_model("theirs-private", owner=intruder)
    create_model("theirs-public", owner=intruder, visibility="public")

    mine = client.get("/v1/models", headers=account.headers).json()["data"]
    theirs = client.get("/v1/models", headers=intruder.headers).json()["data"]

    assert {m["name"]: m["owned"] for m in mine} == {
        "mine-private": True,
        "mine-public": True,
        "theirs-public": False,
    }
    assert {m["name"]: m["owned"] for m in theirs} == {
        "theirs-private": True,
        "theirs-public": True,
        "mine-public": False,
    }


def test_a_model_made_private_again_disappears_for_others(
    client: TestClient, account: Account, intruder: Account, create_model: CreateModel
) -> None:
    create_model("shared", visibility="public")
    assert client.get("/v1/models/shared", headers=intruder.headers).status_code == 200

    patched = client.patch(
        "/v1/models/shared", json={"visibility": "private"}, headers=account.headers
    )
    assert patched.status_code == 200

    assert_problem(client.get("/v1/models/shared", headers=intruder.headers), 404)
    listed = client.get("/v1/models", headers=intruder.headers).json()["data"]
    assert "shared" not in [m["name"] for m in listed]


def test_another_account_cannot_take_a_private_models_name(
    client: TestClient, intruder: Account, create_model: CreateModel
) -> None:
    # Names are unique on the platform; the 409 reveals only that the name is taken.
    create_model("secret")
    response = client.post(
        "/v1/models", json={"name": "secret", "task": "regression"}, headers=intruder.headers
    )
    assert_problem(response, 409)


def test_a_name_no_model_can_have_is_404_on_every_route(
    client: TestClient,
    account: Account,
    owned: Callable[[str], dict[str, Any]],
    assert_untouched: Callable[[dict[str, Any]], None],
) -> None:
    before = owned("private")
    for name in ["a%00b", "%C3%A9t%C3%A9", "UPPER", "x" * 62 + "%00", "secret%0A"]:
        for route in EVERY_ROUTE:
            response = route.call(client, name, account.headers)
            assert response.status_code == 404, (name, route.id, response.text)
            assert_problem(response, 404)
    assert_untouched(before)


def test_deleting_an_alias_that_cannot_exist_is_404(
    client: TestClient, account: Account, owned: Callable[[str], dict[str, Any]]
) -> None:
    owned("private")
    for alias in ["a%00b", "Prod", "x" * 300]:
        response = client.delete(f"/v1/models/secret/aliases/{alias}", headers=account.headers)
        assert_problem(response, 404)
    assert client.get("/v1/models/secret/versions/prod", headers=account.headers).status_code == 200


@pytest.mark.parametrize("ref", ["7", "0", "Not_An_Alias"])
def test_predicting_on_a_private_model_of_another_account_answers_as_unknown(
    ref: str,
    client: TestClient,
    account: Account,
    intruder: Account,
    owned: Callable[[str], dict[str, Any]],
) -> None:
    owned("private")
    body = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}

    def predict(name: str) -> Any:
        return client.post(
            f"/v1/models/{name}/predict?version={ref}", json=body, headers=intruder.headers
        )

    hidden = assert_problem(predict("secret"), 404)
    unknown = assert_problem(predict("no-such-model"), 404)
    assert hidden["detail"] == unknown["detail"].replace("no-such-model", "secret")
    # The owner is told what is wrong with the reference.
    expected = {"7": 404, "0": 422, "Not_An_Alias": 422}[ref]
    mine = client.post(
        f"/v1/models/secret/predict?version={ref}", json=body, headers=account.headers
    )
    assert mine.status_code == expected
