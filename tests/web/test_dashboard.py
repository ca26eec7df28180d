"""The dashboard in Chromium, as a person uses it: sign up and in, models and their weights,
aliases, API keys, the playground, and the accessibility basics of every page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from aiaas.ml.weights import save_safetensors
from tests.factories import MLP_CONFIG, PASSWORD, seeded_module, unique
from tests.web.browser import (
    PageWatch,
    accessible,
    create_model,
    draw_zero,
    prediction,
    screenshot,
    sign_up,
    upload,
    wait_for_demo,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


def test_a_visitor_signs_up_signs_out_and_signs_in(page: Page, watch: PageWatch) -> None:
    page.goto("/")
    page.wait_for_url("**/login")
    screenshot(page, "sign-in")
    email = sign_up(page)
    assert page.get_by_role("heading", level=1).inner_text() == "Models"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.goto("/keys")
    page.wait_for_url("**/login?next=%2Fkeys")

    watch.expected_statuses.add(401)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Email or password is wrong."
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/keys")


def test_cookies_do_not_open_the_api(page: Page, server: str) -> None:
    sign_up(page)
    assert page.request.get("/v1/me").status == 401
    assert page.request.get("/v1/models").status == 401
    assert page.request.get("/v2/models/digits-cnn").status == 401


def test_a_form_posted_without_the_csrf_token_is_refused(page: Page, watch: PageWatch) -> None:
    sign_up(page)
    refused = page.request.post("/keys", form={"name": "forged", "scopes": "predict"})
    assert refused.status == 403
    assert "security token" in refused.text()
    # The same form with its token goes through.
    page.goto("/keys")
    page.get_by_label("Name").fill("real")
    page.get_by_label("predict").check()
    page.get_by_role("button", name="Create the key").click()
    assert page.locator("tbody tr").count() == 1


def test_models_upload_weights_see_tensor_errors_and_move_production(
    page: Page, watch: PageWatch, tmp_path: Path
) -> None:
    sign_up(page)
    name = unique("iris")
    create_model(page, name)

    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(save_safetensors(seeded_module(config={**MLP_CONFIG, "hidden": [16]})))
    watch.expected_statuses.add(422)
    upload(page, wrong, MLP_CONFIG)
    problems = page.locator("tr.problem")
    assert problems.count() >= 2
    found = page.locator(".problems").inner_text()
    assert "linears.0.weight" in found
    assert "[8, 4]" in found
    assert "[16, 4]" in found
    screenshot(page, "upload-error")

    right = tmp_path / "right.safetensors"
    for seed in (1, 2):
        right.write_bytes(save_safetensors(seeded_module(seed=seed)))
        upload(page, right, MLP_CONFIG)
        assert page.locator("p.flash").inner_text() == f"Version {seed} uploaded."

    page.get_by_role("button", name="Make v1 production").click()
    assert "'production' now points at version 1" in page.locator("p.flash").inner_text()
    page.get_by_role("button", name="Make v2 production").click()
    row = page.locator("tbody tr", has=page.get_by_role("link", name="v2", exact=True))
    assert "production" in row.inner_text()
    assert page.get_by_role("button", name="Make v1 production").is_visible()

    page.goto(f"/models?q={name[-6:]}")
    assert page.get_by_role("link", name=name).is_visible()
    assert "production → v2" in page.locator("tbody").inner_text()
    screenshot(page, "models")

    page.goto(f"/models/{name}")
    page.get_by_role("link", name="Delete…").click()
    page.get_by_label("Type the model's name to confirm").fill("not it")
    page.get_by_role("button", name="Delete the model").click()
    assert "Type the model's name" in page.get_by_role("alert").inner_text()
    page.get_by_label("Type the model's name to confirm").fill(name)
    page.get_by_role("button", name="Delete the model").click()
    page.wait_for_url("**/models")
    assert f"Model '{name}' deleted." in page.locator("p.flash").inner_text()


def test_keys_are_shown_once_work_and_can_be_revoked(page: Page, server: str) -> None:
    sign_up(page)
    page.goto("/keys")
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("models:read").check()
    page.get_by_role("button", name="Create the key").click()
    secret = page.get_by_label("The new key").input_value()
    assert secret.startswith("aiaas_sk_")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    screenshot(page, "keys")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{server}/v1/me", headers=headers).status_code == 200

    page.goto("/keys")
    assert secret not in page.content()
    page.get_by_role("button", name="Revoke laptop").click()
    assert "revoked" in page.locator("p.flash").inner_text()
    assert httpx.get(f"{server}/v1/me", headers=headers).status_code == 401


def test_the_playground_recognises_a_drawn_zero(page: Page, server: str) -> None:
    sign_up(page)
    wait_for_demo(server, page)
    page.goto("/models/digits-cnn")
    draw_zero(page)
    page.get_by_role("button", name="Predict").click()
    assert prediction(page) == "0"
    screenshot(page, "playground")


def test_the_playground_works_with_the_keyboard(page: Page, server: str) -> None:
    sign_up(page)
    wait_for_demo(server, page)
    page.goto("/models/digits-cnn")
    canvas = page.locator("canvas#draw")
    canvas.focus()
    # The pen starts in the middle (4, 4): go to the top-left of a ring and ink around it.
    for key in ["ArrowUp"] * 3 + ["ArrowLeft"] * 2:
        page.keyboard.press(key)
    ring = ["ArrowRight"] * 3 + ["ArrowDown"] * 6 + ["ArrowLeft"] * 3 + ["ArrowUp"] * 6
    page.keyboard.press(" ")
    for key in ring:
        page.keyboard.press(key)
        page.keyboard.press(" ")
    page.keyboard.press("Tab")  # Clear
    page.keyboard.press("Tab")  # Predict
    page.keyboard.press("Enter")
    assert prediction(page) == "0"


def test_a_trained_version_shows_its_metrics_and_confusion_matrix(page: Page, server: str) -> None:
    sign_up(page)
    wait_for_demo(server, page)
    page.goto("/models/digits-cnn/versions/latest")
    assert page.get_by_role("heading", level=1).inner_text().startswith("digits-cnn v")
    matrix = page.locator("#confusion-matrix")
    assert matrix.locator("tbody tr").count() == 10
    assert page.get_by_role("row", name="accuracy").is_visible()
    assert page.locator("#loss-chart").is_visible()
    screenshot(page, "version")


PAGES = ["/login", "/signup"]
SIGNED_IN_PAGES = [
    "/models",
    "/models/new",
    "/keys",
    "/account",
    "/models/digits-cnn",
    "/models/digits-cnn/versions/latest",
    "/trainings",
    "/trainings/new",
    "/datasets",
    "/datasets/new",
    "/usage",
]
# Wider than the viewport: what a phone would have to scroll sideways to read (tables inside
# their own scrolling box, and the page itself, do not count).
OVERFLOWING = """() => document.scrollingElement.scrollWidth - window.innerWidth"""


def test_every_page_has_one_h1_and_labels_on_every_field(page: Page, server: str) -> None:
    for path in PAGES:
        page.goto(path)
        accessible(page)
    sign_up(page)
    wait_for_demo(server, page)
    for path in SIGNED_IN_PAGES:
        page.goto(path)
        accessible(page)


def test_the_pages_fit_a_phone_width(page: Page, server: str) -> None:
    sign_up(page)
    wait_for_demo(server, page)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in SIGNED_IN_PAGES:
        page.goto(path)
        assert page.evaluate(OVERFLOWING) <= 0, path
