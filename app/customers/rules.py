"""What a valid customer is: one definition for the API's schemas and the CSV importer (pure: stdlib only).

The API's msgspec types take their limits and patterns from here, and the import workers check every row
against the same rules (`row_problem`), so the importer never stores a customer the API would refuse, or one
that `GET/PATCH/DELETE /customers/{customerId}` cannot reach.
"""

from __future__ import annotations

import re

ID_MAX_CHARS = 64
NAME_MAX_CHARS = 256  # firstName, lastName
TEXT_MAX_CHARS = 256  # company, city, country, phones, email, website
ABOUT_MAX_CHARS = 100_000
# A control character (C0 but tab, LF and CR, which free text may hold; DEL; C1) is never stored.
CONTROL = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# An id is one path segment of /customers/{customerId}: no whitespace or control character, none of / ? # %
# (a client or the router would read them as URL syntax), and not "." or ".." (clients remove dot segments).
# END is the end of the text: `$` also matches before a final newline in Python ("nl\n" passed as an id); a
# lookahead that no character follows means the same in Python and in the JSON Schema (ECMA) reading of it.
# RESERVED_IDS are paths of their own under /customers/ (GET /customers/export): a customer with one of them as
# its id could never be read, changed or deleted.
END = r"(?![\s\S])"
RESERVED_IDS = ("export",)
_RESERVED = "|".join(RESERVED_IDS)
ID_PATTERN = rf"^(?!(?:\.\.?|{_RESERVED}){END})[^\s{CONTROL}/?#%]+{END}"
TEXT_PATTERN = rf"^[^{CONTROL}]*{END}"
NAME_PATTERN = rf"^(?=[\s\S]*\S)[^{CONTROL}]*{END}"  # and not only whitespace (the importer trims it away)
EMAIL_PATTERN = rf"^[^@\s{CONTROL}]+@[^@\s{CONTROL}]+{END}"  # documents document.is_email (+ no control character)
ID_DESCRIPTION = "Unique id: no whitespace, control characters or / ? # %, not '.', '..' or 'export'"

MAX_CHARS = {
    "customerId": ID_MAX_CHARS,
    "firstName": NAME_MAX_CHARS,
    "lastName": NAME_MAX_CHARS,
    "company": TEXT_MAX_CHARS,
    "city": TEXT_MAX_CHARS,
    "country": TEXT_MAX_CHARS,
    "phone1": TEXT_MAX_CHARS,
    "phone2": TEXT_MAX_CHARS,
    "email": TEXT_MAX_CHARS,
    "subscriptionDate": TEXT_MAX_CHARS,
    "website": TEXT_MAX_CHARS,
    "about": ABOUT_MAX_CHARS,
}
_ID = re.compile(ID_PATTERN)
_CONTROL = re.compile(f"[{CONTROL}]")


def id_problem(value: str) -> str | None:
    """Why `value` (already trimmed) cannot be a customer id, or None."""
    if not value:
        return "customer id is empty"
    if len(value) > ID_MAX_CHARS:
        return f"customer id longer than {ID_MAX_CHARS} characters"
    if _ID.match(value) is None:
        if value in RESERVED_IDS:
            return f"customer id {value!r} is reserved (GET /customers/{value} is another endpoint)"
        return f"customer id {value[:80]!r} has whitespace, a control character, / ? # % or is '.' or '..'"
    return None


def text_problem(field: str, value: str) -> str | None:
    """Why `value` cannot be stored in `field` (length, control characters), or None."""
    limit = MAX_CHARS[field]
    if len(value) > limit:
        return f"{field} longer than {limit} characters"
    if _CONTROL.search(value):
        return f"{field} contains a control character"
    return None


def has_control(text: str) -> bool:
    """True when `text` holds a character no field may store (the importer checks a whole block at once)."""
    return _CONTROL.search(text) is not None
