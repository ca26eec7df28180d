"""Form fields generated from a pydantic model's JSON schema, and the form's values read back.

The training form's hyperparameters and the upload form's architecture configs are both
described by a JSON schema already (the API validates against the same models), so the fields,
their ranges and their defaults come from there rather than being written out in templates.
Values go back to the API's own validation: the form only turns text into JSON types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiaas.errors import InvalidInput

Kind = Literal["integer", "number", "boolean", "choice", "list", "json"]


@dataclass(frozen=True, slots=True)
class SchemaField:
    """One input: ``name`` is the form's field name (``prefix`` + the property)."""

    name: str
    key: str
    label: str
    kind: Kind
    required: bool
    nullable: bool
    hint: str
    default: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found: Mapping[str, Any] = schema.get("$defs", {}).get(ref.rsplit("/", 1)[1], {})
        return found
    return node


def _default_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def schema_fields(
    schema: Mapping[str, Any], *, prefix: str, example: Mapping[str, Any] | None = None
) -> list[SchemaField]:
    """The fields of an object schema, in its order; ``example`` fills the values a schema
    default leaves empty (an architecture's example config)."""
    required = set(schema.get("required", ()))
    fields: list[SchemaField] = []
    for key, raw in schema.get("properties", {}).items():
        node = _resolve(schema, raw)
        options = [_resolve(schema, o) for o in node.get("anyOf", [node])]
        nullable = any(o.get("type") == "null" for o in options)
        main = next((o for o in options if o.get("type") != "null"), {})
        kind: Kind = "json"
        if "enum" in main:
            kind = "choice"
        elif main.get("type") in ("integer", "number", "boolean"):
            kind = main["type"]
        elif main.get("type") == "array" and main.get("items", {}).get("type") in (
            "integer",
            "number",
        ):
            kind = "list"
        if kind == "list":
            hint = "Numbers separated by commas."
        elif kind == "json":
            hint = "JSON."
        else:
            hint = ""
        description = str(node.get("description") or raw.get("description") or "")
        value = raw.get("default")
        if value is None and example is not None:
            value = example.get(key)
        low = main.get("minimum", main.get("exclusiveMinimum"))
        high = main.get("maximum", main.get("exclusiveMaximum"))
        fields.append(
            SchemaField(
                name=prefix + key,
                key=key,
                label=str(raw.get("title") or key).replace("_", " "),
                kind=kind,
                required=key in required,
                nullable=nullable,
                hint=" ".join(part for part in (description, hint) if part),
                default=_default_text(value),
                minimum=low,
                maximum=high,
                choices=tuple(str(c) for c in main.get("enum", ())),
            )
        )
    return fields


def _number(text: str) -> int | float | str:
    # Left as text when it is not a number: the API's validation then names the field.
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_fields(fields: list[SchemaField], form: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object the form's values make; an empty optional field is left out (the
    schema's default applies), an empty nullable one is null."""
    values: dict[str, Any] = {}
    for spec in fields:
        raw = form.get(spec.name)
        text = raw.strip() if isinstance(raw, str) else ""
        if spec.kind == "boolean":
            values[spec.key] = text in ("true", "on", "1")
            continue
        if not text:
            if spec.nullable and spec.required:
                values[spec.key] = None
            continue
        if spec.kind in ("integer", "number"):
            values[spec.key] = _number(text)
        elif spec.kind == "list":
            values[spec.key] = [_number(part.strip()) for part in text.split(",") if part.strip()]
        elif spec.kind == "json":
            try:
                values[spec.key] = json.loads(text)
            except json.JSONDecodeError:
                values[spec.key] = text
        else:
            values[spec.key] = text
    return values


def config_json(text: str) -> dict[str, Any] | None:
    """A config typed as JSON: an object, or None when nothing was typed."""
    if not text.strip():
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            "The config is not valid JSON.",
            errors=[{"loc": ["config"], "msg": f"not JSON: {exc.msg} at line {exc.lineno}"}],
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidInput(
            "The config must be a JSON object.",
            errors=[{"loc": ["config"], "msg": "expected a JSON object: {...}"}],
        )
    return parsed
