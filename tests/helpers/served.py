"""Apps served by uvicorn in a thread: any ASGI app, or the app built from settings with its URL and import folder."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from app.asgi import create_app
from app.embedded import free_port
from app.settings import Settings


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """An ASGI app served by uvicorn in a thread on a free port (lifespan included); its URL. Stopped gracefully
    at the end."""
    port = free_port()
    options = {"host": "127.0.0.1", "port": port, "log_level": "warning", "lifespan": "on", "ws": "none"} | config
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


@dataclass
class Served:
    """One app served by uvicorn over TCP: its URL, settings and import folder."""

    url: str
    settings: Settings
    import_dir: Path
    app: Any = None  # the Litestar app itself, for a test that holds its writes (gate_sinks)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.settings.api_token}"} if self.settings.api_token else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[Served]:
    """The app built from `settings`, served by uvicorn in a thread."""
    app = create_app(settings)
    with serving(app) as url:
        yield Served(url, settings, settings.import_path, app)
