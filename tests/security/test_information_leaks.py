"""What one tenant (or anyone on the internet) must not learn about another.

- ``/metrics`` names every tenant's private models: it is served behind a scrape token, or on a
  port of its own, and production refuses to start a gateway that leaves it open.
- Another account's private model answers a predict exactly as an unknown name does, whatever
  version was asked.
- A key without ``account:read`` never reads the webhook signing secret.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from aiaas.config import ConfigurationError, Settings
from aiaas.db import Database
from aiaas.main import create_app
from aiaas.metrics import Metrics, MetricsServer
from tests.factories import Account, publish
from tests.helpers import assert_problem, bearer, free_port

TOKEN = "scrape-token-0123456789-abcdefghijklmnop"


def test_metrics_need_the_scrape_token_when_one_is_set(
    settings: Settings, db: Database, make_account: Callable[..., Account]
) -> None:
    settings = settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})
    with TestClient(create_app(settings, database=db), raise_server_exceptions=False) as client:
        owner = make_account()
        name = "secret-project-x"
        publish(client, owner, name=name, visibility="private")
        client.post(f"/v1/models/{name}/predict", json={"inputs": [[1, 2, 3, 4]]}, **_h(owner))
        for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {TOKEN}"}):
            refused = client.get("/metrics", headers=headers)
            assert_problem(refused, 401)
            assert name not in refused.text
        scraped = client.get("/metrics", headers=bearer(TOKEN))
        assert scraped.status_code == 200
        assert f'model="{name}"' in scraped.text


def _h(account: Account) -> dict[str, Any]:
    return {"headers": account.headers}


def test_metrics_on_their_own_port_leave_the_public_port(
    settings: Settings, db: Database, make_account: Callable[..., Account]
) -> None:
    port = free_port()
    settings = settings.model_copy(update={"metrics_port": port, "metrics_token": SecretStr(TOKEN)})
    with TestClient(create_app(settings, database=db), raise_server_exceptions=False) as client:
        assert_problem(client.get("/metrics", headers=bearer(TOKEN)), 404)
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        base = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(base, timeout=5).status_code == 401
        scraped = httpx.get(base, headers=bearer(TOKEN), timeout=5)
        assert scraped.status_code == 200
        assert "aiaas_http_requests" in scraped.text
    # The server went away with the app.
    with pytest.raises(httpx.TransportError):
        httpx.get(base, timeout=2)


def test_a_worker_metrics_port_follows_the_same_rule() -> None:
    metrics = Metrics()
    metrics.batch_size.observe(3)
    server = MetricsServer(metrics.registry, host="127.0.0.1", port=0, token=TOKEN).start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        refused = httpx.get(url, timeout=5)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert "aiaas_batch_size" not in refused.text
        assert "aiaas_batch_size_count 1.0" in httpx.get(url, headers=bearer(TOKEN)).text
    finally:
        server.close()


def test_production_refuses_a_gateway_with_open_metrics(tmp_path: Path) -> None:
    secret = SecretStr("k7Qz-2vLp9_XwR4mN8sT1yB6cF3hJ0dGa5eU")
    open_metrics = Settings(env="production", var_dir=tmp_path, secret_key=secret)
    with pytest.raises(ConfigurationError, match="AIAAS_METRICS_TOKEN or AIAAS_METRICS_PORT"):
        create_app(open_metrics)
    # Either way of closing them is enough (nothing is started: create_app only builds).
    create_app(open_metrics.model_copy(update={"metrics_token": SecretStr(TOKEN)}))
    create_app(open_metrics.model_copy(update={"metrics_port": free_port()}))


@pytest.mark.parametrize("version", [None, "1", "7", "latest", "production", "nope"])
def test_another_accounts_private_model_answers_as_an_unknown_name(
    client: TestClient, make_account: Callable[..., Account], version: str | None
) -> None:
    owner, stranger = make_account(), make_account()
    publish(client, owner, name="hidden-model", visibility="private")
    query = "" if version is None else f"?version={version}"
    body = {"inputs": [[1, 2, 3, 4]]}
    hidden = client.post(f"/v1/models/hidden-model/predict{query}", json=body, **_h(stranger))
    unknown = client.post(f"/v1/models/no-such-model/predict{query}", json=body, **_h(stranger))
    a, b = assert_problem(hidden, 404), assert_problem(unknown, 404)
    assert (a["type"], a["title"]) == (b["type"], b["title"])
    assert a["detail"] == b["detail"].replace("no-such-model", "hidden-model")
    for word in ("version", "alias", "7"):
        assert word not in a["detail"]
    # The owner still learns what is missing.
    if version == "7":
        mine = client.post(f"/v1/models/hidden-model/predict{query}", json=body, **_h(owner))
        assert "version" in assert_problem(mine, 404)["detail"]


def test_a_key_without_account_read_never_sees_the_webhook_secret(
    client: TestClient, account: Account, make_key: Callable[..., dict[str, Any]]
) -> None:
    everything = ["models:read", "models:write", "predict", "train"]
    for scopes in ([], everything):
        key = make_key(scopes)["key"]
        me = client.get("/v1/me", headers=bearer(key))
        assert me.status_code == 200
        assert me.json()["webhook_secret"] is None
    reader = make_key(["account:read"])["key"]
    secret = client.get("/v1/me", headers=bearer(reader)).json()["webhook_secret"]
    assert secret.startswith("whsec_")
    assert client.get("/v1/me", headers=account.headers).json()["webhook_secret"] == secret
