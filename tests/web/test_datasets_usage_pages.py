"""The datasets and usage pages through the ASGI app: uploads refused with the line and column
at fault and nothing stored, deletes behind a confirmation, and a usage page whose numbers are
what the account did. (tests/web/test_datasets_usage_browser.py does the same in Chromium.)"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.main import create_app
from tests.factories import Account, publish, register, upload_dataset
from tests.security.test_quotas import set_quotas
from tests.web.conftest import csrf_of, sign_in

GOOD_CSV = b"width,height,label\n1.5,2,cat\n3,4.25,dog\n5,6,cat\n"
# Line 3 (the header is line 1) holds a word where a number belongs.
BAD_CSV = b"width,height,label\n1.5,2,cat\n3,tall,dog\n5,6,cat\n"
ROW = [5.1, 3.5, 1.4, 0.2]


def uploads(client: TestClient, account: Account) -> list[dict[str, Any]]:
    listed = client.get("/v1/datasets", headers=account.headers)
    assert listed.status_code == 200, listed.text
    return [d for d in listed.json()["data"] if d["source"] == "upload"]


def post_upload(
    client: TestClient,
    token: str,
    data: bytes | None,
    *,
    filename: str = "pets.csv",
    content_type: str = "text/csv",
    **fields: str,
) -> Any:
    form = {"csrf_token": token, "name": "pets", "task": "classification", **fields}
    files = {"file": (filename, data, content_type)} if data is not None else None
    return client.post("/datasets/new", data=form, files=files, follow_redirects=False)


def test_a_bad_csv_shows_its_line_and_column_and_stores_nothing(
    client: TestClient, account: Account
) -> None:
    token = csrf_of(client, "/datasets/new")
    refused = post_upload(client, token, BAD_CSV)
    assert refused.status_code == 422
    problems = re.findall(r'<tr class="problem">(.*?)</tr>', refused.text, re.S)
    assert len(problems) == 1
    assert "line 3, column height" in problems[0]
    assert "tall" in problems[0]
    assert "not a number" in problems[0]
    assert 'aria-invalid="true"' in refused.text
    assert 'value="pets"' in refused.text  # the form keeps what was typed
    assert uploads(client, account) == []

    not_csv = post_upload(
        client, token, b'{"x": 1}', filename="pets.json", content_type="application/json"
    )
    assert not_csv.status_code == 415
    assert "upload a CSV file" in not_csv.text
    no_label = post_upload(client, token, GOOD_CSV, label_column="kind")
    assert no_label.status_code == 422
    assert "no &#39;kind&#39; column" in no_label.text or "no 'kind' column" in no_label.text
    nothing = post_upload(client, token, None, name=" ", input_shape="eight")
    assert nothing.status_code == 422
    assert "Please check: Name, Input shape, File." in nothing.text
    assert "No file was chosen: pick a CSV or NPZ file" in nothing.text
    wrong_shape = post_upload(client, token, GOOD_CSV, input_shape="3, 3")
    assert wrong_shape.status_code == 422
    assert uploads(client, account) == []

    forged = client.post(
        "/datasets/new",
        data={"name": "pets", "task": "classification"},
        files={"file": ("pets.csv", GOOD_CSV, "text/csv")},
    )
    assert forged.status_code == 403
    assert uploads(client, account) == []


def test_a_good_csv_is_listed_and_described(client: TestClient, account: Account) -> None:
    token = csrf_of(client, "/datasets/new")
    made = post_upload(client, token, GOOD_CSV, name="pets, spring")
    assert made.status_code == 303, made.text
    (stored,) = uploads(client, account)
    assert made.headers["location"] == f"/datasets/{stored['id']}"
    assert stored["rows"] == 3
    assert stored["classes"] == ["cat", "dog"]
    assert stored["input_shape"] == [2]

    page = client.get(made.headers["location"]).text
    assert "Dataset &#39;pets, spring&#39; uploaded: 3 rows." in page
    assert page.count("<h1>") == 1
    assert "<h1>pets, spring</h1>" in page
    assert f"<code>{stored['id']}</code>" in page

    listing = client.get("/datasets").text
    row = re.search(rf'<tr>\s*<td><a href="/datasets/{stored["id"]}">(.*?)</tr>', listing, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    assert [re.sub(r"<[^>]+>", "", c).strip() for c in cells[1:5]] == [
        "classification",
        "3",
        "2",
        "2: cat, dog",
    ]
    assert "Bytes" in cells[5] or "KiB" in cells[5]
    assert 'href="/datasets/builtin:iris"' in listing
    assert client.get("/datasets/builtin:iris").status_code == 200


def test_an_upload_past_a_limit_is_refused_and_stores_nothing(
    client: TestClient, account: Account, db: Database, settings: Settings
) -> None:
    set_quotas(db, account, stored_bytes=len(GOOD_CSV) - 1)
    token = csrf_of(client, "/datasets/new")
    over_quota = post_upload(client, token, GOOD_CSV)
    assert over_quota.status_code == 403
    assert "more would pass your account&#39;s limit" in over_quota.text
    assert uploads(client, account) == []

    # 0.0001 MB: 104 bytes, less than the file and the form around it.
    small = settings.model_copy(update={"max_upload_mb": 0.0001})
    with TestClient(create_app(small, database=db), raise_server_exceptions=False) as limited:
        sign_in(limited, account)
        token = csrf_of(limited, "/datasets/new")
        too_large = post_upload(limited, token, GOOD_CSV * 3)
    assert too_large.status_code == 413
    assert "over the limit of 104 bytes" in too_large.text
    assert uploads(client, account) == []


def test_delete_asks_first_and_refuses_what_cannot_go(client: TestClient, account: Account) -> None:
    made = upload_dataset(client, account, GOOD_CSV, name="to go", content_type="text/csv")
    assert made.status_code == 201, made.text
    dataset_id = made.json()["id"]
    confirm = client.get(f"/datasets/{dataset_id}/delete")
    assert confirm.status_code == 200
    assert "<h1>Delete to go?</h1>" in confirm.text
    token = csrf_of(client, f"/datasets/{dataset_id}/delete")
    assert client.post(f"/datasets/{dataset_id}/delete").status_code == 403
    assert len(uploads(client, account)) == 1

    gone = client.post(
        f"/datasets/{dataset_id}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert gone.status_code == 303
    assert gone.headers["location"] == "/datasets"
    assert "Dataset &#39;to go&#39; deleted." in client.get("/datasets").text
    assert uploads(client, account) == []
    assert client.get(f"/datasets/{dataset_id}").status_code == 404

    assert client.get("/datasets/builtin:iris/delete").status_code == 403
    refused = client.post("/datasets/builtin:iris/delete", data={"csrf_token": token})
    assert refused.status_code == 403

    other = register(client)
    theirs = upload_dataset(client, other, GOOD_CSV, content_type="text/csv").json()["id"]
    assert client.get(f"/datasets/{theirs}").status_code == 404
    kept = client.post(f"/datasets/{theirs}/delete", data={"csrf_token": token})
    assert kept.status_code == 404
    assert len(uploads(client, other)) == 1


def numbers(page: str, model: str) -> dict[str, str]:
    """The usage table's totals row of ``model``: each figure's text by its name."""
    row = re.search(
        rf'<tr class="total"><td>All days</td><th scope="row">{model}</th>(.*?)</tr>', page, re.S
    )
    assert row is not None, f"no totals row for {model}"
    return dict(re.findall(r'data-figure="(\w+)">([^<]*)<', row.group(1)))


def chart_data(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="usage-data">(.*?)</script>', page)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_usage_shows_what_the_account_did(client: TestClient, account: Account) -> None:
    empty = client.get("/usage")
    assert empty.status_code == 200
    assert "No predictions from" in empty.text
    assert 'id="usage-data"' not in empty.text
    today = datetime.now(UTC).date()
    assert f'value="{(today - timedelta(days=29)).isoformat()}"' in empty.text
    assert f'value="{today.isoformat()}"' in empty.text

    name = publish(client, account).name
    for rows in (1, 2, 3):
        answer = client.post(
            f"/v1/models/{name}/predict", json={"inputs": [ROW] * rows}, headers=account.headers
        )
        assert answer.status_code == 200, answer.text
    wrong = client.post(
        f"/v1/models/{name}/predict", json={"inputs": [[1.0]]}, headers=account.headers
    )
    assert wrong.status_code == 422
    assert upload_dataset(client, account, GOOD_CSV, content_type="text/csv").status_code == 201

    page = client.get("/usage").text
    api = client.get("/v1/usage", headers=account.headers).json()
    (usage,) = api["models"]
    shown = numbers(page, name)
    assert shown == {
        "predictions": "4",
        "rows": "6",
        "compute_s": f"{usage['totals']['compute_s']:.3f}",
        "errors": "1",
    }
    assert float(shown["compute_s"]) > 0
    assert '<dd id="total-predictions">4</dd>' in page

    chart = chart_data(page)
    assert len(chart["days"]) == 30
    assert chart["days"][-1] == today.isoformat()
    (series,) = chart["models"]
    assert series["model"] == name
    assert series["predictions"][-1] == 4
    assert sum(series["predictions"]) == 4
    assert sum(series["rows"]) == 6
    assert sum(series["errors"]) == 1
    assert '<canvas id="chart-predictions"' in page
    assert "/static/js/usage.js" in page

    stored = api["stored_bytes"]
    assert stored["weights"] > 0
    assert stored["datasets"] > 0
    assert f'<td class="number">{stored["total"]:,}</td>' in page
    assert "No trainings from" in page

    # A period that ends yesterday holds none of it.
    yesterday = (today - timedelta(days=1)).isoformat()
    before = client.get("/usage", params={"from": "2020-01-01", "to": yesterday}).text
    assert name not in before


def test_a_bad_period_is_refused_with_a_message(client: TestClient, account: Account) -> None:
    not_dates = client.get("/usage", params={"from": "last week", "to": "2026-02-30"})
    assert not_dates.status_code == 422
    assert "Please give the period as two dates." in not_dates.text
    assert not_dates.text.count('aria-invalid="true"') == 2
    assert 'value="last week"' in not_dates.text

    backwards = client.get("/usage", params={"from": "2026-03-02", "to": "2026-03-01"})
    assert backwards.status_code == 422
    assert "The period ends before it starts." in backwards.text

    too_long = client.get("/usage", params={"from": "2024-01-01", "to": "2026-01-01"})
    assert too_long.status_code == 422
    assert "The period is too long" in too_long.text
    assert 'id="usage-data"' not in too_long.text
