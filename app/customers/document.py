"""The stored shape of a customer, shared by the API and the import workers (pure: no I/O)."""

from __future__ import annotations

import re
import zlib
from typing import Any

# Fields a customer carries, in API order (camelCase, as stored). customerId is stored as _id.
FIELDS = ("customerId", "firstName", "lastName", "email", "company", "city", "country",
          "phone1", "phone2", "subscriptionDate", "website", "about")
SEARCHED = ("firstName", "lastName", "company", "email")
# Country entries share the one multikey index, tagged with a control character no `q` can contain.
COUNTRY_TAG = "\x1ecountry:"
INDEXED = (*SEARCHED, "country")
KEY_CHARS = 256  # longest value kept in the index
# Sample keys: a customer whose key hash ends in k zero octal digits carries "\x1esample:1" .. "\x1esample:k",
# so the customers holding "\x1esample:k" are a pseudo-random 8**-k of all of them (unrelated to their ids).
# Reading the sparsest level that holds enough of them tells, for a bounded cost whatever the collection
# size, how many customers there are and how their ids are spread: what the list endpoint sizes its `_id`
# windows with on SecantusDB (app/customers/listing.py). About 1 customer in 7 carries one. No tagged key
# (country, prefix, sample) can match a `q` or `email` filter: those cannot contain control characters.
SAMPLE_TAG = "\x1esample:"
SAMPLE_BASE = 8
SAMPLE_LEVELS = 6
# Prefix keys: the first two characters of each searched key, tagged, so that the customers a `q` of two or
# more characters can match are one index key (in _id order), which SecantusDB can read in _id windows.
PREFIX_TAG = "\x1eprefix:"
PREFIX_CHARS = 2
# Bumped whenever search_keys() gives other keys for the same customer: app.db records the version every stored
# customer has; until a database written by an older version is rewritten, listing does not rely on new keys.
SEARCH_KEYS_VERSION = 2


def search_keys(doc: dict[str, Any]) -> list[str]:
    """What the one secondary index holds: lower-cased name, company and email (the `q` prefix search and
    the `email` filter), the tagged exact country (the `country` filter), and the tagged prefix and sample keys
    (PREFIX_TAG, SAMPLE_TAG) the list endpoint reads in _id windows on SecantusDB."""
    keys: list[str] = []
    for name in SEARCHED:
        value = doc.get(name)
        if value:
            key = value.lower()[:KEY_CHARS]
            if key not in keys:
                keys.append(key)
    prefixes = list(dict.fromkeys(prefix_key(key) for key in keys))
    if country := doc.get("country"):
        keys.append(country_key(country))
    if keys:
        level = sample_level(keys)
        keys.extend(prefixes)
        keys.extend(sample_key(n) for n in range(1, level + 1))
    return keys


def prefix_key(text: str) -> str:
    """The prefix key of a searched key, or of a lower-cased `q` of PREFIX_CHARS or more characters."""
    return PREFIX_TAG + text[:PREFIX_CHARS]


def sample_level(keys: list[str]) -> int:
    """0..SAMPLE_LEVELS: how many trailing zero base-8 digits the hash of a customer's search keys has."""
    digest = zlib.crc32("\x1f".join(keys).encode("utf-8", "surrogatepass"))
    level = 0
    while level < SAMPLE_LEVELS and digest % SAMPLE_BASE == 0:
        digest //= SAMPLE_BASE
        level += 1
    return level


def sample_key(level: int) -> str:
    return f"{SAMPLE_TAG}{level}"


def country_key(country: str) -> str:
    return COUNTRY_TAG + country[:KEY_CHARS]


_WHITESPACE = re.compile(r"\s")


def is_email(value: str) -> bool:
    """Exactly one '@' with non-empty sides and no whitespace; Unicode allowed."""
    return (value.count("@") == 1 and not value.startswith("@") and not value.endswith("@")
            and _WHITESPACE.search(value) is None)
