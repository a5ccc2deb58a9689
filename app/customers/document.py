"""The stored shape of a customer, shared by the API and the import workers (pure: no I/O).

Besides its fields, a customer carries the keys its indexes serve (app/db.py), derived here only:
- `searchKeys` (indexed): for each of first name, last name, company and email, lower-cased, its first
  PREFIX_CHARS characters (a shorter term whole), without repeats: about 3 index entries per customer where
  every prefix of 1 to 3 characters took 9 (docs/performance.md, issue 22). A `q` of PREFIX_CHARS
  characters is one equality on it, so the `(searchKeys, _id)` index walks its matches in customerId order
  and stops at the page's limit; a shorter `q` is app/customers/repository.py's to serve.
- `searchTerms` (not indexed): the same four terms whole. A longer `q` is the equality on its first
  PREFIX_CHARS characters plus a range over these; being unindexed, the range cannot be taken for the index's
  bounds instead of the equality (which would need a sort).
- `emailKey`, `countryKey`: the lower-cased email and country, for the case-insensitive exact filters.
"""

from __future__ import annotations

import re
from typing import Any

# Fields a customer carries, in API order (camelCase, as stored). customerId is stored as _id.
FIELDS = (
    "customerId",
    "firstName",
    "lastName",
    "email",
    "company",
    "city",
    "country",
    "phone1",
    "phone2",
    "subscriptionDate",
    "website",
    "about",
)
SEARCHED = ("firstName", "lastName", "company", "email")
INDEXED = (*SEARCHED, "country")  # the fields the keys are derived from
KEY_SOURCES = {"searchKeys": SEARCHED, "searchTerms": SEARCHED, "emailKey": ("email",), "countryKey": ("country",)}
KEYS = tuple(KEY_SOURCES)
PREFIX_CHARS = 3  # each index entry costs inserts: scripts/bench_indexes.py, docs/performance.md
KEY_CHARS = 256  # longest value kept in an index key


def text_key(value: str) -> str:
    """How a searched or filtered value is compared: lower case, at most KEY_CHARS characters."""
    return value.lower()[:KEY_CHARS]


def search_terms(doc: dict[str, Any]) -> list[str]:
    # A dict: ordered and without repeats.
    return list(dict.fromkeys(term for name in SEARCHED if (value := doc.get(name)) and (term := text_key(value))))


def search_prefixes(doc: dict[str, Any]) -> list[str]:
    """Each term's first PREFIX_CHARS characters, without repeats (a repeat is a wasted index entry)."""
    return list(dict.fromkeys(term[:PREFIX_CHARS] for term in search_terms(doc)))


def index_keys(doc: dict[str, Any]) -> dict[str, Any]:
    """The keys a customer with these fields carries; a key whose fields are empty is absent."""
    keys: dict[str, Any] = {}
    if terms := search_terms(doc):
        keys["searchKeys"] = search_prefixes(doc)
        keys["searchTerms"] = terms
    if email := doc.get("email"):
        keys["emailKey"] = text_key(email)
    if country := doc.get("country"):
        keys["countryKey"] = text_key(country)
    return keys


_WHITESPACE = re.compile(r"\s")


def is_email(value: str) -> bool:
    """Exactly one '@' with non-empty sides and no whitespace; Unicode allowed."""
    return (
        value.count("@") == 1
        and not value.startswith("@")
        and not value.endswith("@")
        and _WHITESPACE.search(value) is None
    )
