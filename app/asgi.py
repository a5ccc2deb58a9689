"""create_app(settings): the only wiring point. Nothing in the package imports this module."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from app import auth
from app.customers.controller import CustomerController
from app.customers.repository import migrate_customers
from app.db import ensure_indexes, make_client
from app.errors import EXCEPTION_HANDLERS
from app.health import About, app_version, health
from app.imports.broadcast import Broadcaster
from app.imports.controller import ImportController
from app.imports.service import ImportService
from app.metrics import LagMonitor, metrics
from app.settings import Settings
from app.ui.routes import router as ui_router

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, embedded: bool = False) -> Litestar:
    """Build the app for `settings`; `settings.mongodb_uri` must point at a running server (`embedded`: one
    that `python -m app serve` started, as /health reports)."""
    if not settings.mongodb_uri:
        raise ValueError("create_app needs settings.mongodb_uri (`python -m app serve` starts the embedded one)")

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        client = make_client(settings.mongodb_uri)
        app.state.client = client
        app.state.db = client[settings.mongodb_db]
        await ensure_indexes(app.state.db)
        await migrate_customers(app.state.db)
        try:
            yield
        finally:
            await client.close()

    @asynccontextmanager
    async def lag_monitor(app: Litestar) -> AsyncIterator[None]:
        app.state.lag = LagMonitor()
        app.state.lag.start()
        try:
            yield
        finally:
            await app.state.lag.stop()

    @asynccontextmanager
    async def imports(app: Litestar) -> AsyncIterator[None]:
        service = ImportService(app.state.db, settings)
        app.state.imports = service
        await service.open()
        try:
            yield
        finally:
            await service.close()

    @asynccontextmanager
    async def broadcast(app: Litestar) -> AsyncIterator[None]:
        broadcaster = Broadcaster(app.state.imports.snapshot)
        app.state.broadcast = broadcaster
        await broadcaster.start()
        try:
            yield
        finally:
            await broadcaster.close()

    about = About(version=app_version(), database_server="embedded" if embedded else "external")
    return Litestar(
        route_handlers=[health, metrics, CustomerController, ImportController, ui_router()],
        # not "about": Litestar answers 500 when a body field fails validation under a dependency's name
        dependencies={"service_about": Provide(lambda: about, use_cache=True, sync_to_thread=False)},
        middleware=auth.middleware(settings.api_token, settings.host),
        lifespan=[lag_monitor, database, imports, broadcast],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Customer import service",
            version=about.version,
            components=auth.COMPONENTS,
            security=auth.SECURITY,
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        state=None,
        debug=False,
    )
