"""The CLI's consoles: text from files and the database printed as written (rich reads `:x:` as an emoji)."""

from __future__ import annotations

from rich.console import Console


def console(*, errors: bool = False) -> Console:
    """Standard output; or, with `errors`, standard error with each message on one line whatever the width."""
    return Console(stderr=errors, soft_wrap=errors, emoji=False)
