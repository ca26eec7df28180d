"""Feedback labels: what a kept prediction's true label may be, by the classes of the version
that made it. The rows are written directly and nothing is trained, so every rule is one quick
case here rather than a training in the API tests."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from aiaas.db import Database
from aiaas.errors import InvalidInput, NotFound
from aiaas.predictions.feedback import give_feedback
from aiaas.predictions.models import Prediction
from aiaas.registry.models import Model
from aiaas.registry.versions import feedback_classes
from tests.factories import add_model, add_prediction, add_user, add_version

IRIS = ["setosa", "versicolor", "virginica"]
ROW = [5.1, 3.5, 1.4, 0.2]
NAMED_CLASSES = "expected one of the model's classes: 'setosa', 'versicolor', 'virginica'"
INDEX_CLASSES = "expected one of the model's classes: 0, 1, 2"
REGRESSION = "a regression label is a finite number"


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    with db.session() as session:
        yield session


@pytest.fixture
def owner_id(session: Session) -> uuid.UUID:
    return add_user(session).id


def classifier(
    session: Session,
    owner_id: uuid.UUID,
    *,
    model_labels: list[str] | None = None,
    version_labels: list[str] | None = None,
    outputs: int = 3,
) -> Model:
    """A classification model with one version of ``outputs`` classes."""
    model = add_model(session, owner_id, labels=model_labels)
    config = {"input_dim": 4, "hidden": [8], "output_dim": outputs}
    add_version(session, model, config=config, labels=version_labels)
    return model


def regressor(session: Session, owner_id: uuid.UUID) -> Model:
    model = add_model(session, owner_id, task="regression")
    add_version(session, model, config={"input_dim": 4, "hidden": [8], "output_dim": 1})
    return model


def kept(session: Session, model: Model, *, rows: int = 1, version: int = 1) -> Prediction:
    """A prediction of ``model`` that kept its ``rows`` input rows."""
    return add_prediction(session, model, version=version, rows=rows, inputs=[ROW] * rows)


def refused(session: Session, job: Prediction, label: Any) -> InvalidInput:
    """The 422 the label gets; the prediction is left without feedback."""
    with pytest.raises(InvalidInput) as raised:
        give_feedback(session, job=job, label=label)
    assert job.feedback is None
    assert job.feedback_at is None
    return raised.value


def problem(error: InvalidInput) -> tuple[list[Any], str]:
    """Where the one problem of a refusal lies, and what it says."""
    assert error.errors is not None
    (only,) = error.errors
    return only["loc"], only["msg"]


# ---- classification ---------------------------------------------------------------------


@pytest.mark.parametrize("label", IRIS)
def test_a_named_class_is_taken_by_its_name(
    session: Session, owner_id: uuid.UUID, label: str
) -> None:
    job = kept(session, classifier(session, owner_id, model_labels=IRIS))

    given = give_feedback(session, job=job, label=label)

    assert given.feedback == [label]
    assert given.feedback_at is not None


@pytest.mark.parametrize("label", [0, 1.0, True, "Setosa", "setosa ", "0", None])
def test_a_named_class_is_not_taken_by_index_case_or_type(
    session: Session, owner_id: uuid.UUID, label: Any
) -> None:
    job = kept(session, classifier(session, owner_id, model_labels=IRIS))

    error = refused(session, job, label)

    assert problem(error) == (["body", "label"], NAMED_CLASSES)


@pytest.mark.parametrize("label", [0, 1, 2])
def test_unnamed_classes_are_taken_by_index(
    session: Session, owner_id: uuid.UUID, label: int
) -> None:
    job = kept(session, classifier(session, owner_id))

    assert give_feedback(session, job=job, label=label).feedback == [label]


@pytest.mark.parametrize("label", [3, -1, 1.0, True, False, "1", "setosa", None])
def test_an_index_is_a_whole_number_in_range_and_nothing_else(
    session: Session, owner_id: uuid.UUID, label: Any
) -> None:
    # True == 1 and 1.0 == 1 in Python: neither may pass for the class 1.
    job = kept(session, classifier(session, owner_id))

    assert problem(refused(session, job, label)) == (["body", "label"], INDEX_CLASSES)


def test_a_long_list_of_classes_is_cut_short_in_the_message(
    session: Session, owner_id: uuid.UUID
) -> None:
    job = kept(session, classifier(session, owner_id, outputs=20))

    _, message = problem(refused(session, job, 20))

    shown = ", ".join(str(i) for i in range(12))
    assert message == f"expected one of the model's classes: {shown}, ..."


# ---- regression ---------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "stored"), [(2, 2.0), (-0.5, -0.5), (0, 0.0), (1e30, 1e30)])
def test_a_regression_label_is_any_finite_number_stored_as_a_float(
    session: Session, owner_id: uuid.UUID, label: float, stored: float
) -> None:
    job = kept(session, regressor(session, owner_id))

    (value,) = give_feedback(session, job=job, label=label).feedback or []

    assert value == stored
    assert type(value) is float


@pytest.mark.parametrize(
    "label", [math.nan, math.inf, -math.inf, True, False, "1.5", None, {"value": 1.0}]
)
def test_a_regression_label_that_is_not_a_finite_number_is_refused(
    session: Session, owner_id: uuid.UUID, label: Any
) -> None:
    job = kept(session, regressor(session, owner_id))

    assert problem(refused(session, job, label)) == (["body", "label"], REGRESSION)


# ---- one label per input row --------------------------------------------------------------


def test_a_prediction_of_several_rows_takes_one_label_per_row(
    session: Session, owner_id: uuid.UUID
) -> None:
    job = kept(session, classifier(session, owner_id, model_labels=IRIS), rows=3)

    given = give_feedback(session, job=job, label=["virginica", "setosa", "setosa"])

    assert given.feedback == ["virginica", "setosa", "setosa"]


@pytest.mark.parametrize("labels", [["setosa"], ["setosa"] * 4, []])
def test_a_list_of_the_wrong_length_is_refused(
    session: Session, owner_id: uuid.UUID, labels: list[str]
) -> None:
    job = kept(session, classifier(session, owner_id, model_labels=IRIS), rows=3)

    loc, message = problem(refused(session, job, labels))

    assert loc == ["body", "label"]
    assert message == f"expected 3 labels, one per input row, got {len(labels)}"


def test_a_single_label_for_several_rows_is_refused(session: Session, owner_id: uuid.UUID) -> None:
    job = kept(session, classifier(session, owner_id, model_labels=IRIS), rows=3)

    loc, message = problem(refused(session, job, "setosa"))

    assert loc == ["body", "label"]
    assert message == "this prediction has 3 input rows: send a list of labels"


def test_a_bad_label_in_a_list_is_located_by_its_row(session: Session, owner_id: uuid.UUID) -> None:
    job = kept(session, regressor(session, owner_id), rows=3)

    assert problem(refused(session, job, [1.0, math.nan, 2.0])) == (
        ["body", "label", 1],
        REGRESSION,
    )


def test_a_one_row_prediction_takes_a_label_or_a_list_of_one(
    session: Session, owner_id: uuid.UUID
) -> None:
    model = regressor(session, owner_id)

    assert give_feedback(session, job=kept(session, model), label=1.5).feedback == [1.5]
    assert give_feedback(session, job=kept(session, model), label=[1.5]).feedback == [1.5]
    assert problem(refused(session, kept(session, model), [1.5, 2.5]))[1] == (
        "expected 1 labels, one per input row, got 2"
    )


# ---- the classes of the version that made the prediction ----------------------------------


def test_the_classes_are_those_of_the_version_that_predicted(
    session: Session, owner_id: uuid.UUID
) -> None:
    # Registered without labels; version 1 was trained on named classes, version 2 uploaded
    # without any: each version's predictions take that version's classes.
    model = add_model(session, owner_id)
    add_version(session, model, number=1, labels=IRIS)
    add_version(session, model, number=2)
    by_first, by_second = kept(session, model, version=1), kept(session, model, version=2)

    assert feedback_classes(session, model, 1) == IRIS
    assert feedback_classes(session, model, 2) == [0, 1, 2]
    assert give_feedback(session, job=by_first, label="virginica").feedback == ["virginica"]
    assert give_feedback(session, job=by_second, label=2).feedback == [2]
    assert problem(refused(session, kept(session, model, version=1), 2))[1] == NAMED_CLASSES
    assert problem(refused(session, kept(session, model, version=2), "a"))[1] == INDEX_CLASSES


def test_a_versions_labels_come_before_the_models(session: Session, owner_id: uuid.UUID) -> None:
    model = classifier(session, owner_id, model_labels=["a", "b", "c"], version_labels=IRIS)

    assert feedback_classes(session, model, 1) == IRIS
    assert problem(refused(session, kept(session, model), "a"))[1] == NAMED_CLASSES


def test_a_version_without_labels_takes_the_models(session: Session, owner_id: uuid.UUID) -> None:
    model = classifier(session, owner_id, model_labels=IRIS)

    assert feedback_classes(session, model, 1) == IRIS


def test_without_a_version_the_latest_one_counts(session: Session, owner_id: uuid.UUID) -> None:
    model = add_model(session, owner_id)
    add_version(session, model, number=1, labels=IRIS)
    add_version(session, model, number=2, config={"input_dim": 4, "output_dim": 2})

    assert feedback_classes(session, model) == [0, 1]
    assert feedback_classes(session, model, 1) == IRIS


def test_a_deleted_version_leaves_the_models_labels_or_nothing(
    session: Session, owner_id: uuid.UUID
) -> None:
    named = classifier(session, owner_id, model_labels=IRIS)
    unnamed = classifier(session, owner_id)

    assert feedback_classes(session, named, 7) == IRIS
    assert feedback_classes(session, unnamed, 7) == []
    assert problem(refused(session, kept(session, unnamed, version=7), 0))[1] == (
        "expected one of the model's classes: "
    )


def test_a_regression_model_has_no_classes(session: Session, owner_id: uuid.UUID) -> None:
    assert feedback_classes(session, regressor(session, owner_id), 1) is None


# ---- what the label is given to -----------------------------------------------------------


def test_a_prediction_that_kept_no_inputs_takes_no_label(
    session: Session, owner_id: uuid.UUID
) -> None:
    model = classifier(session, owner_id, model_labels=IRIS)
    forgotten = add_prediction(session, model)

    error = refused(session, forgotten, "setosa")

    assert error.detail == "This prediction kept no inputs to learn from."
    assert error.errors is None


def test_inputs_kept_in_the_artifact_store_count_as_kept(
    session: Session, owner_id: uuid.UUID
) -> None:
    model = classifier(session, owner_id, model_labels=IRIS)
    stored = add_prediction(session, model, inputs_sha256="1" * 64)

    assert give_feedback(session, job=stored, label="setosa").feedback == ["setosa"]


def test_the_prediction_of_a_deleted_model_takes_no_label(
    session: Session, owner_id: uuid.UUID
) -> None:
    model = classifier(session, owner_id, model_labels=IRIS)
    job = kept(session, model)
    session.delete(model)
    session.flush()

    with pytest.raises(NotFound):
        give_feedback(session, job=job, label="setosa")
