from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aiaas.quotas.service import Quotas


def get_quotas(request: Request) -> Quotas:
    quotas: Quotas = request.app.state.quotas
    return quotas


QuotasDep = Annotated[Quotas, Depends(get_quotas)]
