"""Aliases: set, resolve wherever a version number is accepted, move, delete; 'latest'."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from aiaas.registry.models import ModelAlias
from tests.factories import Account
from tests.helpers import assert_problem
from tests.registry.conftest import example_weights

CreateModel = Callable[..., dict[str, Any]]
Upload = Callable[..., Response]


@pytest.fixture
def three_versions(create_model: CreateModel, upload: Upload) -> dict[int, bytes]:
    """Model 'digits' with versions 1-3, each with its own weights; returns the bytes by number."""
    create_model()
    uploaded = {}
    for number in (1, 2, 3):
        weights = example_weights("mlp")
        response = upload("digits", weights=weights)
        assert response.json()["version"] == number
        uploaded[number] = weights
    return uploaded


def _set(client: TestClient, account: Account, alias: str, version: int | str) -> Response:
    return client.put(
        f"/v1/models/digits/aliases/{alias}", json={"version": version}, headers=account.headers
    )


def _resolves_to(client: TestClient, account: Account, ref: str) -> int:
    """The version number ``ref`` names, checked on the version route and the weights route."""
    response = client.get(f"/v1/models/digits/versions/{ref}", headers=account.headers)
    assert response.status_code == 200, response.text
    number: int = response.json()["version"]
    by_number = client.get(f"/v1/models/digits/versions/{number}/weights", headers=account.headers)
    by_ref = client.get(f"/v1/models/digits/versions/{ref}/weights", headers=account.headers)
    assert by_ref.status_code == 200
    assert by_ref.content == by_number.content
    assert by_ref.headers["etag"] == by_number.headers["etag"]
    return number


def test_alias_resolves_everywhere_a_version_is_accepted(
    client: TestClient, account: Account, three_versions: dict[int, bytes]
) -> None:
    response = _set(client, account, "production", 2)

    assert response.status_code == 200, response.text
    assert response.json()["alias"] == "production"
    assert response.json()["version"] == 2
    got = client.get("/v1/models/digits/versions/production", headers=account.headers)
    assert got.json() == client.get("/v1/models/digits/versions/2", headers=account.headers).json()
    assert got.json()["aliases"] == ["production"]
    weights = client.get("/v1/models/digits/versions/production/weights", headers=account.headers)
    assert weights.content == three_versions[2]
    assert "digits-v2.safetensors" in weights.headers["content-disposition"]
    # The model, the version list and the alias list all show it.
    model = client.get("/v1/models/digits", headers=account.headers).json()
    assert model["aliases"] == {"production": 2}
    listed = client.get("/v1/models/digits/versions", headers=account.headers).json()["data"]
    assert {v["version"]: v["aliases"] for v in listed} == {1: [], 2: ["production"], 3: []}
    aliases = client.get("/v1/models/digits/aliases", headers=account.headers).json()["data"]
    assert [(a["alias"], a["version"]) for a in aliases] == [("production", 2)]


def test_latest_follows_new_uploads(
    client: TestClient, account: Account, three_versions: dict[int, bytes], upload: Upload
) -> None:
    assert _resolves_to(client, account, "latest") == 3
    weights = client.get("/v1/models/digits/versions/latest/weights", headers=account.headers)
    assert weights.content == three_versions[3]

    fourth = example_weights("mlp")
    assert upload("digits", weights=fourth).json()["version"] == 4

    assert _resolves_to(client, account, "latest") == 4
    weights = client.get("/v1/models/digits/versions/latest/weights", headers=account.headers)
    assert weights.content == fourth
    assert client.get("/v1/models/digits", headers=account.headers).json()["latest_version"] == 4


def test_latest_on_a_model_without_versions_is_404(
    client: TestClient, account: Account, create_model: CreateModel
) -> None:
    create_model()
    assert_problem(client.get("/v1/models/digits/versions/latest", headers=account.headers), 404)


def test_alias_set_to_latest_is_pinned_to_the_version_it_named(
    client: TestClient, account: Account, three_versions: dict[int, bytes], upload: Upload
) -> None:
    assert _set(client, account, "stable", "latest").json()["version"] == 3
    upload("digits")

    assert _resolves_to(client, account, "stable") == 3
    assert _resolves_to(client, account, "latest") == 4


def test_moving_an_alias(
    client: TestClient, account: Account, three_versions: dict[int, bytes]
) -> None:
    first = _set(client, account, "production", 1).json()
    assert _resolves_to(client, account, "production") == 1

    moved = _set(client, account, "production", 3)

    assert moved.status_code == 200
    assert moved.json()["version"] == 3
    moved_at = datetime.fromisoformat(moved.json()["updated_at"])
    assert moved_at > datetime.fromisoformat(first["updated_at"])
    assert _resolves_to(client, account, "production") == 3
    aliases = client.get("/v1/models/digits/aliases", headers=account.headers).json()["data"]
    assert [(a["alias"], a["version"]) for a in aliases] == [("production", 3)]
    one = client.get("/v1/models/digits/versions/1", headers=account.headers).json()
    assert one["aliases"] == []


def test_alias_can_be_set_from_another_alias_or_a_numeric_string(
    client: TestClient, account: Account, three_versions: dict[int, bytes]
) -> None:
    _set(client, account, "production", 2)

    assert _set(client, account, "canary", "production").json()["version"] == 2
    assert _set(client, account, "rollback", "1").json()["version"] == 1
    # Moving 'production' later does not drag 'canary' along: it named a version, not an alias.
    _set(client, account, "production", 3)
    assert _resolves_to(client, account, "canary") == 2
    model = client.get("/v1/models/digits", headers=account.headers).json()
    assert model["aliases"] == {"canary": 2, "production": 3, "rollback": 1}
    two = client.get("/v1/models/digits/versions/2", headers=account.headers).json()
    assert two["aliases"] == ["canary"]


def test_deleting_an_alias(
    client: TestClient,
    account: Account,
    three_versions: dict[int, bytes],
    count_rows: Callable[[type[Any]], int],
) -> None:
    _set(client, account, "production", 2)
    _set(client, account, "staging", 3)

    response = client.delete("/v1/models/digits/aliases/production", headers=account.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(
        client.get("/v1/models/digits/versions/production", headers=account.headers), 404
    )
    assert_problem(
        client.get("/v1/models/digits/versions/production/weights", headers=account.headers),
        404,
    )
    assert_problem(
        client.delete("/v1/models/digits/aliases/production", headers=account.headers), 404
    )
    # The version it named and the other alias are untouched.
    assert _resolves_to(client, account, "2") == 2
    assert _resolves_to(client, account, "staging") == 3
    assert count_rows(ModelAlias) == 1


def test_alias_that_is_a_number_latest_or_not_a_slug_is_refused(
    client: TestClient,
    account: Account,
    three_versions: dict[int, bytes],
    count_rows: Callable[[type[Any]], int],
) -> None:
    for alias in ["latest", "7", "0042", "Production", "-prod", "a_b", "x" * 64, "prod%0A", "%00"]:
        response = _set(client, account, alias, 1)

        body = assert_problem(response, 422)
        assert "alias" in body["errors"][0]["loc"], alias
    assert count_rows(ModelAlias) == 0
    # 'latest' keeps meaning the highest version.
    assert _resolves_to(client, account, "latest") == 3


def test_alias_to_a_version_that_does_not_exist(
    client: TestClient,
    account: Account,
    three_versions: dict[int, bytes],
    count_rows: Callable[[type[Any]], int],
) -> None:
    cases: list[tuple[int | str, int]] = [
        (9, 404),
        ("9", 404),
        ("nowhere", 404),
        (0, 422),
        (-1, 422),
        ("Bad_Ref", 422),
    ]
    for version, status in cases:
        assert_problem(_set(client, account, "production", version), status)
    assert count_rows(ModelAlias) == 0


def test_unknown_references_on_version_routes(
    client: TestClient, account: Account, three_versions: dict[int, bytes]
) -> None:
    for ref, status in [("missing", 404), ("4", 404), ("0", 422), ("Bad_Ref", 422)]:
        for suffix in ("", "/weights"):
            response = client.get(
                f"/v1/models/digits/versions/{ref}{suffix}", headers=account.headers
            )
            assert_problem(response, status)


def test_aliases_belong_to_their_model(
    client: TestClient,
    account: Account,
    three_versions: dict[int, bytes],
    create_model: CreateModel,
    upload: Upload,
) -> None:
    create_model("other")
    upload("other")
    _set(client, account, "production", 3)

    assert_problem(client.get("/v1/models/other/versions/production", headers=account.headers), 404)
    other = client.put(
        "/v1/models/other/aliases/production", json={"version": 1}, headers=account.headers
    )
    assert other.status_code == 200
    assert _resolves_to(client, account, "production") == 3


def test_odd_numeric_references_are_client_errors(
    client: TestClient,
    account: Account,
    three_versions: dict[int, bytes],
    count_rows: Callable[[type[Any]], int],
) -> None:
    # Numbers no version can have (beyond the column's range) name no version: 404, not 500.
    for ref in ["2147483648", "9223372036854775808", "9" * 30]:
        for suffix in ("", "/weights"):
            response = client.get(
                f"/v1/models/digits/versions/{ref}{suffix}", headers=account.headers
            )
            assert_problem(response, 404)
        assert_problem(_set(client, account, "production", int(ref)), 404)
        assert_problem(_set(client, account, "production", ref), 404)
    # Characters str.isdigit() accepts that are not ASCII digits are not version numbers.
    # (superscript two, Arabic-Indic one, circled one, fullwidth one)
    for ref in ["\u00b2", "\u0661", "\u2460", "\uff11"]:
        response = client.get(f"/v1/models/digits/versions/{ref}", headers=account.headers)
        assert_problem(response, 422)
        assert_problem(_set(client, account, "production", ref), 422)
    # Leading zeros still name the number.
    assert _resolves_to(client, account, "002") == 2
    assert count_rows(ModelAlias) == 0
