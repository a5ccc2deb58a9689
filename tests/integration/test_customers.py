"""The customers API against the SecantusDB server: CRUD, listing, validation and problem+json errors."""

import datetime as dt
import random
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.customers.document import KEYS, index_keys
from app.customers.repository import CustomerRepository
from app.customers.schemas import CustomerUpdate
from app.errors import Conflict
from app.settings import Settings
from tests.helpers.answers import ListingPage, assert_problem
from tests.helpers.answers import walk as walk_pages

Client = AsyncTestClient
VALID = {"firstName": "Ann", "lastName": "Lee", "email": "ann.lee@example.com"}


async def create(client: Client, **fields: Any) -> dict[str, Any]:
    response = await client.post("/customers", json={**VALID, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def list_ids(client: Client, **params: Any) -> list[str]:
    response = await client.get("/customers", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return [item["customerId"] for item in response.json()["items"]]


async def insert_imported(db: AsyncDatabase, customer_id: str, **fields: Any) -> None:
    """A customer as the CSV import stores it: no handEdited flag."""
    now = dt.datetime.now(dt.UTC)
    doc = {"_id": customer_id, **VALID, **fields, "createdAt": now, "updatedAt": now, "importJobId": "job1"}
    await db.customers.insert_one({**doc, **index_keys(doc)})


def keys_of(stored: dict[str, Any]) -> dict[str, Any]:
    return {name: stored[name] for name in KEYS if name in stored}


# --- create / get -------------------------------------------------------------------------------------------


async def test_create_returns_201_and_stores_a_hand_edited_customer(client: Client, db: AsyncDatabase) -> None:
    payload = {
        **VALID,
        "customerId": "c-1",
        "company": "Acme",
        "country": "France",
        "subscriptionDate": "2024-02-29",
        "about": "likes tea",
    }
    response = await client.post("/customers", json=payload)
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in payload} == payload
    assert body["handEdited"] is True
    stored = await db.customers.find_one({"_id": "c-1"})
    assert stored is not None
    assert stored["handEdited"] is True
    assert "customerId" not in stored
    assert stored["subscriptionDate"] == dt.datetime(2024, 2, 29, tzinfo=dt.UTC)
    assert keys_of(stored) == index_keys(stored)
    assert stored["searchTerms"] == ["ann", "lee", "acme", "ann.lee@example.com"]


async def test_create_generates_a_customer_id_when_absent(client: Client, db: AsyncDatabase) -> None:
    first, second = await create(client), await create(client)
    assert first["customerId"] and second["customerId"] and first["customerId"] != second["customerId"]
    assert await db.customers.count_documents({"_id": first["customerId"], "handEdited": True}) == 1


async def test_create_an_existing_customer_id_is_409(client: Client, db: AsyncDatabase) -> None:
    await create(client, customerId="dup", firstName="First")
    problem = assert_problem(await client.post("/customers", json={**VALID, "customerId": "dup"}), 409)
    assert problem["customerId"] == "dup"
    assert (await db.customers.find_one({"_id": "dup"}) or {})["firstName"] == "First"


async def test_the_created_customer_is_what_get_returns(client: Client, db: AsyncDatabase) -> None:
    created = await create(client, customerId="same", subscriptionDate="2001-12-31")
    response = await client.get("/customers/same")
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize("customer_id", ["ü-1", "a.b", "a+b", "a:b;c", "x" * 64, "UPPER", "0"])
async def test_unusual_customer_ids_round_trip(client: Client, db: AsyncDatabase, customer_id: str) -> None:
    await create(client, customerId=customer_id)
    response = await client.get(f"/customers/{customer_id}")
    assert response.status_code == 200
    assert response.json()["customerId"] == customer_id


async def test_get_an_unknown_customer_is_404(client: Client, db: AsyncDatabase) -> None:
    assert_problem(await client.get("/customers/nobody"), 404)


async def test_fields_the_api_does_not_know_are_not_read(client: Client, db: AsyncDatabase) -> None:
    await insert_imported(db, "x-1", legacyRef="A-17", customerId="stale")
    body = (await client.get("/customers/x-1")).json()
    assert body["customerId"] == "x-1" and "legacyRef" not in body
    assert await list_ids(client) == ["x-1"]


async def test_an_imported_customer_is_not_hand_edited(client: Client, db: AsyncDatabase) -> None:
    await insert_imported(db, "imp-1")
    body = (await client.get("/customers/imp-1")).json()
    assert body["handEdited"] is False
    assert "importJobId" not in body and "searchKeys" not in body


# --- update / delete ----------------------------------------------------------------------------------------


async def test_patch_changes_only_the_given_fields_and_marks_hand_edited(client: Client, db: AsyncDatabase) -> None:
    await insert_imported(db, "p-1", company="Acme", city="Paris")
    before = await db.customers.find_one({"_id": "p-1"})
    response = await client.patch("/customers/p-1", json={"lastName": "Zed", "city": "Lyon"})
    assert response.status_code == 200
    body = response.json()
    assert (body["firstName"], body["lastName"], body["company"], body["city"]) == ("Ann", "Zed", "Acme", "Lyon")
    assert body["handEdited"] is True
    stored = await db.customers.find_one({"_id": "p-1"})
    assert stored is not None and before is not None
    assert stored["handEdited"] is True
    assert stored["createdAt"] == before["createdAt"]
    assert stored["updatedAt"] >= before["updatedAt"]
    assert keys_of(stored) == index_keys(stored)
    assert await list_ids(client, q="zed") == ["p-1"]
    assert await list_ids(client, q="lee") == []
    assert (await client.get("/customers/p-1")).json() == body


class Interleaved:
    """The customers collection, with a real concurrent write (another client's change of lastName, keys and
    all) landing right after the repository's first `find_one` and after its first `find_one_and_update`."""

    def __init__(self, collection: Any, customer_id: str):
        self.collection, self.customer_id, self.done = collection, customer_id, set()

    async def _interleave(self, point: str, last_name: str) -> None:
        if point not in self.done:
            self.done.add(point)
            doc = await self.collection.find_one({"_id": self.customer_id})
            doc["lastName"] = last_name
            fields = {name: value for name, value in doc.items() if name not in KEYS}
            await self.collection.replace_one({"_id": self.customer_id}, {**fields, **index_keys(fields)})

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        found = await self.collection.find_one(*args, **kwargs)
        await self._interleave("find_one", "Zed")
        return found

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        found = await self.collection.find_one_and_update(*args, **kwargs)
        await self._interleave("find_one_and_update", "Yon")
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)


async def test_a_patch_racing_another_write_leaves_search_keys_matching_the_fields(db: AsyncDatabase) -> None:
    await insert_imported(db, "p-9", company="Acme")
    repository = CustomerRepository(Interleaved(db.customers, "p-9"))  # type: ignore[arg-type]
    customer = await repository.update("p-9", CustomerUpdate(first_name="Bea"))
    stored = await db.customers.find_one({"_id": "p-9"})
    assert stored is not None
    assert (stored["firstName"], stored["lastName"]) == ("Bea", "Yon")  # both writes kept
    assert keys_of(stored) == index_keys(stored)
    assert customer.first_name == "Bea"


async def test_a_patch_that_keeps_losing_the_race_is_409(db: AsyncDatabase) -> None:
    await insert_imported(db, "p-8")

    class Busy(Interleaved):
        async def _interleave(self, point: str, last_name: str) -> None:
            self.done.clear()
            await super()._interleave(point, f"{last_name}{len(point)}")

    repository = CustomerRepository(Busy(db.customers, "p-8"))  # type: ignore[arg-type]
    with pytest.raises(Conflict):
        await repository.update("p-8", CustomerUpdate(company="Acme"))
    stored = await db.customers.find_one({"_id": "p-8"})
    assert stored is not None and "company" not in stored and keys_of(stored) == index_keys(stored)


async def test_patch_null_clears_an_optional_field(client: Client, db: AsyncDatabase) -> None:
    await create(client, customerId="p-2", company="Acme", subscriptionDate="2020-01-01")
    response = await client.patch("/customers/p-2", json={"company": None, "subscriptionDate": None})
    assert response.status_code == 200
    assert "company" not in response.json() and "subscriptionDate" not in response.json()
    stored = await db.customers.find_one({"_id": "p-2"})
    assert stored is not None
    assert "company" not in stored and "subscriptionDate" not in stored
    assert "acme" not in stored["searchTerms"]


async def test_patch_an_empty_object_is_400_and_leaves_the_customer_unmarked(client: Client, db: AsyncDatabase) -> None:
    """Issue 12 item 11: an empty PATCH used to answer 200 and set handEdited, shielding the customer from every
    future re-sync. It changes nothing, so it is refused, and the stored customer stays as the import wrote it."""
    await insert_imported(db, "p-3")
    before = await db.customers.find_one({"_id": "p-3"})
    problem = assert_problem(await client.patch("/customers/p-3", json={}), 400)
    assert "nothing to change" in problem["detail"]
    assert await db.customers.find_one({"_id": "p-3"}) == before


@pytest.mark.parametrize(
    "change",
    [
        {"customerId": "other"},
        {"handEdited": False},
        {"createdAt": "2020-01-01T00:00:00Z"},
        {"nickname": "Annie"},
        {"firstName": None},
        {"email": None},
        {"firstName": ""},
        {"email": "not-an-email"},
        {"company": 42},
        {"subscriptionDate": "2023-02-29"},
        {"about": "x" * 100_001},
    ],
)
async def test_patch_rejects(client: Client, db: AsyncDatabase, change: dict[str, Any]) -> None:
    created = await create(client, customerId="p-4")
    assert_problem(await client.patch("/customers/p-4", json=change), 400)
    assert (await client.get("/customers/p-4")).json() == created


async def test_patch_an_unknown_customer_is_404(client: Client, db: AsyncDatabase) -> None:
    assert_problem(await client.patch("/customers/nobody", json={"city": "Oslo"}), 404)
    assert await db.customers.count_documents({}) == 0


async def test_delete_returns_204_then_the_customer_is_gone(client: Client, db: AsyncDatabase) -> None:
    await create(client, customerId="d-1")
    response = await client.delete("/customers/d-1")
    assert response.status_code == 204
    assert response.content == b""
    assert await db.customers.count_documents({}) == 0
    assert_problem(await client.get("/customers/d-1"), 404)
    assert_problem(await client.delete("/customers/d-1"), 404)


# --- listing ------------------------------------------------------------------------------------------------

IDS = ["10", "9", "A", "B", "Z9", "a", "a-1", "a.1", "b", "z", "é", "ü-2"] + [f"n{i:02d}" for i in range(11)]


@pytest.fixture
async def many(client: Client, db: AsyncDatabase) -> list[str]:
    """23 customers created in a shuffled order; returns their ids in the order the API must list them."""
    for customer_id in random.Random(7).sample(IDS, len(IDS)):
        await create(client, customerId=customer_id, country="France" if customer_id < "b" else "Spain")
    return sorted(IDS)


async def test_pages_are_in_id_order_without_overlap(client: Client, many: list[str]) -> None:
    seen: list[str] = []
    for page in (1, 2, 3):
        response = await client.get("/customers", params={"page": page, "limit": 10})
        assert response.status_code == 200
        body = response.json()
        assert (body["page"], body["limit"], body["total"]) == (page, 10, len(many))
        seen += [item["customerId"] for item in body["items"]]
    assert seen == many
    past_the_end = (await client.get("/customers", params={"page": 4, "limit": 10})).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == len(many)


async def test_default_page_is_the_first_fifty(client: Client, many: list[str]) -> None:
    body = (await client.get("/customers")).json()
    assert (body["page"], body["limit"], body["total"]) == (1, 50, len(many))
    assert [item["customerId"] for item in body["items"]] == many


async def walk(client: Client, limit: int, **params: Any) -> tuple[list[str], set[int]]:
    """Follow nextCursor over HTTP from the first page to the end; the ids seen and the totals reported."""

    async def page_after(after: str | None) -> ListingPage:
        query = {"limit": limit, **params} | ({"after": after} if after else {})
        response = await client.get("/customers", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        return [item["customerId"] for item in body["items"]], body["total"], body.get("nextCursor")

    return await walk_pages(page_after, pages=100)


@pytest.mark.parametrize("limit", [1, 5, 7, 23, 500])
async def test_keyset_pages_walk_the_whole_set_exactly_once(client: Client, many: list[str], limit: int) -> None:
    ids, totals = await walk(client, limit)
    assert ids == many
    assert totals == {len(many)}


@pytest.mark.parametrize("params", [{}, {"country": "Spain"}])
async def test_next_cursor_only_when_another_customer_follows(
    client: Client, many: list[str], params: dict[str, str]
) -> None:
    total = (await client.get("/customers", params=params)).json()["total"]
    assert 1 < total < 50
    exact = (await client.get("/customers", params={**params, "limit": total})).json()
    assert len(exact["items"]) == total and "nextCursor" not in exact
    short = (await client.get("/customers", params={**params, "limit": total - 1})).json()
    assert short["nextCursor"]
    rest = (await client.get("/customers", params={**params, "limit": total, "after": short["nextCursor"]})).json()
    assert len(rest["items"]) == 1 and "nextCursor" not in rest


async def test_keyset_walk_with_a_filter(client: Client, many: list[str]) -> None:
    french = [customer_id for customer_id in many if customer_id < "b"]
    ids, totals = await walk(client, 2, country="France")
    assert ids == french
    assert totals == {len(french)}


async def test_a_page_cursor_continues_where_the_page_ended(client: Client, many: list[str]) -> None:
    first = (await client.get("/customers", params={"page": 1, "limit": 5})).json()
    following = (await client.get("/customers", params={"after": first["nextCursor"], "limit": 5})).json()
    second = (await client.get("/customers", params={"page": 2, "limit": 5})).json()
    assert following["items"] == second["items"]


PEOPLE = [
    {"customerId": "c1", "firstName": "Ann", "lastName": "Lee", "email": "ann.lee@example.com", "country": "France"},
    {"customerId": "c2", "firstName": "Anna", "lastName": "Berg", "email": "anna@berg.se", "country": "Sweden"},
    {"customerId": "c3", "firstName": "Bob", "lastName": "Annan", "email": "bob@x.org", "country": "France"},
    {"customerId": "c4", "firstName": "Zoë", "lastName": "Ängström", "email": "zoe@exämple.de", "company": "Ångbåt"},
    {
        "customerId": "c5",
        "firstName": "Carl",
        "lastName": "Smith",
        "email": "Carl.Smith@Example.com",
        "company": "Annex Ltd",
        "country": "USA",
    },
    {"customerId": "c6", "firstName": "Joann", "lastName": "Doe", "email": "jd@x.io", "country": "France"},
]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["c1", "c2", "c3", "c4", "c5", "c6"]),
        ({"q": "ann"}, ["c1", "c2", "c3", "c5"]),
        ({"q": "ANN"}, ["c1", "c2", "c3", "c5"]),
        ({"q": "anna"}, ["c2", "c3"]),
        ({"q": "oann"}, []),
        ({"q": "äng"}, ["c4"]),
        ({"q": "ÅNGB"}, ["c4"]),
        ({"q": "zoe@ex"}, ["c4"]),
        ({"q": "carl.smith@example.com"}, ["c5"]),
        ({"q": "smith"}, ["c5"]),
        ({"q": "x.org"}, []),
        ({"email": "Carl.Smith@Example.com"}, ["c5"]),
        ({"email": "carl.smith@example.com"}, ["c5"]),
        ({"email": "ann.lee@example"}, []),
        ({"email": "zoe@exämple.de"}, ["c4"]),
        ({"country": "France"}, ["c1", "c3", "c6"]),
        ({"country": "fRANCE"}, ["c1", "c3", "c6"]),
        ({"country": "France", "q": "ann"}, ["c1", "c3"]),
        ({"country": "Sweden", "email": "anna@berg.se"}, ["c2"]),
        ({"country": "France", "email": "anna@berg.se"}, []),
    ],
)
async def test_filters(client: Client, db: AsyncDatabase, params: dict[str, str], expected: list[str]) -> None:
    for person in PEOPLE:
        await create(client, **person)
    response = await client.get("/customers", params={**params, "limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == len(expected)
    assert await list_ids(client, **params) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"limit": "ten"},
        {"limit": 1.5},
        {"page": 0},
        {"page": "two"},
        {"page": 1_000_001},
        {"q": ""},
        {"q": "x" * 257},
        {"email": "x" * 257},
        {"after": "!!!"},
        {"after": "é"},
        {"after": "_w"},
        {"after": "x" * 513},
    ],
)
async def test_bad_list_parameters_are_400(client: Client, db: AsyncDatabase, params: dict[str, Any]) -> None:
    assert_problem(await client.get("/customers", params=params), 400)


@pytest.mark.parametrize("params", [{"limit": 1}, {"limit": 500}, {"page": 1_000_000}, {"q": "x" * 256}])
async def test_list_parameter_bounds_are_accepted(client: Client, db: AsyncDatabase, params: dict[str, Any]) -> None:
    assert (await client.get("/customers", params=params)).status_code == 200


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "jürgen@exämple.de"),
        ("email", "a@b"),
        ("subscriptionDate", "2024-02-29"),
        ("subscriptionDate", "0001-01-01"),
        ("subscriptionDate", "9999-12-31"),
        ("firstName", "x" * 256),
        ("company", "x" * 256),
        ("company", ""),
        ("company", None),
        ("about", "x" * 100_000),
        ("customerId", "x" * 64),
        ("customerId", None),
    ],
)
async def test_create_accepts(client: Client, db: AsyncDatabase, field: str, value: Any) -> None:
    response = await client.post("/customers", json={**VALID, field: value})
    assert response.status_code == 201, response.text
    if value is not None:
        assert response.json()[field] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("firstName", None),
        ("firstName", ""),
        ("firstName", "x" * 257),
        ("firstName", 123),
        ("lastName", ["Lee"]),
        ("email", "no-at-sign"),
        ("email", "a@@b"),
        ("email", "a@b@c"),
        ("email", "a b@c"),
        ("email", "a@b\n"),
        ("email", "@b"),
        ("email", "a@"),
        ("email", 5),
        ("email", "a@" + "b" * 255),
        ("email", None),
        ("customerId", ""),
        ("customerId", "x" * 65),
        ("customerId", "has space"),
        ("customerId", "a/b"),
        ("customerId", "a?b"),
        ("customerId", "a#b"),
        ("customerId", "a%b"),
        ("customerId", 42),
        ("company", "x" * 257),
        ("company", 1),
        ("phone1", True),
        ("about", "x" * 100_001),
        ("subscriptionDate", "2023-02-29"),
        ("subscriptionDate", "2024-02-30"),
        ("subscriptionDate", "2024-13-01"),
        ("subscriptionDate", "24-01-01"),
        ("subscriptionDate", "2024-01-01T00:00:00Z"),
        ("subscriptionDate", "today"),
        ("subscriptionDate", 20240101),
        ("handEdited", True),
        ("createdAt", "2020-01-01T00:00:00Z"),
        ("_id", "x"),
        ("searchKeys", ["x"]),
        ("firstname", "Ann"),
        ("nickname", "Annie"),
    ],
)
async def test_create_rejects(client: Client, db: AsyncDatabase, field: str, value: Any) -> None:
    assert_problem(await client.post("/customers", json={**VALID, field: value}), 400)
    assert await db.customers.count_documents({}) == 0


@pytest.mark.parametrize("missing", ["firstName", "lastName", "email"])
async def test_create_requires(client: Client, db: AsyncDatabase, missing: str) -> None:
    payload = {k: v for k, v in VALID.items() if k != missing}
    assert_problem(await client.post("/customers", json=payload), 400)


@pytest.mark.parametrize(
    "body",
    [
        b"{bad",
        b'{"firstName": }',
        b"",
        b"[]",
        b"null",
        b'"Ann"',
        b"42",
        b'{"firstName": "Ann",}',
        b'{"firstName": "\xff", "lastName": "Lee", "email": "a@b"}',
        b"\xff\xfe{}",
        b'\xef\xbb\xbf{"firstName": "Ann", "lastName": "Lee", "email": "a@b"}',
    ],
)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_malformed_json_is_400(client: Client, db: AsyncDatabase, body: bytes, method: str) -> None:
    await create(client, customerId="m-1")
    url = "/customers" if method == "POST" else "/customers/m-1"
    response = await client.request(method, url, content=body, headers={"content-type": "application/json"})
    assert_problem(response, 400)


async def test_a_body_at_the_limit_is_accepted_and_one_byte_more_is_413(
    client: Client, db: AsyncDatabase, settings: Settings
) -> None:
    body = httpx.Request("POST", "/", json=VALID).content
    padded = body + b" " * (settings.max_body_bytes - len(body))
    headers = {"content-type": "application/json"}
    assert (await client.post("/customers", content=padded, headers=headers)).status_code == 201
    assert_problem(await client.post("/customers", content=padded + b" ", headers=headers), 413)
    assert_problem(await client.patch("/customers/x", content=padded + b" ", headers=headers), 413)
    assert await db.customers.count_documents({}) == 1


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/nowhere", 404),
        ("PUT", "/customers", 405),
        ("PUT", "/customers/x", 405),
        ("POST", "/customers/x", 405),
    ],
)
async def test_unknown_routes_and_methods_are_problems(client: Client, method: str, url: str, status: int) -> None:
    assert_problem(await client.request(method, url), status)
