"""create_app(settings): the only wiring point. Nothing in the package imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from pymongo.asynchronous.database import AsyncDatabase

from app.customers.controller import CustomerController
from app.customers.listing import Listing, WindowedListing, listing_for
from app.customers.repository import CustomerRepository
from app.db import CUSTOMERS, ensure_indexes, make_client, mark_search_keys_current, search_keys_current
from app.errors import EXCEPTION_HANDLERS
from app.health import health
from app.imports.broadcast import Broadcaster
from app.imports.controller import ImportController
from app.imports.service import ImportService
from app.metrics import LagMonitor, metrics
from app.settings import Settings

log = logging.getLogger(__name__)


async def refresh_search_keys(db: AsyncDatabase, listing: Listing) -> None:
    """A database written by an older version: rewrite the customers' search keys in the background; until then
    the list endpoint reads `q` without the prefix keys (slower on SecantusDB, same results)."""
    log.info("customers have search keys of an older version: rewriting them in the background")
    try:
        rewritten = await CustomerRepository(db[CUSTOMERS], listing).refresh_search_keys()
    except Exception:
        log.exception("rewriting the customers' search keys failed; the next start retries")
        return
    await mark_search_keys_current(db)
    if isinstance(listing, WindowedListing):
        listing.prefix_keys = True
    log.info("customers' search keys are current (%d rewritten)", rewritten)


def create_app(settings: Settings) -> Litestar:
    """Build the app for `settings`; `settings.mongodb_uri` must point at a running server."""
    if not settings.mongodb_uri:
        raise ValueError("create_app needs settings.mongodb_uri (`python -m app serve` starts the embedded one)")

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        client = make_client(settings.mongodb_uri)
        app.state.client = client
        app.state.db = client[settings.mongodb_db]
        await ensure_indexes(app.state.db)
        listing = app.state.customer_listing = await listing_for(app.state.db[CUSTOMERS])
        refresh = None
        if not await search_keys_current(app.state.db):
            refresh = asyncio.create_task(refresh_search_keys(app.state.db, listing))
        try:
            yield
        finally:
            if refresh is not None:
                refresh.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await refresh
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

    return Litestar(
        route_handlers=[health, metrics, CustomerController, ImportController],
        lifespan=[lag_monitor, database, imports, broadcast],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Customer import service", version="0.1.0",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        state=None,
        debug=False,
    )
