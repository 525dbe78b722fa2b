"""The command line: click commands and rich output, over the dedupe library."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from dedupe import __version__
from dedupe.errors import DedupeError
from dedupe.group import DEFAULT_THRESHOLD, MAX_THRESHOLD, summarize
from dedupe.models import (
    DuplicateGroup,
    MatchKind,
    ProgressEvent,
    ScanOptions,
    Skipped,
    Summary,
    WatchEvent,
    WatchEventKind,
    WatchOptions,
)
from dedupe.scan import scan, stored_groups
from dedupe.store import Store, default_store_path
from dedupe.watch import stop_on_signals, watch

F = TypeVar("F", bound=Callable[..., Any])


# --- shared options -------------------------------------------------------------------------------------------


def db_option(f: F) -> F:
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=str),
        envvar="DEDUPE_DB",
        show_envvar=True,
        help=f"The fingerprint store [default: {default_store_path()}].",
    )(f)


def format_option(f: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json", "csv"]),
        default="table",
        show_default=True,
        help="How to print the groups.",
    )(f)


def threshold_option(f: F) -> F:
    return click.option(
        "--threshold",
        type=click.IntRange(0, MAX_THRESHOLD),
        default=DEFAULT_THRESHOLD,
        show_default=True,
        help="Largest perceptual distance (bits of 64) for a near duplicate; 0 finds only identical pictures.",
    )(f)


def open_store(ctx: click.Context, db: str | None, *, readonly: bool = False) -> Store:
    try:
        return ctx.with_resource(Store.open(db, readonly=readonly))
    except DedupeError as e:
        raise click.ClickException(str(e)) from None


# --- commands -------------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="dedupe")
def cli() -> None:
    """Find exact and near-duplicate photos, and remove the redundant copies safely.

    Fingerprints live in a SQLite store, so re-scans only read what changed.
    """


@cli.command("scan")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=str))
@db_option
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files and folders matching GLOB (repeatable).")
@click.option("--hidden", is_flag=True, help="Also scan hidden files and folders (names starting with a dot).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links (loops are detected).")
@click.option("--min-size", type=click.IntRange(0), default=0, metavar="BYTES", help="Skip files smaller than this.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, help="Worker processes [default: one per core].")
@threshold_option
@format_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def scan_command(
    ctx: click.Context,
    dirs: tuple[str, ...],
    db: str | None,
    exclude: tuple[str, ...],
    hidden: bool,
    follow_symlinks: bool,
    min_size: int,
    jobs: int | None,
    threshold: int,
    fmt: str,
    quiet: bool,
) -> None:
    """Fingerprint the images below DIRS and report exact and near duplicates.

    Images are recognised by their content. Files already fingerprinted and unchanged are not read again.

    Example:

        dedupe scan ~/Pictures /media/backup --exclude '*.tmp'
    """
    store = open_store(ctx, db)
    options = ScanOptions(
        exclude=exclude, hidden=hidden, follow_symlinks=follow_symlinks, min_size=min_size, workers=jobs
    )
    err = Console(stderr=True)
    try:
        with progress_bar(err, enabled=not quiet and err.is_terminal) as on_progress:
            report = scan(dirs, store, options, on_progress)
    except KeyboardInterrupt:
        err.print("Interrupted: what was fingerprinted so far is saved; scan again to continue.")
        ctx.exit(130)
    except DedupeError as e:
        raise click.ClickException(str(e)) from None
    for warning in report.warnings:
        err.print(Text(f"warning: {display_path(warning)}"))
    groups, _, images = stored_groups(store, report.roots, threshold)
    summary = summarize(groups, images, len(report.skipped))
    extra = {
        "fingerprinted": report.fingerprinted,
        "reused": report.reused,
        "ignored": report.ignored,
        "pruned": report.pruned,
    }
    render(groups, report.skipped, summary, fmt, extra)


@cli.command("groups")
@click.argument("dirs", nargs=-1, type=click.Path(path_type=str))
@db_option
@threshold_option
@format_option
@click.pass_context
def groups_command(ctx: click.Context, dirs: tuple[str, ...], db: str | None, threshold: int, fmt: str) -> None:
    """List the duplicate groups again from the store, without reading any file.

    With no DIRS, every folder in the store is covered.

    Example:

        dedupe groups ~/Pictures --format json
    """
    store = open_store(ctx, db, readonly=True)
    groups, skipped, images = stored_groups(store, dirs, threshold)
    if dirs and images == 0 and not skipped:
        click.echo(f"No images stored below {', '.join(dirs)}: run 'dedupe scan' on it first.", err=True)
    render(groups, skipped, summarize(groups, images, len(skipped)), fmt, {})


@cli.command("watch")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=str))
@db_option
@click.option(
    "--poll",
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="SECONDS",
    help="Look for changes every SECONDS instead of using live events (network drives, FUSE, SMB).",
)
@threshold_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="text: a line per duplicate; jsonl: one JSON object per event, for other programs.",
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
    type=click.FloatRange(min=0.0),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Read a file once its size and mtime have not changed for this long.",
)
@click.pass_context
def watch_command(
    ctx: click.Context,
    dirs: tuple[str, ...],
    db: str | None,
    poll: float | None,
    threshold: int,
    fmt: str,
    command: str | None,
    hidden: bool,
    settle: float,
) -> None:
    """Watch DIRS and report each new photo that duplicates one already in the store.

    First catches up with what changed since the last scan, then follows new, changed, moved and deleted files
    until Ctrl-C or SIGTERM. Each duplicate is reported once, also across restarts. Nothing is ever deleted.

    Example:

        dedupe watch ~/Downloads ~/Pictures --exec notify-send
    """
    argv: tuple[str, ...] = ()
    if command is not None:
        try:
            argv = tuple(shlex.split(command))
        except ValueError as e:
            raise click.BadParameter(f"cannot split {command!r}: {e}", param_hint="--exec") from None
        if not argv:
            raise click.BadParameter("the command is empty", param_hint="--exec")
    store = open_store(ctx, db)
    options = WatchOptions(threshold=threshold, poll=poll, settle=settle, hidden=hidden, command=argv)
    renderer = WatchRenderer(fmt, Console(stderr=True, highlight=False, soft_wrap=True))
    stop = threading.Event()
    try:
        with stop_on_signals(stop), renderer:
            watch(dirs, store, options, renderer.on_event, stop)
    except KeyboardInterrupt:
        click.echo("Interrupted at once: what was read so far is saved.", err=True)
        ctx.exit(130)
    except DedupeError as e:
        raise click.ClickException(str(e)) from None
    if fmt == "text":
        click.echo("Stopped.", err=True)


def main() -> None:
    try:
        cli(prog_name="dedupe")
    except Exception as e:  # a bug of ours: still one readable line, not a traceback
        if os.environ.get("DEDUPE_DEBUG"):
            raise
        click.echo(f"dedupe: internal error: {type(e).__name__}: {e} (set DEDUPE_DEBUG=1 for details)", err=True)
        sys.exit(1)


# --- progress -------------------------------------------------------------------------------------------------


@contextmanager
def progress_bar(console: Console, *, enabled: bool) -> Iterator[Callable[[ProgressEvent], None] | None]:
    if not enabled:
        yield None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task("Walking folders", total=None, rate="")

    def on_progress(event: ProgressEvent) -> None:
        if event.phase == "walk":
            progress.update(task, description="Walking folders")
            return
        elapsed = progress.tasks[0].elapsed or 0.0
        rate = f"{event.done / elapsed:.0f} files/s" if elapsed > 0.5 else ""
        progress.update(task, description="Fingerprinting", completed=event.done, total=event.total, rate=rate)

    with progress:
        yield on_progress


# --- watch output ---------------------------------------------------------------------------------------------


_MATCH_TEXT = {"exact": "the same bytes as", "image": "the same picture as", "near": "similar to"}


_TEXT_KINDS = frozenset(
    (
        WatchEventKind.DUPLICATE,
        WatchEventKind.READY,
        WatchEventKind.WARNING,
        WatchEventKind.SKIPPED,
        WatchEventKind.COMMAND_FAILED,
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
            self._err.print(Text(f"{event.message[:1].upper()}{event.message[1:]}. Press Ctrl-C to stop."))
        elif event.kind == WatchEventKind.WARNING:
            self._err.print(Text(f"warning: {display_path(event.message)}"))
        elif event.kind == WatchEventKind.SKIPPED:
            self._err.print(Text(f"skipped {path}: {event.message}"))
        elif event.kind == WatchEventKind.COMMAND_FAILED:
            self._err.print(Text(f"--exec failed for {path}: {event.message}"))

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
            self._err.print(text)

    def _clear(self) -> None:
        if self._live_line:
            self._err.file.write("\r\x1b[K")
            self._err.file.flush()
            self._live_line = False


def watch_event_json(event: WatchEvent) -> dict[str, Any]:
    """One watch event as a JSON object; paths that are not valid UTF-8 keep their bytes as surrogate escapes."""
    out: dict[str, Any] = {"event": event.kind.value, "time": datetime.now(UTC).isoformat(timespec="milliseconds")}
    if event.path is not None:
        out["path"] = event.path
    if event.kind in (WatchEventKind.DUPLICATE, WatchEventKind.COMMAND_FAILED):
        out["existing"] = event.other
        if event.match is not None:
            out["match"] = event.match.value
            out["distance"] = event.distance
    elif event.other is not None:
        out["dest"] = event.other
    if event.kind in (WatchEventKind.SKIPPED, WatchEventKind.COMMAND_FAILED):
        out["reason"] = event.message
    elif event.message:
        out["message"] = event.message
    return out


# --- rendering ------------------------------------------------------------------------------------------------


def display_path(path: str) -> str:
    """A path as it can be printed: bytes that are not UTF-8 shown as \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _date(taken: str | None, mtime_ns: int) -> str:
    if taken:
        return taken.replace("T", " ")[:16]
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def render(
    groups: Sequence[DuplicateGroup], skipped: Sequence[Skipped], summary: Summary, fmt: str, extra: dict[str, int]
) -> None:
    if fmt == "json":
        click.echo(json.dumps(as_json(groups, skipped, summary, extra), indent=2))
    elif fmt == "csv":
        click.echo(as_csv(groups), nl=False)
    else:
        render_table(groups, skipped, summary, extra)


def as_json(
    groups: Sequence[DuplicateGroup], skipped: Sequence[Skipped], summary: Summary, extra: dict[str, int]
) -> dict[str, Any]:
    """The JSON report. Paths that are not valid UTF-8 keep their bytes as surrogate escapes (lossless)."""
    return {
        "groups": [
            {
                "kind": g.kind.value,
                "files": [
                    {
                        "path": m.file.path,
                        "reference": i == 0,
                        "match": m.match.value,
                        "distance": m.distance,
                        "size": m.file.size,
                        "width": m.file.fingerprint.width,
                        "height": m.file.fingerprint.height,
                        "format": m.file.fingerprint.format,
                        "taken": m.file.fingerprint.taken,
                        "mtime": m.file.mtime_ns / 1e9,
                        "content_hash": m.file.content_hash,
                    }
                    for i, m in enumerate(g.members)
                ],
            }
            for g in groups
        ],
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "summary": {**dataclasses.asdict(summary), **extra},
    }


CSV_FIELDS = ("group", "kind", "reference", "match", "distance", "path", "size", "width", "height", "format", "taken")


def as_csv(groups: Sequence[DuplicateGroup]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for n, g in enumerate(groups, start=1):
        for i, m in enumerate(g.members):
            fp = m.file.fingerprint
            writer.writerow(
                (
                    n,
                    g.kind.value,
                    int(i == 0),
                    m.match.value,
                    m.distance,
                    display_path(m.file.path),
                    m.file.size,
                    fp.width,
                    fp.height,
                    fp.format,
                    fp.taken or "",
                )
            )
    return out.getvalue()


_KIND_LABEL = {"exact": "same bytes", "image": "same pixels", "near": "similar"}


def render_table(
    groups: Sequence[DuplicateGroup], skipped: Sequence[Skipped], summary: Summary, extra: dict[str, int]
) -> None:
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 400  # piped: never fold a path
    if groups:
        table = Table(show_lines=False, pad_edge=False, expand=False)
        for column, justify in (
            ("Group", "right"),
            ("Match", "left"),
            ("Resolution", "right"),
            ("Size", "right"),
            ("Date", "left"),
            ("Path", "left"),
        ):
            table.add_column(column, justify=justify, no_wrap=column != "Path", overflow="fold")  # type: ignore[arg-type]
        for n, g in enumerate(groups, start=1):
            for i, m in enumerate(g.members):
                fp = m.file.fingerprint
                if i == 0:
                    match = Text("reference", style="bold green")
                elif m.match.value == "near":
                    match = Text(f"near d={m.distance}", style="yellow")
                else:
                    match = Text(_KIND_LABEL[m.match.value])
                table.add_row(
                    Text(f"{n}" if i == 0 else ""),
                    match,
                    f"{fp.width}x{fp.height}",
                    human_size(m.file.size),
                    _date(fp.taken, m.file.mtime_ns),
                    Text(display_path(m.file.path)),
                    end_section=i == len(g.members) - 1,
                )
        console.print(table)
    else:
        console.print("No duplicates found.")
    if skipped:
        console.print(f"Skipped {len(skipped)} file(s):")
        for s in skipped:
            console.print(Text(f"  {display_path(s.path)}: {s.reason}"))
    line = (
        f"{summary.images} images, {summary.groups} groups, {summary.duplicate_files} duplicate files,"
        f" {human_size(summary.reclaimable_bytes)} reclaimable, {summary.skipped} skipped"
    )
    if extra:
        line += f" ({extra['fingerprinted']} fingerprinted, {extra['reused']} already known)"
    console.print(line)
