"""The stored shape of a customer, shared by the API and the import workers (pure: no I/O)."""

from __future__ import annotations

from typing import Any

# Fields a customer carries, in API order (camelCase, as stored). customerId is stored as _id.
FIELDS = ("customerId", "firstName", "lastName", "email", "company", "city", "country",
          "phone1", "phone2", "subscriptionDate", "website", "about")
SEARCHED = ("firstName", "lastName", "company", "email")
MAX_LEN = {"customerId": 64, "about": 100_000}
DEFAULT_MAX_LEN = 256


def search_keys(doc: dict[str, Any]) -> list[str]:
    """Lower-cased values the `q` prefix search and the `email` filter look up (one multikey index)."""
    keys: list[str] = []
    for name in SEARCHED:
        value = doc.get(name)
        if value:
            key = value.lower()[:DEFAULT_MAX_LEN]
            if key not in keys:
                keys.append(key)
    return keys


def is_email(value: str) -> bool:
    """Exactly one '@' with non-empty sides and no whitespace; Unicode allowed."""
    local, at, domain = value.partition("@")
    return bool(at and local and domain) and "@" not in domain and not any(ch.isspace() for ch in value)
