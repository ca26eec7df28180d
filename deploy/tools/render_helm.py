"""Render the Helm chart (deploy/helm/aiaas) as `helm template` does, for validation.

No `helm` binary is installable from the package registries this project uses, so this renders
through helm-python-sdk (PyPI), which binds Helm's own Go SDK (the engine `helm template` runs):
the same templates, values schema and `required` checks. For each values file under the chart's
ci/ folder it validates the values against values.schema.json, renders the chart offline (no
cluster) into OUT/<values>.yaml, and lints the chart (`helm lint --strict`). It also checks that
the chart refuses what it must refuse: an unknown value key, and no secrets at all.

    python deploy/tools/render_helm.py --out build/ops/helm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/aiaas"
RELEASES = {"default": "aiaas", "full": "prod", "minimal": "aiaas-staging"}
NAMESPACE = "aiaas"


def render(chart: helm.Chart, values: dict[str, Any], release: str) -> str:
    manifests = chart.render(values, name=release, namespace=NAMESPACE, revision=1, is_install=True)
    documents = []
    for template, text in sorted(manifests.items()):
        if not template.endswith(".yaml") or not text.strip():
            continue
        documents.append(f"# Source: {template}\n{text.strip()}\n")
    return "---\n".join(documents)


def must_fail(chart: helm.Chart, values: dict[str, Any], expect: str) -> str | None:
    """None when rendering ``values`` fails with a message containing ``expect``."""
    try:
        render(chart, values, "aiaas")
    except helm.HelmError as exc:
        return None if expect in str(exc) else f"failed, but not on {expect!r}: {exc}"
    return f"rendered although it should have failed on {expect!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the rendered files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    chart = helm.Chart.load(CHART)
    failures: list[str] = []

    for values_file in sorted((CHART / "ci").glob("*-values.yaml")):
        case = values_file.name.removesuffix("-values.yaml")
        values = yaml.safe_load(values_file.read_text()) or {}
        try:
            chart.validate_schema(values)
            text = render(chart, values, RELEASES.get(case, "aiaas"))
        except helm.HelmError as exc:
            failures.append(f"{values_file.name}: {exc}")
            continue
        (args.out / f"{case}.yaml").write_text(text)
        # The rules as the chart renders them, for `promtool check rules`.
        groups = [
            group
            for doc in yaml.safe_load_all(text)
            if doc and doc["kind"] == "PrometheusRule"
            for group in doc["spec"]["groups"]
        ]
        if groups:
            rules = yaml.safe_dump({"groups": groups}, sort_keys=False)
            (args.out / f"{case}.rules.yml").write_text(rules)
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        # Severity 1 is information (such as "icon is recommended"); 2 and 3 fail.
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        failures += [f"{values_file.name}: lint: {p}" for p in problems]
        print(f"rendered {case}: {text.count('# Source: ')} templates -> {args.out / case}.yaml")

    secrets = yaml.safe_load((CHART / "ci/default-values.yaml").read_text())
    for values, expect in (
        ({**secrets, "gatewy": {"replicas": 2}}, "additional properties 'gatewy' not allowed"),
        ({**secrets, "config": {"AIAAS_DATABASE_URL": "x"}}, "AIAAS_DATABASE_URL"),
        ({}, "secrets.secretKey"),
    ):
        problem = must_fail(chart, values, expect)
        if problem:
            failures.append(f"values {values}: {problem}")

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(
        f"helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}): "
        f"{'failed' if failures else 'ok'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
