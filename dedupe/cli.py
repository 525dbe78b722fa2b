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

from dedupe import __version__
from dedupe.calibrate import DEFAULT_SAMPLE, calibrate
from dedupe.errors import DedupeError
from dedupe.group import DEFAULT_THRESHOLD, MAX_THRESHOLD, summarize
from dedupe.models import DuplicateGroup, ProgressEvent, ScanOptions, Skipped, Summary
from dedupe.scan import scan, stored_groups
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


def match_options(f: F) -> F:
    f = click.option(
        "--bursts-apart/--bursts-together",
        default=True,
        show_default=True,
        help="Keep shots of one burst (same camera, EXIF times under 2 s apart) out of each other's groups.",
    )(f)
    f = click.option(
        "--two-stage/--no-two-stage",
        default=True,
        show_default=True,
        help="Also match when pHash is within 16 bits and dHash confirms within 2 (edited copies, watermarks).",
    )(f)
    return click.option(
        "--rotations/--no-rotations",
        default=True,
        show_default=True,
        help="Also match copies turned by 90/180/270 degrees or mirrored in their pixels.",
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
@match_options
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
    rotations: bool,
    two_stage: bool,
    bursts_apart: bool,
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
    groups, _, images = stored_groups(
        store, report.roots, threshold, rotations=rotations, two_stage=two_stage, bursts_apart=bursts_apart
    )
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
@match_options
@format_option
@click.pass_context
def groups_command(
    ctx: click.Context,
    dirs: tuple[str, ...],
    db: str | None,
    threshold: int,
    rotations: bool,
    two_stage: bool,
    bursts_apart: bool,
    fmt: str,
) -> None:
    """List the duplicate groups again from the store, without reading any file.

    With no DIRS, every folder in the store is covered.

    Example:

        dedupe groups ~/Pictures --format json
    """
    store = open_store(ctx, db, readonly=True)
    groups, skipped, images = stored_groups(
        store, dirs, threshold, rotations=rotations, two_stage=two_stage, bursts_apart=bursts_apart
    )
    if dirs and images == 0 and not skipped:
        click.echo(f"No images stored below {', '.join(dirs)}: run 'dedupe scan' on it first.", err=True)
    render(groups, skipped, summarize(groups, images, len(skipped)), fmt, {})


@cli.command("calibrate")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=str))
@click.option(
    "--sample", type=click.IntRange(2, 2000), default=DEFAULT_SAMPLE, show_default=True, help="Photos to sample."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random sample.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def calibrate_command(dirs: tuple[str, ...], sample: int, seed: int, fmt: str, quiet: bool) -> None:
    """Recommend a --threshold from your own photos.

    Samples photos below DIRS, makes edited copies of each in a temporary folder (half size, JPEG quality 60,
    PNG, 20% brighter, 5% cropped, turned 90 degrees, mirrored), and compares how far the copies are from their
    photo with how close different photos come to each other. Nothing below DIRS is changed.

    Example:

        dedupe calibrate ~/Pictures --sample 60
    """
    err = Console(stderr=True)
    try:
        with progress_bar(err, enabled=not quiet and err.is_terminal) as on_progress:
            result = calibrate(dirs, sample, seed, on_progress)
    except DedupeError as e:
        raise click.ClickException(str(e)) from None
    if fmt == "json":
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    console = Console(highlight=False, soft_wrap=True)
    table = Table(title="Distance of edited copies to their photo (pHash bits; turns allowed)")
    for column in ("edit", "median", "max"):
        table.add_column(column, justify="left" if column == "edit" else "right")
    for name, (median, most) in result.by_edit.items():
        table.add_row(name, str(median), str(most))
    console.print(table)
    rows = Table(title=f"{result.copies} copies, {result.unrelated} pairs of different photos")
    for column in ("threshold", "copies found", "different photos paired"):
        rows.add_column(column, justify="right")
    for r in result.table:
        rows.add_row(str(r.threshold), f"{100 * r.copies_found / max(1, result.copies):.0f}%", str(r.unrelated_pairs))
    console.print(rows)
    console.print("Closest different photos (if these are in fact copies, the recommendation is too strict):")
    for d, a, b in result.nearest_unrelated[:3]:
        console.print(Text(f"  {d:2d}  {display_path(a)}  ~  {display_path(b)}"))
    for reason in result.skipped:
        console.print(Text(f"skipped {display_path(reason)}"))
    console.print(
        f"Recommended: --threshold {result.recommended}: finds {100 * result.recall:.0f}% of the edited copies;"
        f" {100 * result.false_pair_rate:.2f}% of the sampled photo pairs fell within it (at most"
        f" {100 * result.false_pair_bound:.2f}% at 95% confidence, from {result.photos} photos); expected false pairs"
        f" among your {result.library} images: {result.expected_false_pairs:.2g}."
    )


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
        progress.update(
            task,
            description="Calibrating" if event.phase == "calibrate" else "Fingerprinting",
            completed=event.done,
            total=event.total,
            rate=rate,
        )

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
                        "transform": m.transform,
                        "dhash": m.dhash,
                        "why": m.why,
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


CSV_FIELDS = (
    "group",
    "kind",
    "reference",
    "match",
    "distance",
    "transform",
    "path",
    "size",
    "width",
    "height",
    "format",
    "taken",
)


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
                    m.transform or "",
                    m.why,
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
                    match = Text(f"near d={m.distance}" + m.why.removeprefix(f"phash {m.distance}"), style="yellow")
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
