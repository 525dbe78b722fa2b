"""The command line: click commands and rich output, over the dedupe library."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sys
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

from dedupe import __version__, fingerprint
from dedupe.errors import DedupeError, FileSkipped
from dedupe.exchange import export_fingerprints, import_fingerprints
from dedupe.group import DEFAULT_THRESHOLD, MAX_THRESHOLD, summarize
from dedupe.models import DuplicateGroup, ProgressEvent, ScanOptions, SearchHit, SearchResult, Skipped, Summary
from dedupe.scan import scan, stored_groups
from dedupe.search import check, find_similar
from dedupe.store import Store, default_store_path

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


# --- search, check, export, import ----------------------------------------------------------------------------


class QueryError(click.ClickException):
    """A failure of search or check: exit status 2, since 1 means that an image matched."""

    exit_code = 2


def open_query_store(ctx: click.Context, db: str | None) -> Store:
    try:
        store = ctx.with_resource(Store.open(db, readonly=True))
        stale = store.stale_imported(fingerprint.VERSION)
    except DedupeError as e:
        raise QueryError(str(e)) from None
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


def hit_json(hit: SearchHit) -> dict[str, Any]:
    return {
        "name": hit.name,
        "source": hit.source.value,
        "match": hit.match.value,
        "reason": hit.reason,
        "distance": hit.distance,
        "dhash_distance": hit.dhash_distance,
        "width": hit.width,
        "height": hit.height,
        "content_hash": hit.content_hash,
    }


def search_threshold_option(f: F) -> F:
    return click.option(
        "--threshold",
        type=click.IntRange(0, MAX_THRESHOLD),
        default=DEFAULT_THRESHOLD,
        show_default=True,
        help="Largest pHash distance (bits of 64) that counts as a match; 0 matches only identical pictures.",
    )(f)


@cli.command("search")
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=click.Path(path_type=str))
@db_option
@search_threshold_option
@click.option(
    "--limit", type=click.IntRange(0), default=10, show_default=True, help="Matches shown per image (0: all)."
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output."
)
@click.pass_context
def search_command(
    ctx: click.Context, images: tuple[str, ...], db: str | None, threshold: int, limit: int, fmt: str
) -> None:
    """List the stored images most similar to each IMAGE, closest first.

    IMAGE need not be in the store. Matches are stored files and imported fingerprints with the same bytes,
    the same image data, or a pHash within the threshold; the dHash distance is shown as a second opinion.
    Exit status: 0 no match, 1 a match, 2 an error (an unreadable image, no store).

    Example:

        dedupe search ~/Downloads/photo.jpg --threshold 10 --limit 5
    """
    store = open_query_store(ctx, db)
    results: list[tuple[str, SearchResult | None, str | None]] = []
    for image in images:
        try:
            results.append((image, find_similar(image, store, threshold=threshold, limit=limit or None), None))
        except FileSkipped as e:
            results.append((image, None, e.reason))
        except DedupeError as e:
            raise QueryError(str(e)) from None
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "image": image,
                        "error": error,
                        "matches": [hit_json(h) for h in result.hits] if result else [],
                    }
                    for image, result, error in results
                ],
                indent=2,
            )
        )
    else:
        render_search(results)
    errors = sum(1 for _, _, error in results if error)
    matched = sum(1 for _, result, _ in results if result and result.hits)
    ctx.exit(query_status(errors, matched))


def render_search(results: Sequence[tuple[str, SearchResult | None, str | None]]) -> None:
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 400  # piped: never fold a path
    for image, result, error in results:
        if result is None:
            click.echo(f"{display_path(image)}: error: {error}", err=True)
            continue
        if not result.hits:
            console.print(Text(f"{display_path(image)}: no match"))
            continue
        n = len(result.hits)
        console.print(Text(f"{display_path(image)}: {n} {'match' if n == 1 else 'matches'}"))
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
        console.print(table)


_KIND_LABEL_SEARCH = {"exact": "same bytes", "image": "same image data", "near": "near"}


@cli.command("check")
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=click.Path(path_type=str))
@db_option
@search_threshold_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output.")
@click.pass_context
def check_command(ctx: click.Context, images: tuple[str, ...], db: str | None, threshold: int, fmt: str) -> None:
    """Say whether each IMAGE matches anything in the store: for scripts and upload hooks.

    Exit status: 0 no image matched, 1 an image matched, 2 an image could not be checked (unreadable or
    corrupt) or the store could not be opened; click's own usage errors are also 2. The output names the
    closest match and its distance, one line per image (a JSON list with --format json).

    Example:

        dedupe check upload.jpg --db blocklist.sqlite --format json
    """
    store = open_query_store(ctx, db)
    errors = matched = 0
    report: list[dict[str, Any]] = []
    for image in images:
        try:
            result = check(image, store, threshold=threshold)
        except FileSkipped as e:
            errors += 1
            report.append({"image": image, "match": None, "distance": None, "error": e.reason, "closest": None})
            if fmt == "text":
                click.echo(f"{display_path(image)}: error: {e.reason}", err=True)
            continue
        except DedupeError as e:
            raise QueryError(str(e)) from None
        matched += result.matched
        report.append(
            {
                "image": image,
                "match": result.matched,
                "distance": result.distance,
                "error": None,
                "closest": None if result.hit is None else hit_json(result.hit),
            }
        )
        if fmt == "text":
            if result.hit is None:
                click.echo(f"{display_path(image)}: no match")
            else:
                hit = result.hit
                click.echo(f"{display_path(image)}: match: {hit.reason} ({hit.source.value} {display_path(hit.name)})")
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    ctx.exit(query_status(errors, matched))


@cli.command("export")
@click.argument("dirs", nargs=-1, type=click.Path(path_type=str))
@db_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
    default="-",
    help="Write the list to this file [default: standard output].",
)
@click.pass_context
def export_command(ctx: click.Context, dirs: tuple[str, ...], db: str | None, output: str) -> None:
    """Write the fingerprints of the stored images below DIRS as a shareable CSV list.

    With no DIRS, every stored image and every imported fingerprint is listed. The first line names the
    fingerprint algorithm; each image is labelled with its path. The images themselves are not needed to use
    the list: `dedupe import` it into another store.

    Example:

        dedupe export ~/banned -o blocklist.csv
    """
    store = open_store(ctx, db, readonly=True)
    try:
        if output == "-":
            count = export_fingerprints(store, sys.stdout, dirs)
        else:
            count = export_fingerprints(store, output, dirs)
    except DedupeError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Exported {count} fingerprints{'' if output == '-' else f' to {output}'}.", err=True)


@cli.command("import")
@click.argument("list_file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True, path_type=str))
@db_option
@click.option("--replace", is_flag=True, help="Drop the fingerprints imported before, keeping only this list.")
@click.pass_context
def import_command(ctx: click.Context, list_file: str, db: str | None, replace: bool) -> None:
    """Add the fingerprints of a list made by `dedupe export` to the store ("-" reads standard input).

    Imported fingerprints need no image on disk: search and check match them, and scans never prune them.
    A list made with another fingerprint algorithm is refused (exit status 1), as is a damaged one; nothing
    is imported then.

    Example:

        dedupe import blocklist.csv --db uploads.sqlite --replace
    """
    store = open_store(ctx, db)
    try:
        report = import_fingerprints(store, list_file, replace=replace)
    except DedupeError as e:
        raise click.ClickException(str(e)) from None
    line = f"Imported {report.added} of {report.listed} fingerprints from {report.source}"
    if report.added < report.listed:
        line += f" ({report.listed - report.added} already imported)"
    if replace:
        line += f"; dropped {report.replaced} imported before"
    click.echo(line + ".")


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
