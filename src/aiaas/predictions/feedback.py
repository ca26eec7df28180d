"""Feedback: the true label of a kept prediction's inputs, which makes them training rows.

The rows belong to the account that made the prediction: they form its ``feedback:<model>``
dataset and nobody else's, the model's owner included.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from aiaas.db import utcnow
from aiaas.errors import InvalidInput, NotFound, invalid
from aiaas.predictions.models import Prediction
from aiaas.registry.models import Model
from aiaas.registry.versions import feedback_classes


def _problem(msg: str, *loc: str | int) -> InvalidInput:
    return invalid(msg, "body", "label", *loc)


def _check_label(value: Any, classes: list[Any] | None, *loc: int) -> Any:
    if classes is None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _problem("a regression label is a finite number", *loc)
        return float(value)
    for known in classes:
        # Names are matched as given; indices as integers (not 1.0, not "1", not true).
        if isinstance(known, str) and value == known:
            return known
        if isinstance(known, int) and type(value) is int and value == known:
            return known
    shown = ", ".join(repr(c) for c in classes[:12]) + (", ..." if len(classes) > 12 else "")
    raise _problem(f"expected one of the model's classes: {shown}", *loc)


def give_feedback(session: Session, *, job: Prediction, label: Any) -> Prediction:
    model = session.get(Model, job.model_id)
    if model is None:
        raise NotFound("The model of this prediction was deleted.")
    if job.inputs is None and job.inputs_sha256 is None:
        raise InvalidInput("This prediction kept no inputs to learn from.")
    classes = feedback_classes(session, model, job.version)
    if isinstance(label, list):
        if len(label) != job.input_rows:
            raise _problem(f"expected {job.input_rows} labels, one per input row, got {len(label)}")
        labels = [_check_label(v, classes, i) for i, v in enumerate(label)]
    elif job.input_rows == 1:
        labels = [_check_label(label, classes)]
    else:
        raise _problem(f"this prediction has {job.input_rows} input rows: send a list of labels")
    job.feedback = labels
    job.feedback_at = utcnow()
    session.commit()
    return job
