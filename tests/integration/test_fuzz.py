"""OpenAPI-driven fuzz (schemathesis): valid and invalid requests to every operation never get a 5xx."""

import datetime as dt

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from pymongo import AsyncMongoClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from app.asgi import create_app
from app.customers.document import search_keys
from app.settings import Settings
from tests.conftest import with_settings

# The schema of an app that is never started (building one needs no database). Operations are parametrized
# here: schemathesis's own pytest integration (from_fixture, its test ids) sets Function._nodeid, which
# pytest 9 does not have.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(mongodb_uri="mongodb://unused")).openapi_schema.to_schema())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
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
    """(Re)create the customer half of the path-parameter cases name, so they reach more than a 404."""
    now = dt.datetime.now(dt.UTC)
    doc = {"firstName": "Fuzz", "lastName": "Target", "email": "fuzz@example.com", "country": "Fuzzland",
           "createdAt": now, "updatedAt": now}
    await mongo[FUZZ_DB].customers.replace_one({"_id": KNOWN_ID}, {**doc, "searchKeys": search_keys(doc)},
                                               upsert=True)


def cases(operation: schemathesis.APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    known = [{"customer_id": KNOWN_ID}] if "{customer_id}" in operation.path else []
    return st.one_of([operation.as_strategy(mode, path_parameters=fixed)
                      for mode in GenerationMode for fixed in [None, *known]])


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_operation_answers_5xx(operation: schemathesis.APIOperation, fuzzed_app: Litestar,
                                  known_customer: None) -> None:
    @given(case=cases(operation))
    @settings(max_examples=60, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        # timeout: the progress stream never ends by itself; schemathesis keeps what it sent until then.
        case.call_and_validate(app=fuzzed_app, checks=[not_a_server_error], timeout=3)

    fuzz()
