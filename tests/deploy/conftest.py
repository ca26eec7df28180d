"""What the code exports, for the tests that check the deploy/ files against it: the gateway
app's metrics registry and route templates, read from a real app (never listed by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client.metrics_core import Metric
from pydantic import SecretStr

from aiaas.config import Settings
from aiaas.main import create_app
from aiaas.middleware import UNMATCHED_ROUTE
from aiaas.predictions.fastlane import PREDICT_ROUTE
from aiaas.v2.lane import match

# The sample names a metric family of each type exposes (prometheus_client's exposition).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
# Paths the Open Inference lane answers, one per kind of route (it names each by its template).
_V2_PATHS = (
    "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/m", "/v2/models/m/ready",
    "/v2/models/m/infer", "/v2/models/m/versions/1", "/v2/models/m/versions/1/ready",
    "/v2/models/m/versions/1/infer",
)  # fmt: skip


@pytest.fixture(scope="package")
def gateway_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app as `aiaas serve` makes it. Nothing is started: no database is reached."""
    var = tmp_path_factory.mktemp("deploy-app")
    settings = Settings(
        env="test",
        var_dir=Path(var),
        database_url=f"sqlite:///{var}/unused.db",
        secret_key=SecretStr("deploy-tests-secret-key-0123456789abcdef"),
        demo_models=False,
    )
    return create_app(settings)


def _sample_names(family: Metric) -> set[str]:
    return {family.name + suffix for suffix in _SUFFIXES[family.type]}


@pytest.fixture(scope="package")
def exported_series(gateway_app: FastAPI) -> set[str]:
    """Every sample name on the gateway's /metrics. Workers register the same Metrics class and
    usage collector (aiaas.worker.tasks), so this covers theirs too."""
    registry = gateway_app.state.metrics.registry
    return {name for family in registry.collect() for name in _sample_names(family)}


@pytest.fixture(scope="package")
def route_templates(gateway_app: FastAPI) -> set[str]:
    """Every value the gateway's request metrics give the ``route`` label."""
    routes = set(gateway_app.openapi()["paths"])
    routes |= {PREDICT_ROUTE, UNMATCHED_ROUTE}
    routes |= {route.template for path in _V2_PATHS if (route := match(path)) is not None}
    return routes
