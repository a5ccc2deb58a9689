import pytest

from app.customers.document import KEY_CHARS, PREFIX_CHARS, index_keys, is_email, search_prefixes, search_terms


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


@pytest.mark.parametrize(
    ("doc", "terms", "prefixes"),
    [
        (
            {"firstName": "Ann", "lastName": "Lee", "company": "Acme", "email": "Ann@Example.com"},
            ["ann", "lee", "acme", "ann@example.com"],
            ["ann", "lee", "acm"],  # the email's prefix is the first name's: one entry for both
        ),
        ({"firstName": "JÜRGEN", "lastName": "Öztürk"}, ["jürgen", "öztürk"], ["jür", "özt"]),
        ({"firstName": "Lee", "lastName": "LEE", "company": "lee"}, ["lee"], ["lee"]),
        ({"firstName": "Ann", "lastName": "", "company": None}, ["ann"], ["ann"]),
        ({"firstName": "Li", "lastName": "X", "email": "x@y.z"}, ["li", "x", "x@y.z"], ["li", "x", "x@y"]),
        ({"firstName": "Annabel", "lastName": "Annan"}, ["annabel", "annan"], ["ann"]),
        ({"city": "Paris", "phone1": "+33 1", "website": "https://x.fr"}, [], []),
        ({}, [], []),
        ({"company": "X" * (KEY_CHARS + 10)}, ["x" * KEY_CHARS], ["xxx"]),
        (
            {"lastName": "\U0001f600\U0001f601\U0001f602\U0001f603"},
            ["\U0001f600\U0001f601\U0001f602\U0001f603"],
            ["\U0001f600\U0001f601\U0001f602"],
        ),
    ],
)
def test_search_prefixes_are_each_term_s_first_characters(
    doc: dict[str, str | None], terms: list[str], prefixes: list[str]
) -> None:
    """One index entry per distinct first PREFIX_CHARS characters (a shorter term whole), none per other prefix."""
    assert search_terms(doc) == terms
    assert search_prefixes(doc) == prefixes
    assert all(len(prefix) <= PREFIX_CHARS for prefix in prefixes)


@pytest.mark.parametrize(
    ("doc", "keys"),
    [
        (
            {"email": "Ann@Example.COM", "country": "Côte d'Ivoire"},
            {
                "searchKeys": ["ann"],
                "searchTerms": ["ann@example.com"],
                "emailKey": "ann@example.com",
                "countryKey": "côte d'ivoire",
            },
        ),
        ({"firstName": "Ann"}, {"searchKeys": ["ann"], "searchTerms": ["ann"]}),
        ({"country": "FRANCE", "city": "Paris"}, {"countryKey": "france"}),
        ({"city": "Paris"}, {}),
    ],
)
def test_index_keys_are_absent_for_empty_fields(doc: dict[str, str], keys: dict[str, object]) -> None:
    assert index_keys(doc) == keys
