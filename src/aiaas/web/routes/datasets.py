"""Datasets pages."""

from __future__ import annotations

from fastapi import APIRouter

from aiaas.web.pages import PageRoute

router = APIRouter(route_class=PageRoute)
