"""app/inputs.py without a server: strict decoding, the nesting bound of an untyped body, surrogate escapes."""

from typing import Any

import pytest

from app.customers.schemas import CustomerUpdate
from app.errors import InvalidInput, MalformedBody
from app.imports.schemas import ImportRequest
from app.inputs import decode_body, lone_surrogate


def test_a_typed_body_is_decoded_strictly_and_names_the_field() -> None:
    assert decode_body(b'{"batchSize": 100}', ImportRequest | None) == ImportRequest(batch_size=100)
    with pytest.raises(InvalidInput) as caught:
        decode_body(b'{"batchSize": "100"}', ImportRequest | None)
    assert caught.value.detail.startswith("batchSize: ")
    assert caught.value.extra["errors"][0]["key"] == "batchSize"


def test_an_empty_body_is_null() -> None:
    assert decode_body(b"", ImportRequest | None) is None


def test_an_untyped_body_nested_past_the_recursion_limit_is_malformed_not_an_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MalformedBody, match="nested too deeply"):
        decode_body(deep, Any)
    assert decode_body(b"[" * 50 + b"]" * 50, Any) is not None


def test_an_empty_update_changes_nothing_and_is_refused() -> None:
    with pytest.raises(InvalidInput, match="nothing to change"):
        decode_body(b"{}", CustomerUpdate)
    assert decode_body(b'{"city": null}', CustomerUpdate) == CustomerUpdate(city=None)


@pytest.mark.parametrize(
    "body, lone",
    [
        (rb'"\ud800"', r"\ud800"),
        (rb'"\uDC00"', r"\uDC00"),
        (rb'"\ud83d\ude00 \ud83d"', r"\ud83d"),
        (rb'"\ude00\ud83d"', r"\ude00"),
        (rb'"\ud83d\u0041"', r"\ud83d"),
        (rb'"\ud83d\ude00"', None),
        (rb'"\u0041\u00e9"', None),
    ],
)
def test_lone_surrogate_finds_the_first_unpaired_escape(body: bytes, lone: str | None) -> None:
    assert lone_surrogate(body) == lone
