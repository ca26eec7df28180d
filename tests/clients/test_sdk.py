"""The SDK against a live ``aiaas serve``: the README's flow, retries, errors as exceptions."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from aiaas.client import (
    AiaasError,
    AsyncClient,
    Client,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
)
from aiaas.client.config import Config, write_file
from tests.clients.conftest import FlakyProxy, Sdk
from tests.factories import MLP_CONFIG, PASSWORD, seeded_module, unique
from tests.helpers import free_port

pytestmark = pytest.mark.slow

LABELS = ["setosa", "versicolor", "virginica"]
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
SCOPES = ["models:read", "models:write", "predict", "train"]
QUICK = RetryPolicy(retries=3, backoff=0.01)


def new_account(base: str) -> tuple[str, str]:
    """(email, API key with every scope) of a new account, made through the SDK: keys are
    managed with a login token."""
    email = f"{unique('sdk')}@example.com"
    with Client(base) as anonymous:
        anonymous.accounts.register(email, PASSWORD)
        token = anonymous.accounts.login(email, PASSWORD).access_token
        with anonymous.with_key(token) as owner:
            created = owner.keys.create("sdk test", SCOPES)
            assert [(k.id, k.name, k.key) for k in owner.keys.list()] == [
                (created.id, "sdk test", None)
            ]
    assert created.key is not None
    return email, created.key


def expected_outputs(module: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = torch.softmax(module(torch.from_numpy(rows)), dim=-1).numpy()
    return out


def test_the_readme_flow_with_the_sdk(sdk: Sdk, server: str, no_config: Path) -> None:
    email, key = new_account(server)
    client = sdk(server, key)
    assert client.accounts.me().email == email

    # Register, push weights from a torch module, point production at them.
    name = unique("iris")
    model = client.models.create(name, "classification", labels=LABELS)
    assert (model.name, model.labels, model.latest_version) == (name, LABELS, None)
    module = seeded_module()
    version = client.models.push(name, module, "mlp", MLP_CONFIG)
    assert version.version == 1
    assert version.parameters == sum(p.numel() for p in module.parameters())
    assert client.aliases.set(name, "production", 1).version == 1
    assert client.models.get(name).aliases == {"production": 1}
    assert [v.version for v in client.versions.list(name)] == [1]

    # Predict with numpy (sent as .npy) and with lists (JSON): the module's own outputs.
    expected = expected_outputs(module, ROWS)
    by_npy = client.models.predict(name, ROWS)
    by_json = client.models.predict(name, ROWS.tolist(), version="production")
    for result in (by_npy, by_json):
        np.testing.assert_allclose(result.outputs, expected, atol=1e-5)
        assert result.predictions == [LABELS[i] for i in expected.argmax(axis=1)]
        assert (result.model, result.version) == (name, 1)

    # An async job, waited for.
    job = client.predictions.create(name, ROWS[:1])
    assert job.job.status in ("queued", "running", "succeeded")
    done = job.wait(timeout=60)
    assert done.status == "succeeded"
    np.testing.assert_allclose(np.array(done.outputs), expected[:1], atol=1e-5)

    # Train with the events iterator, then give feedback and fine-tune on it.
    trained = unique("my-iris")
    training = client.trainings.create(trained, "builtin:iris", architecture="mlp", epochs=3)
    events = list(training.events())
    assert [e.event for e in events] == ["epoch"] * 3 + ["end"]
    assert [e.data["epoch"] for e in events[:-1]] == [1, 2, 3]
    assert all(e.data["train_loss"] > 0 for e in events[:-1])
    assert events[-1].data == {"status": "succeeded", "version": 1}
    assert [e.id for e in events] == sorted({e.id for e in events})  # each once, in order

    answered = client.predictions.create(trained, [[5.1, 3.5, 1.4, 0.2]]).wait(timeout=60)
    assert client.predictions.feedback(answered.id, "setosa").feedback == ["setosa"]
    feedback_set = client.datasets.get(f"feedback:{trained}")
    assert (feedback_set.rows, feedback_set.source) == (1, "feedback")

    tuned = client.trainings.create(
        trained, ["builtin:iris", f"feedback:{trained}"], base_version=1, epochs=2
    ).wait(timeout=180)
    assert (tuned.status, tuned.version, tuned.base_version) == ("succeeded", 2, 1)
    metrics = client.versions.get(trained, 2).metrics
    assert metrics is not None
    assert metrics["base"]["version"] == 1
    assert "accuracy" in metrics["base"]["metrics"]

    usage = client.usage.get()
    mine = {m.model: m for m in usage.models}
    # Two sync calls of two rows each and the one-row job.
    assert (mine[name].totals.predictions, mine[name].totals.rows) == (3, 5)
    client.close()


def test_the_flow_with_the_async_client(server: str, no_config: Path) -> None:
    async def flow() -> None:
        email, key = new_account(server)
        async with AsyncClient(server, key) as client:
            assert (await client.accounts.me()).email == email
            name = unique("airis")
            await client.models.create(name, "classification", labels=LABELS)
            module = seeded_module(seed=3)
            await client.models.push(name, module.state_dict(), "mlp", MLP_CONFIG)
            await client.aliases.set(name, "production", 1)
            expected = expected_outputs(module, ROWS)
            # Concurrent calls: the client is safe to share between tasks.
            by_npy, by_json = await asyncio.gather(
                client.models.predict(name, ROWS), client.models.predict(name, ROWS.tolist())
            )
            for result in (by_npy, by_json):
                np.testing.assert_allclose(result.outputs, expected, atol=1e-5)
            job = await client.predictions.create(name, ROWS)
            done = await job.wait(timeout=60)
            np.testing.assert_allclose(np.array(done.outputs), expected, atol=1e-5)

            trained = unique("amy-iris")
            training = await client.trainings.create(
                trained, "builtin:iris", architecture="mlp", epochs=2
            )
            seen = [event async for event in training.events()]
            assert [e.event for e in seen] == ["epoch", "epoch", "end"]
            answered = await (await client.predictions.create(trained, ROWS[:1])).wait()
            await client.predictions.feedback(answered.id, "virginica")
            tuned = await (
                await client.trainings.create(
                    trained, [f"feedback:{trained}", "builtin:iris"], base_version=1, epochs=1
                )
            ).wait(timeout=180)
            assert (tuned.status, tuned.version) == ("succeeded", 2)

            with pytest.raises(AiaasError) as missing:
                await client.models.get(unique("nothing"))
            assert (missing.value.status, missing.value.type) == (404, "not-found")

    asyncio.run(flow())


def test_reads_and_predictions_are_retried_on_503_and_429(
    sdk: Sdk, server: str, flaky: FlakyProxy, no_config: Path
) -> None:
    email, key = new_account(server)
    client = sdk(flaky.base, key, retry=QUICK)

    flaky.failures, flaky.status = 2, 503
    assert client.accounts.me().email == email
    assert flaky.seen == ["GET /v1/me"] * 3

    name = unique("retry")
    client.models.create(name, "classification")
    client.models.push(name, seeded_module(), "mlp", MLP_CONFIG)
    flaky.seen.clear()
    flaky.failures, flaky.status = 2, 429
    assert client.models.predict(name, ROWS).version == 1
    assert len(flaky.seen) == 3


def test_the_async_client_retries_too(server: str, flaky: FlakyProxy, no_config: Path) -> None:
    email, key = new_account(server)

    async def me() -> str:
        async with AsyncClient(flaky.base, key, retry=QUICK) as client:
            return (await client.accounts.me()).email

    flaky.failures, flaky.status = 2, 429
    assert asyncio.run(me()) == email
    assert len(flaky.seen) == 3


def test_retry_after_is_honoured(sdk: Sdk, server: str, flaky: FlakyProxy, no_config: Path) -> None:
    _, key = new_account(server)
    client = sdk(flaky.base, key, retry=QUICK)
    flaky.failures, flaky.status, flaky.retry_after = 1, 503, "1"
    start = time.monotonic()
    client.accounts.me()
    assert time.monotonic() - start >= 1.0
    assert len(flaky.seen) == 2


def test_a_create_without_an_idempotency_key_is_not_sent_twice(
    sdk: Sdk, server: str, flaky: FlakyProxy, no_config: Path
) -> None:
    _, key = new_account(server)
    client = sdk(flaky.base, key, retry=QUICK)
    name = unique("once")
    flaky.failures, flaky.status = 1, 503
    with pytest.raises(ServiceUnavailable) as refused:
        client.models.create(name, "classification")
    assert refused.value.status == 503
    assert refused.value.detail == "failing on purpose"
    assert flaky.seen == ["POST /v1/models"]
    with pytest.raises(AiaasError) as missing:
        client.models.get(name)
    assert missing.value.status == 404


def test_a_retried_job_is_made_once(
    sdk: Sdk, server: str, flaky: FlakyProxy, no_config: Path
) -> None:
    """The first try's answer is lost after the server made the job: the retry carries the
    same Idempotency-Key and gets that job back rather than a second one."""
    _, key = new_account(server)
    direct = sdk(server, key)
    name = unique("idem")
    direct.models.create(name, "classification")
    direct.models.push(name, seeded_module(), "mlp", MLP_CONFIG)

    client = sdk(flaky.base, key, retry=QUICK)
    flaky.lose_answers = 1
    job = client.predictions.create(name, ROWS)
    assert flaky.seen == ["POST /v1/predictions"] * 2
    assert [p.id for p in direct.predictions.list()] == [job.id]


def test_training_events_resume_after_a_dropped_stream(
    sdk: Sdk, server: str, flaky: FlakyProxy, no_config: Path
) -> None:
    """The stream is cut after its first event: the iterator opens it again with
    ``Last-Event-ID`` and goes on from the next event, none lost and none twice."""
    _, key = new_account(server)
    direct = sdk(server, key)
    training = direct.trainings.create(unique("cut"), "builtin:iris", architecture="mlp", epochs=3)
    training.wait(timeout=120)

    flaky.cut_streams = 1
    events = list(sdk(flaky.base, key, retry=QUICK).trainings.events(training.id))
    assert [e.event for e in events] == ["epoch"] * 3 + ["end"]
    assert [e.id for e in events] == sorted({e.id for e in events})
    assert flaky.last_event_ids == [None, str(events[0].id)]


def test_the_client_gives_up_after_its_retries(
    sdk: Sdk, server: str, flaky: FlakyProxy, no_config: Path
) -> None:
    _, key = new_account(server)
    client = sdk(flaky.base, key, retry=RetryPolicy(retries=2, backoff=0.01))
    flaky.failures, flaky.status, flaky.retry_after = 10, 429, "0"
    with pytest.raises(RateLimited) as limited:
        client.accounts.me()
    assert limited.value.retry_after == 0
    assert len(flaky.seen) == 3

    closed = sdk(f"http://127.0.0.1:{free_port()}", key, retry=RetryPolicy(2, backoff=0.01))
    with pytest.raises(TransportError):
        closed.accounts.me()


def test_problem_documents_are_exceptions(sdk: Sdk, server: str, no_config: Path) -> None:
    email, key = new_account(server)
    client = sdk(server, key)
    with pytest.raises(AiaasError) as invalid:
        client.models.create("Not A Slug", "classification")
    error = invalid.value
    assert (error.status, error.type) == (422, "invalid-input")
    assert error.errors
    assert error.errors[0]["loc"][-1] == "name"
    assert error.problem["status"] == 422

    with pytest.raises(AiaasError) as unauthenticated:
        sdk(server, "aiaas_not_a_key").accounts.me()
    assert unauthenticated.value.status == 401

    # The sign-in throttle: after five wrong passwords, a 429 that says when to come back.
    anonymous = sdk(server, retry=QUICK)
    for _ in range(5):
        with pytest.raises(AiaasError) as wrong:
            anonymous.accounts.login(email, "wrong password")
        assert wrong.value.status == 401
    with pytest.raises(RateLimited) as throttled:
        anonymous.accounts.login(email, "wrong password")
    assert throttled.value.retry_after is not None
    assert throttled.value.retry_after >= 1


def test_settings_come_from_the_environment_then_the_config_file(
    sdk: Sdk, server: str, no_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    email, key = new_account(server)
    written = write_file(Config(base_url=server, api_key=key))
    assert written == no_config
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    assert sdk().accounts.me().email == email

    # The environment wins over the file; an argument over both.
    monkeypatch.setenv("AIAAS_API_KEY", "aiaas_from_the_environment")
    with pytest.raises(AiaasError) as refused:
        sdk().accounts.me()
    assert refused.value.status == 401
    assert sdk(api_key=key).accounts.me().email == email


def test_the_sdk_imports_nothing_of_the_server() -> None:
    heavy = ["torch", "fastapi", "starlette", "sqlalchemy", "celery", "redis", "aiaas.main"]
    script = f"import sys, aiaas.client; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_waiting_for_a_training_that_stays_queued_times_out(no_config: Path) -> None:
    """A queued training's stream carries only keep-alive comments: wait() must still give up
    at its timeout. (The server stands in as a transport: it would take 15 s of quiet to send
    a real keep-alive.)"""
    queued = {
        "id": "t-1",
        "status": "queued",
        "model": "m",
        "dataset": "builtin:iris",
        "architecture": "mlp",
        "config": {},
        "hyperparameters": {},
    }

    def keep_alive() -> Iterator[bytes]:
        while True:
            time.sleep(0.05)
            yield b": keep-alive\n\n"

    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=queued)
        if request.url.path.endswith("/events"):
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=keep_alive()
            )
        return httpx.Response(200, json=queued)

    client = Client("http://aiaas.test", "key", transport=httpx.MockTransport(server))
    job = client.trainings.create("m", "builtin:iris", architecture="mlp")
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        job.wait(timeout=0.3)
    assert time.monotonic() - start < 5
