"""The dashboard's fixtures and the helpers its tests share.

Through the ASGI app: ``sign_in`` (a form post with the login page's CSRF token, as a browser
does), ``csrf_of`` (the token a page carries) and ``account``, an account signed in on
``client``. A module whose ``client`` is another app's (``live_client``) gets its account
signed in there: the fixture follows the module's ``client``.

In Chromium: one live ``aiaas serve`` (demo models on) for the package's browser tests,
Debian's chromium driven by Playwright, and a page per test that fails the test on any console
error and on any request to a host other than the server's (helpers in tests/web/browser.py).

Playwright's own browser download cannot work here: ``make browser`` installs Debian's
``chromium``, which these fixtures launch by path. Without it (or without the ``playwright``
package) the browser tests are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from tests.factories import Account
from tests.helpers import live_server
from tests.web.browser import PageWatch

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client: TestClient, account: Account) -> None:
    token = csrf_of(client, "/login")
    response = client.post(
        "/login",
        data={"email": account.email, "password": account.password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/models"


@pytest.fixture
def registered(make_account: Callable[..., Account]) -> Account:
    """An account on ``client`` that has not signed in there (the sign-in tests' own)."""
    return make_account()


@pytest.fixture
def account(client: TestClient, registered: Account) -> Account:
    """An account signed in on ``client``: its session cookie goes with every request."""
    sign_in(client, registered)
    return registered


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
