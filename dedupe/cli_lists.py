"""Commands over fingerprint lists: search, check, export, import, and watch.

rich, watchdog and the list readers are imported by the commands that use them: `dedupe check`, run once per
upload by a hook, starts with only what a check needs.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from dedupe import fingerprint
from dedupe.cli_common import (
    QUERY_THRESHOLD_HELP,
    Output,
    QueryError,
    Seconds,
    command,
    db_option,
    format_option,
    match_options,
    note_no_images,
    open_list_store,
    open_store,
    pass_output,
)
from dedupe.errors import FileSkipped
from dedupe.formats import check_json, display_path, search_json, watch_event_json
from dedupe.match import MatchRule
from dedupe.models import MatchKind, SearchResult, WatchEvent, WatchEventKind, WatchOptions
from dedupe.search import check, find_similar
from dedupe.store import Store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from dedupe.store_pg import PostgresStore


def open_query_store(ctx: click.Context, db: str | None) -> Store | PostgresStore:
    """The store to search (SQLite or postgresql://), warning of imported fingerprints that cannot be searched."""
    store = open_list_store(ctx, db, readonly=True)
    stale = store.stale_imported(fingerprint.VERSION)
    if stale:
        click.echo(
            f"warning: {stale} imported fingerprints were made with another fingerprint algorithm and are not"
            " searched: import their lists again (exported by this version of dedupe)",
            err=True,
        )
    return store


def query_status(errors: int, matched: int) -> int:
    """0: no image matched; 1: an image matched; 2: an image could not be checked."""
    return 2 if errors else 1 if matched else 0


@command("search", error=QueryError)
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=click.Path(path_type=str))
@db_option
@match_options(full=False, threshold_help=QUERY_THRESHOLD_HELP)
@click.option(
    "--limit",
    type=click.IntRange(0),
    metavar="N",
    default=10,
    show_default=True,
    help="Matches shown per image (0: all).",
)
@format_option("table", "json")
@click.pass_context
@pass_output
def search_command(
    output: Output, ctx: click.Context, images: tuple[str, ...], db: str | None, rule: MatchRule, limit: int, fmt: str
) -> None:
    """List the stored images most similar to each IMAGE, closest first.

    IMAGE need not be in the store. Matches are stored files and imported fingerprints with the same bytes,
    the same image data, or a pHash within the threshold; the dHash distance is shown as a second opinion.
    Exit status: 0 no match, 1 a match, 2 an error (an unreadable image, no store).

    Example:

    \b
        dedupe search ~/Downloads/photo.jpg --threshold 10 --limit 5
    """
    store = open_query_store(ctx, db)
    results: list[tuple[str, SearchResult | None, str | None]] = []
    for image in images:
        try:
            results.append((image, find_similar(image, store, threshold=rule.threshold, limit=limit or None), None))
        except FileSkipped as e:
            results.append((image, None, e.reason))
    if fmt == "json":
        click.echo(
            json.dumps(
                [search_json(image, result, error) for image, result, error in results],
                indent=2,
            )
        )
    else:
        render_search(output, results)
    errors = sum(1 for _, _, error in results if error)
    matched = sum(1 for _, result, _ in results if result and result.hits)
    ctx.exit(query_status(errors, matched))


def render_search(output: Output, results: Sequence[tuple[str, SearchResult | None, str | None]]) -> None:
    from rich.table import Table
    from rich.text import Text

    console = output.out
    for image, result, error in results:
        if result is None:
            click.echo(f"{display_path(image)}: error: {error}", err=True)
            continue
        if not result.hits:
            console.print(Text(f"{display_path(image)}: no match"), soft_wrap=True)
            continue
        n = len(result.hits)
        console.print(Text(f"{display_path(image)}: {n} {'match' if n == 1 else 'matches'}"), soft_wrap=True)
        table = Table(pad_edge=False, expand=False)
        for column, justify in (
            ("Match", "left"),
            ("pHash", "right"),
            ("dHash", "right"),
            ("Resolution", "right"),
            ("Source", "left"),
            ("Name", "left"),
        ):
            table.add_column(column, justify=justify, no_wrap=column != "Name", overflow="fold")  # type: ignore[arg-type]
        for hit in result.hits:
            match = Text(_KIND_LABEL_SEARCH[hit.match.value], style="yellow" if hit.match.value == "near" else "")
            table.add_row(
                match,
                str(hit.distance),
                str(hit.dhash_distance),
                f"{hit.width}x{hit.height}" if hit.width else "?",
                hit.source.value,
                Text(display_path(hit.name)),
            )
        console.print(table, soft_wrap=True)


_KIND_LABEL_SEARCH = {"exact": "same bytes", "image": "same image data", "near": "near"}


@command("check", error=QueryError)
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=click.Path(path_type=str))
@db_option
@match_options(full=False, threshold_help=QUERY_THRESHOLD_HELP)
@format_option("text", "json")
@click.pass_context
def check_command(ctx: click.Context, images: tuple[str, ...], db: str | None, rule: MatchRule, fmt: str) -> None:
    """Say whether each IMAGE matches anything in the store: for scripts and upload hooks.

    Exit status: 0 no image matched, 1 an image matched, 2 an image could not be checked (unreadable or
    corrupt) or the store could not be opened; click's own usage errors are also 2. The output names the
    closest match and its distance, one line per image (a JSON list with --format json).

    Example:

    \b
        dedupe check upload.jpg --db blocklist.sqlite --format json
    """
    store = open_query_store(ctx, db)
    errors = matched = 0
    report: list[dict[str, Any]] = []
    for image in images:
        try:
            result = check(image, store, threshold=rule.threshold)
        except FileSkipped as e:
            errors += 1
            report.append(check_json(image, None, e.reason))
            if fmt == "text":
                click.echo(f"{display_path(image)}: error: {display_path(e.reason)}", err=True)
            continue
        matched += result.matched
        report.append(check_json(image, result))
        if fmt == "text":
            if result.hit is None:
                click.echo(f"{display_path(image)}: no match")
            else:
                hit = result.hit
                click.echo(
                    f"{display_path(image)}: match: {display_path(hit.reason)}"
                    f" ({hit.source.value} {display_path(hit.name)})"
                )
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    ctx.exit(query_status(errors, matched))


LIST_FORMAT_HELP = "dedupe's fingerprint list, or PDQ hashes (64 hex digits, then ',label' or ',quality,label')."


def export_pdq(store: Store | PostgresStore, output: str, dirs: Sequence[str]) -> int:
    from dedupe import pdq

    def skipped(path: str, reason: str) -> None:
        click.echo(f"{display_path(path)}: skipped: {reason}", err=True)

    return pdq.export_list(store, sys.stdout if output == "-" else output, dirs, on_skip=skipped)


def import_pdq(store: Store | PostgresStore, list_file: str, *, replace: bool) -> None:
    from dedupe import pdq

    listed, added, replaced = pdq.import_list(store, list_file, replace=replace)
    line = f"Imported {added} of {listed} PDQ hashes from {'<stdin>' if list_file == '-' else list_file}"
    if added < listed:
        line += f" ({listed - added} already imported)"
    if replace:
        line += f"; dropped {replaced} imported before"
    click.echo(line + ".")


@command("export")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True, path_type=str))
@db_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
    default="-",
    help="Write the list to this file [default: standard output].",
)
@format_option("dedupe", "pdq", help=LIST_FORMAT_HELP)
@click.pass_context
def export_command(ctx: click.Context, dirs: tuple[str, ...], db: str | None, output: str, fmt: str) -> None:
    """Write the fingerprints of the stored images below DIRS as a shareable CSV list.

    With no DIRS, every stored image and every imported fingerprint is listed. The first line names the
    fingerprint algorithm; each image is labelled with its path. The images themselves are not needed to use
    the list: `dedupe import` it into another store.

    Example:

    \b
        dedupe export ~/banned -o blocklist.csv
    """
    store = open_list_store(ctx, db, readonly=True)
    if fmt == "pdq":
        count = export_pdq(store, output, dirs)
    else:
        from dedupe.exchange import export_fingerprints

        count = export_fingerprints(store, sys.stdout if output == "-" else output, dirs)
    if dirs and count == 0:
        note_no_images(dirs)
    click.echo(f"Exported {count} fingerprints{'' if output == '-' else f' to {output}'}.", err=True)


@command("import")
@click.argument("list_file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True, path_type=str))
@db_option
@click.option("--replace", is_flag=True, help="Drop the fingerprints imported before, keeping only this list.")
@format_option("dedupe", "pdq", help=LIST_FORMAT_HELP)
@click.pass_context
def import_command(ctx: click.Context, list_file: str, db: str | None, replace: bool, fmt: str) -> None:
    """Add the fingerprints of a list made by `dedupe export` to the store ("-" reads standard input).

    Imported fingerprints need no image on disk: search and check match them, and scans never prune them.
    A list made with another fingerprint algorithm is refused (exit status 1), as is a damaged one; nothing
    is imported then.

    Example:

    \b
        dedupe import blocklist.csv --db uploads.sqlite --replace
    """
    store = open_list_store(ctx, db)
    if fmt == "pdq":
        import_pdq(store, list_file, replace=replace)
        return
    from dedupe.exchange import import_fingerprints

    report = import_fingerprints(store, list_file, replace=replace)
    line = f"Imported {report.added} of {report.listed} fingerprints from {report.source}"
    if report.added < report.listed:
        line += f" ({report.listed - report.added} already imported)"
    if replace:
        line += f"; dropped {report.replaced} imported before"
    click.echo(line + ".")


@command("watch")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=str))
@db_option
@click.option(
    "--poll",
    type=Seconds(0.1),
    default=None,
    metavar="SECONDS",
    help="Look for changes every SECONDS instead of using live events (network drives, FUSE, SMB).",
)
@match_options(full=False)
@format_option(
    "text", "jsonl", help="text: a line per duplicate; jsonl: one JSON object per event, for other programs."
)
@click.option(
    "--exec",
    "command",
    metavar="CMD",
    help="Run CMD for each duplicate with the new and the existing path appended (never through a shell).",
)
@click.option("--hidden", is_flag=True, help="Also watch hidden files and folders (names starting with a dot).")
@click.option(
    "--settle",
    type=Seconds(0.0),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Read a file once its size and mtime have not changed for this long.",
)
@click.option(
    "--quarantine",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=str),
    help="Move each incoming duplicate (never the older copy) into DIR, outside the watched folders;"
    " journaled like review, so 'dedupe undo' puts it back.",
)
@click.pass_context
@pass_output
def watch_command(
    output: Output,
    ctx: click.Context,
    dirs: tuple[str, ...],
    db: str | None,
    poll: float | None,
    rule: MatchRule,
    fmt: str,
    command: str | None,
    hidden: bool,
    settle: float,
    quarantine: str | None,
) -> None:
    """Watch DIRS and report each new photo that duplicates one already in the store.

    First catches up with what changed since the last scan, then follows new, changed, moved and deleted files
    until Ctrl-C or SIGTERM. Each duplicate is reported once, also across restarts. Nothing is ever deleted.

    Example:

    \b
        dedupe watch ~/Downloads ~/Pictures --exec notify-send
        dedupe watch ~/Uploads --quarantine ~/dedupe-quarantine
    """
    argv: tuple[str, ...] = ()
    if command is not None:
        try:
            argv = tuple(shlex.split(command))
        except ValueError as e:
            raise click.BadParameter(f"cannot split {command!r}: {e}", param_hint="--exec") from None
        if not argv:
            raise click.BadParameter("the command is empty", param_hint="--exec")
    from dedupe.watch import stop_on_signals, watch

    store = open_store(ctx, db, create=True)
    options = WatchOptions(poll=poll, settle=settle, hidden=hidden, command=argv, quarantine=quarantine)
    renderer = WatchRenderer(fmt, output.err)
    stop = threading.Event()
    try:
        with stop_on_signals(stop), renderer:
            watch(dirs, store, options, renderer.on_event, stop, rule=rule)
    except KeyboardInterrupt:
        click.echo("Interrupted at once: what was read so far is saved.", err=True)
        ctx.exit(130)
    if fmt == "text":
        click.echo("Stopped.", err=True)


# --- watch output ---------------------------------------------------------------------------------------------


_MATCH_TEXT = {"exact": "the same bytes as", "image": "the same picture as", "near": "similar to"}


_TEXT_KINDS = frozenset(
    (
        WatchEventKind.DUPLICATE,
        WatchEventKind.READY,
        WatchEventKind.WARNING,
        WatchEventKind.SKIPPED,
        WatchEventKind.COMMAND_FAILED,
        WatchEventKind.QUARANTINED,
        WatchEventKind.QUARANTINE_FAILED,
    )
)


class WatchRenderer:
    """Turns watch events into console lines or JSON lines; shows the queue on a terminal."""

    def __init__(self, fmt: str, err: Console) -> None:
        self._fmt = fmt
        self._err = err
        self._live_line = False  # a queue line is drawn on the terminal and must be cleared before other output
        self._last_line = 0.0

    def __enter__(self) -> WatchRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._clear()

    def on_event(self, event: WatchEvent) -> None:
        if event.kind == WatchEventKind.STATUS:
            self._show_queue(event.queued, event.in_progress)
        elif self._fmt == "jsonl":
            click.echo(json.dumps(watch_event_json(event)))
            sys.stdout.flush()
        elif event.kind in _TEXT_KINDS:
            self._clear()
            self._text(event)

    def _text(self, event: WatchEvent) -> None:
        from rich.text import Text

        path = display_path(event.path or "")
        other = display_path(event.other or "")
        if event.kind == WatchEventKind.DUPLICATE:
            assert event.match is not None
            line = f"duplicate: {path} is {_MATCH_TEXT[event.match.value]} {other}"
            if event.match == MatchKind.NEAR:
                line += f" (distance {event.distance})"
            click.echo(line)
            sys.stdout.flush()
        elif event.kind == WatchEventKind.READY:
            self._say(Text(f"{event.message[:1].upper()}{event.message[1:]}. Press Ctrl-C to stop."))
        elif event.kind == WatchEventKind.WARNING:
            self._say(Text(f"warning: {display_path(event.message)}"))
        elif event.kind == WatchEventKind.SKIPPED:
            self._say(Text(f"skipped {path}: {display_path(event.message)}"))
        elif event.kind == WatchEventKind.COMMAND_FAILED:
            self._say(Text(f"--exec failed for {path}: {display_path(event.message)}"))
        elif event.kind == WatchEventKind.QUARANTINED:
            click.echo(f"quarantined: {path} -> {other} ('dedupe undo' puts it back)")
            sys.stdout.flush()
        elif event.kind == WatchEventKind.QUARANTINE_FAILED:
            self._say(Text(f"not quarantined, left in place: {path}: {display_path(event.message)}"))

    def _say(self, line: str | Text) -> None:
        self._err.print(line, soft_wrap=True)  # a log line: never folded, whatever the width

    def _show_queue(self, queued: int, in_progress: int) -> None:
        if self._fmt != "text":
            return
        text = f"{queued} file(s) queued, {in_progress} being read"
        if self._err.is_terminal:
            # One line rewritten in place; no live display thread, and stdout is left alone.
            if queued or in_progress:
                self._err.file.write(f"\r{text}\x1b[K")
                self._err.file.flush()
                self._live_line = True
            else:
                self._clear()
        elif (queued or in_progress) and time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()  # a log: a line at most every few seconds while busy
            self._say(text)

    def _clear(self) -> None:
        if self._live_line:
            self._err.file.write("\r\x1b[K")
            self._err.file.flush()
            self._live_line = False
