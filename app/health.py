"""GET /health: 200 when the database answers ping, 503 when it does not (the app stays up)."""

from __future__ import annotations

import asyncio

from litestar import Response, get
from litestar.datastructures import State

from app.db import ping
from app.errors import problem

PING_TIMEOUT = 2.0


@get("/health", tags=["health"], summary="Liveness and database reachability")
async def health(state: State) -> Response:
    try:
        up = await asyncio.wait_for(ping(state.client), PING_TIMEOUT)
    except TimeoutError:
        up = False
    if not up:
        return problem(503, "Database unavailable", "the database did not answer ping", database="down")
    return Response({"status": "ok", "database": "up"})
