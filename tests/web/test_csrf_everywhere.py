"""Every form the dashboard accepts checks a CSRF token: the POST routes are found by walking
the app, so a page added later is held to it without anyone listing it here. Each must depend
on ``checked_browser`` or ``checked_visitor``, and a post from a signed-in browser without the
token must be refused before it changes anything."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select

from aiaas.config import Settings
from aiaas.db import Base, Database
from aiaas.web.pages import PageRoute, checked_browser, checked_visitor
from tests.factories import Account

NOT_PAGES = ("/v1", "/v2", "/static")
# A path parameter's value by its type (anything else: a name): each names nothing that exists.
DUMMIES: dict[Any, str] = {uuid.UUID: "00000000-0000-4000-8000-000000000000", int: "1"}
CSRF_CHECKS: tuple[Callable[..., Any], ...] = (checked_browser, checked_visitor)


def dashboard_posts(app: FastAPI) -> list[RouteContext]:
    """Every POST route of the app that is a page's, as served (with its router's prefix and
    dependencies)."""
    return [
        route
        for route in iter_route_contexts(app.routes)
        if "POST" in (route.methods or ())
        and isinstance(route.original_route, APIRoute)
        and (isinstance(route.original_route, PageRoute) or not route.path.startswith(NOT_PAGES))
    ]


def tree(dependant: Dependant) -> Iterator[Dependant]:
    """The route's dependant and every dependency under it, however deep."""
    yield dependant
    for sub in dependant.dependencies:
        yield from tree(sub)


def dummy_path(route: RouteContext) -> str:
    """The route's path with each parameter (some are a dependency's, such as a model's name)
    filled by a value of its type that names nothing."""
    values = {
        param.name: DUMMIES.get(param.field_info.annotation, "no-such-name")
        for dependant in tree(route.dependant)
        for param in dependant.path_params
    }
    return str(route.path_format).format(**values)


def everything(db: Database, var_dir: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Every row of every table, and every file the app keeps: what a post must not change."""
    with db.session() as session:
        rows = {
            table.name: sorted(repr(tuple(row)) for row in session.execute(select(table)))
            for table in Base.metadata.sorted_tables
        }
    files = sorted(str(p.relative_to(var_dir)) for p in var_dir.rglob("*"))
    return rows, files


def test_every_dashboard_post_depends_on_a_csrf_check(app: FastAPI) -> None:
    posts = dashboard_posts(app)
    # The walk finds the pages' forms (a FastAPI that nests routers differently would not).
    assert len(posts) >= 10, [route.path for route in posts]
    unchecked = [
        route.path
        for route in posts
        if not any(dependant.call in CSRF_CHECKS for dependant in tree(route.dependant))
    ]
    assert unchecked == []


def test_a_post_without_the_token_is_refused_and_changes_nothing(
    app: FastAPI, client: TestClient, account: Account, db: Database, settings: Settings
) -> None:
    before = everything(db, settings.var_dir)
    for route in dashboard_posts(app):
        path = dummy_path(route)
        response = client.post(path, data={"name": "forged"}, follow_redirects=False)
        if response.status_code == 303:
            assert response.headers["location"].startswith("/login"), path
        else:
            assert response.status_code == 403, (path, response.status_code, response.text)
    assert everything(db, settings.var_dir) == before
    # The session survived every refusal: nothing above signed it out.
    assert client.get("/models", follow_redirects=False).status_code == 200
