"""How many customers there are and where their ids lie, without reading them: for SecantusDB, whose `count`
decodes every document (16 s and its storage lock at 2.35 M customers) and whose `find` never stops at a
limit. Two documents in `service_meta`:

- {_id: "customers", idKeys: true, count: n}: written by CustomerRepository.prepare_listing once every stored
  customer carries its id entry in `searchKeys` (`count` is then exact), then moved by the service's writes
  that add or remove customers (the import's sink, POST, DELETE). The `idKeys` condition keeps an `$inc`
  from creating it before the entries are complete.
- {_id: "customers.sample", ids: [...]}: every customer id whose hash falls in 1/SAMPLE_RATE, kept by the same
  writes ($push of the ids they added, $pull of those they removed). Sorted, it splits the id order into
  buckets of about SAMPLE_RATE customers: where the unfiltered list's id ranges end (repository.IdRanges).

Both are estimates: a crash or a retried `$inc` whose reply was lost can move the count by a batch, and
writes made outside the service (mongosh, a restore) are not seen (see the README)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)

CUSTOMERS_ID = "customers"
SAMPLE_ID = "customers.sample"
SAMPLE_RATE = 128


def sampled(customer_id: str) -> bool:
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SAMPLE_RATE == 0


async def add(meta: AsyncCollection, n: int, ids: Iterable[str] = ()) -> None:
    """`n` customers added (negative: removed); `ids` are those added (removed) now, for the sample."""
    chosen = [customer_id for customer_id in ids if sampled(customer_id)]
    if n:
        await meta.update_one({"_id": CUSTOMERS_ID, "idKeys": True}, {"$inc": {"count": n}})
    if chosen and n >= 0:  # $push, not $addToSet: no scan of the array per id; a repeat is dropped on read
        await meta.update_one({"_id": SAMPLE_ID}, {"$push": {"ids": {"$each": chosen}}})
    elif chosen:
        await meta.update_one({"_id": SAMPLE_ID}, {"$pull": {"ids": {"$in": chosen}}})


async def add_quietly(meta: AsyncCollection, n: int, ids: Iterable[str] = ()) -> None:
    """`add` for an API request whose write already happened: a failure only makes the estimate drift."""
    try:
        await add(meta, n, ids)
    except PyMongoError as exc:
        log.warning("customers census not updated (%+d): %s", n, exc)


async def read(meta: AsyncCollection) -> dict[str, Any] | None:
    """The census document once the id entries are complete, else None."""
    return await meta.find_one({"_id": CUSTOMERS_ID, "idKeys": True})


async def sample(meta: AsyncCollection) -> list[str]:
    doc = await meta.find_one({"_id": SAMPLE_ID})
    return sorted({customer_id for customer_id in (doc or {}).get("ids", []) if isinstance(customer_id, str)})
