"""The admin pages in Chromium, against a live server whose administrator is made as an operator
makes one (``aiaas users create-admin`` in the server's directory): suspending an account there
makes the live ``/v1`` refuse its API key, and every admin page keeps the accessibility basics.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.factories import PASSWORD, Account, api_key, register, unique
from tests.helpers import bearer, live_server
from tests.web.browser import PageWatch, accessible, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow

# The demo models stay off: these tests need no model, and their training would share the
# machine's cores with the browser.
ENV = {
    "AIAAS_DEMO_MODELS": "false",
    "AIAAS_PASSWORD_HASH_TIME_COST": "1",
    "AIAAS_PASSWORD_HASH_MEMORY_KIB": "1024",
}


@dataclass(frozen=True)
class Served:
    base: str
    cwd: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cwd = tmp_path_factory.mktemp("admin-server")
    with live_server(cwd, ENV) as base:
        yield Served(base, cwd)


@pytest.fixture(scope="module")
def server(served: Served) -> str:
    """This module's live server, in place of the package's: the admin is made in its
    directory, so the CLI reaches the same database."""
    return served.base


@pytest.fixture(scope="module")
def admin_email(served: Served) -> str:
    email = f"{unique('admin')}@example.com"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")} | ENV
    made = subprocess.run(
        [sys.executable, "-m", "aiaas", "users", "create-admin", "--email", email],
        cwd=served.cwd,
        env={**environ, "AIAAS_ADMIN_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert f"created admin {email}" in made.stdout
    return email


@pytest.fixture
def owner(server: str) -> tuple[Account, dict[str, str]]:
    """An account with an API key that works on the live server."""
    with httpx.Client(base_url=server) as api:
        account = register(api)
        key = bearer(api_key(api, account, ["models:read"])["key"])
        assert api.get("/v1/me", headers=key).status_code == 200
    return account, key


def sign_in(page: Page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/models")


def test_an_admin_suspends_an_account_and_the_api_refuses_its_key(
    page: Page, server: str, admin_email: str, owner: tuple[Account, dict[str, str]]
) -> None:
    account, key = owner
    sign_in(page, admin_email)
    page.get_by_role("link", name="Admin", exact=True).click()
    page.wait_for_url("**/admin")
    admin_nav = page.get_by_role("navigation", name="Admin")
    admin_nav.get_by_role("link", name="Accounts").click()
    page.get_by_role("link", name=account.email).click()
    assert page.get_by_role("heading", level=1).inner_text() == account.email

    page.get_by_role("button", name="Suspend the account").click()
    assert f"{account.email} is suspended" in page.locator("p.flash").inner_text()
    assert page.locator("#account-state").inner_text().startswith("suspended")
    assert httpx.get(f"{server}/v1/me", headers=key).status_code == 403
    assert httpx.get(f"{server}/v1/models", headers=key).status_code == 403

    admin_nav.get_by_role("link", name="Overview").click()
    assert page.locator("#accounts-suspended").inner_text() == "1"
    screenshot(page, "admin")

    admin_nav.get_by_role("link", name="Accounts").click()
    page.get_by_role("link", name=account.email).click()
    page.get_by_role("button", name="Resume the account").click()
    assert f"{account.email} is resumed" in page.locator("p.flash").inner_text()
    assert httpx.get(f"{server}/v1/me", headers=key).status_code == 200


def test_overrides_are_checked_beside_their_field_and_then_saved(
    page: Page,
    watch: PageWatch,
    server: str,
    admin_email: str,
    owner: tuple[Account, dict[str, str]],
) -> None:
    account, _ = owner
    sign_in(page, admin_email)
    page.goto(f"/admin/accounts/{account.id}")
    watch.expected_statuses.add(422)
    page.get_by_label("predict rate", exact=True).fill("as fast as it likes")
    page.get_by_label("models limit", exact=True).fill("3")
    page.get_by_role("button", name="Save the overrides").click()
    assert "Nothing was changed" in page.get_by_role("alert").inner_text()
    rate = page.get_by_label("predict rate", exact=True)
    assert rate.get_attribute("aria-invalid") == "true"
    assert "is not a rate" in page.locator("#f-rate_predict-note").inner_text()
    assert page.get_by_label("models limit", exact=True).input_value() == "3"

    rate.fill("5/second")
    page.get_by_role("button", name="Save the overrides").click()
    assert "are saved" in page.locator("p.flash").inner_text()
    page.goto("/admin/audit?action=admin.account_updated")
    assert account.email in page.locator("tbody tr").first.inner_text()


def test_every_admin_page_has_one_h1_and_labels_on_every_field(
    page: Page, server: str, admin_email: str, owner: tuple[Account, dict[str, str]]
) -> None:
    account, _ = owner
    sign_in(page, admin_email)
    for path in ["/admin", "/admin/accounts", f"/admin/accounts/{account.id}", "/admin/audit"]:
        page.goto(path)
        accessible(page)
