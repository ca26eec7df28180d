"""A training's events as server-sent events, for the API and the dashboard alike.

The stream polls the events table with short sessions of its own: the request's session must
not live as long as the response (on SQLite it would hold the write lock for the whole stream).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import orjson
from fastapi import Request
from fastapi.responses import StreamingResponse

from aiaas.db import Database
from aiaas.trainings import service
from aiaas.trainings.models import FINISHED, Training, TrainingEvent

# How often the stream looks for new events, and sends a comment so proxies keep it open.
POLL_S = 0.25
KEEPALIVE_S = 15.0


def _frame(event: TrainingEvent) -> bytes:
    data = orjson.dumps(event.data).decode()
    return f"id: {event.seq}\nevent: {event.event}\ndata: {data}\n\n".encode()


def _poll(database: Database, training_id: uuid.UUID, seq: int) -> tuple[list[TrainingEvent], bool]:
    with database.session() as session:
        # Status first: a training seen finished has all its events written already.
        training = session.get(Training, training_id)
        finished = training is None or training.status in FINISHED
        events = service.events_after(session, training_id=training_id, seq=seq)
        for event in events:
            session.expunge(event)
        return events, finished


def event_stream(
    request: Request, database: Database, training_id: uuid.UUID, last_event_id: str | None
) -> StreamingResponse:
    """Every event after ``last_event_id`` (all of them without one), then the new ones as
    they come, until ``end``. The caller has checked the training is the viewer's."""
    try:
        after = max(int(last_event_id or 0), 0)
    except ValueError:
        after = 0

    async def stream() -> AsyncIterator[bytes]:
        seq = after
        quiet_since = time.monotonic()
        while True:
            events, finished = await asyncio.to_thread(_poll, database, training_id, seq)
            for event in events:
                seq = event.seq
                yield _frame(event)
                if event.event == service.END:
                    return
            if events:
                quiet_since = time.monotonic()
            elif finished:
                return  # finished with no end event left to send (already seen)
            elif time.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
