"""API_TOKEN: one bearer token for every request, checked in constant time; 401 problem+json without it.

Two things stay open, marked on their route handlers with `opt=PUBLIC`: GET/HEAD /health and the dashboard's
static files (they hold no data; the dashboard asks for the token and sends it). The progress stream is marked
`opt=TOKEN_IN_QUERY`: a browser's EventSource cannot send headers, so that one route also accepts
`?access_token=<token>` (RFC 6750's name). The check is an ASGI middleware so that it runs before any
handler, dependency or body parsing.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import msgspec
from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

PUBLIC = {"public": True}
TOKEN_IN_QUERY = {"token_in_query": True}
QUERY_TOKEN = "access_token"
SCHEME = "bearerAuth"
COMPONENTS = Components(
    security_schemes={
        SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            description="API_TOKEN. Only enforced when the service sets API_TOKEN; "
            "GET /import/progress/stream also accepts it as ?access_token=.",
        )
    }
)
SECURITY: list[SecurityRequirement] = [{SCHEME: []}]
NO_SECURITY: list[SecurityRequirement] = [{}]  # an empty requirement: open to anyone


def matches(expected: bytes, offered: bytes | None) -> bool:
    """Constant-time comparison (hmac.compare_digest) of the offered token with the expected one."""
    return offered is not None and hmac.compare_digest(expected, offered)


def bearer(scope: Scope) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, as sent (bytes), if there is one."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


def query_token(scope: Scope) -> bytes | None:
    """The `access_token` query parameter, percent-decoded to its UTF-8 bytes."""
    query = scope.get("query_string", b"").decode("latin-1")
    pairs = parse_qsl(query, encoding="utf-8", errors="surrogateescape")
    return next((value.encode("utf-8", "surrogateescape") for name, value in pairs if name == QUERY_TOKEN), None)


class BearerAuth:
    """ASGI middleware: passes a request on when its token matches (or its route is public), else answers 401."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode("utf-8", "surrogateescape")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == ScopeType.HTTP:
            await unauthorized(send)
        else:  # a websocket (there is none today): closed with "policy violation"
            await send({"type": "websocket.close", "code": 1008, "reason": ""})  # "": the ASGI default

    def allowed(self, scope: Scope) -> bool:
        opt: dict[str, Any] = scope["route_handler"].opt
        if opt.get("public"):
            return True
        if matches(self.token, bearer(scope)):
            return True
        return bool(opt.get("token_in_query")) and matches(self.token, query_token(scope))


async def unauthorized(send: Send) -> None:
    body = msgspec.json.encode(
        {
            "type": "about:blank",
            "status": 401,
            "title": "Unauthorized",
            "detail": "this service needs the API token: send the header 'Authorization: Bearer <token>'",
        }
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="customer-import"'),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})  # False: the ASGI default


def middleware(token: str | None, host: str) -> list[DefineMiddleware]:
    """The middleware for `token`; none (and a warning when the address is reachable from elsewhere) without."""
    if token:
        return [DefineMiddleware(BearerAuth, token=token)]
    if not is_loopback(host):
        log.warning(
            "API_TOKEN is not set and HOST=%s is not a loopback address: whoever reaches it may change data", host
        )
    return []


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


class RedactQueryToken(logging.Filter):
    """Blanks the value of `access_token` in log records (uvicorn's access log prints each request's query),
    however its name is spelled: `access%5Ftoken` is the same parameter to the server, so it is the same secret."""

    PARAMETER = re.compile(r"([?&])([^=&\s]*)=([^&\s]*)")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(arg) for arg in record.args)
        record.msg = self.redact(record.msg)
        return True

    def redact(self, value: object) -> object:
        return self.PARAMETER.sub(self._blank, value) if isinstance(value, str) else value

    @staticmethod
    def _blank(found: re.Match[str]) -> str:
        separator, name, _ = found.groups()
        return f"{separator}{name}=[redacted]" if unquote_plus(name) == QUERY_TOKEN else found.group(0)
