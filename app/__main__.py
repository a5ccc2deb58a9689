"""CLI: `python -m app serve [--host H] [--port P]`, `python -m app import FILE [...]`,
`python -m app preview FILE [...]` and `python -m app export --out FILE|- [...]`.

Reads Settings from the environment; starts the embedded database when MONGODB_URI is unset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing.forkserver
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from app.settings import Settings, SettingsError


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API (and the embedded database if MONGODB_URI is unset)")
    serve.add_argument("--host", default=settings.host)
    serve.add_argument("--port", type=_int_in(0, 65535), default=settings.port)
    imp = commands.add_parser(
        "import",
        help="import a CSV file with a progress bar (refused while a job runs), or resume a job",
        description="import FILE, or resume a CANCELLED or FAILED job with --resume [JOB_ID] (default: the latest)",
    )
    imp.add_argument("file", type=Path, nargs="?")
    imp.add_argument(
        "--resume", nargs="?", const="latest", default=None, metavar="JOB_ID", help="resume a job from its watermark"
    )
    _import_options(imp)
    pre = commands.add_parser(
        "preview",
        help="show how `import FILE` with the same options would read FILE, and its first rows as they would be stored",
        description="read the start of FILE as `import` would (no job, no write) and print the preview as tables",
    )
    pre.add_argument("file", type=Path)
    _import_options(pre)
    pre.add_argument("--limit", type=_int_in(1, 200), default=20, metavar="N", help="rows shown, 1..200 (default 20)")
    _export_parser(commands)
    return parser


def _import_options(command: argparse.ArgumentParser) -> None:
    """The options of an import, the fields of a POST /import/sync body: `import` and `preview` take the same."""
    command.add_argument("--mode", choices=["insert", "upsert"], default="insert")
    command.add_argument("--batch-size", type=_int_in(1, 10_000), default=None, metavar="N", help="1..10000")
    command.add_argument("--dry-run", action="store_true", help="parse and validate only; write no customers")
    command.add_argument("--delimiter", default="auto", help="',' ';' '\\t' '|' or auto (default: sniffed)")
    command.add_argument("--encoding", default="utf-8", help="utf-8 (default), cp1252, latin-1, utf-16 or auto")
    command.add_argument("--quote", default='"', help='quote character (default ")')
    command.add_argument(
        "--column", action="append", default=[], type=_column, metavar="FROM=TO", help="read header FROM as field TO"
    )


def _export_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export",
        help="export customers to a CSV or NDJSON file (or - for standard output) with a progress bar",
        description="the customers matching the filters, in customerId order, as GET /customers/export writes them",
    )
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write, or - for standard output")
    export.add_argument("--format", choices=["csv", "ndjson"], default="csv")
    export.add_argument("--email", help="exact email, any case")
    export.add_argument("--country", help="exact country, any case")
    export.add_argument("--q", help="case-insensitive prefix of name, company or email")
    export.add_argument("--fields", help="comma-separated columns (API names; default: the imported fields)")
    export.add_argument("--compress", choices=["gzip"], help="write a .gz file")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in low..high. (choices=range(...) listed every allowed value in its error.)"""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer in {low}..{high}")
        return value

    return convert


def _column(text: str) -> tuple[str, str]:
    name, sep, field = text.rpartition("=")
    if not sep or not name.strip() or not field:
        raise argparse.ArgumentTypeError(f"{text!r} is not FROM=TO (a header name, '=', a customer field)")
    return name.strip(), field.strip()


def _columns(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """--column FROM=TO pairs as the request's columns; a FROM mapped twice is a ValueError (dict() kept the last)."""
    columns: dict[str, str] = {}
    for name, field in pairs:
        if columns.setdefault(name, field) != field:
            raise ValueError(f"--column names {name!r} twice (as {columns[name]} and as {field})")
    return columns


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Settings with a reachable MONGODB_URI: the configured one, or an embedded server for the duration."""
    if settings.mongodb_uri:
        yield settings
        return
    from app.embedded import EmbeddedMongo

    embedded = EmbeddedMongo(
        settings.data_path / "db",
        settings.embedded_db_port,
        log_level=settings.log_level,
        server=settings.embedded_db_server,
    )
    try:
        yield msgspec.structs.replace(settings, mongodb_uri=embedded.start())
    finally:
        embedded.stop()


def _exit(signum: int, frame: object) -> None:
    """uvicorn shuts down on SIGTERM/SIGINT and then re-raises the signal. SIGTERM's default action would kill
    the process right there, skipping `finally`, so the embedded database got no clean stop: exit instead."""
    raise SystemExit(0)


def _start_forkserver_ignoring_sigint() -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group, parser workers included: they
    died with a KeyboardInterrupt, breaking the pool, so a cancelled (or shut down) import ended FAILED or
    crashed. The workers are forked by the forkserver and inherit its SIGINT disposition; started with SIGINT
    ignored, it keeps ignoring it and so do they. Only the app handles Ctrl-C."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def serve(settings: Settings) -> int:
    import uvicorn

    from app.asgi import create_app
    from app.auth import RedactQueryToken

    _start_forkserver_ignoring_sigint()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit)
    embedded = not settings.mongodb_uri
    with database(settings) as settings:
        config = uvicorn.Config(
            create_app(settings, embedded=embedded),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            lifespan="on",
            timeout_graceful_shutdown=15,
            limit_concurrency=settings.max_connections,  # a backstop; MAX_REQUESTS_IN_FLIGHT sheds first
        )
        # after uvicorn.Config, which configures its loggers: the stream's ?access_token= stays out of the log
        logging.getLogger("uvicorn.access").addFilter(RedactQueryToken())
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else 1


def import_file(settings: Settings, args: argparse.Namespace) -> int:
    from app import terminal
    from app.imports.cli import import_file as run

    if (args.file is None) == (args.resume is None):
        print("give a FILE to import, or --resume [JOB_ID], not both", file=sys.stderr)
        return 2
    if (request := _checked_request(args)) is None:
        return 2
    try:
        _start_forkserver_ignoring_sigint()
        with database(settings) as settings:
            return asyncio.run(
                run(
                    settings,
                    args.file.resolve() if args.file else None,
                    request=request,
                    resume=args.resume,
                    console=terminal.console(),
                )
            )
    except KeyboardInterrupt:  # Ctrl-C while the embedded database starts, before any job exists
        print("interrupted", file=sys.stderr)
        return 130


def _checked_request(args: argparse.Namespace) -> dict[str, object] | None:
    """The request of `import` and `preview`, or None after saying on stderr why the command line cannot be one."""
    if args.file is not None and not args.file.is_file():
        print(f"{args.file}: not a readable file", file=sys.stderr)
        return None
    try:
        return _request(args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return None


def _request(args: argparse.Namespace) -> dict[str, object]:
    """The options as the fields of a POST /import/sync body; a --column FROM given twice is a ValueError."""
    return {
        "mode": args.mode,
        "batchSize": args.batch_size,
        "dryRun": args.dry_run,
        "delimiter": "\t" if args.delimiter == "\\t" else args.delimiter,
        "encoding": args.encoding,
        "quote": args.quote,
        "columns": _columns(args.column) or None,
    }


def preview_file(settings: Settings, args: argparse.Namespace) -> int:
    from app import terminal
    from app.imports.table import preview_file as run

    if (request := _checked_request(args)) is None:
        return 2
    _start_forkserver_ignoring_sigint()
    with database(settings) as settings:
        shown = terminal.console()
        return asyncio.run(run(settings, args.file.resolve(), request=request, limit=args.limit, console=shown))


def export_customers(settings: Settings, args: argparse.Namespace) -> int:
    from app import terminal
    from app.customers.cli import export_customers as run
    from app.customers.export import Format, parse_fields
    from app.customers.exporter import ExportRequest
    from app.customers.schemas import CustomerFilters
    from app.errors import AppError

    try:
        filters = msgspec.convert({"email": args.email, "country": args.country, "q": args.q}, CustomerFilters)
        request = ExportRequest(
            fmt=Format(args.format),
            fields=parse_fields(args.fields),
            email=filters.email,
            country=filters.country,
            q=filters.q,
            gzip_file=args.compress == "gzip",
        )
    except (msgspec.ValidationError, AppError) as exc:
        print(f"refused: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 2
    errors = terminal.console(errors=True)
    try:
        with database(settings) as settings:
            return asyncio.run(run(settings, request, args.out, errors))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


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
    if args.command == "preview":
        return preview_file(settings, args)
    if args.command == "export":
        return export_customers(settings, args)
    return import_file(settings, args)


if __name__ == "__main__":
    raise SystemExit(main())
