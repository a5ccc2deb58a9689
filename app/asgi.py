"""create_app(settings): the only wiring point. Nothing in the package imports this module."""

from __future__ import annotations

import logging

from litestar import Litestar
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from app import auth
from app.admission import AdmissionMiddleware
from app.customers.controller import CustomerController
from app.docs import OfflineSwaggerUI
from app.errors import EXCEPTION_HANDLERS
from app.health import About, app_version, health
from app.imports.controller import ImportController
from app.inputs import ApiRequest, reject_unknown_query
from app.metrics import metrics
from app.services import Services
from app.settings import Settings
from app.ui.routes import router as ui_router
from app.ui.routes import security_headers

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
    about = About(version=app_version(), database_server="embedded" if embedded else "external")
    services = Services(settings, about)
    return Litestar(
        route_handlers=[health, metrics, CustomerController, ImportController, ui_router()],
        dependencies=services.providers(),
        on_startup=[lambda: prepare_import_folder(settings)],
        # auth first: a request without the token never takes a slot
        middleware=[
            *auth.middleware(settings.api_token, settings.host),
            DefineMiddleware(AdmissionMiddleware, admission=services.admission),
        ],
        after_exception=[services.admission.count_deadline],
        before_send=[security_headers],
        lifespan=[services.lifespan],
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
