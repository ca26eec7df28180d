"""What the templates show, shaped from the domains' rows: plain dicts and numbers, so the
templates hold no logic beyond loops and conditions."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from aiaas.ml.architectures import ARCHITECTURES
from aiaas.registry.models import Model, ModelVersion
from aiaas.web.forms import SchemaField, schema_fields

# Image inputs the playground offers a canvas for, by (height, width): the value range the
# model was trained on. The built-in digits are 8x8 with ink from 0 to 16 (scikit-learn's
# load_digits); 28x28 images are taken to be MNIST-like, 0 to 1.
CANVAS_RANGES: dict[tuple[int, int], float] = {(8, 8): 16.0, (28, 28): 1.0}
SUMMARY_METRICS = ("accuracy", "precision", "recall", "f1", "mae", "rmse", "r2")


def _summary(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {name: metrics[name] for name in SUMMARY_METRICS if isinstance(metrics.get(name), float)}


def version_row(version: ModelVersion, aliases: list[str]) -> dict[str, Any]:
    metrics = version.metrics or {}
    return {
        "number": version.number,
        "architecture": version.architecture,
        "parameters": version.parameters,
        "size_bytes": version.size_bytes,
        "created_at": version.created_at,
        "input_shape": version.input_shape,
        "aliases": sorted(aliases),
        "summary": _summary(metrics),
    }


def metrics_table(version: ModelVersion) -> dict[str, Any]:
    """The version page's metrics, a column per version: the version's own and, for a
    fine-tune, its base version's. The base's figures are those its training measured on the
    fine-tune's own test split (the base's stored metrics may come from other data)."""
    metrics = version.metrics or {}
    columns: list[tuple[int, bool, dict[str, float]]] = [(version.number, False, _summary(metrics))]
    base = metrics.get("base")
    if isinstance(base, Mapping) and isinstance(base.get("version"), int):
        figures = base.get("metrics")
        values = _summary(figures) if isinstance(figures, Mapping) else {}
        columns.append((base["version"], True, values))
    names = [n for n in SUMMARY_METRICS if any(n in values for _, _, values in columns)]
    return {
        "columns": [{"version": number, "base": is_base} for number, is_base, _ in columns],
        "rows": [{"name": n, "values": [values.get(n) for _, _, values in columns]} for n in names],
    }


def version_details(model: Model, version: ModelVersion) -> dict[str, Any]:
    """The version page's metrics: per-class scores, the confusion matrix with a shade per
    cell, the loss history for the chart, and the config."""
    metrics = version.metrics or {}
    labels = version.labels or model.labels
    matrix: list[list[int]] = metrics.get("confusion_matrix") or []
    names = [str(x) for x in labels] if labels else [str(i) for i in range(len(matrix))]
    peak = max((max(row) for row in matrix if row), default=0) or 1
    return {
        "per_class": metrics.get("per_class") or {},
        "matrix": [
            {
                "label": names[i] if i < len(names) else str(i),
                "cells": [
                    {"count": count, "shade": round(count / peak, 3), "diagonal": i == j}
                    for j, count in enumerate(row)
                ],
            }
            for i, row in enumerate(matrix)
        ],
        "matrix_labels": names[: len(matrix)],
        "history": metrics.get("history") or [],
        "config": json.dumps(version.config, indent=2),
        "labels": labels or [],
    }


def architectures() -> list[dict[str, Any]]:
    """The catalogue for the upload form: each family with its example config, its schema,
    and the config's form fields (named ``cfg.<family>.<key>``)."""
    fields = config_fields()
    return [
        {
            "name": arch.name,
            "description": arch.description,
            "example_config": json.dumps(arch.example_config, indent=2),
            "schema": arch.config_schema(),
            "fields": fields[arch.name],
        }
        for arch in ARCHITECTURES.values()
    ]


def architecture_choices() -> list[tuple[str, str]]:
    """The upload form's menu of families: (name, "name: description")."""
    return [(arch.name, f"{arch.name}: {arch.description}") for arch in ARCHITECTURES.values()]


@functools.cache
def config_fields() -> dict[str, list[SchemaField]]:
    """Each family's config fields, from its config schema with its example filling the
    values the schema leaves without a default. Built on first use, not at import."""
    return {
        arch.name: schema_fields(
            arch.config_schema(), prefix=f"cfg.{arch.name}.", example=arch.example_config
        )
        for arch in ARCHITECTURES.values()
    }


def playground(model: Model, version: ModelVersion) -> dict[str, Any]:
    """What the playground builds its form from: the latest version's input shape, its labels,
    and for small images the canvas size and the value range of full ink."""
    shape = list(version.input_shape)
    image = None
    if len(shape) == 3 and shape[0] == 1:
        height, width = shape[1], shape[2]
        if height is not None and width is not None and (height, width) in CANVAS_RANGES:
            image = {"height": height, "width": width, "max": CANVAS_RANGES[(height, width)]}
    return {
        "version": version.number,
        "shape": shape,
        "labels": version.labels or model.labels or [],
        "image": image,
        "task": model.task,
    }
