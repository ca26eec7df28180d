"""Dataset uploads over HTTP: a good one round-trips; every bad one gets its 4xx problem and
leaves no row and no blob behind."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aiaas.config import Settings
from aiaas.datasets.models import Dataset
from aiaas.db import Database
from tests.factories import Account, upload_dataset
from tests.helpers import assert_problem

GOOD_CSV = b"a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n"


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def blobs(settings: Settings) -> list[Path]:
    root = Path(settings.resolved_artifacts_url)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def rows(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Dataset)) or 0)


Upload = Callable[..., Any]


@pytest.fixture
def upload(client: TestClient, account: Account) -> Upload:
    def send(
        data: bytes, filename: str = "data.csv", task: str = "classification", **fields: str
    ) -> Any:
        return upload_dataset(client, account, data, filename=filename, task=task, **fields)

    return send


def test_csv_upload_round_trip(client: TestClient, account: Account, upload: Upload) -> None:
    created = upload(GOOD_CSV)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["source"] == "upload"
    assert body["rows"] == 4
    assert body["input_shape"] == [2]
    assert body["classes"] == ["cat", "dog"]
    assert body["task"] == "classification"
    read = client.get(f"/v1/datasets/{body['id']}", headers=account.headers)
    assert read.json()["id"] == body["id"]
    listed = [d["id"] for d in client.get("/v1/datasets", headers=account.headers).json()["data"]]
    assert body["id"] in listed
    assert "builtin:iris" in listed
    deleted = client.delete(f"/v1/datasets/{body['id']}", headers=account.headers)
    assert deleted.status_code == 204
    assert_problem(client.get(f"/v1/datasets/{body['id']}", headers=account.headers), 404)


def test_npz_upload_with_input_shape(upload: Upload) -> None:
    x = np.random.default_rng(0).random((6, 64)).astype(np.float32)
    created = upload(npz(X=x, y=np.array([0, 1, 2, 0, 1, 2])), "d.npz", input_shape="[1, 8, 8]")
    assert created.status_code == 201, created.text
    assert created.json()["input_shape"] == [1, 8, 8]
    assert created.json()["classes"] == [0, 1, 2]


def test_another_accounts_dataset_is_not_found(
    client: TestClient, upload: Upload, make_account: Callable[..., Account]
) -> None:
    created = upload(GOOD_CSV).json()
    other = make_account()
    assert_problem(client.get(f"/v1/datasets/{created['id']}", headers=other.headers), 404)
    assert_problem(client.delete(f"/v1/datasets/{created['id']}", headers=other.headers), 404)
    listed = [d["id"] for d in client.get("/v1/datasets", headers=other.headers).json()["data"]]
    assert created["id"] not in listed


BAD_UPLOADS: list[tuple[str, bytes, str, dict[str, str], int, str]] = [
    ("ragged row", b"a,b,label\n1,2,x\n3,y\n", "d.csv", {}, 422, "line 3"),
    ("text cell", b"a,b,label\n1,2,x\n3,hello,y\n", "d.csv", {}, 422, "column 'b'"),
    ("NaN", b"a,b,label\n1,nan,x\n3,4,y\n", "d.csv", {}, 422, "column 'b'"),
    ("Inf", b"a,b,label\n1,2,x\n3,inf,y\n", "d.csv", {}, 422, "column 'b'"),
    ("empty file", b"", "d.csv", {}, 422, ""),
    ("header only", b"a,b,label\n", "d.csv", {}, 422, ""),
    ("no label column", b"a,b,c\n1,2,3\n4,5,6\n", "d.csv", {}, 422, "label"),
    ("named label column missing", GOOD_CSV, "d.csv", {"label_column": "kind"}, 422, "kind"),
    ("bad input_shape", GOOD_CSV, "d.csv", {"input_shape": "[3]"}, 422, ""),
    ("input_shape not json", GOOD_CSV, "d.csv", {"input_shape": "1x8x8"}, 422, ""),
    ("regression label text", GOOD_CSV, "d.csv", {"task": "regression"}, 422, ""),
    ("one class", b"a,label\n1,x\n2,x\n", "d.csv", {}, 422, ""),
    (
        "X/y lengths",
        npz(X=np.zeros((5, 2), np.float32), y=np.zeros(4, np.int64)),
        "d.npz",
        {},
        422,
        "",
    ),
    (
        "object arrays",
        npz(X=np.array([[1, "a"]], dtype=object), y=np.zeros(1)),
        "d.npz",
        {},
        422,
        "",
    ),
    (
        "NaN in X",
        npz(X=np.array([[1.0, np.nan], [2.0, 3.0]], np.float32), y=np.array([0, 1])),
        "d.npz",
        {},
        422,
        "",
    ),
    ("missing y", npz(X=np.zeros((2, 2), np.float32)), "d.npz", {}, 422, "y"),
    ("not a table", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "d.png", {}, 415, ""),
]


@pytest.mark.parametrize(
    ("data", "filename", "fields", "status", "names"),
    [case[1:] for case in BAD_UPLOADS],
    ids=[case[0] for case in BAD_UPLOADS],
)
def test_bad_uploads_leave_nothing_behind(
    upload: Upload,
    db: Database,
    settings: Settings,
    data: bytes,
    filename: str,
    fields: dict[str, str],
    status: int,
    names: str,
) -> None:
    before_rows, before_blobs = rows(db), blobs(settings)
    problem = assert_problem(upload(data, filename, **fields), status)
    assert names.lower() in problem["detail"].lower(), problem
    assert rows(db) == before_rows
    assert blobs(settings) == before_blobs


def test_upload_over_the_limit_is_413(
    client: TestClient, account: Account, settings: Settings, db: Database
) -> None:
    from aiaas.main import create_app

    small = settings.model_copy(update={"max_upload_mb": 0.001})
    with TestClient(create_app(small, database=db)) as limited:
        body = b"a,label\n" + b"1,x\n2,y\n" * 1000
        response = upload_dataset(
            limited, account, body, filename="big.csv", content_type="text/csv", name="big"
        )
    assert_problem(response, 413)
    assert rows(db) == 0
