"""OpenAPI-driven fuzz (schemathesis): valid, invalid and edge-case requests to every operation never get a 5xx."""

import datetime as dt

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from pymongo import AsyncMongoClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from app.asgi import create_app
from app.customers.document import index_keys
from app.settings import Settings
from tests.helpers.settings import with_settings

# The schema of an app that is never started (building one needs no database). Operations are parametrized
# here: schemathesis's own pytest integration (from_fixture, its test ids) sets Function._nodeid, which
# pytest 9 does not have.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(mongodb_uri="mongodb://unused")).openapi_schema.to_schema())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# Known server errors outside the customers API, reported to their owners; strict: a fix makes the test fail
# until the entry is removed.
FUZZ_DB = "fuzz"
KNOWN_ID = "fuzz-1"


@pytest.fixture(scope="session")
def fuzzed_app(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    """Its own database and an empty import folder keep fuzzed writes and imports away from other tests.

    schemathesis serves it on its own event loop thread (lifespan included, so with its own Mongo client).
    """
    imports = tmp_path_factory.mktemp("fuzz-imports")
    return create_app(with_settings(settings, mongodb_db=FUZZ_DB, import_dir=str(imports), csv_file_path=None))


@pytest.fixture
async def known_customer(mongo: AsyncMongoClient) -> None:
    """(Re)create the customer that half of the customer-id cases ask for, so they get past the 404."""
    now = dt.datetime.now(dt.UTC)
    doc = {
        "firstName": "Fuzz",
        "lastName": "Target",
        "email": "fuzz@example.com",
        "country": "Fuzzland",
        "createdAt": now,
        "updatedAt": now,
    }
    await mongo[FUZZ_DB].customers.replace_one({"_id": KNOWN_ID}, {**doc, **index_keys(doc)}, upsert=True)


def cases(operation: schemathesis.APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    known = [{"customer_id": KNOWN_ID}] if "{customer_id}" in operation.path else []
    return st.one_of(
        [operation.as_strategy(mode, path_parameters=fixed) for mode in GenerationMode for fixed in [None, *known]]
    )


def timeout(operation: schemathesis.APIOperation) -> float:
    """Seconds to wait for a response: a safety limit, not a speed requirement (a loaded machine is slow); the
    progress stream never ends by itself, so it is cut after 1 s (what it sent is kept)."""
    return 1 if operation.path.endswith("/stream") else 30


def examples(operation: schemathesis.APIOperation) -> int:
    """The stream has one optional string parameter (access_token) and each example waits out its 1 s timeout:
    10 examples cover it; 40 cost the suite half a minute."""
    return 10 if operation.path.endswith("/stream") else 40


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_operation_answers_5xx(
    operation: schemathesis.APIOperation, fuzzed_app: Litestar, known_customer: None
) -> None:
    @given(case=cases(operation))
    @settings(
        max_examples=examples(operation),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(app=fuzzed_app, checks=[not_a_server_error], timeout=timeout(operation))

    fuzz()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_boundary_cases_never_answer_5xx(
    operation: schemathesis.APIOperation, fuzzed_app: Litestar, known_customer: None
) -> None:
    """schemathesis's coverage phase: deterministic edge cases (lengths and bounds at and past their limits,
    wrong types, missing and duplicated parameters, unexpected methods)."""
    config = SCHEMA.config.generation_for(operation=operation, phase="coverage")
    server_errors = []
    for case in SCHEMA.iter_coverage_cases(operation, generation_modes=list(GenerationMode), generation_config=config):
        response = case.call(app=fuzzed_app, timeout=timeout(operation))
        if response.status_code >= 500:
            server_errors.append(f"{response.status_code}: {case.as_curl_command()}"[:300])
    assert not server_errors, "\n".join(server_errors)


# ---- depth and width: JSON no schema-driven generator produces (issue 12, item 2) --------------------------
# A 2 KB body nested 1,000 deep was a RecursionError (500) on every JSON endpoint. These bodies go as raw bytes:
# Python's own encoder cannot even write the deepest of them.

RAW = SCHEMA.raw_schema
BODY_OPERATIONS = [
    op for op in OPERATIONS if "application/json" in op.definition.raw.get("requestBody", {}).get("content", {})
]
VALID_BODIES = {  # a body each operation accepts, so that the hostile value is the only thing wrong
    "POST /customers": {"firstName": "Deep", "lastName": "Wide", "email": "deep@example.com"},
    "PATCH /customers/{customer_id}": {"city": "Depth"},
    "POST /import/sync": {"dryRun": True},
    "POST /import/preview": {"dryRun": True},
    "POST /import/resume": {"jobId": "no-such-job"},
}


def body_fields(operation: schemathesis.APIOperation) -> list[str]:
    """The top-level property names of the operation's JSON body (its one $ref'd component)."""
    text = repr(operation.definition.raw["requestBody"])
    ref = text.split("#/components/schemas/", 1)[1].split("'", 1)[0]
    return sorted(RAW["components"]["schemas"][ref]["properties"])


def nested(kind: str, depth: int) -> str:
    return "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "null" + "}" * depth


def wide(kind: str, width: int) -> str:
    if kind == "array":
        return "[" + ",".join(["0"] * width) + "]"
    return "{" + ",".join(f'"k{i}":0' for i in range(width)) + "}"


@st.composite
def hostile_bodies(draw: st.DrawFn, operation: schemathesis.APIOperation) -> bytes:
    """Deep or wide JSON (or both: a wide array of deep values) as the whole body or as one field's value."""
    kind = draw(st.sampled_from(["array", "object"]))
    shape = draw(st.sampled_from(["deep", "wide", "wide of deep"]))
    depth = draw(st.integers(min_value=2, max_value=20_000))
    width = draw(st.integers(min_value=2, max_value=120_000))
    if shape == "deep":
        value = nested(kind, depth)
    elif shape == "wide":
        value = wide(kind, width)
    else:
        value = "[" + ",".join([nested(kind, min(depth, 2_000))] * min(width, 50)) + "]"
    field = draw(st.sampled_from([None, "anUnknownField", *body_fields(operation)]))
    if field is None:
        return value.encode()
    valid = VALID_BODIES[operation.label]
    rest = msgspec.json.encode({name: v for name, v in valid.items() if name != field}).decode()[1:-1]
    return ("{" + (rest + "," if rest else "") + f'"{field}":{value}' + "}").encode()


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=lambda operation: operation.label)
def test_deep_and_wide_json_bodies_get_a_4xx_problem(
    operation: schemathesis.APIOperation, fuzzed_app: Litestar, known_customer: None
) -> None:
    path = operation.path.replace("{customer_id}", KNOWN_ID)
    with TestClient(fuzzed_app, timeout=30) as client:

        @given(body=hostile_bodies(operation))
        @settings(
            max_examples=40, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(body: bytes) -> None:
            response = client.request(
                operation.method.upper(), path, content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code in (400, 413), f"{response.status_code} for {body[:120]!r}"
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["status"] == response.status_code

        fuzz()
