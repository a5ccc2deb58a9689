import pytest

from app.customers.document import KEY_CHARS, is_email, search_keys


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
    assert search_keys(doc) == keys
