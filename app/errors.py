"""Domain errors (no HTTP in them) and their one mapping to RFC 9457 application/problem+json.

AppError
 ├── NotFound                 404
 ├── Conflict                 409
 │    └── ImportRunning       409, names the running job
 ├── InvalidInput             400 (bad values a client sent)
 │    └── ImportFileError     400 (missing, outside IMPORT_DIR, no customer id column, changed)
 └── Unavailable              503 (the database does not answer)
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from pymongo.errors import AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(AppError):
    status, title = 404, "Not found"


class Conflict(AppError):
    status, title = 409, "Conflict"


class ImportRunning(Conflict):
    title = "An import is already running"

    def __init__(self, job_id: str):
        super().__init__(f"import job {job_id} is running", jobId=job_id)


class InvalidInput(AppError):
    status, title = 400, "Invalid input"


class ImportFileError(InvalidInput):
    title = "Cannot import this file"


class Unavailable(AppError):
    status, title = 503, "Service unavailable"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail, **extra}
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


def _app_error(_: Request, exc: AppError) -> Response[dict[str, Any]]:
    return problem(exc.status, exc.title, exc.detail, **exc.extra)


def _validation(_: Request, exc: ValidationException) -> Response[dict[str, Any]]:
    extra = {"errors": exc.extra} if exc.extra else {}
    return problem(400, "Invalid request", str(exc.detail), **extra)


def _undecodable(_: Request, exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
    # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON string, and
    # Litestar only translates DecodeError; without this a malformed body is a 500.
    return problem(400, "Malformed request body", f"the body is not valid UTF-8: {exc.reason}")


def _http(_: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    title = exc.__class__.__name__ if exc.status_code < 500 else "Server error"
    return problem(exc.status_code, title, str(exc.detail))


def _db_down(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return problem(503, "Database unavailable", "the database did not answer; retry later")


def _unexpected(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error", "unexpected error; see server log")


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    AppError: _app_error,
    ValidationException: _validation,
    UnicodeDecodeError: _undecodable,
    HTTPException: _http,
    ServerSelectionTimeoutError: _db_down,
    AutoReconnect: _db_down,
    ConnectionFailure: _db_down,
    Exception: _unexpected,
}
