"""The command line: click commands and rich output, over the dedupe library."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

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
from rich.prompt import Confirm, Prompt
from rich.table import Table
from rich.text import Text

from dedupe import __version__, fingerprint
from dedupe.actions import (
    DEFAULT_RULES_TEXT,
    apply,
    in_folder,
    parse_rules,
    plan,
    plan_script,
    suggest_keeper,
    undo,
)
from dedupe.calibrate import DEFAULT_SAMPLE, calibrate
from dedupe.errors import DedupeError, FileSkipped
from dedupe.exchange import export_fingerprints, import_fingerprints
from dedupe.group import CROP_SEARCH_LIMIT, DEFAULT_THRESHOLD, MAX_THRESHOLD, searches_crops, summarize
from dedupe.models import (
    Action,
    ApplyResult,
    DuplicateGroup,
    KeeperChoice,
    KeeperRule,
    MatchKind,
    Plan,
    ProgressEvent,
    ScanOptions,
    SearchHit,
    SearchResult,
    Skipped,
    StepState,
    Summary,
    WatchEvent,
    WatchEventKind,
    WatchOptions,
)
from dedupe.report import write_html_report
from dedupe.scan import scan, stored_groups
from dedupe.search import check, find_similar
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


def match_options(f: F) -> F:
    f = click.option(
        "--crops/--no-crops",
        default=None,
        help="Also match copies with about 15-20% cut off their edges, or cut to 16:9 or square (confirmed by dHash"
        " and colour)."
        f" Default: on for up to {CROP_SEARCH_LIMIT:,} pictures (the search grows slow beyond).",
    )(f)
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


def _stored_groups(
    store: Store,
    roots: Sequence[str],
    threshold: int,
    rotations: bool,
    two_stage: bool,
    bursts_apart: bool,
    crops: bool | None,
) -> tuple[list[DuplicateGroup], list[Skipped], int]:
    """stored_groups, saying so on stderr when the default left out the search for cropped copies."""
    found = stored_groups(
        store, roots, threshold, rotations=rotations, two_stage=two_stage, bursts_apart=bursts_apart, crops=crops
    )
    if crops is None and not searches_crops(found[2], None):
        click.echo(
            f"note: cropped copies were not looked for among {found[2]:,} pictures (slow beyond"
            f" {CROP_SEARCH_LIMIT:,}); add --crops to look for them too",
            err=True,
        )
    return found


def open_store(ctx: click.Context, db: str | None, *, readonly: bool = False) -> Store:
    try:
        return ctx.with_resource(Store.open(db, readonly=readonly))
    except DedupeError as e:
        raise click.ClickException(display_path(str(e))) from None


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
    crops: bool | None,
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
        raise click.ClickException(display_path(str(e))) from None
    for warning in report.warnings:
        err.print(Text(f"warning: {display_path(warning)}"))
    groups, _, images = _stored_groups(store, report.roots, threshold, rotations, two_stage, bursts_apart, crops)
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
    crops: bool | None,
    fmt: str,
) -> None:
    """List the duplicate groups again from the store, without reading any file.

    With no DIRS, every folder in the store is covered.

    Example:

        dedupe groups ~/Pictures --format json
    """
    store = open_store(ctx, db, readonly=True)
    groups, skipped, images = _stored_groups(store, dirs, threshold, rotations, two_stage, bursts_apart, crops)
    if dirs and images == 0 and not skipped:
        click.echo(
            f"No images stored below {', '.join(map(display_path, dirs))}: run 'dedupe scan' on it first.", err=True
        )
    render(groups, skipped, summarize(groups, images, len(skipped)), fmt, {})


# --- review, undo and report ----------------------------------------------------------------------------------


def keep_option(f: F) -> F:
    return click.option(
        "--keep",
        "keep",
        default=DEFAULT_RULES_TEXT,
        show_default=True,
        metavar="RULES",
        help="Ordered keeper rules, comma-separated: resolution, size, oldest, newest (date taken, then mtime),"
        " shortest (path), path:FOLDER (prefer files in FOLDER). Later rules break ties of earlier ones.",
    )(f)


def reference_option(f: F) -> F:
    return click.option(
        "--reference",
        "references",
        multiple=True,
        metavar="DIR",
        type=click.Path(exists=True, file_okay=False, path_type=str),
        help="A folder whose files always win and are never touched (repeatable).",
    )(f)


def _rules(keep: str) -> tuple[KeeperRule, ...]:
    try:
        return parse_rules(keep)
    except DedupeError as e:
        raise click.BadParameter(str(e), param_hint="'--keep'") from None


def _real(paths: Sequence[str]) -> list[str]:
    return [os.path.realpath(p) for p in paths]


class _Input:
    """The answers stream: end of input is a quit, never an endless loop of empty answers."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def readline(self) -> str:
        line = str(self._stream.readline())
        if not line:
            raise EOFError
        return line


@cli.command("review")
@click.argument("dirs", nargs=-1, type=click.Path(path_type=str))
@db_option
@click.option(
    "--action",
    type=click.Choice([a.value for a in Action]),
    default=Action.TRASH.value,
    show_default=True,
    help="What happens to the redundant copies: trash (restorable), delete (permanent), move (needs --to),"
    " hardlink or symlink (the copy becomes a link to the keeper).",
)
@click.option(
    "--to", "to", metavar="DIR", type=click.Path(file_okay=False, path_type=str), help="Where move puts the copies."
)
@keep_option
@reference_option
@click.option("--yes", "-y", is_flag=True, help="No questions: act on every exact and same-pixels copy.")
@click.option("--include-near", is_flag=True, help="With --yes, --dry-run or --script: also act on similar copies.")
@click.option(
    "--include-raw",
    is_flag=True,
    help="Treat RAW files like other photos: a RAW may then go in favour of its JPEG twin, or the twin in favour of"
    " the RAW. Without it a RAW is removed only as an exact copy of another RAW.",
)
@click.option("--dry-run", is_flag=True, help="Print exactly what --yes would do, and change nothing.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="How to print the plan or the result (json with --yes or --dry-run).",
)
@click.option(
    "--script",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write the plan as a shell script to read and run yourself, instead of acting.",
)
@threshold_option
@match_options
@click.option("--web", is_flag=True, help="Review in the browser: a local page to compare, decide, apply and undo.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="With --web: the port [default: a free one].")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --web: the address to listen on.")
@click.option("--no-browser", is_flag=True, help="With --web: print the address, do not open a browser.")
@click.pass_context
def review_command(
    ctx: click.Context,
    dirs: tuple[str, ...],
    db: str | None,
    action: str,
    to: str | None,
    keep: str,
    references: tuple[str, ...],
    yes: bool,
    include_near: bool,
    include_raw: bool,
    dry_run: bool,
    fmt: str,
    script: str | None,
    threshold: int,
    rotations: bool,
    two_stage: bool,
    bursts_apart: bool,
    crops: bool | None,
    web: bool,
    port: int,
    host: str,
    no_browser: bool,
) -> None:
    """Review the duplicate groups and deal with the redundant copies.

    Interactively, each group is shown with the suggested keeper; answer k (keep the suggestion), a number
    (keep that file instead), a (keep all: not duplicates, remembered), s (skip), o (open in the image viewer),
    b (back) or q (quit). Nothing is touched before you confirm, every file and its keeper are checked again
    right before acting, and 'dedupe undo' reverses the run. A RAW file and its JPEG/HEIC twin are shown together
    but neither is removed in favour of the other ("RAW original kept") unless --include-raw is given.

    Example:

        dedupe review ~/Pictures --keep resolution,oldest --reference ~/Pictures/Originals
        dedupe review /media/backup --yes --action move --to /media/backup-dups
        dedupe review ~/Pictures --dry-run --format json
        dedupe review ~/Pictures --web
    """
    act = Action(action)
    if act is Action.MOVE and not to:
        raise click.UsageError("--action move needs --to DIR")
    if to and act is not Action.MOVE:
        raise click.UsageError("--to is only for --action move")
    if script and (yes or dry_run):
        raise click.UsageError("--script writes the plan instead of acting: do not combine it with --yes or --dry-run")
    interactive = not (yes or dry_run or script)
    if interactive and fmt == "json":
        raise click.UsageError("--format json needs --yes, --dry-run or --script")
    rules = _rules(keep)
    refs = _real(references)
    roots = _real(dirs)
    store = open_store(ctx, db)
    if web:
        if yes or dry_run or script:
            raise click.UsageError("--web reviews in the browser: do not combine it with --yes, --dry-run or --script")
        from dedupe.web import serve_review  # the optional 'web' extra: says how to install it when missing

        def planner(chosen: Sequence[DuplicateGroup], keepers: Mapping[int, str]) -> Plan:
            return plan(chosen, rules, act, references=refs, destination=os.path.realpath(to) if to else None,
                        roots=roots, include_near=True, keepers=keepers, include_raw=include_raw)  # fmt: skip

        def load() -> list[DuplicateGroup]:
            return _stored_groups(store, roots, threshold, rotations, two_stage, bursts_apart, crops)[0]

        try:
            serve_review(store, load, planner, action=act, host=host, port=port, open_browser=not no_browser)
        except DedupeError as e:
            raise click.ClickException(display_path(str(e))) from None
        return
    groups, _, images = _stored_groups(store, roots, threshold, rotations, two_stage, bursts_apart, crops)
    console = _console()
    if dirs and images == 0:
        click.echo(
            f"No images stored below {', '.join(map(display_path, dirs))}: run 'dedupe scan' on it first.", err=True
        )
    if not groups:
        if fmt == "json":
            click.echo(json.dumps({"action": act.value, "dry_run": dry_run, "groups": [], "results": []}))
        else:
            console.print("No duplicates found.")
        return
    destination = os.path.realpath(to) if to else None
    try:
        if interactive:
            _interactive_review(ctx, store, console, groups, rules, refs, roots, act, destination, include_raw)
            return
        the_plan = plan(
            groups,
            rules,
            act,
            references=refs,
            destination=destination,
            roots=roots,
            include_near=include_near,
            include_raw=include_raw,
        )
    except DedupeError as e:
        raise click.ClickException(display_path(str(e))) from None
    if script:
        _write_script(the_plan, script)
        console.print(
            Text(
                f"Wrote {display_path(script)}: {len(the_plan.steps)} step(s)."
                f" Read it, then run: sh {display_path(shlex.quote(script))}"
            )
        )
        return
    if dry_run:
        if fmt == "json":
            click.echo(json.dumps(plan_json(the_plan, dry_run=True), indent=2))
        else:
            render_plan(console, the_plan, dry_run=True)
        return
    if not the_plan.steps:
        if fmt == "json":
            click.echo(json.dumps({**plan_json(the_plan, dry_run=False), "run": None, "results": []}, indent=2))
        else:
            render_plan(console, the_plan, dry_run=False, steps=False)
            console.print("Nothing to do.")
        return
    result = _apply(store, the_plan)
    if fmt == "json":
        click.echo(json.dumps({**plan_json(the_plan, dry_run=False), **result_json(result)}, indent=2))
    else:
        render_plan(console, the_plan, dry_run=False, steps=False)
        render_result(console, result)
    if result.count(StepState.FAILED):
        ctx.exit(1)


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 200  # piped or tested: never fold a path
    return console


def _write_script(the_plan: Plan, path: str) -> None:
    try:
        # Paths keep their exact bytes (surrogate escapes) so that the script names the real files.
        with Path(path).open("w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(plan_script(the_plan, Path(path).name))
        Path(path).chmod(0o755)
    except OSError as e:
        raise click.ClickException(f"cannot write {display_path(path)}: {e.strerror or e}") from None


def _apply(store: Store, the_plan: Plan) -> ApplyResult:
    err = Console(stderr=True)
    try:
        with progress_bar(err, enabled=err.is_terminal and len(the_plan.steps) > 20) as on_progress:
            return apply(the_plan, store, on_progress=on_progress)
    except KeyboardInterrupt:
        err.print("Interrupted: every act so far is in the journal; 'dedupe undo' reverses them.")
        sys.exit(130)
    except DedupeError as e:
        raise click.ClickException(display_path(str(e))) from None


_ROW_MATCH = {"exact": "same bytes", "image": "same pixels", "near": "similar"}


def group_table(group: DuplicateGroup, choice: KeeperChoice, refs: Sequence[str]) -> Table:
    """The review table of one group: the facts a keeper is chosen by."""
    table = Table(pad_edge=False, expand=False, show_lines=False)
    for column, justify in (
        ("#", "right"),
        ("Keep", "left"),
        ("Resolution", "right"),
        ("Size", "right"),
        ("Format", "left"),
        ("Taken", "left"),
        ("Modified", "left"),
        ("Match", "left"),
        ("Path", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column != "Path", overflow="fold")  # type: ignore[arg-type]
    for i, m in enumerate(group.members, start=1):
        fp = m.file.fingerprint
        if m.file.path == choice.keeper.path and not choice.is_tie:
            mark = Text("★ keep", style="bold green")
        elif choice.is_tie and m.file.path in choice.tied:
            mark = Text("tie?", style="bold yellow")
        elif any(in_folder(m.file.path, r) for r in refs):
            mark = Text("reference", style="cyan")
        else:
            mark = Text("")
        if i == 1:
            match = "reference"
        elif m.match.value == "near":
            match = f"similar: {m.why}"
        else:
            match = _ROW_MATCH[m.match.value]
        table.add_row(
            str(i),
            mark,
            f"{fp.width}x{fp.height}",
            human_size(m.file.size),
            fp.format,
            fp.taken.replace("T", " ") if fp.taken else "-",
            datetime.fromtimestamp(m.file.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M"),
            match,
            Text(display_path(m.file.path)),
        )
    return table


_KEYS = "k keep suggestion · 1-{n} keep that file · a keep all · s skip · o open · b back · q quit"


def _interactive_review(
    ctx: click.Context,
    store: Store,
    console: Console,
    groups: list[DuplicateGroup],
    rules: Sequence[KeeperRule],
    refs: Sequence[str],
    roots: Sequence[str],
    act: Action,
    destination: str | None,
    include_raw: bool = False,
) -> None:
    stream = cast(TextIO, _Input(sys.stdin))
    choices = [suggest_keeper(g, rules, refs, include_raw=include_raw) for g in groups]
    keepers: dict[int, str] = {}
    keep_all: set[int] = set()
    quit_early = False
    i = 0
    while i < len(groups):
        group, choice = groups[i], choices[i]
        console.print()
        console.print(Text(f"Group {i + 1} of {len(groups)}: {_ROW_MATCH[group.kind.value]}", style="bold"))
        console.print(group_table(group, choice, refs))
        if choice.is_tie:
            console.print(Text(f"{display_path(choice.reason)}: pick the keeper by number.", style="yellow"))
        else:
            n = next(j for j, m in enumerate(group.members, 1) if m.file.path == choice.keeper.path)
            console.print(Text(f"Suggested keeper: {n}, {display_path(choice.reason)}"))
        try:
            answer = Prompt.ask(
                _KEYS.format(n=len(group.members)),
                console=console,
                stream=stream,
                default="" if choice.is_tie else "k",
                show_default=not choice.is_tie,
            )
        except EOFError:
            console.print("\nEnd of input: quitting without changing anything.")
            return
        answer = answer.strip().lower()
        if answer == "k" and not choice.is_tie:
            keepers[i] = choice.keeper.path
            keep_all.discard(i)
        elif answer.isdigit() and 1 <= int(answer) <= len(group.members):
            keepers[i] = group.members[int(answer) - 1].file.path
            keep_all.discard(i)
        elif answer == "a":
            keep_all.add(i)
            keepers.pop(i, None)
        elif answer == "s":
            keepers.pop(i, None)
            keep_all.discard(i)
        elif answer == "o":
            console.print(open_in_viewer([m.file.path for m in group.members]))
            continue
        elif answer == "b":
            i = max(0, i - 1)
            continue
        elif answer == "q":
            quit_early = True
            break
        else:
            hint = "a tie: pick the keeper by number" if answer == "k" else f"not an answer: {answer!r}"
            console.print(Text(hint, style="red"))
            continue
        i += 1

    if not keepers and not keep_all:
        console.print("Nothing decided; nothing changed.")
        return
    chosen = sorted(keepers)
    try:
        the_plan = plan(
            [groups[j] for j in chosen],
            rules,
            act,
            references=refs,
            destination=destination,
            roots=roots,
            include_near=True,
            keepers={n: keepers[j] for n, j in enumerate(chosen)},
            include_raw=include_raw,
        )
    except DedupeError as e:
        raise click.ClickException(display_path(str(e))) from None
    console.print()
    render_plan(console, the_plan, dry_run=False)
    if keep_all:
        console.print(f"{len(keep_all)} group(s) will be remembered as not duplicates.")
    try:
        if quit_early:
            go = Prompt.ask(
                "Apply what was decided so far, or discard it?",
                console=console,
                stream=stream,
                choices=["apply", "discard"],
                default="discard",
            )
            confirmed = go == "apply"
        elif the_plan.steps:
            confirmed = Confirm.ask(
                f"{act.value.capitalize()} {len(the_plan.steps)} file(s)?",
                console=console,
                stream=stream,
                default=False,
            )
        else:
            confirmed = True
    except EOFError:
        confirmed = False
    if not confirmed:
        console.print("Discarded; nothing changed.")
        return
    if keep_all:
        pairs = []
        for j in sorted(keep_all):
            hashes = [m.file.content_hash for m in groups[j].members]
            pairs += [(a, b) for x, a in enumerate(hashes) for b in hashes[x:] if a != b or hashes.count(a) > 1]
        store.add_not_duplicates(pairs)
        console.print(f"Remembered {len(keep_all)} group(s) as not duplicates.")
    if the_plan.steps:
        result = _apply(store, the_plan)
        render_result(console, result)
        if result.count(StepState.FAILED):
            ctx.exit(1)


def open_in_viewer(paths: Sequence[str]) -> str:
    """Open files in the system image viewer ($DEDUPE_VIEWER, else xdg-open or open); says what happened."""
    if os.environ.get("DEDUPE_VIEWER"):
        command = shlex.split(os.environ["DEDUPE_VIEWER"])
    elif sys.platform == "darwin":
        command = ["open"]
    elif sys.platform == "win32":
        for path in paths:
            os.startfile(path)  # type: ignore[attr-defined]
        return f"Opened {len(paths)} file(s)."
    else:
        command = ["xdg-open"]
    if not shutil.which(command[0]):
        return f"No system viewer found ({command[0]} is not installed); open the files yourself."
    for path in paths:
        try:
            subprocess.run(
                [*command, path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"The viewer {command[0]} failed: {e}"
    return f"Opened {len(paths)} file(s) with {command[0]}."


def plan_json(the_plan: Plan, *, dry_run: bool) -> dict[str, Any]:
    return {
        "action": the_plan.action.value,
        "dry_run": dry_run,
        "destination": the_plan.destination,
        "groups": [
            {
                "keeper": g.choice.keeper.path,
                "reason": g.choice.reason,
                "tie": list(g.choice.tied),
                "skipped": g.skipped,
                "steps": [
                    {
                        "path": s.file.path,
                        "action": s.action.value,
                        "match": s.match.value,
                        "size": s.file.size,
                        "destination": s.destination,
                        "sidecars": list(s.sidecars),
                    }
                    for s in g.steps
                ],
                "left": [{"path": s.path, "reason": s.reason} for s in g.left],
            }
            for g in the_plan.groups
        ],
        "summary": {"files": len(the_plan.steps), "bytes": the_plan.reclaimable_bytes},
    }


def result_json(result: ApplyResult) -> dict[str, Any]:
    return {
        "run": result.run_id,
        "results": [
            {
                "path": r.path,
                "state": r.state.value,
                "reason": r.reason,
                "keeper": r.keeper,
                "destination": r.destination,
                "size": r.size,
                "sidecars": list(r.sidecars),
            }
            for r in result.results
        ],
        "summary": {
            "done": result.count(StepState.DONE),
            "skipped": result.count(StepState.SKIPPED),
            "failed": result.count(StepState.FAILED),
            "freed_bytes": result.freed_bytes,
        },
    }


_VERB = {
    Action.TRASH: ("trash", "trashed"),
    Action.DELETE: ("delete permanently", "deleted"),
    Action.MOVE: ("move", "moved"),
    Action.HARDLINK: ("hard-link", "hard-linked"),
    Action.SYMLINK: ("symlink", "symlinked"),
}


def render_plan(console: Console, the_plan: Plan, *, dry_run: bool, steps: bool = True) -> None:
    verb = _VERB[the_plan.action][0]
    for n, g in enumerate(the_plan.groups, start=1):
        if g.skipped:
            console.print(Text(f"Group {n}: left alone: {display_path(g.skipped)}", style="yellow"))
            continue
        if steps:
            console.print(
                Text(f"Group {n}: keep {display_path(g.choice.keeper.path)} ({display_path(g.choice.reason)})")
            )
            for s in g.steps:
                line = f"  {verb} {display_path(s.file.path)}"
                if s.destination:
                    line += f" -> {display_path(s.destination)}"
                console.print(Text(line + _with_sidecars(s.sidecars)))
        for left in g.left:
            console.print(Text(f"  leave {display_path(left.path)}: {display_path(left.reason)}", style="dim"))
    if steps:
        console.print(
            f"Would {verb} {len(the_plan.steps)} file(s), {human_size(the_plan.reclaimable_bytes)}."
            + (" Dry run: nothing was changed." if dry_run else "")
        )


def _with_sidecars(sidecars: Sequence[str]) -> str:
    return f" (with {', '.join(display_path(Path(s).name) for s in sidecars)})" if sidecars else ""


def render_result(console: Console, result: ApplyResult) -> None:
    for r in result.results:
        if r.state is StepState.DONE:
            where = f" -> {display_path(r.destination)}" if r.destination else ""
            console.print(Text(f"{_VERB[result.action][1]} {display_path(r.path)}{where}{_with_sidecars(r.sidecars)}"))
            if r.reason:  # done, but a sidecar could not go along
                console.print(Text(f"  {display_path(r.reason)}", style="yellow"))
        else:
            style = "red" if r.state is StepState.FAILED else "yellow"
            console.print(Text(f"{r.state.value} {display_path(r.path)}: {display_path(r.reason)}", style=style))
    console.print(
        f"{result.count(StepState.DONE)} {_VERB[result.action][1]} ({human_size(result.freed_bytes)}),"
        f" {result.count(StepState.SKIPPED)} skipped, {result.count(StepState.FAILED)} failed."
        f" Run {result.run_id}: 'dedupe undo' reverses it."
    )


@cli.command("undo")
@db_option
@click.option("--list", "list_runs", is_flag=True, help="List past runs instead of undoing.")
@click.option("--run", "run_id", type=click.IntRange(1), help="Undo this run instead of the last one.")
@click.pass_context
def undo_command(ctx: click.Context, db: str | None, list_runs: bool, run_id: int | None) -> None:
    """Reverse the last review run: put trashed and moved files back and turn links into files again.

    Interrupted runs are understood too. Permanent deletes cannot be reversed.

    Example:

        dedupe undo --list
        dedupe undo
    """
    store = open_store(ctx, db)
    console = _console()
    if list_runs:
        all_runs = store.runs()
        if not all_runs:
            console.print("No runs yet.")
            return
        table = Table(pad_edge=False)
        for column in ("Run", "Started", "Action", "Done", "Failed", "Undone", "State"):
            table.add_column(column)
        for r in all_runs:
            if r.undone is not None:
                state = "undone"
            elif r.finished is None:
                state = "interrupted" if r.counts.get("planned") or r.counts.get("done") else "unfinished"
            else:
                state = "finished"
            table.add_row(
                str(r.id),
                datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S"),
                r.action.value,
                str(r.counts.get("done", 0)),
                str(r.counts.get("failed", 0)),
                str(r.counts.get("undone", 0)),
                state,
            )
        console.print(table)
        return
    try:
        result = undo(store, run_id)
    except DedupeError as e:
        raise click.ClickException(display_path(str(e))) from None
    for item in result.results:
        if item.state is StepState.DONE:
            console.print(Text(f"restored {display_path(item.path)}: {display_path(item.reason)}"))
        elif item.state is StepState.SKIPPED:
            console.print(
                Text(f"nothing to do for {display_path(item.path)}: {display_path(item.reason)}", style="dim")
            )
        else:
            console.print(
                Text(f"could not restore {display_path(item.path)}: {display_path(item.reason)}", style="red")
            )
    restored = sum(r.state is StepState.DONE for r in result.results)
    failed = sum(r.state is StepState.FAILED for r in result.results)
    if result.complete:
        console.print(f"Run {result.run_id} ({result.action.value}) undone: {restored} file(s) restored.")
    else:
        console.print(
            f"Run {result.run_id} ({result.action.value}) partly undone: {restored} restored, {failed} could not be;"
            " fix what is said above and run 'dedupe undo' again."
        )
        ctx.exit(1)


@cli.command("report")
@click.argument("dirs", nargs=-1, type=click.Path(path_type=str))
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
@threshold_option
@match_options
@click.pass_context
def report_command(
    ctx: click.Context,
    dirs: tuple[str, ...],
    html_file: str,
    db: str | None,
    keep: str,
    references: tuple[str, ...],
    threshold: int,
    rotations: bool,
    two_stage: bool,
    bursts_apart: bool,
    crops: bool | None,
) -> None:
    """Write one self-contained HTML page showing each group side by side, the suggested keeper framed.

    Thumbnails are embedded in the page; it loads nothing from the network. Nothing is changed on disk.

    Example:

        dedupe report --html dups.html ~/Pictures
    """
    rules = _rules(keep)
    store = open_store(ctx, db, readonly=True)
    groups, _, _ = _stored_groups(store, _real(dirs), threshold, rotations, two_stage, bursts_apart, crops)
    err = Console(stderr=True)
    try:
        from dedupe.web.report import write_review_report  # with the web extra: review's overview and wording
    except ImportError:
        write_review_report = None  # type: ignore[assignment]

    def planner(chosen: Sequence[DuplicateGroup], keepers: Mapping[int, str]) -> Plan:
        return plan(chosen, rules, references=_real(references), roots=_real(dirs), include_near=True, keepers=keepers)

    try:
        with progress_bar(err, enabled=err.is_terminal) as on_progress:
            if write_review_report is not None:
                missing = write_review_report(html_file, store, groups, planner, on_progress=on_progress)
            else:
                missing = write_html_report(html_file, groups, rules, _real(references), on_progress)
    except DedupeError as e:
        raise click.ClickException(display_path(str(e))) from None
    line = f"Wrote {display_path(html_file)}: {len(groups)} group(s), {sum(len(g.members) for g in groups)} files."
    if missing:
        line += f" {missing} file(s) could not be previewed (shown as text)."
    _console().print(Text(line))


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
                click.echo(f"{display_path(image)}: error: {display_path(e.reason)}", err=True)
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
                click.echo(
                    f"{display_path(image)}: match: {display_path(hit.reason)}"
                    f" ({hit.source.value} {display_path(hit.name)})"
                )
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
        raise click.ClickException(display_path(str(e))) from None
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
        raise click.ClickException(display_path(str(e))) from None
    line = f"Imported {report.added} of {report.listed} fingerprints from {report.source}"
    if report.added < report.listed:
        line += f" ({report.listed - report.added} already imported)"
    if replace:
        line += f"; dropped {report.replaced} imported before"
    click.echo(line + ".")


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
        raise click.ClickException(display_path(str(e))) from None
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
@click.option(
    "--quarantine",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=str),
    help="Move each incoming duplicate (never the older copy) into DIR, outside the watched folders;"
    " journaled like review, so 'dedupe undo' puts it back.",
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
    quarantine: str | None,
) -> None:
    """Watch DIRS and report each new photo that duplicates one already in the store.

    First catches up with what changed since the last scan, then follows new, changed, moved and deleted files
    until Ctrl-C or SIGTERM. Each duplicate is reported once, also across restarts. Nothing is ever deleted.

    Example:

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
    store = open_store(ctx, db)
    options = WatchOptions(
        threshold=threshold, poll=poll, settle=settle, hidden=hidden, command=argv, quarantine=quarantine
    )
    renderer = WatchRenderer(fmt, Console(stderr=True, highlight=False, soft_wrap=True))
    stop = threading.Event()
    try:
        with stop_on_signals(stop), renderer:
            watch(dirs, store, options, renderer.on_event, stop)
    except KeyboardInterrupt:
        click.echo("Interrupted at once: what was read so far is saved.", err=True)
        ctx.exit(130)
    except DedupeError as e:
        raise click.ClickException(display_path(str(e))) from None
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
        # Redrawn as events come, not by a thread of its own: a scan forks its workers only when this process
        # runs no other thread (see scan._context).
        auto_refresh=False,
    )
    task = progress.add_task("Walking folders", total=None, rate="")
    drawn = 0.0

    def on_progress(event: ProgressEvent) -> None:
        nonlocal drawn
        if event.phase == "walk":
            progress.update(task, description="Walking folders")
        else:
            elapsed = progress.tasks[0].elapsed or 0.0
            rate = f"{event.done / elapsed:.0f} files/s" if elapsed > 0.5 else ""
            progress.update(
                task,
                description="Calibrating" if event.phase == "calibrate" else "Fingerprinting",
                completed=event.done,
                total=event.total,
                rate=rate,
            )
        now = time.monotonic()
        if now - drawn >= 0.1 or event.done == event.total:
            drawn = now
            progress.refresh()

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
            self._err.print(Text(f"skipped {path}: {display_path(event.message)}"))
        elif event.kind == WatchEventKind.COMMAND_FAILED:
            self._err.print(Text(f"--exec failed for {path}: {display_path(event.message)}"))
        elif event.kind == WatchEventKind.QUARANTINED:
            click.echo(f"quarantined: {path} -> {other} ('dedupe undo' puts it back)")
            sys.stdout.flush()
        elif event.kind == WatchEventKind.QUARANTINE_FAILED:
            self._err.print(Text(f"not quarantined, left in place: {path}: {display_path(event.message)}"))

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
    if event.kind in (WatchEventKind.SKIPPED, WatchEventKind.COMMAND_FAILED, WatchEventKind.QUARANTINE_FAILED):
        out["reason"] = event.message
    elif event.message:
        out["message"] = event.message
    return out


# --- rendering ------------------------------------------------------------------------------------------------


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def display_path(path: str) -> str:
    """A path as it can be printed: bytes that are not UTF-8 and control characters (which would drive the
    terminal or split a row) shown as \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").translate(_CONTROL)


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
                        "cropped": m.cropped,
                        "crop": m.crop,
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
            console.print(Text(f"  {display_path(s.path)}: {display_path(s.reason)}"))
    line = (
        f"{summary.images} images, {summary.groups} groups, {summary.duplicate_files} duplicate files,"
        f" {human_size(summary.reclaimable_bytes)} reclaimable, {summary.skipped} skipped"
    )
    if extra:
        line += f" ({extra['fingerprinted']} fingerprinted, {extra['reused']} already known)"
    console.print(line)
