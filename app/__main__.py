"""CLI: `python -m app serve [--host H] [--port P]`. Reads Settings; starts the embedded database if needed."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import msgspec

from app.settings import Settings, SettingsError


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API (and the embedded database if MONGODB_URI is unset)")
    serve.add_argument("--host", default=settings.host)
    serve.add_argument("--port", type=int, default=settings.port)
    return parser


def _exit(signum: int, frame: object) -> None:
    """uvicorn shuts down on SIGTERM/SIGINT and then re-raises the signal. SIGTERM's default action would kill
    the process right there, skipping `finally`, so the embedded database got no clean stop: exit instead."""
    raise SystemExit(0)


def serve(settings: Settings) -> int:
    import uvicorn

    from app.asgi import create_app
    from app.embedded import EmbeddedMongo

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit)
    embedded = None
    try:
        if not settings.mongodb_uri:
            embedded = EmbeddedMongo(settings.data_path / "db", settings.embedded_db_port,
                                     log_level=settings.log_level)
            settings = msgspec.structs.replace(settings, mongodb_uri=embedded.start())
        config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                log_level=settings.log_level.lower(), lifespan="on", timeout_graceful_shutdown=15)
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else 1
    finally:
        if embedded is not None:
            embedded.stop()


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    args = _parser(settings).parse_args(argv)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return serve(msgspec.structs.replace(settings, host=args.host, port=args.port))
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
