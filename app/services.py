"""The services a request handler uses, opened and closed by the app's lifespan, and the typed providers that
hand them to handlers. Handlers name what they need (`service: NamedDependency[ImportService]`); nothing reads
attributes off `app.state` (tests reach the one Services object as `app.state.services`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from app.admission import Admission, Slots, Work
from app.customers.exporter import Exporter
from app.customers.repository import CustomerRepository, migrate_customers
from app.db import CUSTOMERS, ensure_indexes, make_client
from app.health import About
from app.imports.broadcast import Broadcaster
from app.imports.service import ImportService
from app.metrics import LagMonitor
from app.settings import Settings
from app.warmup import Warmup


class Services:
    """Opened in this order and closed in reverse: lag monitor, database, imports, progress broadcaster."""

    client: AsyncMongoClient[dict[str, Any]]
    db: AsyncDatabase[dict[str, Any]]
    customers: CustomerRepository
    exports: Exporter
    imports: ImportService
    broadcaster: Broadcaster

    def __init__(self, settings: Settings, about: About):
        self.settings = settings
        self.about = about
        self.lag = LagMonitor()
        self.warmup = Warmup(self._probe)
        deadline = settings.request_timeout_seconds
        expensive = Slots(
            Work.EXPENSIVE, settings.expensive_slots, share=settings.expensive_share or None, burst=deadline
        )
        self.admission = Admission(
            [Slots(Work.CHEAP, settings.cheap_slots), expensive],
            wait=settings.admission_wait_seconds,
            deadline=settings.request_timeout_seconds,
            max_requests=settings.max_requests_in_flight,
            ready=self.warmup.ready,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        app.state.services = self
        async with contextlib.AsyncExitStack() as stack:
            self.lag.start()
            stack.push_async_callback(self.lag.stop)
            self.client = make_client(self.settings.mongodb_uri or "")
            stack.push_async_callback(self.client.close)
            self.db = self.client[self.settings.mongodb_db]
            await ensure_indexes(self.db)
            await migrate_customers(self.db)
            self.warmup.start()
            stack.push_async_callback(self.warmup.close)
            self.customers = CustomerRepository(self.db[CUSTOMERS], total_ttl=self.settings.list_total_cache_seconds)
            self.exports = Exporter(
                self.customers,
                max_concurrent=self.settings.export_max_concurrent,
                batch_size=self.settings.export_batch_size,
            )
            self.imports = ImportService(self.db, self.settings, warmup=self.warmup)
            await self.imports.open()
            stack.push_async_callback(self.imports.close)
            self.broadcaster = Broadcaster(
                self.imports.snapshot, max_subscribers=self.settings.progress_stream_max_clients
            )
            await self.broadcaster.start()
            stack.push_async_callback(self.broadcaster.close)
            yield

    async def _probe(self) -> None:
        """The warm-up query (app/warmup.py): one point read by an `_id` no customer has."""
        await self.db[CUSTOMERS].find_one({"_id": ""}, {"_id": 1})

    def providers(self) -> dict[str, Provide]:
        """One typed provider per service, by the parameter name handlers use."""

        def import_service() -> ImportService:
            return self.imports

        def customer_repository() -> CustomerRepository:
            return self.customers

        def exporter() -> Exporter:
            return self.exports

        def broadcaster() -> Broadcaster:
            return self.broadcaster

        def lag_monitor() -> LagMonitor:
            return self.lag

        def mongo_client() -> AsyncMongoClient[dict[str, Any]]:
            return self.client

        def about() -> About:
            return self.about

        def admission() -> Admission:
            return self.admission

        def warmup() -> Warmup:
            return self.warmup

        named = {
            "service": import_service,
            "repository": customer_repository,
            "exporter": exporter,
            "broadcaster": broadcaster,
            "lag": lag_monitor,
            "mongo": mongo_client,
            # not "about": Litestar answers 500 when a body field fails validation under a dependency's name
            "service_about": about,
            "admission": admission,
            "warmup": warmup,
        }
        return {name: Provide(provider, sync_to_thread=False) for name, provider in named.items()}
