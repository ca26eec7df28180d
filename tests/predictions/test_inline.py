"""A lone request to a warm, small model runs on the event loop; anything else on the forward
thread (serving/batching.py ``run_inline``, dispatch/inprocess.py ``_run_inline``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.main import create_app
from aiaas.serving.mode import in_serving_mode
from aiaas.serving.runtime import ModelRuntime
from tests.predictions.conftest import Deployed

ROW = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


@pytest.fixture(params=[1.0, 0.0, 1e-6], ids=["inline", "off", "too-slow"])
def inline_ms(request: pytest.FixtureRequest) -> float:
    value: float = request.param
    return value


@pytest.fixture
def client(settings: Settings, db: Database, inline_ms: float) -> Iterator[TestClient]:
    app_settings = settings.model_copy(
        update={"max_delay_ms": 0.0, "inline_forward_max_ms": inline_ms}
    )
    with TestClient(create_app(app_settings, database=db)) as test_client:
        yield test_client


@pytest.fixture
def forward_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each forward pass ran on (the real forward still runs), with
    " (serving mode)" added where the thread was in it already when the forward began."""
    names: list[str] = []
    real = ModelRuntime.predict

    def recording(self: ModelRuntime, batch: np.ndarray) -> np.ndarray:
        mode = " (serving mode)" if in_serving_mode() else ""
        names.append(threading.current_thread().name + mode)
        return real(self, batch)

    monkeypatch.setattr(ModelRuntime, "predict", recording)
    return names


def test_where_a_lone_request_runs(
    client: TestClient,
    deploy: Callable[..., Deployed],
    forward_threads: list[str],
    inline_ms: float,
) -> None:
    model = deploy()
    url = f"/v1/models/{model.name}/predict"
    for _ in range(4):
        response = client.post(url, json={"inputs": ROW.tolist()}, headers=model.headers)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["outputs"], model.expected(ROW), atol=1e-6)

    on_forward_thread = [name.startswith("aiaas-forward") for name in forward_threads]
    # The first request loads the model (its warm-up forwards included) and times it on the
    # forward thread, in every case; then one forward per request.
    assert len(on_forward_thread) >= 4
    assert all(on_forward_thread[:-3])
    if inline_ms == 1.0:
        # An iris MLP's forward takes microseconds: the later ones skip the thread hop, on
        # a loop thread put in serving mode once (the runtime would enter it per call).
        assert on_forward_thread[-3:] == [False, False, False]
        assert all(name.endswith("(serving mode)") for name in forward_threads[-3:])
    else:
        assert on_forward_thread[-3:] == [True, True, True]
