"""Routes of the dashboard: `/` redirects to `/ui/`; each view's URL serves the one page; /ui/static/ its files.

Every response under `/` and `/ui/`, errors included (app/asgi.py installs `security_headers`), carries a
Content-Security-Policy that allows scripts, styles, images and requests from this origin only: no inline script,
no remote origin. The page renders data with textContent only.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import MediaType, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import Message, Scope

from app.auth import PUBLIC
from app.inputs import ANY_QUERY

STATIC = Path(__file__).parent / "static"
VIEWS = ["/ui", "/ui/jobs", "/ui/customers"]  # Litestar ignores a trailing slash: /ui/ is /ui
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
NO_CACHE = CacheControlHeader(no_cache=True)  # revalidate: a new version of the app is seen at once


def is_dashboard(path: str) -> bool:
    """`/` and everything under `/ui` (the dashboard's own paths, whether they exist or not)."""
    return path in ("/", "/ui") or path.startswith("/ui/")


async def security_headers(message: Message, scope: Scope) -> None:
    """An app-wide before_send hook adding HEADERS to every response under `/` and `/ui/`, errors included: a
    router's middleware (or response_headers) reaches neither the static files' ASGI handler nor a 404 or 405,
    which Litestar answers before routing."""
    if message["type"] == "http.response.start" and is_dashboard(scope["path"]):
        message["headers"] = [*message.get("headers", []), *HEADERS]


@cache
def page() -> bytes:
    return (STATIC / "index.html").read_bytes()


@get("/", include_in_schema=False, opt=PUBLIC)
async def root() -> Redirect:
    return Redirect("/ui/")


@get(VIEWS, include_in_schema=False, opt={**PUBLIC, ANY_QUERY: True}, cache_control=NO_CACHE)
async def view() -> Response[bytes]:
    """The one page; its script reads the query itself (`?q=` preselects a search), so any query is accepted."""
    return Response(page(), media_type=MediaType.HTML)


def router() -> Router:
    static = create_static_files_router(
        path="/ui/static", directories=[STATIC], opt=PUBLIC, cache_control=NO_CACHE, name="ui-static"
    )
    return Router(path="/", route_handlers=[root, view, static])
