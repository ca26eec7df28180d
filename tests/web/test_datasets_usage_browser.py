"""The datasets and usage pages in Chromium: a malformed CSV refused with its line shown, a good
one listed and deleted, and predictions made with an API key drawn in the usage charts and
counted in their table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from aiaas.ml.weights import save_safetensors
from tests.factories import MLP_CONFIG, seeded_module, unique
from tests.web.browser import PageWatch, accessible, create_model, screenshot, sign_up, upload
from tests.web.test_datasets_usage_pages import BAD_CSV, GOOD_CSV, ROW

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


def upload_dataset(page: Page, path: Path, name: str) -> None:
    page.goto("/datasets/new")
    accessible(page)
    page.get_by_label("File (CSV or NPZ)").set_input_files(str(path))
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Upload").click()


def test_upload_a_bad_and_a_good_csv_then_delete_it(
    page: Page, watch: PageWatch, tmp_path: Path
) -> None:
    sign_up(page)
    bad, good = tmp_path / "bad.csv", tmp_path / "pets.csv"
    bad.write_bytes(BAD_CSV)
    good.write_bytes(GOOD_CSV)
    name = unique("pets")

    watch.expected_statuses.add(422)
    upload_dataset(page, bad, name)
    assert "Line 3, column 'height'" in page.get_by_role("alert").inner_text()
    problem = page.locator("tr.problem")
    assert problem.count() == 1
    assert "line 3, column height" in problem.inner_text()
    assert "'tall', which is not a number" in problem.inner_text()
    assert page.get_by_label("File (CSV or NPZ)").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Name").input_value() == name
    accessible(page)

    page.get_by_label("File (CSV or NPZ)").set_input_files(str(good))
    page.get_by_role("button", name="Upload").click()
    assert page.locator("p.flash").inner_text() == f"Dataset '{name}' uploaded: 3 rows."
    assert page.get_by_role("heading", level=1).inner_text() == name
    accessible(page)

    page.get_by_role("link", name="Datasets", exact=True).first.click()
    page.wait_for_url("**/datasets")
    row = page.locator("tbody tr", has=page.get_by_role("link", name=name))
    assert "2: cat, dog" in row.inner_text()
    accessible(page)
    screenshot(page, "datasets")

    row.get_by_role("link", name=name).click()
    page.get_by_role("link", name="Delete…").click()
    accessible(page)
    page.get_by_role("button", name="Delete the dataset").click()
    page.wait_for_url("**/datasets")
    assert page.locator("p.flash").inner_text() == f"Dataset '{name}' deleted."
    assert page.get_by_role("link", name=name).count() == 0


def test_predictions_with_a_key_show_in_the_usage_charts_and_table(
    page: Page, server: str, watch: PageWatch, tmp_path: Path
) -> None:
    sign_up(page)
    page.goto("/usage")
    assert "No predictions from" in page.locator("main").inner_text()
    accessible(page)

    name = unique("usage")
    create_model(page, name)
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(save_safetensors(seeded_module()))
    upload(page, weights, MLP_CONFIG)
    assert page.locator("p.flash").inner_text() == "Version 1 uploaded."
    page.goto("/keys")
    page.get_by_label("Name").fill("usage")
    page.get_by_label("predict", exact=True).check()
    page.get_by_role("button", name="Create the key").click()
    headers = {"Authorization": f"Bearer {page.get_by_label('The new key').input_value()}"}
    for rows in (2, 3):
        answer = httpx.post(
            f"{server}/v1/models/{name}/predict", json={"inputs": [ROW] * rows}, headers=headers
        )
        assert answer.status_code == 200, answer.text
    refused = httpx.post(
        f"{server}/v1/models/{name}/predict", json={"inputs": [[1.0]]}, headers=headers
    )
    assert refused.status_code == 422

    page.goto("/usage")
    for figure in ("predictions", "rows", "compute_s", "errors"):
        canvas = page.locator(f"canvas#chart-{figure}[data-drawn=true]")
        canvas.wait_for()
        box = canvas.bounding_box()
        assert box is not None
        assert box["width"] > 100
        assert box["height"] > 100
    total = page.locator("#usage-table tfoot tr", has=page.get_by_role("rowheader", name=name))
    cells = total.locator("td.number")
    assert cells.all_inner_texts()[:2] == ["3", "5"]
    assert float(cells.nth(2).inner_text()) > 0
    assert cells.nth(3).inner_text() == "1"
    assert page.locator("#total-predictions").inner_text() == "3"
    accessible(page)
    screenshot(page, "usage")

    watch.expected_statuses.add(422)
    page.get_by_label("From").fill("2026-03-02")
    page.get_by_label("To (included)").fill("2026-03-01")
    page.get_by_role("button", name="Show").click()
    assert page.get_by_role("alert").inner_text() == "The period ends before it starts."
    assert page.locator("canvas").count() == 0
