"""The stored shape of a customer, shared by the API and the import workers (pure: no I/O)."""

from __future__ import annotations

import re
from typing import Any

# Fields a customer carries, in API order (camelCase, as stored). customerId is stored as _id.
FIELDS = ("customerId", "firstName", "lastName", "email", "company", "city", "country",
          "phone1", "phone2", "subscriptionDate", "website", "about")
SEARCHED = ("firstName", "lastName", "company", "email")
# Country entries share the one multikey index, tagged with a control character no `q` can contain.
COUNTRY_TAG = "\x1ecountry:"
# So do id entries: the list's customerId order as index ranges, for SecantusDB (see repository.py).
ID_TAG = "\x1did:"
ID_TAG_END = "\x1did;"  # the first string after every id entry
INDEXED = (*SEARCHED, "country")
KEY_CHARS = 256  # longest value kept in the index
CONTROL = "".join(map(chr, range(32)))


def search_keys(doc: dict[str, Any], customer_id: str | None = None) -> list[str]:
    """What the one secondary index holds: lower-cased name, company and email (the `q` prefix search and
    the `email` filter), the tagged exact country (the `country` filter) and the tagged customer id (`_id`,
    or `customer_id` for a document that does not carry it yet: the unfiltered list on SecantusDB)."""
    keys: list[str] = []
    for name in SEARCHED:
        value = doc.get(name)
        if value and (key := text_key(value)) and key not in keys:
            keys.append(key)
    if country := doc.get("country"):
        keys.append(country_key(country))
    if isinstance(customer_id := doc.get("_id", customer_id), str):
        keys.append(ID_TAG + customer_id)  # not truncated: ids are bounded, and the order must be exact
    return keys


def text_key(value: str) -> str:
    """A name's, company's or email's entry: lower case, without leading control characters (the tags start
    with one: a name must not pass for a tag)."""
    return value.lower().lstrip(CONTROL)[:KEY_CHARS]


def country_key(country: str) -> str:
    return COUNTRY_TAG + country[:KEY_CHARS]


_WHITESPACE = re.compile(r"\s")


def is_email(value: str) -> bool:
    """Exactly one '@' with non-empty sides and no whitespace; Unicode allowed."""
    return (value.count("@") == 1 and not value.startswith("@") and not value.endswith("@")
            and _WHITESPACE.search(value) is None)
