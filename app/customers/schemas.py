"""Customer request and response models (msgspec, camelCase on the wire)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from app.customers import rules
from app.customers.document import is_email

# Limits and patterns come from app/customers/rules.py, which the importer checks every row against too.
CustomerId = Annotated[
    str,
    Meta(min_length=1, max_length=rules.ID_MAX_CHARS, pattern=rules.ID_PATTERN, description=rules.ID_DESCRIPTION),
]
Name = Annotated[str, Meta(min_length=1, max_length=rules.NAME_MAX_CHARS, pattern=rules.NAME_PATTERN)]
Text = Annotated[str, Meta(max_length=rules.TEXT_MAX_CHARS, pattern=rules.TEXT_PATTERN)]
About = Annotated[str, Meta(max_length=rules.ABOUT_MAX_CHARS, pattern=rules.TEXT_PATTERN)]
# The pattern documents the rule in the OpenAPI schema (clients and fuzzers then send real addresses);
# is_email stays the authority (JSON Schema's `$` also matches before a final newline).
Email = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=rules.TEXT_MAX_CHARS,
        pattern=rules.EMAIL_PATTERN,
        description="exactly one '@' with text on both sides, no whitespace",
    ),
]


class Base(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """Shared config: camelCase names, unknown fields rejected, absent optionals omitted."""


def _check_email(email: object) -> None:
    if isinstance(email, str) and not is_email(email):
        raise ValueError("email must contain exactly one '@' with text on both sides and no whitespace")


class CustomerCreate(Base):
    first_name: Name
    last_name: Name
    email: Email
    customer_id: CustomerId | None = None
    company: Text | None = None
    city: Text | None = None
    country: Text | None = None
    phone1: Text | None = None
    phone2: Text | None = None
    subscription_date: dt.date | None = None
    website: Text | None = None
    about: About | None = None

    def __post_init__(self) -> None:
        _check_email(self.email)


class CustomerUpdate(Base):
    """Partial update: absent fields are untouched; null clears an optional field. customerId is immutable."""

    first_name: Name | UnsetType = UNSET
    last_name: Name | UnsetType = UNSET
    email: Email | UnsetType = UNSET
    company: Text | UnsetType | None = UNSET
    city: Text | UnsetType | None = UNSET
    country: Text | UnsetType | None = UNSET
    phone1: Text | UnsetType | None = UNSET
    phone2: Text | UnsetType | None = UNSET
    subscription_date: dt.date | UnsetType | None = UNSET
    website: Text | UnsetType | None = UNSET
    about: About | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        # An empty PATCH used to succeed and mark the customer handEdited, shielding it from every re-sync.
        if all(getattr(self, name) is UNSET for name in self.__struct_fields__):
            raise ValueError("nothing to change: name at least one field")
        _check_email(self.email)


class Customer(Base):
    customer_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    hand_edited: bool  # required, not `= False`: omit_defaults would drop it from every imported customer
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    company: str | None = None
    city: str | None = None
    country: str | None = None
    phone1: str | None = None
    phone2: str | None = None
    subscription_date: dt.date | None = None
    website: str | None = None
    about: str | None = None


class CustomerPage(Base):
    items: list[Customer]
    limit: int
    total: int
    total_capped: bool  # required, not `= False`: omit_defaults would drop it from nearly every page
    """True when more customers match a filter than `total` (the count stops at 10,000)."""
    page: int | None = None
    next_cursor: str | None = None


# The list's filters (GET /customers, GET /customers/export, `python -m app export`): the controller's query
# parameters and CustomerFilters take their limits from here.
FILTER_MAX_CHARS = 256
PREFIX_PATTERN = r"^[^\x00-\x1f]+$"


class CustomerFilters(Base):
    """The filters as the CLI reads them, with the query parameters' rules."""

    email: Annotated[str, Meta(max_length=FILTER_MAX_CHARS)] | None = None
    country: Annotated[str, Meta(max_length=FILTER_MAX_CHARS)] | None = None
    q: Annotated[str, Meta(min_length=1, max_length=FILTER_MAX_CHARS, pattern=PREFIX_PATTERN)] | None = None
