"""How many customers there are, without counting them: for SecantusDB, whose `count` decodes every document
(16 s and its storage lock at 2.35 M customers), the unfiltered list's total is kept in one document.

`service_meta` {_id: "customers", idKeys: true, count: n}: written once every stored customer carries its id
entry in `searchKeys` (see CustomerRepository.prepare_listing; `count` is then exact), and moved by every
write of the service that adds or removes customers (the import's sink, POST and DELETE). It is an estimate:
a crash between a write and its `$inc` loses that `$inc`, and writes made outside the service (mongosh) are
not seen. The `idKeys` condition keeps a `$inc` from creating the document before the keys are complete."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

CUSTOMERS_ID = "customers"


async def add(meta: AsyncCollection, n: int) -> None:
    if n:
        await meta.update_one({"_id": CUSTOMERS_ID, "idKeys": True}, {"$inc": {"count": n}})


async def read(meta: AsyncCollection) -> dict[str, Any] | None:
    """The census document once the id entries are complete, else None."""
    return await meta.find_one({"_id": CUSTOMERS_ID, "idKeys": True})
