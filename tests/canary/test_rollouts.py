"""Aliases over several versions: weighted splits (sticky per routing key), shadows whose
failures never reach the caller, and the compare figures against what the test sent."""

from __future__ import annotations

import collections
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import (
    MLP_CONFIG,
    Account,
    publish,
    register,
    upload_version,
    wait_until,
)

ROWS = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.fixture
def owner(client: TestClient) -> Account:
    return register(client)


def two_versions(client: TestClient, owner: Account, **fields: Any) -> str:
    name = publish(client, owner, seed=1, **fields).name
    upload_version(client, owner, name, seed=2)
    return name


def set_alias(
    client: TestClient, owner: Account, name: str, body: dict[str, Any], alias: str = "production"
) -> Any:
    return client.put(f"/v1/models/{name}/aliases/{alias}", json=body, headers=owner.headers)


def predict(client: TestClient, caller: Account, name: str, key: str | None = None) -> Any:
    headers = dict(caller.headers)
    if key is not None:
        headers["Aiaas-Routing-Key"] = key
    return client.post(f"/v1/models/{name}/predict", json=ROWS, headers=headers)


def compare(client: TestClient, owner: Account, name: str) -> dict[str, Any]:
    answer = client.get(f"/v1/models/{name}/aliases/production/compare", headers=owner.headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def by_version(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {entry["version"]: entry for entry in report["versions"]}


def test_a_90_10_split_lands_within_3_percent_and_compare_counts_it(
    client: TestClient, owner: Account
) -> None:
    name = two_versions(client, owner)
    made = set_alias(client, owner, name, {"versions": {"1": 90, "2": 10}})
    assert made.status_code == 200, made.text
    assert made.json()["versions"] == {"1": 90, "2": 10}
    assert made.json()["version"] == 1

    served: collections.Counter[int] = collections.Counter()
    for _ in range(2000):
        answer = predict(client, owner, name)
        assert answer.status_code == 200
        version = int(answer.headers["aiaas-model-version"])
        assert answer.json()["version"] == version
        served[version] += 1
    assert set(served) == {1, 2}
    assert abs(served[1] / 2000 - 0.90) <= 0.03, served
    assert abs(served[2] / 2000 - 0.10) <= 0.03, served

    report = compare(client, owner, name)
    entries = by_version(report)
    assert report["primary"] == 1
    assert report["shadow"] is None
    assert {v: e["requests"] for v, e in entries.items()} == dict(served)
    assert entries[1]["role"] == "primary"
    assert entries[2]["role"] == "canary"
    assert entries[2]["weight"] == 10
    assert all(e["errors"] == 0 for e in entries.values())
    assert all(e["latency_p50_ms"] > 0 for e in entries.values())
    assert all(e["latency_p99_ms"] >= e["latency_p50_ms"] for e in entries.values())

    # Setting the alias again starts the figures again.
    set_alias(client, owner, name, {"versions": {"1": 50, "2": 50}})
    assert all(e["requests"] == 0 for e in compare(client, owner, name)["versions"])


def test_every_answer_names_its_version(client: TestClient, owner: Account) -> None:
    name = two_versions(client, owner)
    set_alias(client, owner, name, {"versions": {"1": 50, "2": 50}})
    npy = client.post(
        f"/v1/models/{name}/predict",
        json=ROWS,
        headers={**owner.headers, "Accept": "application/x-npy"},
    )
    assert npy.headers["aiaas-model-version"] == npy.headers["aiaas-version"]
    # Explanations follow the routing key as predictions do.
    for key in (f"user-{i}" for i in range(8)):
        headers = {**owner.headers, "Aiaas-Routing-Key": key}
        predicted = predict(client, owner, name, key).json()["version"]
        explained = client.post(f"/v1/models/{name}/explain", json=ROWS, headers=headers)
        assert explained.json()["version"] == predicted


def test_a_routing_key_keeps_its_version(client: TestClient, owner: Account) -> None:
    name = two_versions(client, owner)
    set_alias(client, owner, name, {"versions": {"1": 50, "2": 50}})
    seen: dict[str, set[str]] = {}
    for key in (f"user-{i}" for i in range(40)):
        seen[key] = {
            predict(client, owner, name, key).headers["aiaas-model-version"] for _ in range(5)
        }
    assert all(len(versions) == 1 for versions in seen.values()), seen
    # The keys spread over both versions.
    assert {next(iter(v)) for v in seen.values()} == {"1", "2"}


def test_the_split_applies_to_other_accounts_on_a_public_model(
    client: TestClient, owner: Account
) -> None:
    name = two_versions(client, owner, visibility="public")
    set_alias(client, owner, name, {"versions": {"1": 1, "2": 99}})
    caller = register(client)
    versions = {predict(client, caller, name).json()["version"] for _ in range(50)}
    assert 2 in versions
    # The figures are the owner's to read.
    refused = client.get(f"/v1/models/{name}/aliases/production/compare", headers=caller.headers)
    assert refused.status_code == 403


def test_a_shadow_agrees_with_itself_and_is_counted(client: TestClient, owner: Account) -> None:
    name = publish(client, owner, seed=1).name
    upload_version(client, owner, name, seed=1)  # the same weights: it must always agree
    assert set_alias(client, owner, name, {"version": 1, "shadow": 2}).status_code == 200
    for _ in range(20):
        answer = predict(client, owner, name)
        assert answer.json()["version"] == 1
    wait_until(
        lambda: by_version(compare(client, owner, name))[2]["requests"] == 20,
        timeout=30,
        what="the shadow's copies to be counted",
    )
    entries = by_version(compare(client, owner, name))
    assert entries[1]["requests"] == 20
    assert entries[2]["role"] == "shadow"
    assert entries[2]["weight"] == 0
    assert entries[2]["agreement"] == 1.0
    assert entries[2]["compared_rows"] == 20
    listed = client.get(f"/v1/models/{name}/aliases", headers=owner.headers).json()["data"]
    assert listed == [
        {
            "alias": "production",
            "version": 1,
            "versions": None,
            "shadow": 2,
            "updated_at": listed[0]["updated_at"],
        }
    ]


def test_a_failing_shadow_never_reaches_the_caller(client: TestClient, owner: Account) -> None:
    name = publish(client, owner, seed=1).name
    upload_version(client, owner, name, seed=3)
    assert set_alias(client, owner, name, {"version": 1}).status_code == 200
    before = predict(client, owner, name).json()
    # The shadow's weights go missing from the store: every copy sent to it fails to load.
    store = client.app.state.store  # type: ignore[attr-defined]
    shadow = client.get(f"/v1/models/{name}/versions/2", headers=owner.headers).json()
    assert store.delete(shadow["sha256"])
    assert set_alias(client, owner, name, {"version": 1, "shadow": 2}).status_code == 200
    for _ in range(10):
        answer = predict(client, owner, name)
        assert answer.status_code == 200
        assert answer.json()["outputs"] == before["outputs"]
        assert answer.json()["version"] == 1
    wait_until(
        lambda: by_version(compare(client, owner, name))[2]["errors"] == 10,
        timeout=30,
        what="the shadow's failures to be counted",
    )
    entries = by_version(compare(client, owner, name))
    assert entries[1]["errors"] == 0
    assert entries[2]["requests"] == 10
    assert entries[2]["agreement"] is None


def test_bad_alias_bodies_are_refused_and_change_nothing(
    client: TestClient, owner: Account
) -> None:
    name = two_versions(client, owner)
    assert set_alias(client, owner, name, {"version": 1}).status_code == 200
    bodies: list[dict[str, Any]] = [
        {"versions": {"1": 90, "2": 20}},  # not 100
        {"versions": {"1": 100}},  # a split needs two
        {"versions": {"1": 50, "9": 50}},  # no version 9
        {"version": 1, "versions": {"1": 50, "2": 50}},  # both
        {"versions": {"1": 50, "2": 0, "latest": 50}},  # a weight of 0
        {"version": 1, "shadow": 1},  # the primary cannot shadow itself
        {"versions": {"1": 50, "2": 50}, "shadow": 2},
    ]
    for body in bodies:
        refused = set_alias(client, owner, name, body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    listed = client.get(f"/v1/models/{name}/aliases", headers=owner.headers).json()["data"]
    assert [(a["version"], a["versions"], a["shadow"]) for a in listed] == [(1, None, None)]


def test_a_shadow_must_take_the_same_inputs(client: TestClient, owner: Account) -> None:
    name = publish(client, owner, seed=1).name
    upload_version(client, owner, name, config={**MLP_CONFIG, "input_dim": 5})
    refused = set_alias(client, owner, name, {"version": 1, "shadow": 2})
    assert refused.status_code == 422
    assert "shaped" in refused.json()["detail"]


def test_a_split_must_take_one_input_shape(client: TestClient, owner: Account) -> None:
    name = publish(client, owner, seed=1).name
    upload_version(client, owner, name, config={**MLP_CONFIG, "input_dim": 5})
    refused = set_alias(client, owner, name, {"versions": {"1": 50, "2": 50}})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "versions", "2"]
    listed = client.get(f"/v1/models/{name}/aliases", headers=owner.headers).json()["data"]
    assert listed == []


def test_compare_reports_accuracy_on_feedback_per_version(live_client: TestClient) -> None:
    # Predictions kept for feedback are written from threads: a database whose commits stick.
    client = live_client
    owner = register(client)
    name = publish(client, owner, seed=1, labels=["a", "b", "c"]).name
    upload_version(client, owner, name, seed=2)
    kept = client.patch(f"/v1/models/{name}", json={"capture_inputs": True}, headers=owner.headers)
    assert kept.status_code == 200
    set_alias(client, owner, name, {"versions": {"1": 50, "2": 50}})
    right: collections.Counter[int] = collections.Counter()
    sent: collections.Counter[int] = collections.Counter()
    for i in range(12):
        answer = predict(client, owner, name, f"user-{i}").json()
        version, predicted = answer["version"], answer["predictions"][0]
        # Every third answer is told it was wrong.
        label = predicted if i % 3 else next(x for x in "abc" if x != predicted)
        given = client.post(
            f"/v1/predictions/{answer['id']}/feedback", json={"label": label}, headers=owner.headers
        )
        assert given.status_code == 200, given.text
        sent[version] += 1
        right[version] += label == predicted
    entries = by_version(compare(client, owner, name))
    for version, count in sent.items():
        assert entries[version]["feedback"] == {
            "rows": count,
            "accuracy": pytest.approx(right[version] / count),
        }
