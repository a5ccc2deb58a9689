"""PyMongo's errors as a client sees them: unreachable or out of time is 503 with Retry-After, anything else 500."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from app.errors import EXCEPTION_HANDLERS, PROBLEM_JSON

REQUEST: Any = SimpleNamespace(method="GET", url=SimpleNamespace(path="/customers"))


def answer(exc: PyMongoError) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = EXCEPTION_HANDLERS[PyMongoError](REQUEST, exc)  # type: ignore[arg-type]
    assert response.media_type == PROBLEM_JSON
    return response.status_code, msgspec.to_builtins(response.content), dict(response.headers)


@pytest.mark.parametrize(
    "exc",
    [
        ExecutionTimeout("operation exceeded time limit", code=50),  # the server's maxTimeMS
        NetworkTimeout("timed out"),  # pymongo.timeout() ran out while waiting for the reply
        WaitQueueTimeoutError("timed out waiting for a connection"),
    ],
)
def test_a_deadline_run_out_is_503_with_retry_after(exc: PyMongoError) -> None:
    status, body, headers = answer(exc)
    assert (status, headers["Retry-After"]) == (503, "1")
    assert "deadline" in body["detail"]


@pytest.mark.parametrize("exc", [ServerSelectionTimeoutError("no server"), AutoReconnect("connection reset")])
def test_an_unreachable_database_is_503_with_retry_after(exc: PyMongoError) -> None:
    status, body, headers = answer(exc)
    assert (status, body["title"], headers["Retry-After"]) == (503, "Database unavailable", "1")


def test_any_other_database_error_is_a_500_that_says_nothing_of_it() -> None:
    status, body, headers = answer(OperationFailure("bad $operator", code=2))
    assert status == 500 and "Retry-After" not in headers
    assert "operator" not in body["detail"]
