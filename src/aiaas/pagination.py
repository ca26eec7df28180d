"""Keyset pagination shared by every list route: ``limit`` and an opaque ``cursor``.

The cursor encodes the last row's ``(created_at, id)``, so pages stay stable while rows are
added, and a page costs an index range scan rather than an OFFSET.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from aiaas.errors import InvalidInput

T = TypeVar("T")
Row = TypeVar("Row", bound="Keyed")


class Keyed(Protocol):
    created_at: datetime
    id: uuid.UUID


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    cursor: str | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def encode_cursor(row: Keyed) -> str:
    raw = orjson.dumps([row.created_at.isoformat(), str(row.id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = orjson.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("cursor timestamps carry their timezone")
        return when, uuid.UUID(ident)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise InvalidInput(
            "cursor is not one this API issued",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
        ) from exc


def paginate(
    stmt: Select[Any],
    *,
    created_at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[uuid.UUID],
    params: PageParams,
) -> Select[Any]:
    """Newest first; fetch one row more than asked to know whether there is a next page."""
    if params.cursor:
        when, ident = decode_cursor(params.cursor)
        stmt = stmt.where(or_(created_at < when, and_(created_at == when, id_ < ident)))
    return stmt.order_by(created_at.desc(), id_.desc()).limit(params.limit + 1)


def split_page(rows: Sequence[Row], params: PageParams) -> tuple[Sequence[Row], str | None]:
    if len(rows) > params.limit:
        kept = rows[: params.limit]
        return kept, encode_cursor(kept[-1])
    return rows, None


def fetch_page(session: Session, stmt: Select[T], params: PageParams) -> tuple[list[T], str | None]:
    """One page of ``stmt``'s entity (which has ``created_at`` and ``id``), newest first."""
    entity = stmt.column_descriptions[0]["entity"]
    paged = paginate(stmt, created_at=entity.created_at, id_=entity.id, params=params)
    rows, cursor = split_page(list(session.scalars(paged)), params)
    return list(rows), cursor
