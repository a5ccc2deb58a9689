"""How the API reads what a client sends: JSON bodies strictly into the handler's type, and no query parameter
that the handler does not declare.

Litestar converts a body with `strict=False`, so `"batchSize": "100"` passed as a number while
`"dryRun": "yes"` was refused; its untyped pre-decode also recursed into any nesting (a 2 KB body of 1,000
brackets was a RecursionError, a 500). Decoding straight into the declared type is strict for every field and
stops at the first value of the wrong shape, so nesting never gets deep.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.constants import RESERVED_KWARGS
from litestar.enums import ParamType
from litestar.handlers import BaseRouteHandler
from litestar.params import BodyKwarg, DependencyKwarg, ParameterKwarg

from app.errors import InvalidInput, MalformedBody

ANY_QUERY = "any_query"  # a handler's opt key: it accepts any query parameter (the dashboard's pages)
# A \uXXXX escape of a UTF-16 surrogate; case-insensitive hex digits as JSON allows.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class ApiRequest(Request[Any, Any, Any]):
    """A Request whose `json()` decodes into the type of the handler's `data` parameter, strictly."""

    async def json(self) -> Any:
        return decode_body(await self.body(), body_type(self.route_handler))


def body_type(handler: BaseRouteHandler) -> Any:
    data = handler.parsed_fn_signature.parameters.get("data")
    return Any if data is None else data.annotation


def decode_body(body: bytes, target: Any) -> Any:
    """`body` decoded as `target` (strict: no string for a number or a boolean), or a 400 that says why."""
    try:
        return msgspec.json.decode(body or b"null", type=target, strict=True)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        key = path.rstrip("`").lstrip(".") or None
        error = {"message": message, "source": "body"} | ({"key": key} if key else {})
        raise InvalidInput(f"{key}: {message}" if key else message, errors=[error]) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedBody(_explain(body, exc)) from None
    except RecursionError:  # only an untyped (Any) body can nest; a typed one fails at its first wrong value
        raise MalformedBody("the JSON is nested too deeply") from None


def _explain(body: bytes, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"the body is not valid UTF-8: {exc.reason}"
    if (lone := lone_surrogate(body)) is not None:
        return f"the JSON has an unpaired UTF-16 surrogate escape {lone}; strings must be valid Unicode"
    return f"the body is not valid JSON: {exc}".replace("JSON is malformed: ", "")


def lone_surrogate(body: bytes) -> str | None:
    """The first \\uD800-\\uDFFF escape that is not a high surrogate followed directly by a low one."""
    matches = list(_SURROGATE.finditer(body))
    i = 0
    while i < len(matches):
        high, low = matches[i], matches[i + 1] if i + 1 < len(matches) else None
        is_high = high.group()[3:4].lower() in (b"8", b"9", b"a", b"b")
        paired = low is not None and low.start() == high.end() and low.group()[3:4].lower() in (b"c", b"d", b"e", b"f")
        if not (is_high and paired):
            return high.group().decode()
        i += 2
    return None


@functools.cache
def query_names(handler: BaseRouteHandler, path_params: frozenset[str]) -> dict[str, bool]:
    """The query parameters `handler` declares, as a client spells them, each with whether it takes a list."""
    dependencies = handler.resolve_dependencies()
    names = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if name in RESERVED_KWARGS or name in dependencies or name in path_params:
            continue
        if isinstance(kwarg, ParameterKwarg):
            if kwarg.param_type is ParamType.QUERY:
                names[kwarg.name or name] = field.is_non_string_sequence
        elif not isinstance(kwarg, BodyKwarg | DependencyKwarg):
            names[name] = field.is_non_string_sequence
    return names


def reject_unknown_query(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """An app-wide guard (guards add up across layers, where a before_request hook of a controller would replace
    this one): a misspelt or unsupported parameter (`?email[$ne]=x`) is a 400, never silently ignored, and so is
    a single-valued one given twice (`?limit=1&limit=500`: which one did the client mean?)."""
    query = connection.query_params
    if not query or "query" in handler.parsed_fn_signature.parameters or handler.opt.get(ANY_QUERY):
        return  # the handler (or the page it serves) reads them all itself
    declared = query_names(handler, frozenset(connection.path_params))
    unknown = sorted(name for name in query if name not in declared)
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise InvalidInput(
            f"unknown query parameter {unknown[0]!r} (this endpoint takes: {known})", unknownParameters=unknown
        )
    repeated = sorted(name for name in query if not declared[name] and len(query.getall(name)) > 1)
    if repeated:
        raise InvalidInput(f"query parameter {repeated[0]!r} is given more than once", repeatedParameters=repeated)
