"""Odd customer ids."""

from __future__ import annotations

# Customer ids the API and the importer both accept (app/customers/rules.py): odd but reachable over HTTP.
GOOD_IDS = [
    "a.b",
    "a+b",
    "a&b",
    "a=b",
    "a:b",
    "a@b",
    "a!b",
    "a$b",
    "a;b",
    "a'b",
    "(a)",
    "a~b",
    "...",
    "a..b",
    "\u00e9t\u00e9",
    "\U0001f642",
    "a\\b",
    "a|b",
    "a*b",
    "a^b",
    "I" * 64,
]
