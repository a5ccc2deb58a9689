"""GET/HEAD /health: 200 when the database answers ping, 503 when it does not (the app stays up).

Open without the API token (load balancers, the dashboard's status line), so it says no more than whether the
service and its database are up, which kind of database it is and the app's version.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec
import pymongo
from litestar import HttpMethod, Response, route
from litestar.di import NamedDependency
from pymongo import AsyncMongoClient

from app.auth import NO_SECURITY, PUBLIC
from app.db import ping
from app.errors import problem

PING_TIMEOUT = 1.0


class About(msgspec.Struct, frozen=True, rename="camel"):
    """What /health tells besides up or down."""

    version: str
    database_server: str  # "embedded" (started by `python -m app serve`) or "external" (MONGODB_URI)


def app_version() -> str:
    try:
        return version("customer-import")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


@route(
    "/health",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    tags=["health"],
    summary="Liveness and database reachability",
    opt=PUBLIC,
    security=NO_SECURITY,
)
async def health(
    mongo: NamedDependency[AsyncMongoClient[dict[str, Any]]], service_about: NamedDependency[About]
) -> Response[Any]:
    try:
        with pymongo.timeout(PING_TIMEOUT):  # its own deadline, inside the request's (the shorter one wins)
            up = await asyncio.wait_for(ping(mongo), PING_TIMEOUT)
    except TimeoutError:
        up = False
    info = msgspec.to_builtins(service_about)
    if not up:
        return problem(503, "Database unavailable", "the database did not answer ping", database="down", **info)
    return Response({"status": "ok", "database": "up", **info})
