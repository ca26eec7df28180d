"""Validate Kubernetes manifests: schemas, Pod Security "restricted", and how objects fit.

Each argument is a bundle: a folder of manifests (deploy/k8s) or one rendered file (the Helm
chart's output). Every object is checked against

- its schema, strictly (an unknown field is an error): core kinds with kubernetes-validate's
  schemas for the oldest and newest Kubernetes versions supported; KEDA's ScaledObject and the
  Prometheus Operator's PodMonitor and PrometheusRule with the openAPIV3Schema of their
  upstream CRDs, vendored under deploy/schemas/crds/ with their licences;
- the restricted Pod Security Standard, for every pod template: non-root, seccomp
  RuntimeDefault, no privilege escalation, every capability dropped, plus a read-only root
  filesystem, no service account token and memory limits;
- the bundle's own references: every Service, PodDisruptionBudget, NetworkPolicy and PodMonitor
  selects pods of the bundle, every autoscaler targets one of its Deployments (which then sets
  no replicas), every Deployment has a disruption budget and a topology spread, every pod
  behind a Service has a preStop hook, metrics ports open only to chosen sources, pods that no
  Service fronts take no ingress from everyone, and KEDA's Prometheus queries are namespaced
  and have a fallback.

    python deploy/tools/validate_k8s.py deploy/k8s build/ops/helm/default.yaml ...
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "deploy/schemas/crds"
KUBERNETES_VERSIONS = ("1.29", "1.37")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip

# kubernetes-validate reads its 2 MB definitions file again for every object: read it once.
kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)

Doc = dict[str, Any]


@dataclass
class Obj:
    doc: Doc
    source: str

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def name(self) -> str:
        return str(self.doc.get("metadata", {}).get("name"))

    def __str__(self) -> str:
        return f"{self.source}: {self.kind}/{self.name}"


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)

    def add(self, where: object, message: str) -> None:
        self.errors.append(f"{where}: {message}")


# ---- loading --------------------------------------------------------------------------------


def load_bundle(path: Path, report: Report) -> list[Obj]:
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    objects = []
    for file in files:
        if file.name == "kustomization.yaml":
            check_kustomization(file, report)
            continue
        for doc in yaml.safe_load_all(file.read_text()):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                report.add(file, "a document that is not a Kubernetes object")
                continue
            source = file.relative_to(ROOT) if file.is_relative_to(ROOT) else file
            objects.append(Obj(doc, source.as_posix()))
    return objects


def check_kustomization(file: Path, report: Report) -> None:
    """Its resources exist, and every other manifest beside it is named in its comments (the
    ones to apply on purpose)."""
    text = file.read_text()
    listed = yaml.safe_load(text).get("resources", [])
    for name in listed:
        if not (file.parent / name).exists():
            report.add(file, f"resource {name} does not exist")
    for other in sorted(file.parent.glob("*.yaml")):
        if other.name != file.name and other.name not in listed and other.name not in text:
            report.add(file, f"{other.name} is neither a resource nor named as one to apply apart")


# ---- schemas --------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """An openAPIV3Schema as a JSON schema that refuses unknown fields, as the API server's
    pruning would silently drop them."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict schema, from every vendored CRD."""
    schemas = {}
    for file in sorted(CRD_DIR.glob("*/*.yaml")):
        for crd in yaml.safe_load_all(file.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def check_schema(obj: Obj, report: Report) -> None:
    key = (obj.doc["apiVersion"], obj.kind)
    if key in crd_schemas():
        validator = jsonschema.Draft4Validator(crd_schemas()[key])
        for error in sorted(validator.iter_errors(obj.doc), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in error.absolute_path)
            report.add(obj, f"{path}: {error.message}")
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj.doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.absolute_path)
            report.add(obj, f"Kubernetes {version}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            report.add(obj, f"no schema (vendor its CRD in deploy/schemas/crds): {error.message}")


# ---- pod security ---------------------------------------------------------------------------


def pod_spec(obj: Obj) -> Doc | None:
    spec = obj.doc.get("spec", {})
    if obj.kind == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    if obj.kind not in WORKLOADS:
        return None
    return spec.get("template", {}).get("spec")  # type: ignore[no-any-return]


def pod_labels(obj: Obj) -> dict[str, str]:
    spec = obj.doc.get("spec", {})
    if obj.kind == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("metadata", {}).get("labels", {})  # type: ignore[no-any-return]


def check_restricted(obj: Obj, pod: Doc, report: Report) -> None:
    security = pod.get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        report.add(obj, "pod securityContext.runAsNonRoot is not true")
    if security.get("runAsUser") == 0:
        report.add(obj, "pod runs as user 0")
    if security.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        report.add(obj, "pod seccompProfile is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        report.add(obj, "pod mounts a service account token (automountServiceAccountToken)")
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            report.add(obj, f"pod sets {host}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            report.add(obj, f"volume {volume['name']} is of a kind restricted pods may not use")
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        where = f"container {container['name']}"
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            report.add(obj, f"{where}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            report.add(obj, f"{where}: privileged")
        if context.get("readOnlyRootFilesystem") is not True:
            report.add(obj, f"{where}: readOnlyRootFilesystem is not true")
        if context.get("runAsUser") == 0:
            report.add(obj, f"{where}: runs as user 0")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            report.add(obj, f"{where}: does not drop ALL capabilities")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            report.add(obj, f"{where}: adds capabilities")
        resources = container.get("resources", {})
        if "memory" not in resources.get("limits", {}):
            report.add(obj, f"{where}: no memory limit")
        if not {"cpu", "memory"} <= set(resources.get("requests", {})):
            report.add(obj, f"{where}: no cpu and memory requests")


# ---- references -----------------------------------------------------------------------------


def matches(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels/matchExpressions, or a Service's plain map)
    selects ``labels``; an empty selector selects everything."""
    if not selector:
        return True
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[expression["operator"]]
        if not ok:
            return False
    return True


def selector_of(obj: Obj) -> Doc | None:
    spec = obj.doc.get("spec", {})
    if obj.kind == "NetworkPolicy":
        return spec.get("podSelector")  # type: ignore[no-any-return]
    return spec.get("selector")  # type: ignore[no-any-return]


def _port_names(pod: Doc) -> dict[str, int]:
    return {
        port["name"]: port["containerPort"]
        for container in pod.get("containers", [])
        for port in container.get("ports", [])
        if "name" in port
    }


def check_references(objects: list[Obj], report: Report) -> None:
    workloads = [o for o in objects if pod_spec(o) is not None]
    deployments = {o.name: o for o in objects if o.kind == "Deployment"}
    services = [o for o in objects if o.kind == "Service"]
    policies = [o for o in objects if o.kind == "NetworkPolicy"]

    for obj in objects:
        if obj.kind in ("Service", "PodDisruptionBudget", "NetworkPolicy", "PodMonitor"):
            selector = selector_of(obj)
            if not any(matches(selector, pod_labels(w)) for w in workloads):
                report.add(obj, "its selector matches no pod of this bundle")
        if obj.kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            target = obj.doc["spec"]["scaleTargetRef"]
            if (
                target.get("kind", "Deployment") != "Deployment"
                or target["name"] not in deployments
            ):
                report.add(obj, f"scales {target['name']}, not a Deployment of this bundle")
            elif "replicas" in deployments[target["name"]].doc["spec"]:
                report.add(deployments[target["name"]], "sets replicas, which its autoscaler owns")
        if obj.kind == "ScaledObject":
            if "fallback" not in obj.doc["spec"]:
                report.add(obj, "no fallback for when its scaler fails")
            for trigger in obj.doc["spec"]["triggers"]:
                if (
                    trigger["type"] == "prometheus"
                    and "namespace=" not in trigger["metadata"]["query"]
                ):
                    report.add(obj, "its Prometheus query does not select a namespace")

    budgets = [o for o in objects if o.kind == "PodDisruptionBudget"]
    for deployment in deployments.values():
        labels = pod_labels(deployment)
        if not any(matches(selector_of(b), labels) for b in budgets):
            report.add(deployment, "no PodDisruptionBudget selects its pods")
        if not pod_spec(deployment).get("topologySpreadConstraints"):  # type: ignore[union-attr]
            report.add(deployment, "no topologySpreadConstraints")
        if any(matches(s.doc["spec"].get("selector"), labels) for s in services):
            for container in pod_spec(deployment)["containers"]:  # type: ignore[index]
                if "preStop" not in container.get("lifecycle", {}):
                    report.add(
                        deployment,
                        f"container {container['name']} is behind a Service "
                        "but has no preStop hook to drain",
                    )

    if policies:
        check_network_policies(workloads, services, policies, report)


def check_network_policies(
    workloads: list[Obj], services: list[Obj], policies: list[Obj], report: Report
) -> None:
    for workload in workloads:
        labels = pod_labels(workload)
        selecting = [p for p in policies if matches(selector_of(p), labels)]
        if not any("Ingress" in p.doc["spec"].get("policyTypes", ["Ingress"]) for p in selecting):
            report.add(workload, "no NetworkPolicy restricts ingress to its pods")
        fronted = any(matches(s.doc["spec"].get("selector"), labels) for s in services)
        ports = _port_names(pod_spec(workload))  # type: ignore[arg-type]
        for policy in selecting:
            for rule in policy.doc["spec"].get("ingress", []):
                if rule.get("from"):
                    continue
                opened = [p.get("port") for p in rule.get("ports", [])] or ["every port"]
                if not fronted:
                    report.add(
                        workload,
                        f"{policy.name} lets anyone in on {opened}, though no Service fronts it",
                    )
                if any(p in ("metrics", ports.get("metrics"), "every port") for p in opened):
                    report.add(workload, f"{policy.name} opens its metrics port to anyone")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    args = parser.parse_args(argv)
    report = Report()
    for bundle in args.bundles:
        objects = load_bundle(bundle, report)
        for obj in objects:
            check_schema(obj, report)
            pod = pod_spec(obj)
            if pod is not None:
                check_restricted(obj, pod, report)
        check_references(objects, report)
        kinds = sorted({o.kind for o in objects})
        print(f"{bundle}: {len(objects)} objects ({', '.join(kinds)})")
    for error in report.errors:
        print(f"FAIL {error}", file=sys.stderr)
    versions = " and ".join(KUBERNETES_VERSIONS)
    print(
        f"Kubernetes {versions} schemas, CRDs, restricted pods, references: "
        f"{len(report.errors)} problem(s)"
    )
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
