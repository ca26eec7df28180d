"""The playground's explanations and the upload form's generated config fields in Chromium:
a drawn digit explained as a heat map, an upload from the fields (a refused value shown beside
its field), a vector explained as bars, and a .npy file predicted."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from aiaas.ml.weights import save_safetensors
from tests.factories import seeded_module, unique, wait_until
from tests.web.browser import (
    UNLABELLED,
    PageWatch,
    create_model,
    draw_zero,
    prediction,
    sign_up,
    wait_for_demo,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


def test_a_drawn_digit_is_explained_as_a_heat_map(page: Page, server: str) -> None:
    sign_up(page)
    wait_for_demo(server, page)
    page.goto("/models/digits-cnn")
    draw_zero(page)
    explain = page.get_by_role("button", name="Explain")
    explain.focus()
    page.keyboard.press("Enter")
    assert prediction(page) == "0"
    figure = page.locator("figure#explanation")
    wait_until(
        lambda: figure.get_attribute("data-shown"), timeout=30, what="the explanation's heat map"
    )
    heat_map = page.locator("canvas#attribution-map")
    assert heat_map.is_visible()
    assert heat_map.get_attribute("data-cells") == "64"
    assert float(heat_map.get_attribute("data-peak") or 0) > 0
    assert not page.locator("#attribution-bars-box").is_visible()
    assert figure.locator("figcaption").inner_text().startswith("Why 0:")
    assert "row" in page.locator("#explanation-strongest").inner_text()


def test_upload_from_the_generated_fields_then_explain_and_send_a_npy_file(
    page: Page, watch: PageWatch, tmp_path: Path
) -> None:
    sign_up(page)
    name = unique("fields")
    create_model(page, name)
    assert page.evaluate(UNLABELLED) == []
    # The page's script shows only the picked family's settings, and drops the note meant
    # for a page without it.
    mlp, cnn = page.locator("fieldset#cfg-mlp"), page.locator("fieldset#cfg-cnn")
    assert mlp.is_visible()
    assert not cnn.is_visible()
    assert not page.locator("#config-fields-note").is_visible()
    page.get_by_label("Architecture").select_option("cnn")
    assert cnn.is_visible()
    assert not mlp.is_visible()
    page.get_by_label("Architecture").select_option("mlp")

    weights = tmp_path / "iris.safetensors"
    weights.write_bytes(save_safetensors(seeded_module()))
    mlp.get_by_label("Input Dim").fill("4")
    mlp.get_by_label("Output Dim").fill("3")
    mlp.get_by_label("Hidden").fill("8, 0")
    page.get_by_label("Weights (.safetensors)").set_input_files(str(weights))
    watch.expected_statuses.add(422)
    page.get_by_role("button", name="Upload").click()
    hidden = page.locator("fieldset#cfg-mlp").get_by_label("Hidden")
    assert hidden.get_attribute("aria-invalid") == "true"
    assert "greater than or equal to 1" in page.locator("[id='f-cfg.mlp.hidden-note']").inner_text()
    # What was typed stays; the weights are picked again.
    assert page.locator("fieldset#cfg-mlp").get_by_label("Input Dim").input_value() == "4"
    hidden.fill("8")
    page.get_by_label("Weights (.safetensors)").set_input_files(str(weights))
    page.get_by_role("button", name="Upload").click()
    assert page.locator("p.flash").inner_text() == "Version 1 uploaded."

    for i, value in enumerate(("5.1", "3.5", "1.4", "0.2")):
        page.get_by_label(f"x{i}", exact=True).fill(value)
    page.get_by_role("button", name="Explain").click()
    figure = page.locator("figure#explanation")
    wait_until(lambda: figure.get_attribute("data-shown"), timeout=30, what="the attributions")
    bars = page.locator("#attribution-bars-box")
    assert bars.is_visible()
    assert bars.get_attribute("data-bars") == "4"
    assert not page.locator("canvas#attribution-map").is_visible()

    # One row saved without a batch axis: the page adds one.
    row = tmp_path / "row.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.array([6.7, 3.0, 5.2, 2.3], dtype=np.float64))
    row.write_bytes(buffer.getvalue())
    page.get_by_label("Or a .npy file").set_input_files(str(row))
    note = page.locator("#f-npy-note")
    wait_until(lambda: "1 row," in note.inner_text(), timeout=10, what="the file read")
    with page.expect_response(lambda r: r.url.endswith("/playground")) as answered:
        page.get_by_role("button", name="Predict").click()
    response = answered.value
    assert response.status == 200
    assert response.request.headers["content-type"] == "application/x-npy"
    assert len(response.json()["predictions"]) == 1
    page.get_by_role("button", name="Use the inputs above again").click()
    assert not page.get_by_role("button", name="Use the inputs above again").is_visible()
