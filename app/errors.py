"""Domain errors (no HTTP in them) and their one mapping to RFC 9457 application/problem+json.

AppError
 ├── NotFound                 404
 ├── Conflict                 409
 │    └── ImportRunning       409, names the running job (detail and jobId)
 ├── InvalidInput             400 (bad values a client sent)
 │    ├── MalformedBody       400 (not JSON, not UTF-8, an unpaired surrogate escape)
 │    └── ImportFileError     400 (missing, outside IMPORT_DIR, no customer id column, changed)
 └── Unavailable              503 + Retry-After (a bound of this instance is full: come back later)

PyMongo's errors map here too: an unreachable database, or a request's deadline run out, is 503 with Retry-After.

Titles are plain words (RFC 9457: a short summary that does not change from occurrence to occurrence), never a
class name; a parameter is named as the client wrote it (`afterStartedAt`, not `after_started_at`); a detail
never holds a server path.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ImproperlyConfiguredException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap
from pymongo.errors import AutoReconnect, ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}


class NotFound(AppError):
    status, title = 404, "Not Found"


class Conflict(AppError):
    status, title = 409, "Conflict"


class ImportRunning(Conflict):
    """The title stays "Conflict" (one title per status); the detail and `jobId` name the running job."""

    def __init__(self, job_id: str):
        super().__init__(f"import job {job_id} is running", jobId=job_id)


class InvalidInput(AppError):
    status, title = 400, "Invalid input"


class MalformedBody(InvalidInput):
    title = "Malformed request body"


class ImportFileError(InvalidInput):
    title = "Cannot import this file"


class Unavailable(AppError):
    """A capacity bound of this instance is reached, whoever the client is: 503 (RFC 9110 15.6.4: a temporary
    overload, retry after `retry_after` seconds; a load balancer may send the client to another instance), not 429,
    which says that this client sent too many requests."""

    status, title = 503, "Service Unavailable"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.headers["Retry-After"] = str(retry_after)


def problem(status: int, title: str, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail, **extra}
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


def _app_error(_: Request[Any, Any, Any], exc: AppError) -> Response[dict[str, Any]]:
    response = problem(exc.status, exc.title, exc.detail, **exc.extra)
    response.headers.update(exc.headers)
    return response


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Litestar's own validation (query and path parameters): each key as the client wrote it."""
    errors = [_client_named(request, error) for error in exc.extra or [] if isinstance(error, dict)]
    first = errors[0] if errors else {}
    detail = f"{first['key']}: {first['message']}" if "key" in first else first.get("message", "invalid request")
    return problem(400, InvalidInput.title, str(detail), **({"errors": errors} if errors else {}))


def _client_named(request: Request[Any, Any, Any], error: dict[str, Any]) -> dict[str, Any]:
    if error.get("key") == "data" and error.get("source") == "body":  # Litestar's name for a missing body
        return {"message": "a JSON body is required", "source": "body"}
    parameter = request.route_handler.parsed_fn_signature.parameters.get(error.get("key", ""))
    name = getattr(parameter.kwarg_definition, "name", None) if parameter is not None else None
    return {**error, "key": name} if name else error


def _undecodable(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
    # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON string, and
    # Litestar only translates DecodeError; without this a malformed body is a 500.
    return problem(400, "Malformed request body", f"the body is not valid UTF-8: {exc.reason}")


# Framework errors keep their status; the title is the status's plain name, never the exception's class name.
_TITLES = {413: "Request body too large"}


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    phrase = _phrase(status)
    detail = str(exc.detail)
    if status >= 500:
        log.error("%s %s: %s %s", request.method, request.url.path, status, detail)
        detail = "unexpected error; see server log"
    elif detail == phrase or not detail:  # Litestar's default detail just repeats the phrase
        detail = _framework_detail(request, status)
    response = problem(status, _TITLES.get(status, phrase), detail)
    response.headers.update(exc.headers or {})
    return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status code the standard library does not name
        return "Error"


def _framework_detail(request: Request[Any, Any, Any], status: int) -> str:
    if status == 404:
        return f"nothing is served at {request.url.path}"
    if status == 405:
        return f"{request.method} is not allowed on {request.url.path}"
    if status == 413:
        try:
            limit = f"the {request.route_handler.resolve_request_max_body_size()} bytes"
        except (KeyError, AttributeError, ImproperlyConfiguredException):  # refused before routing
            limit = "what"
        return f"the request body is larger than {limit} this server accepts"
    return "the request was refused"


RETRY_AFTER = "1"  # seconds: an outage or a busy moment is retried soon; a client may back off further


def _database(request: Request[Any, Any, Any], exc: PyMongoError) -> Response[dict[str, Any]]:
    """The database did not answer (503, retry) or answered an error this service did not expect (500)."""
    if isinstance(exc, ServerSelectionTimeoutError | AutoReconnect | ConnectionFailure) and not timed_out(exc):
        log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
        response = problem(503, "Database unavailable", "the database did not answer; retry later")
    elif timed_out(exc):
        response = problem(
            503,
            "Service Unavailable",
            "the database did not answer within this request's deadline (REQUEST_TIMEOUT_SECONDS); retry later",
        )
    else:
        return _unexpected(request, exc)
    response.headers["Retry-After"] = RETRY_AFTER
    return response


def timed_out(exc: PyMongoError) -> bool:
    """A client-side deadline (pymongo.timeout) or the server's maxTimeMS (MaxTimeMSExpired, code 50) ran out;
    a server that cannot be selected at all is down, whatever the deadline."""
    return exc.timeout and not isinstance(exc, ServerSelectionTimeoutError)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error", "unexpected error; see server log")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    AppError: _app_error,
    ValidationException: _validation,
    UnicodeDecodeError: _undecodable,
    HTTPException: _http,
    PyMongoError: _database,
    Exception: _unexpected,
}
