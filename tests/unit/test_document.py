import collections

import pytest

from app.customers.document import (
    KEY_CHARS,
    PREFIX_TAG,
    SAMPLE_BASE,
    SAMPLE_TAG,
    is_email,
    prefix_key,
    sample_key,
    search_keys,
)


@pytest.mark.parametrize("value", [
    "a@b", "ann.lee+news@example.com", "jürgen@exämple.de", "用户@例子.广告", "o'brien@example.ie",
])
def test_is_email_accepts(value: str) -> None:
    assert is_email(value)


@pytest.mark.parametrize("value", [
    "", "@", "ann", "ann@", "@example.com", "ann@@example.com", "ann@example@com", "ann lee@example.com",
    "ann@example .com", " ann@example.com", "ann@example.com\n", "ann\t@example.com", "ann\u00a0@example.com",
])
def test_is_email_rejects(value: str) -> None:
    assert not is_email(value)


@pytest.mark.parametrize(("doc", "keys"), [
    ({"firstName": "Ann", "lastName": "Lee", "company": "Acme", "email": "Ann@Example.com"},
     ["ann", "lee", "acme", "ann@example.com"]),
    ({"firstName": "JÜRGEN", "lastName": "Öztürk"}, ["jürgen", "öztürk"]),
    ({"firstName": "Lee", "lastName": "LEE", "company": "lee"}, ["lee"]),
    ({"firstName": "Ann", "lastName": "", "company": None}, ["ann"]),
    ({"city": "Paris", "phone1": "+33 1", "website": "https://x.fr"}, []), ({}, []),
    ({"company": "X" * (KEY_CHARS + 10)}, ["x" * KEY_CHARS]),
])
def test_search_keys(doc: dict[str, str | None], keys: list[str]) -> None:
    tagged = (SAMPLE_TAG, PREFIX_TAG)
    assert [key for key in search_keys(doc) if not key.startswith(tagged)] == keys
    assert [key for key in search_keys(doc) if key.startswith(PREFIX_TAG)] == list(
        dict.fromkeys(prefix_key(key) for key in keys if not key.startswith("\x1e")))


def test_prefix_keys_are_the_first_two_characters_of_each_searched_key() -> None:
    keys = search_keys({"firstName": "Ann", "lastName": "Annan", "company": "B", "email": "zoe@x.io",
                        "country": "France"})
    assert [key for key in keys if key.startswith(PREFIX_TAG)] == [PREFIX_TAG + "an", PREFIX_TAG + "b",
                                                                   PREFIX_TAG + "zo"]


def test_sample_keys_are_nested_levels_of_a_pseudo_random_eighth() -> None:
    levels = collections.Counter()
    for i in range(40_000):
        keys = search_keys({"firstName": f"Ann{i}", "email": f"a{i}@example.com"})
        samples = [key for key in keys if key.startswith(SAMPLE_TAG)]
        assert samples == [sample_key(level) for level in range(1, len(samples) + 1)]
        assert keys == search_keys({"firstName": f"Ann{i}", "email": f"a{i}@example.com"})  # deterministic
        levels[len(samples)] += 1
    at_least_one = 40_000 - levels[0]
    assert abs(at_least_one / 40_000 - 1 / SAMPLE_BASE) < 0.01
    assert abs((at_least_one - levels[1]) / 40_000 - 1 / SAMPLE_BASE**2) < 0.004


def test_a_customer_without_searchable_values_has_no_sample_keys() -> None:
    assert search_keys({"city": "Paris"}) == []
