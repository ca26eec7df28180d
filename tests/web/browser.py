"""What the browser tests do over and over: watch a page for what it must not do, save a
screenshot, check a page's accessibility basics, sign up, make a model and upload weights,
and use the digits demo model's playground."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tests.factories import PASSWORD, unique, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "images"
# Every field a person can fill that has no label to name it (the CSP forbids Playwright's
# eval, so this runs as a page function).
UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]):not([type=submit]), select, textarea'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
    && !el.getAttribute('aria-labelledby'))
  .map((el) => el.outerHTML)"""


class PageWatch:
    """What a page did that it must not: console errors, uncaught exceptions, requests to
    other hosts."""

    def __init__(self, base: str) -> None:
        self.host = urlsplit(base).hostname
        self.problems: list[str] = []
        # A status the test provoked on purpose (a refused form) is not a console error.
        self.expected_statuses: set[int] = set()

    def console(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        if any(f"status of {s} " in text for s in self.expected_statuses):
            return
        self.problems.append(f"console error: {text}")

    def request(self, request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob"):
            return
        if parts.hostname != self.host:
            self.problems.append(f"request to another host: {request.url}")


def screenshot(page: Page, name: str) -> None:
    """Save the page for the README (docs/images/dashboard-NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)


def accessible(page: Page) -> None:
    """The page has one h1 and a label on every field."""
    assert page.locator("h1").count() == 1, page.url
    assert page.evaluate(UNLABELLED) == [], page.url


def sign_up(page: Page) -> str:
    email = f"{unique('web')}@example.com"
    page.goto("/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/models")
    return email


def create_model(page: Page, name: str, labels: str = "setosa, versicolor, virginica") -> None:
    page.goto("/models/new")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Labels").fill(labels)
    page.get_by_label("Public: anyone with an account may call it").check()
    page.get_by_role("button", name="Create the model").click()
    page.wait_for_url(f"**/models/{name}")


def upload(page: Page, path: Path, config: dict[str, object]) -> None:
    page.get_by_label("Architecture").select_option("mlp")
    page.get_by_label("Config (JSON)").fill(json.dumps(config))
    page.get_by_label("Weights (.safetensors)").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()


def wait_for_demo(server: str, page: Page) -> None:
    def ready() -> bool:
        return page.request.get("/models/digits-cnn/versions/latest").status == 200

    wait_until(ready, timeout=240, interval=1, what="the digits-cnn demo model's first version")


def draw_zero(page: Page) -> None:
    canvas = page.locator("canvas#draw")
    box = canvas.bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    rx, ry = box["width"] * 0.22, box["height"] * 0.36
    page.mouse.move(cx + rx, cy)
    page.mouse.down()
    for step in range(1, 41):
        angle = 2 * math.pi * step / 40
        page.mouse.move(cx + rx * math.cos(angle), cy + ry * math.sin(angle))
    page.mouse.up()


def prediction(page: Page) -> str:
    """The playground's answer once it came (the page's CSP forbids Playwright's eval)."""
    output = page.locator("output#prediction")
    found: str = wait_until(
        lambda: output.get_attribute("data-value"), timeout=30, what="the playground's answer"
    )
    return found
