"""Browser fixtures: one live ``aiaas serve`` (demo models on) for the module's browser tests,
Debian's chromium driven by Playwright, and a page per test that fails the test on any console
error and on any request to a host other than the server's.

Playwright's own browser download cannot work here: ``make browser`` installs Debian's
``chromium``, which these fixtures launch by path. Without it (or without the ``playwright``
package) the browser tests are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.helpers import live_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "images"


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (make browser)"
    return None


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests cannot run: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
    launched = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
    )
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live gateway, embedded mode, training the demo models (digits-cnn among them) at
    its start; tests that need them wait for them, the others run meanwhile."""
    env = {
        "AIAAS_DEMO_MODELS": "true",
        "AIAAS_PASSWORD_HASH_TIME_COST": "1",
        "AIAAS_PASSWORD_HASH_MEMORY_KIB": "1024",
    }
    with live_server(tmp_path_factory.mktemp("web-server"), env) as base:
        yield base


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


@pytest.fixture
def watch(server: str) -> PageWatch:
    return PageWatch(server)


@pytest.fixture
def context(browser: Browser, server: str) -> Iterator[BrowserContext]:
    made = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    made.set_default_timeout(15_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext, watch: PageWatch) -> Iterator[Page]:
    opened = context.new_page()
    opened.on("console", watch.console)
    opened.on("pageerror", lambda exc: watch.problems.append(f"page error: {exc}"))
    opened.on("request", watch.request)
    yield opened
    assert watch.problems == []


def screenshot(page: Page, name: str) -> None:
    """Save the page for the README (docs/images/dashboard-NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)
