"""create_app(settings): the only wiring point. Nothing in the package imports this module."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from app import auth
from app.customers.controller import CustomerController
from app.customers.repository import migrate_customers
from app.db import ensure_indexes, make_client
from app.docs import OfflineSwaggerUI
from app.errors import EXCEPTION_HANDLERS
from app.health import About, app_version, health
from app.imports.broadcast import Broadcaster
from app.imports.controller import ImportController
from app.imports.service import ImportService
from app.inputs import ApiRequest, reject_unknown_query
from app.metrics import LagMonitor, metrics
from app.settings import Settings
from app.ui.routes import router as ui_router

log = logging.getLogger(__name__)


def prepare_import_folder(settings: Settings) -> None:
    """Create the folder that request filePaths resolve in, so a first user can copy a CSV there, and say where."""
    folder = settings.import_path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("import folder %s cannot be created (%s); POST /import/sync will refuse its files", folder, exc)
        return
    log.info("import folder (request filePaths resolve here): %s", folder)


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
        on_startup=[lambda: prepare_import_folder(settings)],
        middleware=auth.middleware(settings.api_token, settings.host),
        lifespan=[lag_monitor, database, imports, broadcast],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=ApiRequest,
        guards=[reject_unknown_query],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Customer import service",
            version=about.version,
            components=auth.COMPONENTS,
            security=auth.SECURITY,
            # Swagger UI from vendored assets (app/docs.py): offline, no inline script, no remote origin.
            render_plugins=[OfflineSwaggerUI()],
        ),
        state=None,
        debug=False,
    )
