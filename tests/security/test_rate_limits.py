"""Rate limits, sign-in back-off, suspension and the audit log, as a client meets them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from aiaas.accounts import service as accounts
from aiaas.config import Settings
from aiaas.db import Database
from aiaas.main import create_app
from aiaas.migrate import upgrade
from aiaas.ratelimits import MemoryLimiter, Rate, RedisLimiter
from tests.conftest import scratch_database
from tests.factories import PASSWORD, Account, api_key, publish, register
from tests.helpers import assert_problem, bearer

RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
ROW = {"inputs": [[1.0, 2.0, 3.0, 4.0]]}


def app_with(settings: Settings, db: Database, **overrides: Any) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update=overrides), database=db),
        raise_server_exceptions=False,
    )


def key_for(client: TestClient, account: Account, scopes: list[str]) -> dict[str, str]:
    return bearer(api_key(client, account, scopes)["key"])


def test_limiter_lets_a_burst_through_then_one_per_interval() -> None:
    limiter = MemoryLimiter()
    rate = Rate(3, 60.0)
    decisions = [limiter.hit([("k", rate)]) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[0].limit == 3
    assert 19 < decisions[3].retry_after_s <= 20  # one interval: 60 s / 3
    # A refused request takes nothing: the wait does not grow.
    again = limiter.hit([("k", rate)])
    assert not again.allowed
    assert again.retry_after_s <= decisions[3].retry_after_s


def test_limiter_consumes_from_every_bucket_only_when_all_allow() -> None:
    limiter = MemoryLimiter()
    wide, narrow = Rate(10, 60.0), Rate(1, 60.0)
    assert limiter.hit([("a", wide), ("n", narrow)]).allowed
    refused = limiter.hit([("a", wide), ("n", narrow)])
    assert not refused.allowed
    assert refused.limit == 1  # the headers describe the tightest bucket
    assert limiter.hit([("a", wide)]).remaining == 8  # the refused call took nothing


def test_redis_limiter_matches_the_memory_one(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url, timeout_s=2.0, prefix=f"test-rl-{uuid.uuid4().hex}:")
    rate = Rate(3, 60.0)
    decisions = [limiter.hit([("k", rate), ("acct", Rate(12, 60.0))]) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert 19 < decisions[3].retry_after_s <= 20.5


def test_a_burst_over_the_limit_gets_429_and_every_answer_has_the_headers(
    settings: Settings, db: Database
) -> None:
    with app_with(settings, db, rate_limit_registry="4/minute") as client:
        owner = register(client)
        answers = [client.get("/v1/models", headers=owner.headers) for _ in range(4)]
        answers.append(client.get("/v1/models/none-such", headers=owner.headers))
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
        for answer in answers:
            assert all(h in answer.headers for h in RATE_HEADERS), answer.headers
        assert [int(a.headers["ratelimit-remaining"]) for a in answers] == [3, 2, 1, 0, 0]
        refused = assert_problem(answers[-1], 429)
        assert refused["type"].endswith("/rate-limited")
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 15
        assert answers[-1].headers["ratelimit-limit"] == "4"
        # Another account has buckets of its own.
        assert client.get("/v1/models", headers=register(client).headers).status_code == 200


def test_each_key_has_its_own_bucket_within_the_accounts(settings: Settings, db: Database) -> None:
    with app_with(settings, db) as setup:
        owner = register(setup)
        keys = [key_for(setup, owner, ["models:read"]) for _ in range(3)]
    with app_with(
        settings, db, rate_limit_registry="2/minute", rate_limit_account_multiplier=2.0
    ) as client:
        first = [client.get("/v1/models", headers=keys[0]).status_code for _ in range(3)]
        assert first == [200, 200, 429]
        # The second key still has its own two, then the account's four are spent.
        assert [client.get("/v1/models", headers=keys[1]).status_code for _ in range(2)] == [
            200,
            200,
        ]
        assert client.get("/v1/models", headers=keys[2]).status_code == 429


def test_predict_is_limited_in_the_fast_lane(settings: Settings, db: Database) -> None:
    with app_with(settings, db, rate_limit_predict="3/minute") as client:
        owner = register(client)
        publish(client, owner, name="rl-iris")
        key = key_for(client, owner, ["predict"])
        answers = [
            client.post("/v1/models/rl-iris/predict", json=ROW, headers=key) for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
        assert_problem(answers[3], 429)
        assert int(answers[3].headers["retry-after"]) >= 1


def _as(account: Account) -> dict[str, Any]:
    return {"headers": account.headers}


@pytest.fixture
def shared_redis(redis_url: str) -> Iterator[str]:
    url = redis_url.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def test_two_gateways_over_one_redis_share_one_limit(
    shared_redis: str, test_database_url: str | None, tmp_path: Path
) -> None:
    scratch = scratch_database(test_database_url, tmp_path)
    upgrade(scratch.url)
    settings = Settings(
        env="test",
        var_dir=tmp_path / "var",
        database_url=scratch.url,
        artifacts_url=str(tmp_path / "artifacts"),
        broker_url=shared_redis,
        secret_key=SecretStr("test-secret-key-test-secret-key-0123456789"),
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        demo_models=False,
        rate_limit_registry="6/minute",
    )
    try:
        with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
            owner = register(one)
            statuses = [
                gateway.get("/v1/models", headers=owner.headers).status_code
                for gateway in (one, two) * 4
            ]
            assert statuses == [200] * 6 + [429, 429]
    finally:
        scratch.drop()


def make_admin(db: Database, client: TestClient) -> Account:
    admin = register(client)
    with db.session() as session:
        accounts.ensure_admin(session, email=admin.email, password=None)
    return admin


def test_a_suspended_account_is_refused_on_every_route_class_at_once(
    settings: Settings, db: Database
) -> None:
    with app_with(settings, db) as client:
        admin, owner = make_admin(db, client), register(client)
        publish(client, owner, name="sus-iris")
        key = key_for(client, owner, ["predict", "models:read", "train", "models:write"])
        # Warm the predict lane's credential cache: suspension must not wait for it.
        assert client.post("/v1/models/sus-iris/predict", json=ROW, headers=key).status_code == 200

        changed = client.patch(
            f"/v1/admin/accounts/{owner.id}", json={"suspended": True}, headers=admin.headers
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["suspended"] is True

        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("POST", "/v1/models/sus-iris/predict", ROW),  # predict
            ("POST", "/v1/predictions", {"model": "sus-iris", **ROW}),  # jobs
            ("GET", "/v1/trainings", None),  # train
            ("GET", "/v1/datasets", None),  # train
            ("GET", "/v1/models", None),  # registry
            ("GET", "/v1/me", None),  # account
        ]
        for headers in (key, owner.headers):
            for method, path, body in calls:
                refused = client.request(method, path, json=body, headers=headers)
                assert assert_problem(refused, 403)["type"].endswith("/account-suspended"), path
        login = {"email": owner.email, "password": PASSWORD}
        assert_problem(client.post("/v1/auth/login", json=login), 403)

        client.patch(
            f"/v1/admin/accounts/{owner.id}", json={"suspended": False}, headers=admin.headers
        )
        assert client.post("/v1/models/sus-iris/predict", json=ROW, headers=key).status_code == 200
        assert client.post("/v1/auth/login", json=login).status_code == 200


def test_suspension_cancels_the_accounts_queued_jobs(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app_with(settings, db) as client:
        admin, owner = make_admin(db, client), register(client)
        publish(client, owner, name="q-iris")
        # Keep the job queued: nothing hands it to a worker.
        dispatcher = client.app.state.dispatcher  # type: ignore[attr-defined]
        monkeypatch.setattr(dispatcher, "submit", lambda task, job_id: None)
        job = client.post("/v1/predictions", json={"model": "q-iris", **ROW}, **_as(owner))
        assert job.status_code == 202, job.text
        assert job.json()["status"] == "queued"
        suspended = client.patch(
            f"/v1/admin/accounts/{owner.id}", json={"suspended": True}, headers=admin.headers
        )
        assert suspended.json()["jobs_active"] == 0
        client.patch(
            f"/v1/admin/accounts/{owner.id}", json={"suspended": False}, headers=admin.headers
        )
        after = client.get(f"/v1/predictions/{job.json()['id']}", headers=owner.headers).json()
        assert after["status"] == "canceled"


def test_admin_overrides_apply_at_once_and_only_admins_may_set_them(
    settings: Settings, db: Database
) -> None:
    with app_with(settings, db) as client:
        admin, owner = make_admin(db, client), register(client)
        body = {"rate_limits": {"registry": "2/minute"}}
        refused = client.patch(f"/v1/admin/accounts/{owner.id}", json=body, **_as(owner))
        assert_problem(refused, 403)
        assert_problem(client.get("/v1/admin/accounts", headers=owner.headers), 403)
        bad = client.patch(
            f"/v1/admin/accounts/{owner.id}",
            json={"rate_limits": {"registry": "2/fortnight"}},
            headers=admin.headers,
        )
        assert_problem(bad, 422)
        ok = client.patch(f"/v1/admin/accounts/{owner.id}", json=body, headers=admin.headers)
        assert ok.json()["rate_limits"] == {"registry": "2/minute"}
        statuses = [client.get("/v1/models", headers=owner.headers).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        listed = client.get("/v1/admin/accounts", headers=admin.headers).json()["data"]
        mine = next(a for a in listed if a["id"] == owner.id)
        assert mine["rate_limits"] == {"registry": "2/minute"}
        assert mine["suspended"] is False


def test_login_backs_off_after_five_wrong_passwords_for_known_and_unknown_emails(
    settings: Settings, db: Database
) -> None:
    with app_with(settings, db) as client:
        owner = register(client)
        for email in (owner.email, "nobody-here@example.com"):
            wrong = {"email": email, "password": "not the password"}
            statuses = [client.post("/v1/auth/login", json=wrong).status_code for _ in range(6)]
            assert statuses == [401] * 5 + [429]
        # While it waits, even the right password is refused for that email.
        right = {"email": owner.email, "password": PASSWORD}
        blocked = client.post("/v1/auth/login", json=right)
        assert_problem(blocked, 429)
        assert int(blocked.headers["retry-after"]) >= 1
        # Ten failures from this address: another email still gets its own five tries.
        other = register(client)
        wrong = {"email": other.email, "password": "not the password"}
        assert client.post("/v1/auth/login", json=wrong).status_code == 401
        # Ten more failures make twenty: now the address waits, whatever the email.
        for n in range(9):
            client.post("/v1/auth/login", json={"email": f"x{n}@example.com", "password": "bad"})
        assert_problem(client.post("/v1/auth/login", json=wrong), 429)


def test_backoff_doubles_and_a_success_clears_it(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    with app_with(settings, db, login_failures_before_backoff=2) as client:
        owner = register(client)
        wrong = {"email": owner.email, "password": "wrong password"}
        right = {"email": owner.email, "password": PASSWORD}
        assert [client.post("/v1/auth/login", json=wrong).status_code for _ in range(2)] == [
            401
        ] * 2
        waits = []
        for _ in range(3):
            blocked = client.post("/v1/auth/login", json=wrong)
            waits.append(int(blocked.headers["retry-after"]))
            now[0] += waits[-1]
            assert client.post("/v1/auth/login", json=wrong).status_code == 401
        assert waits == [1, 2, 4]
        now[0] += 8
        assert client.post("/v1/auth/login", json=right).status_code == 200
        assert client.post("/v1/auth/login", json=wrong).status_code == 401


def test_password_change_ends_older_tokens_and_the_audit_log_shows_it(
    settings: Settings, db: Database
) -> None:
    with app_with(settings, db) as client:
        admin, owner = make_admin(db, client), register(client)
        key = key_for(client, owner, ["models:read"])
        key_id = client.get("/v1/api-keys", headers=owner.headers).json()["data"][0]["id"]
        client.post("/v1/auth/login", json={"email": owner.email, "password": "bad password"})
        wrong_current = client.post(
            "/v1/auth/password",
            json={"current_password": "nope", "new_password": "another good one"},
            headers=owner.headers,
        )
        assert_problem(wrong_current, 403)
        changed = client.post(
            "/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": "another good one"},
            headers=owner.headers,
        )
        assert changed.status_code == 204
        assert_problem(client.get("/v1/me", headers=owner.headers), 401)
        assert client.get("/v1/me", headers=key).status_code == 200  # keys are not tokens
        fresh = client.post(
            "/v1/auth/login", json={"email": owner.email, "password": "another good one"}
        ).json()["access_token"]
        before = client.get("/v1/me", headers=bearer(fresh)).json()["webhook_secret"]
        rotated = client.post("/v1/me/webhook-secret", headers=bearer(fresh)).json()
        assert rotated["webhook_secret"] != before
        assert (
            client.get("/v1/me", headers=bearer(fresh)).json()["webhook_secret"]
            == (rotated["webhook_secret"])
        )
        assert client.delete(f"/v1/api-keys/{key_id}", headers=bearer(fresh)).status_code == 204

        log = client.get(
            "/v1/admin/audit", params={"account": owner.id}, headers=admin.headers
        ).json()["data"]
        actions = [event["action"] for event in log]
        assert actions == [
            "api_key.revoked",
            "webhook_secret.rotated",
            "login",
            "password.changed",
            "login.failed",
            "api_key.created",
            "login",
            "signup",
        ]
        assert all(event["address"] == "testclient" for event in log)
        assert log[0]["target"] == key_id
        assert log[0]["actor_id"] == owner.id
        paged = client.get(
            "/v1/admin/audit", params={"account": owner.id, "limit": 3}, headers=admin.headers
        ).json()
        rest = client.get(
            "/v1/admin/audit",
            params={"account": owner.id, "limit": 10, "cursor": paged["next_cursor"]},
            headers=admin.headers,
        ).json()
        assert [e["action"] for e in paged["data"] + rest["data"]] == actions


def test_public_routes_are_limited_per_address(settings: Settings, db: Database) -> None:
    with app_with(settings, db, rate_limit_registry="2/minute") as client:
        statuses = [client.get("/v1/architectures").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]


def test_model_creation_publication_and_deletion_are_audited(
    settings: Settings, db: Database
) -> None:
    with app_with(settings, db) as client:
        admin, owner = make_admin(db, client), register(client)
        body = {"name": "audited", "task": "classification"}
        assert client.post("/v1/models", json=body, headers=owner.headers).status_code == 201
        public = client.patch(
            "/v1/models/audited", json={"visibility": "public"}, headers=owner.headers
        )
        assert public.status_code == 200, public.text
        assert client.delete("/v1/models/audited", headers=owner.headers).status_code == 204
        log = client.get(
            "/v1/admin/audit", params={"account": owner.id}, headers=admin.headers
        ).json()["data"]
        model_events = [(e["action"], e["target"]) for e in log if e["action"].startswith("model")]
        assert model_events == [
            ("model.deleted", "audited"),
            ("model.published", "audited"),
            ("model.created", "audited"),
        ]
        assert all(e["actor_id"] == owner.id for e in log if e["action"].startswith("model"))


def test_the_admin_account_list_counts_what_each_account_holds(
    settings: Settings, db: Database
) -> None:
    with app_with(settings, db) as client:
        admin, busy, idle = make_admin(db, client), register(client), register(client)
        publish(client, busy)
        publish(client, busy)
        api_key(client, busy, ["predict"])
        revoked = api_key(client, busy, ["predict"])
        client.delete(f"/v1/api-keys/{revoked['id']}", headers=busy.headers)
        listed = client.get("/v1/admin/accounts?limit=100", headers=admin.headers).json()["data"]
        rows = {row["id"]: row for row in listed}
        assert (rows[busy.id]["models"], rows[busy.id]["api_keys"]) == (2, 1)
        assert (rows[idle.id]["models"], rows[idle.id]["api_keys"]) == (0, 0)
        assert rows[busy.id]["jobs_active"] == rows[idle.id]["jobs_active"] == 0
        # One account's answer (after a change) counts the same way.
        changed = client.patch(
            f"/v1/admin/accounts/{busy.id}", json={"quotas": {"models": 9}}, headers=admin.headers
        )
        assert (changed.json()["models"], changed.json()["api_keys"]) == (2, 1)
