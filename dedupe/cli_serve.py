"""The `dedupe serve` command: the HTTP check service (dedupe.serve) from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dedupe.cli_common import Seconds, check_jobs, command, not_empty
from dedupe.match import DEFAULT_THRESHOLD, MAX_THRESHOLD


@command("serve")
@click.option(
    "--db",
    envvar="DEDUPE_DB",
    show_envvar=True,
    required=True,
    callback=not_empty,
    metavar="STORE",
    help="The store: a SQLite file, or postgresql://USER@HOST/DATABASE (shared by several servers).",
)
@click.option("--host", metavar="ADDR", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), metavar="N", default=8765, show_default=True, help="0: a free port."
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=str),
    help="Bearer tokens, one a line, allowed to write (and to read off 127.0.0.1). Without it writes are refused.",
)
@click.option("--public-reads", is_flag=True, help="Off 127.0.0.1, let check/search/status through without a token.")
@click.option(
    "--threshold",
    type=click.IntRange(0, MAX_THRESHOLD),
    metavar="N",
    default=DEFAULT_THRESHOLD,
    show_default=True,
    help="Default largest pHash distance (bits of 64) that counts as a match; ?threshold= overrides it.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(1),
    metavar="BYTES",
    default=50_000_000,
    show_default=True,
    help="Largest request body.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    metavar="PIXELS",
    default=None,
    help="Largest picture (width x height) decoded [default: the scan's decompression-bomb limit].",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    metavar="N",
    default=1,
    show_default=True,
    callback=check_jobs,
    help="Processes (one index each).",
)
@click.option(
    "--refresh",
    type=Seconds(0.05),
    default=1.0,
    metavar="SECONDS",
    show_default=True,
    help="Seconds between looks for changes to the store (imports, other servers).",
)
def serve_command(
    db: str,
    host: str,
    port: int,
    token_file: str | None,
    public_reads: bool,
    threshold: int,
    max_bytes: int,
    max_pixels: int | None,
    workers: int,
    refresh: float,
) -> None:
    """Check uploads against the store's fingerprints over HTTP: a JSON API for upload hooks.

    POST an image to /v1/check (match or not, and the closest), /v1/search (the closest matches);
    moderators ban an image with POST /v1/fingerprints?label=TEXT (Authorization: Bearer TOKEN).
    The API is described at /openapi.json. Imports by other processes, and bans added through other
    servers on one PostgreSQL store, are seen within seconds. Ctrl-C or SIGTERM stops it, after the
    requests in flight.

    Example:

    \b
        dedupe serve --db bans.sqlite --token-file tokens.txt --port 8765
    """
    try:
        from dedupe import serve
        from dedupe.store_pg import is_postgres
    except ImportError as e:  # a part of the serve extra is missing
        raise click.ClickException(f"dedupe serve needs {e.name}: pip install 'photo-dedupe[serve]'") from None
    serve._uvicorn()
    tokens = serve.read_tokens(token_file) if token_file else ()
    if not serve.is_loopback(host) and not tokens and not public_reads:
        raise click.UsageError(
            f"serving on {host} needs --token-file (reads need a token off 127.0.0.1) or --public-reads"
        )
    # Only a store made empty on purpose should be served empty: a mistyped --db would block nothing.
    new = not is_postgres(db) and not Path(db).expanduser().exists()
    options = serve.ServeOptions(
        db=db,
        host=host,
        port=port,
        tokens=tokens,
        threshold=threshold,
        max_bytes=max_bytes,
        max_pixels=max_pixels or serve.DEFAULT_MAX_PIXELS,
        public_reads=public_reads,
        refresh=refresh,
        workers=workers,
    )

    def announce(url: str) -> None:
        click.echo(f"Serving on {url}")
        sys.stdout.flush()  # a script waiting for this line reads it at once
        if new:
            click.echo(f"note: no store at {db}: serving a new, empty one (bans through the API fill it)", err=True)

    serve.run(options, on_ready=announce)
