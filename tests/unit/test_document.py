import pytest

from app.customers.document import KEY_CHARS, PREFIX_CHARS, index_keys, is_email, search_keys, search_terms


@pytest.mark.parametrize(
    "value",
    [
        "a@b",
        "ann.lee+news@example.com",
        "jürgen@exämple.de",
        "用户@例子.广告",
        "o'brien@example.ie",
    ],
)
def test_is_email_accepts(value: str) -> None:
    assert is_email(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "@",
        "ann",
        "ann@",
        "@example.com",
        "ann@@example.com",
        "ann@example@com",
        "ann lee@example.com",
        "ann@example .com",
        " ann@example.com",
        "ann@example.com\n",
        "ann\t@example.com",
        "ann\u00a0@example.com",
    ],
)
def test_is_email_rejects(value: str) -> None:
    assert not is_email(value)


def grams(term: str) -> list[str]:
    """What one term contributes to `searchKeys`: its prefixes of up to PREFIX_CHARS characters."""
    return list(dict.fromkeys(term[:n] for n in range(1, min(len(term), PREFIX_CHARS) + 1)))


@pytest.mark.parametrize(
    ("doc", "terms"),
    [
        (
            {"firstName": "Ann", "lastName": "Lee", "company": "Acme", "email": "Ann@Example.com"},
            ["ann", "lee", "acme", "ann@example.com"],
        ),
        ({"firstName": "JÜRGEN", "lastName": "Öztürk"}, ["jürgen", "öztürk"]),
        ({"firstName": "Lee", "lastName": "LEE", "company": "lee"}, ["lee"]),
        ({"firstName": "Ann", "lastName": "", "company": None}, ["ann"]),
        ({"city": "Paris", "phone1": "+33 1", "website": "https://x.fr"}, []),
        ({}, []),
        ({"company": "X" * (KEY_CHARS + 10)}, ["x" * KEY_CHARS]),
    ],
)
def test_search_keys_are_each_term_s_prefixes(doc: dict[str, str | None], terms: list[str]) -> None:
    assert search_keys(doc) == list(dict.fromkeys(key for term in terms for key in grams(term)))
    assert search_terms(doc) == terms


def test_search_keys_of_a_long_term() -> None:
    assert search_keys({"lastName": "Johansson"}) == ["j", "jo", "joh", "joha", "johan"][:PREFIX_CHARS]
    assert search_terms({"lastName": "Johansson"}) == ["johansson"]


@pytest.mark.parametrize(
    ("doc", "keys"),
    [
        (
            {"email": "Ann@Example.COM", "country": "Côte d'Ivoire"},
            {
                "searchKeys": search_keys({"email": "Ann@Example.COM"}),
                "searchTerms": ["ann@example.com"],
                "emailKey": "ann@example.com",
                "countryKey": "côte d'ivoire",
            },
        ),
        ({"firstName": "Ann"}, {"searchKeys": grams("ann"), "searchTerms": ["ann"]}),
        ({"country": "FRANCE", "city": "Paris"}, {"countryKey": "france"}),
        ({"city": "Paris"}, {}),
    ],
)
def test_index_keys_are_absent_for_empty_fields(doc: dict[str, str], keys: dict[str, object]) -> None:
    assert index_keys(doc) == keys
