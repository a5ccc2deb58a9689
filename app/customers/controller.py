"""HTTP <-> CustomerRepository. No pymongo here."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from litestar import Controller, delete, get, patch, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from app.admission import Work, admitted, cheap_when
from app.auth import QUERY_TOKEN, TOKEN_IN_QUERY
from app.customers.export import COLUMNS, Format, accepts_gzip, parse_fields
from app.customers.exporter import Exporter, ExportRequest
from app.customers.repository import CustomerRepository
from app.customers.schemas import (
    FILTER_MAX_CHARS,
    PREFIX_PATTERN,
    Customer,
    CustomerCreate,
    CustomerPage,
    CustomerUpdate,
)
from app.errors import InvalidInput

Repo = NamedDependency[CustomerRepository]
CHEAP = admitted(Work.CHEAP)
Exports = NamedDependency[Exporter]
# The list's filters, shared by GET /customers and GET /customers/export (the same rules, the same 400s).
EmailFilter = Annotated[str | None, QueryParameter(max_length=FILTER_MAX_CHARS, description="exact email, any case")]
CountryFilter = Annotated[
    str | None, QueryParameter(max_length=FILTER_MAX_CHARS, description="exact country, any case")
]
EXPORT_OPT = {**TOKEN_IN_QUERY, "work": Work.EXPORT}  # its own bound (Exporter.admit), no request deadline
EXPORT_DESCRIPTION = (
    "Every customer matching `email`, `country` and `q` (the rules and 400s of GET /customers), in customerId "
    "order, read from one cursor as the client takes the bytes. CSV (RFC 4180, UTF-8, dates YYYY-MM-DD) has a "
    "header row of the importer's column names, so the file imports again as it is. `fields` chooses the "
    "columns (default: the imported fields). The body is gzip-encoded when Accept-Encoding allows it, or a .gz "
    "file with compress=gzip. A failure midway cuts the response off (no final chunk): it never looks complete. "
    "At most EXPORT_MAX_CONCURRENT exports run at once per instance (503 with Retry-After beyond). Also accepts "
    "the token as ?access_token= (a browser download cannot send a header)."
)
PrefixFilter = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=FILTER_MAX_CHARS,
        pattern=PREFIX_PATTERN,
        description="case-insensitive prefix of name, company or email",
    ),
]


class CustomerController(Controller):
    path = "/customers"
    tags = ["customers"]

    @post(status_code=HTTP_201_CREATED, summary="Create a customer (marked hand-edited)", **CHEAP)
    async def create(self, data: JSONBody[CustomerCreate], repository: Repo) -> Customer:
        return await repository.create(data)

    @get(
        summary="List customers in customerId order, by page or keyset cursor",
        description="`total` counts every customer when unfiltered (the collection's count) and the matches "
        "of a filter up to 10,000; `totalCapped` is true when more match.",
        **admitted(cheap_when("email")),  # email= is one index lookup; every other shape reads a range
    )
    async def list_customers(
        self,
        repository: Repo,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        page: Annotated[int | None, QueryParameter(ge=1, le=1_000_000, description="1-based page (skip)")] = None,
        after: Annotated[
            str | None, QueryParameter(max_length=512, description="nextCursor of the previous page")
        ] = None,
        email: EmailFilter = None,
        country: CountryFilter = None,
        q: PrefixFilter = None,
    ) -> CustomerPage:
        if page is not None and after is not None:
            raise InvalidInput("give either page or after, not both")
        return await repository.list(limit=limit, page=page, after=after, email=email, country=country, q=q)

    @get(
        "/export",
        summary="Export the customers matching the list's filters, as CSV or NDJSON, streamed in customerId order",
        description=EXPORT_DESCRIPTION,
        opt=EXPORT_OPT,
        media_type="text/csv",  # what the OpenAPI document shows; each response sets its own Content-Type
        response_description="The file (Content-Disposition: attachment): CSV by default; NDJSON "
        "(application/x-ndjson) with format=ndjson; application/gzip with compress=gzip",
        responses={503: ResponseSpec(None, description="EXPORT_MAX_CONCURRENT exports are running; see Retry-After")},
    )
    async def export(
        self,
        exporter: Exports,
        email: EmailFilter = None,
        country: CountryFilter = None,
        q: PrefixFilter = None,
        export_format: Annotated[Format, QueryParameter(name="format", description="csv or ndjson")] = Format.CSV,
        fields: Annotated[
            str | None, QueryParameter(max_length=1024, description=f"comma-separated, of: {', '.join(COLUMNS)}")
        ] = None,
        compress: Annotated[
            Literal["gzip"] | None, QueryParameter(description="gzip: the body is a .gz file (application/gzip)")
        ] = None,
        accept_encoding: Annotated[str | None, HeaderParameter(name="accept-encoding", required=False)] = None,
        access_token: Annotated[
            str | None,
            QueryParameter(
                name=QUERY_TOKEN, max_length=4096, description="API_TOKEN, for a browser's download link (no header)"
            ),
        ] = None,
    ) -> Stream:
        # access_token is declared for the OpenAPI document and the query checks; app/auth.py verifies it
        request = ExportRequest(
            fmt=export_format,
            fields=parse_fields(fields),
            email=email,
            country=country,
            q=q,
            gzip_file=compress == "gzip",
            gzip_encoding=accepts_gzip(accept_encoding),
        )
        export = await exporter.open(request)
        return Stream(
            export.chunks(),
            background=BackgroundTask(export.close),  # also after a client that left: the body may never start
            headers=request.headers(dt.datetime.now(dt.UTC).date()),
        )

    @get("/{customer_id:str}", summary="Get a customer", **CHEAP)
    async def get_customer(self, customer_id: FromPath[str], repository: Repo) -> Customer:
        return await repository.get(customer_id)

    @patch(
        "/{customer_id:str}",
        summary="Change some fields (marks the customer hand-edited); an empty body is a 400, not a no-op",
        **CHEAP,
    )
    async def update(self, customer_id: FromPath[str], data: JSONBody[CustomerUpdate], repository: Repo) -> Customer:
        return await repository.update(customer_id, data)

    @delete("/{customer_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a customer", **CHEAP)
    async def remove(self, customer_id: FromPath[str], repository: Repo) -> None:
        await repository.delete(customer_id)
