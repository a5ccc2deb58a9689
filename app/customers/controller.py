"""HTTP <-> CustomerRepository. No pymongo here."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from app.admission import Work, admitted, cheap_when
from app.customers.repository import CustomerRepository
from app.customers.schemas import Customer, CustomerCreate, CustomerPage, CustomerUpdate
from app.errors import InvalidInput

Repo = NamedDependency[CustomerRepository]
CHEAP = admitted(Work.CHEAP)


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
        email: Annotated[str | None, QueryParameter(max_length=256, description="exact email, any case")] = None,
        country: Annotated[str | None, QueryParameter(max_length=256, description="exact country, any case")] = None,
        q: Annotated[
            str | None,
            QueryParameter(
                min_length=1,
                max_length=256,
                pattern=r"^[^\x00-\x1f]+$",
                description="case-insensitive prefix of name, company or email",
            ),
        ] = None,
    ) -> CustomerPage:
        if page is not None and after is not None:
            raise InvalidInput("give either page or after, not both")
        return await repository.list(limit=limit, page=page, after=after, email=email, country=country, q=q)

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
