"""``GET /v1/models/{name}/aliases/{alias}/compare``: how the versions of a roll-out fare.

Live figures (requests, errors, latency, a shadow's agreement) come from this gateway's
:class:`~aiaas.predictions.rollouts.RolloutStats`; accuracy from the feedback clients sent on
predictions made since the alias was set, read from the database.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from aiaas.errors import NotFound
from aiaas.predictions.models import Prediction
from aiaas.predictions.rollouts import RolloutStats
from aiaas.registry import versions
from aiaas.registry.models import Model, ModelAlias
from aiaas.registry.schemas import alias_problem

# The newest predictions with feedback read per comparison: a bound on the query's cost.
FEEDBACK_ROWS = 10_000


def _feedback_figures(
    session: Session, model: Model, alias: ModelAlias
) -> dict[int, dict[str, float]]:
    """Per version, the rows with feedback since the alias was set and how the predictions
    fared on them: ``accuracy`` for a classifier, ``mean_abs_error`` for a regressor."""
    rows = session.execute(
        select(Prediction.version, Prediction.predictions, Prediction.feedback)
        .where(
            Prediction.model_id == model.id,
            Prediction.feedback_at.is_not(None),
            Prediction.created_at >= alias.updated_at,
        )
        .order_by(Prediction.created_at.desc())
        .limit(FEEDBACK_ROWS)
    )
    classifier = model.task == "classification"
    counted: dict[int, list[float]] = {}
    for version, predicted, truth in rows:
        if not predicted or not truth:
            continue
        pair = counted.setdefault(version, [0, 0.0])
        for guess, label in zip(predicted, truth, strict=False):
            pair[0] += 1
            if classifier:
                # Labels may come back as names or as class indices: compared as text.
                pair[1] += str(guess) == str(label)
            else:
                error = np.abs(np.asarray(guess, np.float64) - np.asarray(label, np.float64))
                pair[1] += float(error.mean())
    name = "accuracy" if classifier else "mean_abs_error"
    return {v: {"rows": n, name: total / n} for v, (n, total) in counted.items() if n}


def compare(session: Session, *, model: Model, alias: str, stats: RolloutStats) -> dict[str, Any]:
    row = None if alias_problem(alias) else session.get(ModelAlias, (model.id, alias))
    if row is None:
        raise NotFound(f"Model '{model.name}' has no alias '{alias}'.")
    split = versions.split_numbers(session, row) or {str(row.version.number): 100}
    shadow = row.shadow.number if row.shadow is not None else None
    live = stats.report(model.id, alias, row.updated_at)
    feedback = _feedback_figures(session, model, row)
    served = [int(v) for v in split]
    entries = []
    for number in served + ([shadow] if shadow is not None else []):
        figures = live.get(number) or {}
        role = (
            "shadow"
            if number == shadow
            else ("primary" if number == row.version.number else "canary")
        )
        entries.append(
            {
                "version": number,
                "role": role,
                "weight": split.get(str(number), 0),
                "requests": figures.get("requests", 0) + figures.get("shadow_requests", 0),
                "errors": figures.get("errors", 0) + figures.get("shadow_errors", 0),
                "latency_p50_ms": figures.get("latency_p50_ms"),
                "latency_p99_ms": figures.get("latency_p99_ms"),
                "agreement": figures.get("agreement") if number == shadow else None,
                "mean_abs_difference": (
                    figures.get("mean_abs_difference") if number == shadow else None
                ),
                "compared_rows": figures.get("compared_rows", 0),
                "feedback": feedback.get(number),
            }
        )
    return {
        "model": model.name,
        "alias": alias,
        "since": row.updated_at,
        "primary": row.version.number,
        "shadow": shadow,
        "versions": entries,
    }
