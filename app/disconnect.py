"""A request handler cancelled when its client disconnects before the response starts (app/admission.py uses it)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send


class CancelOnDisconnect:
    """The request's `receive`, shared by the handler and a watcher that cancels the handler when the client
    disconnects before the response starts (after that, the response is on its way and the framework's own
    streaming notices a disconnect). The watcher reads only once the handler has the whole body (at once for a
    request without one), so it never takes a message the handler needs; a message it reads that is not the
    disconnect (the empty body of a GET) is kept for the handler."""

    def __init__(self, scope: Scope, receive: Receive):
        self.scope = scope
        self.receive = receive
        self.kept: list[ReceiveMessage] = []
        self.gone = False  # the client disconnected before the response started
        self.responding = False
        self.body_read = asyncio.Event()
        headers = dict(scope.get("headers", ()))
        if headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers:
            self.body_read.set()

    async def __call__(self) -> ReceiveMessage:
        if self.kept:
            return self.kept.pop(0)
        message = await self.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_read.set()
        return message

    async def serve(self, app: ASGIApp, send: Send) -> None:
        async def sending(message: Any) -> None:
            self.responding = True
            await send(message)

        handler = asyncio.ensure_future(app(self.scope, self, sending))
        watcher = asyncio.ensure_future(self._watch(handler))
        try:
            await handler
        except asyncio.CancelledError:
            if not self.gone or (task := asyncio.current_task()) is None or task.cancelling():
                raise  # cancelled from outside (shutdown), not by the client leaving
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, handler: asyncio.Future[None]) -> None:
        await self.body_read.wait()
        while (message := await self.receive())["type"] != "http.disconnect":
            self.kept.append(message)
        if not self.responding:
            self.gone = True
            handler.cancel()
