"""The dashboard's pages, one module per group, gathered on one router."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from aiaas.web.pages import STATIC_DIR
from aiaas.web.routes import admin, auth, datasets, keys, models, playground, trainings, usage


def make_router() -> APIRouter:
    # Pages are not part of the API: they stay out of the OpenAPI document.
    router = APIRouter(include_in_schema=False)
    for module in (auth, models, keys, playground, trainings, datasets, usage, admin):
        router.include_router(module.router)
    return router


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
