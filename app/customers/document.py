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
INDEXED = (*SEARCHED, "country")
KEY_CHARS = 256  # longest value kept in the index


def search_keys(doc: dict[str, Any]) -> list[str]:
    """What the one secondary index holds: lower-cased name, company and email (the `q` prefix search and
    the `email` filter) and the tagged exact country (the `country` filter)."""
    keys: list[str] = []
    for name in SEARCHED:
        value = doc.get(name)
        if value:
            key = value.lower()[:KEY_CHARS]
            if key not in keys:
                keys.append(key)
    if country := doc.get("country"):
        keys.append(country_key(country))
    return keys


def country_key(country: str) -> str:
    return COUNTRY_TAG + country[:KEY_CHARS]


_WHITESPACE = re.compile(r"\s")


def is_email(value: str) -> bool:
    """Exactly one '@' with non-empty sides and no whitespace; Unicode allowed."""
    return (value.count("@") == 1 and not value.startswith("@") and not value.endswith("@")
            and _WHITESPACE.search(value) is None)
