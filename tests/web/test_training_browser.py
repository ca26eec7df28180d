"""A training in Chromium: started from the form on the built-in iris set, followed live until
the progress bar is full and the loss curve has grown epoch by epoch, then its version's
confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.factories import unique
from tests.web.browser import accessible, screenshot, sign_up

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow
EPOCHS = 120

# Each drawn point count the chart goes through, recorded in the page as it happens.
RECORD_GROWTH = """() => {
  window.pointCounts = [];
  const canvas = document.getElementById("live-loss-chart");
  new MutationObserver(() => window.pointCounts.push(Number(canvas.dataset.points)))
    .observe(canvas, { attributes: true, attributeFilter: ["data-points"] });
}"""


def test_an_iris_training_is_watched_to_the_end(page: Page) -> None:
    sign_up(page)
    page.goto("/trainings/new")
    accessible(page)
    model = unique("web-iris")
    page.get_by_label("Model", exact=True).fill(model)
    page.get_by_label("Dataset").select_option("builtin:iris")
    page.get_by_label("Architecture (new network)").select_option("mlp")
    page.get_by_label("Epochs").fill(str(EPOCHS))
    page.get_by_label("Batch Size").fill("16")
    page.get_by_role("button", name="Start the training").click()
    page.wait_for_url("**/trainings/*")
    page.evaluate(RECORD_GROWTH)

    page.wait_for_function(
        "() => document.getElementById('training-status').textContent === 'succeeded'",
        timeout=120_000,
    )
    assert page.locator("#training-progress").evaluate("(bar) => bar.value") == 1
    assert page.locator("#training-percent").inner_text() == "100 %"
    assert page.locator("#training-epoch").inner_text() == f"{EPOCHS} of {EPOCHS}"
    counts: list[int] = page.evaluate("() => window.pointCounts")
    assert counts[-1] == EPOCHS
    assert counts == sorted(counts)
    # Grown while the page watched, not drawn at once from a finished history.
    assert len(set(counts)) > 3, counts
    assert page.locator("#cancel-form").count() == 0
    screenshot(page, "training")

    page.locator("#training-version a").click()
    page.wait_for_url(f"**/models/{model}/versions/1")
    matrix = page.locator("#confusion-matrix")
    assert matrix.locator("tbody tr").count() == 3
    assert page.get_by_role("row", name="accuracy").is_visible()

    page.goto("/trainings")
    assert page.get_by_role("link", name=model).is_visible()
