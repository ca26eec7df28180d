"""The admin pages through the ASGI app: only administrators open them; suspension and limit
overrides made there go through the admin API's service and show in the API; a refused form
changes nothing; the overview shows the figures the platform keeps, not made-up ones.
(tests/web/test_admin_browser.py does the suspension in Chromium against a live server.)"""

from __future__ import annotations

import os
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiaas.accounts import audit
from aiaas.accounts import service as accounts
from aiaas.config import Settings
from aiaas.db import Database, utcnow
from aiaas.main import create_app
from aiaas.metering.models import UsageHour
from aiaas.presence import Presence
from aiaas.quotas import Quota
from tests.factories import Account, add_model, add_prediction, api_key, register
from tests.helpers import assert_problem, bearer
from tests.web.conftest import csrf_of, sign_in

ADMIN_PAGES = ["/admin", "/admin/accounts", "/admin/audit"]


def signed_in_admin(client: TestClient, db: Database) -> Account:
    made = register(client)
    with db.session() as session:
        accounts.ensure_admin(session, email=made.email, password=None)
    sign_in(client, made)
    return made


@pytest.fixture
def admin(client: TestClient, db: Database) -> Account:
    """An administrator, signed in on ``client``."""
    return signed_in_admin(client, db)


def account_of(client: TestClient, admin: Account, account: Account) -> dict[str, Any]:
    """The account as the admin API shows it."""
    listed = client.get("/v1/admin/accounts?limit=200", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    found: dict[str, Any] = next(a for a in listed.json()["data"] if a["id"] == account.id)
    return found


def test_only_administrators_open_the_admin_pages(client: TestClient, db: Database) -> None:
    assert (
        client.get("/admin", follow_redirects=False).headers["location"] == "/login?next=%2Fadmin"
    )
    plain, other = register(client), register(client)
    sign_in(client, plain)
    for path in [*ADMIN_PAGES, f"/admin/accounts/{other.id}"]:
        page = client.get(path)
        assert page.status_code == 403, path
        assert "for administrators" in page.text
    token = csrf_of(client, "/keys")
    tried = client.post(
        f"/admin/accounts/{other.id}/suspension", data={"csrf_token": token, "suspended": "true"}
    )
    assert tried.status_code == 403
    assert client.get("/v1/me", headers=other.headers).status_code == 200
    # The nav shows the admin link to administrators only.
    assert 'href="/admin"' not in client.get("/keys").text


def test_an_admin_suspends_an_account_and_its_key_is_refused(
    client: TestClient, admin: Account
) -> None:
    owner = register(client)
    key = bearer(api_key(client, owner, ["models:read"])["key"])
    # A cached credential must not outlive the suspension.
    assert client.get("/v1/me", headers=key).status_code == 200
    listing = client.get("/admin/accounts")
    assert listing.status_code == 200
    assert f'href="/admin/accounts/{owner.id}"' in listing.text
    assert 'href="/admin"' in listing.text

    token = csrf_of(client, f"/admin/accounts/{owner.id}")
    done = client.post(
        f"/admin/accounts/{owner.id}/suspension",
        data={"csrf_token": token, "suspended": "true"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/admin/accounts/{owner.id}"
    page = client.get(done.headers["location"]).text
    assert f"{owner.email} is suspended" in page
    assert "Resume the account" in page
    refused = assert_problem(client.get("/v1/me", headers=key), 403)
    assert refused["type"].endswith("/account-suspended")
    assert account_of(client, admin, owner)["suspended"] is True

    events = client.get(f"/admin/audit?action={audit.ADMIN_ACCOUNT_UPDATED}").text
    assert owner.email in events
    assert "&#34;suspended&#34;: true" in events

    client.post(
        f"/admin/accounts/{owner.id}/suspension", data={"csrf_token": token, "suspended": "false"}
    )
    assert client.get("/v1/me", headers=key).status_code == 200
    assert account_of(client, admin, owner)["suspended"] is False


def test_an_admin_cannot_suspend_their_own_account_from_the_page(
    client: TestClient, admin: Account
) -> None:
    url = f"/admin/accounts/{admin.id}"
    page = client.get(url).text
    assert "your own account" in page
    assert "Suspend the account" not in page
    # Nor by posting the form anyway (or through the API): it would lock the admin out.
    refused = client.post(
        f"{url}/suspension", data={"csrf_token": csrf_of(client, url), "suspended": "true"}
    )
    assert refused.status_code == 422
    assert "cannot suspend their own account" in refused.text
    api = client.patch(
        f"/v1/admin/accounts/{admin.id}", json={"suspended": True}, headers=admin.headers
    )
    assert api.status_code == 422
    assert client.get("/v1/me", headers=admin.headers).status_code == 200


def limits(token: str, **fields: str) -> dict[str, str]:
    """The overrides form as a browser sends it: every field, empty unless given."""
    names = [f"rate_{c}" for c in ("predict", "jobs", "train", "registry")]
    names += [f"quota_{q}" for q in Quota]
    return {"csrf_token": token, **dict.fromkeys(names, ""), **fields}


def test_overrides_set_through_the_form_show_in_the_admin_api(
    client: TestClient, admin: Account
) -> None:
    owner = register(client)
    url = f"/admin/accounts/{owner.id}"
    token = csrf_of(client, url)
    saved = client.post(
        f"{url}/limits",
        data=limits(token, rate_predict="10/second", quota_models="5"),
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    shown = account_of(client, admin, owner)
    assert shown["rate_limits"] == {"predict": "10/second"}
    assert shown["quotas"] == {"models": 5}
    quotas = client.get("/v1/quotas", headers=owner.headers).json()["data"]
    assert next(q for q in quotas if q["quota"] == "models")["limit"] == 5
    page = client.get(url).text
    assert 'name="rate_predict" type="text" value="10/second"' in page
    assert 'name="quota_models" type="number" value="5"' in page
    assert "predict 10/second" in client.get("/admin/accounts").text

    # An empty field goes back to the default.
    client.post(f"{url}/limits", data=limits(token, rate_predict="10/second"))
    assert account_of(client, admin, owner)["quotas"] == {}


@pytest.mark.parametrize(
    ("fields", "marked"),
    [
        ({"rate_jobs": "fast"}, "rate_jobs"),
        ({"quota_trainings": "lots"}, "quota_trainings"),
        ({"quota_trainings": "-1"}, "quota_trainings"),
        ({"rate_train": "5/fortnight", "quota_models": "2"}, "rate_train"),
    ],
)
def test_a_bad_override_is_shown_beside_its_field_and_changes_nothing(
    client: TestClient, admin: Account, fields: dict[str, str], marked: str
) -> None:
    owner = register(client)
    url = f"/admin/accounts/{owner.id}"
    token = csrf_of(client, url)
    client.post(f"{url}/limits", data=limits(token, rate_predict="7/second"))
    before = account_of(client, admin, owner)

    refused = client.post(f"{url}/limits", data=limits(token, **fields))
    assert refused.status_code == 422
    assert re.search(rf'id="f-{marked}" name="{marked}"[^>]*aria-invalid="true"', refused.text)
    assert f'id="f-{marked}-note">' in refused.text
    assert "Nothing was changed" in refused.text
    # What was typed stays in the form, to be corrected.
    for name, value in fields.items():
        kind = "text" if name.startswith("rate") else "number"
        assert f'name="{name}" type="{kind}" value="{value}"' in refused.text
    assert account_of(client, admin, owner) == before


def test_a_form_posted_without_the_csrf_token_is_refused(
    client: TestClient, admin: Account
) -> None:
    owner = register(client)
    url = f"/admin/accounts/{owner.id}"
    for path, data in [
        (f"{url}/suspension", {"suspended": "true"}),
        (f"{url}/limits", {"rate_predict": "1/second"}),
    ]:
        refused = client.post(path, data=data)
        assert refused.status_code == 403
        assert "security token" in refused.text
        forged = client.post(path, data={**data, "csrf_token": "0" * 64})
        assert forged.status_code == 403
    shown = account_of(client, admin, owner)
    assert shown["suspended"] is False
    assert shown["rate_limits"] == {}


def test_the_overview_shows_the_platforms_own_figures(
    client: TestClient, admin: Account, db: Database
) -> None:
    owner = register(client)
    with db.session() as session:
        model = add_model(session, uuid.UUID(owner.id))
        for _ in range(2):
            add_prediction(session, model, status="queued")
        add_prediction(session, model, status="running")
        add_prediction(session, model, status="succeeded")
        session.add(
            UsageHour(
                account_id=model.owner_id,
                model_id=model.id,
                hour=utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1),
                predictions=40,
                errors=3,
            )
        )
        session.commit()
    page = client.get("/admin")
    assert page.status_code == 200
    text = page.text
    assert 'id="predictions-queued">2<' in text
    assert 'id="predictions-running">1<' in text
    assert 'id="trainings-queued">0<' in text
    assert 'id="prediction-errors">7.50 %<' in text
    assert "3 of 40 since" in text
    assert "embedded" in text
    assert 'id="cache-entries">0<' in text
    assert 'id="workers">none<' in text


def test_the_distributed_overview_lists_the_processes_alive(
    settings: Settings, db: Database, redis_url: str
) -> None:
    app = create_app(settings.model_copy(update={"broker_url": redis_url}), database=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        signed_in_admin(client, db)
        # A worker process as `aiaas worker` announces itself (its key in Redis, renewed).
        worker = Presence(redis_url, "worker", details={"device": "cuda:3"})
        assert worker.beat()
        text = client.get("/admin").text
        rows = re.findall(r"<tr><td>(gateway|worker)</td><td>[^<]*</td><td[^>]*>(\d+)</td>", text)
        # This gateway is among those seen (others may be left by other tests' gateways).
        assert ("gateway", str(os.getpid())) in rows
        assert ("worker", str(os.getpid())) in rows
        assert "cuda:3" in text
        assert int(re.search(r'id="workers">(\d+)<', text).group(1)) >= 1  # type: ignore[union-attr]
        worker.stop()
        assert ("worker", str(os.getpid())) not in re.findall(
            r"<tr><td>(gateway|worker)</td><td>[^<]*</td><td[^>]*>(\d+)</td>",
            client.get("/admin").text,
        )
        # Caches live in the workers' own processes.
        assert "cache-entries" not in text
        # Queue lengths come from the reconciler's readings: none before its first pass.
        assert 'id="queue-predict">not read yet<' in text
        app.state.dispatcher.refresh_queue_depth()
        text = client.get("/admin").text
        assert re.search(r'id="queue-predict">\d+<', text)
        assert re.search(r'id="queue-training">\d+<', text)


def test_the_audit_log_is_newest_first_paged_and_filtered(
    client: TestClient, admin: Account, db: Database
) -> None:
    owner = register(client)
    with db.session() as session:
        for n in range(55):
            audit.record(
                session, audit.KEY_CREATED, actor_id=uuid.UUID(owner.id), target=f"key-{n:02d}"
            )
        session.commit()
    first = client.get(f"/admin/audit?action={audit.KEY_CREATED}")
    assert first.status_code == 200
    targets = re.findall(r"<td>(key-\d\d)</td>", first.text)
    assert targets == [f"key-{n:02d}" for n in range(54, 4, -1)]
    older = re.search(r'href="(/admin/audit\?[^"]*cursor=[^"]+)">Older events', first.text)
    assert older
    rest = client.get(older.group(1).replace("&amp;", "&")).text
    assert re.findall(r"<td>(key-\d\d)</td>", rest) == [f"key-{n:02d}" for n in range(4, -1, -1)]
    assert "Older events" not in rest

    everything = client.get("/admin/audit").text
    assert "key-54" in everything
    assert f'<option value="{audit.SIGNUP}">' in everything
    signups = client.get(f"/admin/audit?action={audit.SIGNUP}").text
    assert owner.email in signups
    assert "key-54" not in signups
    only_logins = client.get(f"/admin/audit?action={audit.LOGIN}").text
    assert "key-54" not in only_logins
    assert f"<code>{audit.LOGIN}</code>" in only_logins
    mine = client.get(f"/admin/audit?account={owner.id}").text
    assert owner.email in mine
    assert admin.email not in mine.split("<tbody>", 1)[1]


def test_every_admin_page_has_one_h1_and_the_admin_stylesheet(
    client: TestClient, admin: Account
) -> None:
    owner = register(client)
    for path in [*ADMIN_PAGES, f"/admin/accounts/{owner.id}"]:
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.text.count("<h1") == 1, path
        assert '<link rel="stylesheet" href="/static/css/admin.css">' in page.text, path
    assert client.get("/static/css/admin.css").status_code == 200
