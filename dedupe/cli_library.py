"""Commands that look at the library: scan, groups, report and calibrate.

rich is imported where a table or styled text is printed: a scan that prints JSON quietly never loads it.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from dedupe.calibrate import DEFAULT_SAMPLE, calibrate
from dedupe.cli_common import (
    MATCH_LABEL,
    Output,
    check_jobs,
    command,
    db_option,
    find_stored_groups,
    format_option,
    keep_option,
    match_options,
    note_no_images,
    open_store,
    pass_output,
    print_files,
    progress_bar,
    real,
    reference_option,
)
from dedupe.formats import (
    calibration_json,
    copy_labels,
    display_path,
    groups_csv,
    groups_json,
    groups_paths,
    human_size,
)
from dedupe.group import summarize
from dedupe.match import MatchRule
from dedupe.models import DuplicateGroup, KeeperChoice, KeeperRule, Plan, ScanOptions, Skipped, Summary
from dedupe.plan import keepers_chosen, keepers_first, plan
from dedupe.report import write_html_report
from dedupe.scan import JOBS_PER_CORE, ProgressCallback, scan

if TYPE_CHECKING:
    from rich.text import Text


PATHS_HELP = (
    "How to print the groups. paths: one path per line, the file review keeps first, a blank line after each"
    " group (as fdupes), for xargs and grep."
)


@command("scan")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=str))
@db_option
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files and folders matching GLOB (repeatable).")
@click.option("--hidden", is_flag=True, help="Also scan hidden files and folders (names starting with a dot).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links (loops are detected).")
@click.option("--min-size", type=click.IntRange(0), default=0, metavar="BYTES", help="Skip files smaller than this.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1),
    metavar="N",
    default=None,
    callback=check_jobs,
    help=f"Worker processes [default: one per core; at most {JOBS_PER_CORE} per core].",
)
@match_options()
@format_option("table", "json", "csv", "paths", help=PATHS_HELP)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@pass_output
def scan_command(
    output: Output,
    ctx: click.Context,
    dirs: tuple[str, ...],
    db: str | None,
    exclude: tuple[str, ...],
    hidden: bool,
    follow_symlinks: bool,
    min_size: int,
    jobs: int | None,
    rule: MatchRule,
    fmt: str,
    quiet: bool,
) -> None:
    """Fingerprint the images below DIRS and report exact and near duplicates.

    Images are recognised by their content. Files already fingerprinted and unchanged are not read again.

    Example:

    \b
        dedupe scan ~/Pictures /media/backup --exclude '*.tmp'
    """
    store = open_store(ctx, db, create=True)
    options = ScanOptions(
        exclude=exclude, hidden=hidden, follow_symlinks=follow_symlinks, min_size=min_size, workers=jobs
    )
    progress: AbstractContextManager[ProgressCallback | None] = nullcontext()
    if not quiet and output.err.is_terminal:
        progress = progress_bar(output.err, enabled=True)
    try:
        with progress as on_progress:
            report = scan(dirs, store, options, on_progress)
    except KeyboardInterrupt:
        output.err.print("Interrupted: what was fingerprinted so far is saved; scan again to continue.")
        ctx.exit(130)
    if report.warnings:
        from rich.text import Text

        for warning in report.warnings:
            output.err.print(Text(f"warning: {display_path(warning)}"))
    found, _, images = find_stored_groups(store, report.roots, rule)
    chosen = keepers_chosen(found, roots=report.roots, rule=rule)
    groups = [g for g, _ in chosen]
    summary = summarize(groups, images, len(report.skipped))
    extra = {
        "fingerprinted": report.fingerprinted,
        "reused": report.reused,
        "ignored": report.ignored,
        "pruned": report.pruned,
    }
    render(output, chosen, report.skipped, summary, fmt, extra)
    if fmt == "table" and groups:
        from rich.text import Text

        where = " ".join(shlex.quote(d) for d in dirs)
        output.out.print(
            Text(
                f"Next: 'dedupe review {where}' to choose what to keep, or 'dedupe report --html dups.html {where}'"
                " to look at the groups first."
            ),
            soft_wrap=True,
        )


@command("groups")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True, path_type=str))
@db_option
@match_options()
@format_option("table", "json", "csv", "paths", help=PATHS_HELP)
@click.pass_context
@pass_output
def groups_command(
    output: Output, ctx: click.Context, dirs: tuple[str, ...], db: str | None, rule: MatchRule, fmt: str
) -> None:
    """List the duplicate groups again from the store, without reading any file.

    With no DIRS, every folder in the store is covered.

    Example:

    \b
        dedupe groups ~/Pictures --format json
    """
    store = open_store(ctx, db, readonly=True)
    found, skipped, images = find_stored_groups(store, dirs, rule)
    chosen = keepers_chosen(found, roots=real(dirs), rule=rule)
    if dirs and images == 0 and not skipped:
        note_no_images(dirs)
    render(output, chosen, skipped, summarize([g for g, _ in chosen], images, len(skipped)), fmt, {})


@command("report")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True, path_type=str))
@click.option(
    "--html",
    "html_file",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=str),
    help="Where to write the page.",
)
@db_option
@keep_option
@reference_option
@match_options()
@click.pass_context
@pass_output
def report_command(
    output: Output,
    ctx: click.Context,
    dirs: tuple[str, ...],
    html_file: str,
    db: str | None,
    rules: tuple[KeeperRule, ...],
    references: tuple[str, ...],
    rule: MatchRule,
) -> None:
    """Write one self-contained HTML page showing each group side by side, the suggested keeper framed.

    Thumbnails are embedded in the page; it loads nothing from the network. Nothing is changed on disk.

    Example:

    \b
        dedupe report --html dups.html ~/Pictures
    """
    store = open_store(ctx, db, readonly=True)
    groups, _, images = find_stored_groups(store, real(dirs), rule)
    if dirs and images == 0:
        note_no_images(dirs)
    groups = keepers_first(groups, rules, real(references), roots=real(dirs), rule=rule)
    try:
        from dedupe.web.report import write_review_report  # with the web extra: review's overview and wording
    except ImportError:
        write_review_report = None  # type: ignore[assignment]

    def planner(chosen: Sequence[DuplicateGroup], keepers: Mapping[int, str]) -> Plan:
        return plan(chosen, rules, references=real(references), roots=real(dirs), include_near=True,
                    keepers=keepers, match_rule=rule)  # fmt: skip

    with progress_bar(output.err, enabled=output.err.is_terminal) as on_progress:
        if write_review_report is not None:
            missing = write_review_report(html_file, store, groups, planner, on_progress=on_progress)
        else:
            missing = write_html_report(html_file, groups, rules, real(references), on_progress, roots=real(dirs))
    from rich.text import Text

    line = f"Wrote {display_path(html_file)}: {len(groups)} group(s), {sum(len(g.members) for g in groups)} files."
    if missing:
        line += f" {missing} file(s) could not be previewed (shown as text)."
    output.out.print(Text(line))


@command("calibrate")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=str))
@click.option(
    "--sample",
    type=click.IntRange(2, 2000),
    metavar="N",
    default=DEFAULT_SAMPLE,
    show_default=True,
    help="Photos to sample.",
)
@click.option("--seed", type=int, metavar="S", default=0, show_default=True, help="Seed of the random sample.")
@format_option("table", "json", help="How to print the recommendation.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@pass_output
def calibrate_command(output: Output, dirs: tuple[str, ...], sample: int, seed: int, fmt: str, quiet: bool) -> None:
    """Recommend a --threshold from your own photos.

    Samples photos below DIRS, makes edited copies of each in a temporary folder (half size, JPEG quality 60,
    PNG, 20% brighter, 5% cropped, turned 90 degrees, mirrored), and compares how far the copies are from their
    photo with how close different photos come to each other. Nothing below DIRS is changed.

    Example:

    \b
        dedupe calibrate ~/Pictures --sample 60
    """
    with progress_bar(output.err, enabled=not quiet and output.err.is_terminal) as on_progress:
        result = calibrate(dirs, sample, seed, on_progress)
    if fmt == "json":
        click.echo(json.dumps(calibration_json(result), indent=2))
        return
    from rich.table import Table
    from rich.text import Text

    out = output.out
    table = Table(title="Distance of edited copies to their photo (pHash bits; turns allowed)")
    for column in ("edit", "median", "max"):
        table.add_column(column, justify="left" if column == "edit" else "right")
    for name, (median, most) in result.by_edit.items():
        table.add_row(name, str(median), str(most))
    out.print(table, soft_wrap=True)
    rows = Table(title=f"{result.copies} copies, {result.unrelated} pairs of different photos")
    for column in ("threshold", "copies found", "different photos paired"):
        rows.add_column(column, justify="right")
    for r in result.table:
        rows.add_row(str(r.threshold), f"{100 * r.copies_found / max(1, result.copies):.0f}%", str(r.unrelated_pairs))
    out.print(rows, soft_wrap=True)
    out.print(
        "Closest different photos (if these are in fact copies, the recommendation is too strict):", soft_wrap=True
    )
    for d, a, b in result.nearest_unrelated[:3]:
        out.print(Text(f"  {d:2d}  {display_path(a)}  ~  {display_path(b)}"), soft_wrap=True)
    if result.set_aside:
        out.print("Set aside: these look like real duplicates (the default rule groups them):", soft_wrap=True)
        for d, a, b in result.set_aside:
            out.print(Text(f"  {d:2d}  {display_path(a)}  =  {display_path(b)}"), soft_wrap=True)
    for reason in result.skipped:
        out.print(Text(f"skipped {display_path(reason)}"), soft_wrap=True)
    out.print(
        f"Recommended: --threshold {result.recommended}: finds {100 * result.recall:.0f}% of the edited copies;"
        f" {100 * result.false_pair_rate:.2f}% of the sampled photo pairs fell within it (at most"
        f" {100 * result.false_pair_bound:.2f}% at 95% confidence, from {result.photos} photos); expected false pairs"
        f" among your {result.library} images: {result.expected_false_pairs:.2g}.",
        soft_wrap=True,
    )


# --- the groups table -----------------------------------------------------------------------------------------


def _date(taken: str | None, mtime_ns: int) -> str:
    """The date taken, or the file's modification time marked "(file)" when the picture has no date taken."""
    if taken:
        return taken.replace("T", " ")[:16]
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).astimezone().strftime("%Y-%m-%d %H:%M") + " (file)"


def render(
    output: Output,
    chosen: Sequence[tuple[DuplicateGroup, KeeperChoice]],
    skipped: Sequence[Skipped],
    summary: Summary,
    fmt: str,
    extra: dict[str, int],
) -> None:
    groups = [g for g, _ in chosen]
    if fmt == "json":
        reasons = [c.reason for _, c in chosen]
        click.echo(json.dumps(groups_json(groups, skipped, summary, extra, reasons), indent=2))
    elif fmt == "csv":
        click.echo(groups_csv(groups), nl=False)
    elif fmt == "paths":
        if odd := sum("\n" in m.file.path for g in groups for m in g.members):
            click.echo(
                f"warning: {odd} path(s) hold a newline: shown escaped (\\x0a); --format json has them", err=True
            )
        sys.stdout.flush()
        sys.stdout.buffer.write(groups_paths(groups))
        sys.stdout.buffer.flush()
    else:
        render_table(output, chosen, skipped, summary, extra)


COLUMNS: tuple[str, ...] = ("Group", "Match", "Copies", "Resolution", "Size", "Taken / modified", "Path")


def render_table(
    output: Output,
    chosen: Sequence[tuple[DuplicateGroup, KeeperChoice]],
    skipped: Sequence[Skipped],
    summary: Summary,
    extra: dict[str, int],
) -> None:
    from rich.text import Text

    out = output.out
    if chosen:
        rows: list[list[Text]] = []
        ends: list[bool] = []
        for n, (g, choice) in enumerate(chosen, start=1):
            for i, (m, label) in enumerate(zip(g.members, copy_labels(g), strict=True)):
                fp = m.file.fingerprint
                if i == 0:
                    match = Text("reference", style="bold green")
                elif m.match.value == "near":
                    match = Text(f"near d={m.distance}" + m.why.removeprefix(f"phash {m.distance}"), style="yellow")
                else:
                    match = Text(MATCH_LABEL[m.match.value])
                rows.append(
                    [
                        Text(f"{n}" if i == 0 else ""),
                        match,
                        Text(label or ""),
                        Text(f"{fp.width}x{fp.height}"),
                        Text(human_size(m.file.size)),
                        Text(_date(fp.taken, m.file.mtime_ns)),
                        Text(display_path(m.file.path)),
                    ]
                )
                ends.append(False)
            # Under each group, as review shows it: which keeper rules made its first file the reference.
            rows.append(
                [*[Text("")] * (len(COLUMNS) - 1), Text(f"kept by: {display_path(choice.reason)}", style="dim")]
            )
            ends.append(True)
        print_files(out, COLUMNS, rows, ends, right=("Group", "Resolution", "Size"), heading="Group")
    else:
        out.print("No duplicates found.", soft_wrap=True)
    if skipped:
        out.print(f"Skipped {len(skipped)} file(s):", soft_wrap=True)
        for s in skipped:
            out.print(Text(f"  {display_path(s.path)}: {display_path(s.reason)}"), soft_wrap=True)
    line = (
        f"{summary.images} images, {summary.groups} groups, {summary.duplicate_files} duplicate files,"
        f" {human_size(summary.reclaimable_bytes)} reclaimable, {summary.skipped} skipped"
    )
    if extra:
        # "reused": fingerprints not made again, for files unchanged since the last scan, moved, or byte copies of
        # another (on a first scan, only those).
        line += f" ({extra['fingerprinted']} fingerprinted; {extra['reused']} unchanged, moved or byte copies"
        # Videos and documents are not "skipped" (nothing went wrong), but a user looks for them in the count.
        line += f"; {extra['ignored']} not images)" if extra["ignored"] else ")"
    out.print(line, soft_wrap=True)
