"""The monitoring against the real thing: Debian's Prometheus scrapes a gateway and a worker
started here on loopback, both behind the scrape token, while real traffic goes through them.
Then the recording rules of deploy/prometheus/slo.yml and the Grafana dashboard's queries must
answer with data, every rule must load and evaluate, and promtool's unit tests must pass and
must see an alert fire.

The scrape jobs are deploy/prometheus/prometheus.yml's own (names, paths, rule files), with
static loopback targets in place of the compose stack's DNS discovery.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from aiaas.storage import open_store
from tests.deploy import sources
from tests.factories import Account, publish, register, unique, wait_job, wait_until
from tests.helpers import free_port, live_server, stop_process
from tests.integration.conftest import Deployment, worker_env

pytestmark = pytest.mark.slow

SCRAPE_TOKEN = "observability-scrape-token-0123456789"
# What Grafana makes of $__rate_interval on a day's view of the board. Over 1 s scrapes it
# still covers the load when the last check runs after the longest wait for data, so a query
# without data fails alone rather than taking the others' windows past the load with it.
RATE_INTERVAL = "2m"
LOAD_S = 6.0
DATA_TIMEOUT_S = 45.0
ROW = [5.1, 3.5, 1.4, 0.2]

# Panel queries that the load below cannot give data, and why. Each must name a query of the
# dashboard and must answer nothing here: the list cannot outlive its reasons unnoticed.
WITHOUT_DATA = {
    "panel 'Scrape targets up' B": "probe_success is the blackbox exporter's probe of /readyz, "
    "which only the compose stack runs",
}


def _binary(name: str) -> str:
    """Debian's prometheus package provides both; CI installs it (make ops-tools)."""
    found = shutil.which(name)
    if found is None:
        reason = f"no {name} on PATH: `make ops-tools` installs Debian's prometheus package"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def for_prometheus(expr: str) -> str:
    """A panel's query as Grafana sends it with every variable at "All"."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for variable in sources.dashboard().get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            everything = variable.get("allValue") or ".*"
            for spelling in (f"${{{variable['name']}}}", f"${variable['name']}"):
                expr = expr.replace(f'=~"{spelling}"', f'=~"{everything}"')
    assert "$" not in expr, f"a Grafana variable this test cannot fill in: {expr}"
    return expr


PANEL_QUERIES = list(sources.dashboard_queries())
CHECKED_PANELS = [(where, expr) for where, expr in PANEL_QUERIES if where not in WITHOUT_DATA]
RECORDED = sorted(sources.recorded_names())


# ---- Prometheus ----------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def rules(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]


def finite(result: list[dict[str, Any]]) -> list[float]:
    """The values of an instant query's series that are numbers (not NaN, not infinite)."""
    values = [float(series["value"][1]) for series in result]
    return [value for value in values if math.isfinite(value)]


def scrape_job(name: str, target: str) -> dict[str, Any]:
    """The job of deploy/prometheus/prometheus.yml, scraping ``target`` with the token."""
    [job] = [job for job in sources.load(sources.PROMETHEUS)["scrape_configs"]
             if job["job_name"] == name]  # fmt: skip
    kept = {key: value for key, value in job.items() if not key.endswith("_sd_configs")}
    return {
        **kept,
        "static_configs": [{"targets": [target]}],
        "authorization": {"credentials": SCRAPE_TOKEN},
    }


@contextmanager
def running_prometheus(tmp: Path, targets: dict[str, str]) -> Iterator[Prometheus]:
    binary = _binary("prometheus")
    deployed = sources.load(sources.PROMETHEUS)
    for name in deployed["rule_files"]:
        shutil.copy(sources.PROMETHEUS.parent / name, tmp / name)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": deployed["rule_files"],
        "scrape_configs": [scrape_job(name, target) for name, target in targets.items()],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp / "prometheus.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{log.read_text()}")
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=30, interval=0.1, what=lambda: f"prometheus:\n{log.read_text()}")
        yield Prometheus(url, log)
    finally:
        stop_process(process, timeout=10)


# ---- the load ------------------------------------------------------------------------------


def make_load(client: httpx.Client, owner: Account, artifacts_url: str) -> Counter[int]:
    """Sync predictions for LOAD_S seconds, most answered 200, some 404 (no such model), 422
    (a row of the wrong width) and 500 (a model whose weights left the store), in rounds sent
    together so that the worker batches them; then one async job. The answers' statuses."""
    good = publish(client, owner).name
    broken = publish(client, owner, seed=1).name
    version = client.get(f"/v1/models/{broken}/versions/1", headers=owner.headers).json()
    assert open_store(artifacts_url).delete(version["sha256"])
    calls = [(good, [ROW])] * 8 + [(good, [ROW[:2]]), (unique("missing"), [ROW]), (broken, [ROW])]

    def predict(call: tuple[str, list[list[float]]]) -> int:
        name, rows = call
        url = f"/v1/models/{name}/predict"
        return client.post(url, json={"inputs": rows}, headers=owner.headers).status_code

    statuses: Counter[int] = Counter()
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        while time.monotonic() - start < LOAD_S:
            statuses.update(pool.map(predict, calls))
            # Paced: the load spans several scrapes rather than a burst between two.
            time.sleep(0.2)
    job = client.post(
        "/v1/predictions", json={"model": good, "inputs": [ROW]}, headers=owner.headers
    )
    assert job.status_code == 202, job.text
    assert wait_job(client, job.json()["id"], owner.headers)["status"] == "succeeded"
    return statuses


# ---- the stack -----------------------------------------------------------------------------


@dataclass
class Stack:
    prometheus: Prometheus
    targets: dict[str, str]
    statuses: Counter[int]


def _have_data(prometheus: Prometheus) -> bool:
    queries = [*RECORDED, *(for_prometheus(expr) for _, expr in CHECKED_PANELS)]
    return all(finite(prometheus.query(expr)) for expr in queries)


@pytest.fixture(scope="module")
def stack(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _binary("prometheus")
    tmp = tmp_path_factory.mktemp("observability")
    settings = deployment.settings.model_copy(update={"metrics_token": SecretStr(SCRAPE_TOKEN)})
    ours = Deployment(settings, worker_env(settings))
    worker_port, gateway_port = free_port(), free_port()
    targets = {
        "aiaas-gateway": f"127.0.0.1:{gateway_port}",
        "aiaas-worker": f"127.0.0.1:{worker_port}",
    }
    worker = ours.start_worker(tmp, "--metrics-port", str(worker_port))
    try:
        gateway_env = {**ours.env, "AIAAS_METRICS_PORT": str(gateway_port)}
        with (
            live_server(tmp, gateway_env) as base,
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            ours.wait_ready(worker)
            with running_prometheus(tmp, targets) as prometheus:
                wait_until(
                    lambda: len(finite(prometheus.query("up == 1"))) == len(targets),
                    timeout=30,
                    interval=0.2,
                    what=lambda: (
                        f"both targets up: {prometheus.query('up')}\n{prometheus.log.read_text()}"
                    ),
                )
                statuses = make_load(client, register(client), settings.artifacts_url or "")
                # Not an assertion: the tests below say which queries still have no data.
                deadline = time.monotonic() + DATA_TIMEOUT_S
                while not _have_data(prometheus) and time.monotonic() < deadline:
                    time.sleep(0.5)
                yield Stack(prometheus, targets, statuses)
    finally:
        ours.stop_all()


# ---- the checks ----------------------------------------------------------------------------


def test_the_load_made_the_answers_the_panels_show(stack: Stack) -> None:
    assert set(stack.statuses) == {200, 404, 422, 500}, stack.statuses
    assert stack.statuses[200] > stack.statuses[500] > 0


def test_prometheus_scrapes_the_gateway_and_the_worker(stack: Stack) -> None:
    up = {
        (series["metric"]["job"], series["metric"]["instance"]): series["value"][1]
        for series in stack.prometheus.query("up")
    }
    assert up == dict.fromkeys(stack.targets.items(), "1")


@pytest.mark.parametrize("record", RECORDED)
def test_recording_rule_has_a_series(stack: Stack, record: str) -> None:
    result = stack.prometheus.query(record)
    assert finite(result), f"{record} recorded no number after the load: {result}"


@pytest.mark.parametrize(("where", "expr"), CHECKED_PANELS, ids=[w for w, _ in CHECKED_PANELS])
def test_dashboard_query_has_data(stack: Stack, where: str, expr: str) -> None:
    query = for_prometheus(expr)
    result = stack.prometheus.query(query)
    assert finite(result), f"{where} has no data after the load: {query} -> {result}"


def test_queries_without_data_are_listed_with_reason(stack: Stack) -> None:
    panels = dict(PANEL_QUERIES)
    assert len(panels) == len(PANEL_QUERIES), "two panel queries share a title and refId"
    assert set(WITHOUT_DATA) <= set(panels), "WITHOUT_DATA names a query the board lacks"
    for where in WITHOUT_DATA:
        assert stack.prometheus.query(for_prometheus(panels[where])) == [], where


def test_prometheus_loads_and_evaluates_every_rule(stack: Stack) -> None:
    loaded = {rule["name"]: rule for rule in stack.prometheus.rules()}
    for rule in sources.rules():
        name = rule.get("alert") or rule["record"]
        assert name in loaded, f"{name} is not loaded"
        assert loaded[name]["health"] == "ok", loaded[name]
        assert loaded[name]["type"] == ("alerting" if "alert" in rule else "recording")


# ---- promtool ------------------------------------------------------------------------------


def _promtool(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = _binary("promtool")
    command = [binary, "test", "rules", *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_unit_tests_pass() -> None:
    assert sources.RULE_TESTS, "no promtool tests found"
    done = _promtool(*sources.RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def _first_firing_case() -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A unit-test file, a case of it and a check of that case where an alert fires."""
    for path in sources.RULE_TESTS:
        for case in sources.load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    return path, case, check
    raise AssertionError("no promtool case where an alert fires")


def test_promtool_sees_an_alert_fire(tmp_path: Path) -> None:
    """A firing case of the unit tests, told to expect silence, fails: promtool really sees
    the alert fire, rather than passing a case that checks nothing."""
    path, case, firing = _first_firing_case()
    rule_files = [str(path.parent / name) for name in sources.load(path)["rule_files"]]
    silenced = {**case, "alert_rule_test": [{**firing, "exp_alerts": []}]}
    copied = tmp_path / "expects_silence.yml"
    copied.write_text(yaml.safe_dump({"rule_files": rule_files, "tests": [silenced]}))
    done = _promtool(copied)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"alertname: {firing['alertname']}" in output, output
