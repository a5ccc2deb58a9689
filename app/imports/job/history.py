"""Job history: import_state newest first, by page or by a startedAt cursor (served by the startedAt index)."""

from __future__ import annotations

import datetime as dt

from pymongo import DESCENDING

from app.errors import InvalidInput
from app.imports.job.jobs import JobState, JobStore


async def recent_jobs(
    store: JobStore, *, limit: int, page: int | None = None, before: dt.datetime | None = None
) -> tuple[list[JobState], int]:
    """Up to `limit` jobs started before `before` (or on 1-based `page`), newest first; and the number of jobs.

    The cursor is the last item's startedAt (millisecond precision in MongoDB). A job sharing that exact
    millisecond with the cursor's job would be skipped; only one job runs at a time and every start takes
    several database round trips, so that does not happen in practice.
    """
    if page is not None and before is not None:
        raise InvalidInput("give either page or afterStartedAt, not both")
    query = {} if before is None else {"startedAt": {"$lt": _in_utc(before)}}
    cursor = store.jobs.find(query, sort=[("startedAt", DESCENDING), ("_id", DESCENDING)])
    if page is not None:
        cursor = cursor.skip((page - 1) * limit)
    states = [JobState.from_doc(doc) async for doc in cursor.limit(limit)]
    return states, await store.jobs.count_documents({})


def _in_utc(before: dt.datetime) -> dt.datetime:
    """`before` in UTC, as MongoDB stores it; a time whose UTC falls outside years 1..9999 (0001-01-01T00:00+01:00)
    cannot be a query value (it was an OverflowError, a 500). A naive time is taken as UTC, as PyMongo does."""
    try:
        return before.astimezone(dt.UTC) if before.tzinfo is not None else before
    except OverflowError:
        message = "out of range: in UTC it falls outside the years 1 to 9999"
        raise InvalidInput(
            f"afterStartedAt: {message}", errors=[{"message": message, "key": "afterStartedAt", "source": "query"}]
        ) from None
