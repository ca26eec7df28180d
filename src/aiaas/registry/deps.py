"""Resource-or-404 dependencies: routes get a model the caller may use, or never run."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from aiaas.accounts.deps import require_scope
from aiaas.accounts.schemas import Scope
from aiaas.accounts.service import Principal
from aiaas.deps import SessionDep
from aiaas.registry import service
from aiaas.registry.models import Model

ModelNameParam = Annotated[str, Path(description="The model's slug.", max_length=63)]


def get_readable_model(
    name: ModelNameParam,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_scope(Scope.MODELS_READ))],
) -> Model:
    return service.readable_model(session, name=name, user=principal.user)


def get_writable_model(
    name: ModelNameParam,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_scope(Scope.MODELS_WRITE))],
) -> Model:
    return service.writable_model(session, name=name, user=principal.user)


ReadableModel = Annotated[Model, Depends(get_readable_model)]
WritableModel = Annotated[Model, Depends(get_writable_model)]
