"""app/auth.py: the bearer check, the one route that takes the token in its query, the warning when open."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import msgspec
import pytest

from app.auth import PUBLIC, TOKEN_IN_QUERY, BearerAuth, RedactQueryToken, is_loopback, matches, middleware

TOKEN = "s3cret token ✓"


def scope(*, headers: dict[str, str] | None = None, query: str = "", opt: dict[str, Any] | None = None) -> dict:
    """An ASGI scope as a server builds it: header values are the bytes sent (here UTF-8), the query is raw."""
    return {
        "type": "http",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        "query_string": query.encode(),
        "route_handler": SimpleNamespace(opt=opt or {}),
    }


def call(request: dict) -> tuple[bool, list[dict]]:
    """(whether the app behind the middleware ran, what was sent)."""
    reached: list[bool] = []
    sent: list[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {}

    asyncio.run(BearerAuth(app, TOKEN)(request, receive, send))
    return bool(reached), sent


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (scope(headers={"authorization": f"Bearer {TOKEN}"}), True),
        (scope(headers={"authorization": f"bearer {TOKEN}"}), True),  # the scheme is case-insensitive
        (scope(headers={"authorization": f"Bearer {TOKEN}x"}), False),
        (scope(headers={"authorization": f"Basic {TOKEN}"}), False),
        (scope(headers={"authorization": "Bearer"}), False),
        (scope(), False),
        (scope(query="access_token=" + quote(TOKEN)), False),  # only the stream takes the token in the query
        (scope(query="access_token=" + quote(TOKEN), opt=TOKEN_IN_QUERY), True),
        (scope(query="x=1&access_token=" + quote(TOKEN), opt=TOKEN_IN_QUERY), True),
        (scope(query="access_token=wrong", opt=TOKEN_IN_QUERY), False),
        (scope(opt=TOKEN_IN_QUERY), False),
        (scope(opt=PUBLIC), True),
    ],
)
def test_a_request_passes_only_with_the_token_or_on_an_open_route(request_: dict, allowed: bool) -> None:
    reached, sent = call(request_)
    assert reached is allowed
    if not allowed:
        start, body = sent
        headers = dict(start["headers"])
        assert start["status"] == 401
        assert headers[b"content-type"] == b"application/problem+json"
        assert headers[b"www-authenticate"].startswith(b"Bearer")
        problem = msgspec.json.decode(body["body"])
        assert (problem["status"], problem["title"]) == (401, "Unauthorized") and problem["detail"]


def test_matches_compares_whole_tokens() -> None:
    expected = TOKEN.encode()
    assert matches(expected, TOKEN.encode())
    assert not matches(expected, expected[:-1])
    assert not matches(expected, None)
    assert not matches(expected, b"")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True)],
        *[("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.org", False)],
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_no_token_on_a_public_address_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.auth"):
        assert middleware(None, "0.0.0.0") == []
        assert middleware(None, "127.0.0.1") == []
        assert len(middleware("token", "0.0.0.0")) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "API_TOKEN is not set and HOST=0.0.0.0 is not a loopback address: whoever reaches it may change data"
    ]


def test_the_query_token_is_redacted_from_the_access_log() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/import/progress/stream?x=1&access_token=s3cret&y=2", "1.1", 200),
        None,
    )
    assert RedactQueryToken().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5000 - "GET /import/progress/stream?x=1&access_token=[redacted]&y=2 HTTP/1.1" 200'
    )


@pytest.mark.parametrize(
    "query", ["access%5Ftoken=s3cr3t%2B%2F%3D", "%61ccess_token=s3cr3t", "a=1&access_toke%6E=s3cr3t&b=2"]
)
def test_the_query_token_is_redacted_however_its_name_is_encoded(query: str) -> None:
    """The server reads `access%5Ftoken` as access_token (and accepts the token): the log must not show it."""
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '"GET %s HTTP/1.1"', (f"/import/progress/stream?{query}",), None
    )
    assert RedactQueryToken().filter(record)
    assert "s3cr3t" not in record.getMessage() and "=[redacted]" in record.getMessage()
    untouched = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /?access=1&token=2", None, None)
    assert RedactQueryToken().filter(untouched) and untouched.getMessage() == "GET /?access=1&token=2"
