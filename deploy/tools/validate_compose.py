"""Validate docker-compose.yml against the Compose Specification.

Compose validates a file after it has replaced its ${VARIABLES}; so does this: the variables the
file requires (${VAR:?message}) get sample values, the others their defaults, and the result is
checked against the Compose Specification's JSON schema (deploy/schemas/compose-spec/, vendored
with its licence).

    python deploy/tools/validate_compose.py docker-compose.yml
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "deploy/schemas/compose-spec/compose-spec.json"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, $NAME
VARIABLE = re.compile(
    r"\$(?:\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<escaped>\$))"
)


class Unset(Exception):
    """A required variable has no value."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        given = env.get(name)
        empty = given is None or (given == "" and op is not None and op.startswith(":"))
        if op in ("?", ":?") and (given is None if op == "?" else empty):
            raise Unset(f"{name}: {arg}")
        if op in ("-", ":-") and (given is None if op == "-" else empty):
            return arg
        if op in ("+", ":+"):
            return "" if (given is None if op == "+" else empty) else arg
        return given or ""

    return VARIABLE.sub(replace, value)


def required_variables(text: str) -> list[str]:
    return sorted({m["name"] for m in VARIABLE.finditer(text) if m["op"] in ("?", ":?")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compose_file", type=Path)
    args = parser.parse_args(argv)
    text = args.compose_file.read_text()
    raw = yaml.safe_load(text)
    required = required_variables(text)
    env = {name: f"sample-{name.lower()}-0123456789abcdef0123456789" for name in required}
    failures = []

    try:
        model = interpolate(raw, env)
    except Unset as exc:
        failures.append(f"interpolation: {exc}")
        model = raw
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    for error in sorted(validator.iter_errors(model), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(top)"
        failures.append(f"{path}: {error.message}")

    for failure in failures:
        print(f"FAIL {args.compose_file}: {failure}", file=sys.stderr)
    services = sorted(model.get("services", {}))
    print(
        f"{args.compose_file}: {len(services)} services, required variables {required}: "
        f"{'failed' if failures else 'valid against the Compose Specification'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
