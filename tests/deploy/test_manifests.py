"""Kubernetes manifests and the Helm chart agree with each other and with the image. (Schemas,
Pod Security and references are checked by deploy/tools/validate_k8s.py.)"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from tests.deploy import sources

K8S = sources.DEPLOY / "k8s"
HELPERS = sources.DEPLOY / "helm/aiaas/templates/_helpers.tpl"


def _objects(name: str) -> dict[str, dict[str, Any]]:
    """The objects of a manifest file by kind/name."""
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in sources.load_all(K8S / name)}


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _wait_script(pod: dict[str, Any]) -> str:
    (init,) = [c for c in pod["initContainers"] if c["name"] == "wait-for-schema"]
    assert init["command"][:2] == ["sh", "-c"]
    return textwrap.dedent(init["command"][2]).strip()


def test_every_pod_waits_for_the_same_schema_check() -> None:
    scripts = {
        name: _wait_script(_pod(_objects(f"{name}.yaml")[f"Deployment/aiaas-{name}"]))
        for name in ("gateway", "worker", "trainer")
    }
    assert len(set(scripts.values())) == 1, "the wait-for-schema scripts differ"
    script = scripts["gateway"]
    helpers = HELPERS.read_text()
    start = helpers.index("      - |\n") + len("      - |\n")
    block = helpers[start : helpers.index("    {{- include", start)]
    assert textwrap.dedent(block).strip() == script, "the Helm chart's script differs"
    # The image keeps alembic.ini at /app (deploy/Dockerfile: WORKDIR /app, COPY alembic.ini ./).
    dockerfile = (sources.DEPLOY / "Dockerfile").read_text()
    assert "WORKDIR /app" in dockerfile
    assert "COPY alembic.ini ./" in dockerfile
    assert "alembic -c /app/alembic.ini current" in script


def test_workers_and_trainers_take_their_own_queues() -> None:
    worker = _pod(_objects("worker.yaml")["Deployment/aiaas-worker"])["containers"][0]
    trainer_pod = _pod(_objects("trainer.yaml")["Deployment/aiaas-trainer"])
    trainer = trainer_pod["containers"][0]
    assert worker["command"][worker["command"].index("--queues") + 1] == "predict"
    assert trainer["command"][trainer["command"].index("--queues") + 1] == "training"
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert trainer_pod["terminationGracePeriodSeconds"] >= 600


def test_gateway_drains_before_it_stops() -> None:
    pod = _pod(_objects("gateway.yaml")["Deployment/aiaas-gateway"])
    (gateway,) = pod["containers"]
    sleep = int(gateway["lifecycle"]["preStop"]["exec"]["command"][1])
    assert 0 < sleep < pod["terminationGracePeriodSeconds"]


def test_keda_query_is_scoped_to_the_manifests_namespace() -> None:
    namespace = sources.load(K8S / "kustomization.yaml")["namespace"]
    assert sources.load(K8S / "namespace.yaml")["metadata"]["name"] == namespace
    scaled = _objects("keda-scaledobject.yaml")["ScaledObject/aiaas-worker"]
    (trigger,) = scaled["spec"]["triggers"]
    assert f'namespace="{namespace}"' in trigger["metadata"]["query"]
    assert scaled["spec"]["fallback"]["replicas"] >= scaled["spec"]["minReplicaCount"]


def test_pod_monitors_give_the_scrape_job_names() -> None:
    jobs = {
        m["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["replacement"]
        for m in sources.load_all(K8S / "podmonitors.yaml")
    }
    assert jobs == {"aiaas-gateway", "aiaas-worker", "aiaas-trainer"}
    assert jobs <= sources.scrape_jobs()
    template = (sources.DEPLOY / "helm/aiaas/templates/podmonitors.yaml").read_text()
    assert re.search(r"replacement: aiaas-\{\{ \$component \}\}", template)
