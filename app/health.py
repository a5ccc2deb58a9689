"""GET and HEAD /health: 200 when the database answers ping, 503 when it does not (the app stays up).

HEAD answers the same status as GET (load balancers probe with HEAD), with no body.
"""

from __future__ import annotations

import asyncio

from litestar import Response, get, head
from litestar.datastructures import State

from app.db import ping
from app.errors import PROBLEM_JSON, problem

PING_TIMEOUT = 2.0


async def database_up(state: State) -> bool:
    try:
        return await asyncio.wait_for(ping(state.client), PING_TIMEOUT)
    except TimeoutError:
        return False


@get("/health", tags=["health"], summary="Liveness and database reachability")
async def health(state: State) -> Response:
    if not await database_up(state):
        return problem(503, "Database unavailable", "the database did not answer ping", database="down")
    return Response({"status": "ok", "database": "up"})


@head("/health", tags=["health"], summary="GET /health's status, without a body")
async def health_head(state: State) -> Response[None]:
    up = await database_up(state)
    return Response(None, status_code=200 if up else 503, media_type="application/json" if up else PROBLEM_JSON)
