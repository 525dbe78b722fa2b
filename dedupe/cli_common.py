"""What every command shares: the consoles, library errors turned into click errors, the common options, the
one adapter to the grouping engine, and the progress bar.

rich, the grouping engine, the keeper rules and the PostgreSQL store are imported where they are used: a command
that needs none of them (check, from an upload hook) starts without them.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dedupe.errors import DedupeError, StoreError
from dedupe.formats import display_path
from dedupe.match import CANDIDATE_PHASH, CROP_SEARCH_LIMIT, DEFAULT_THRESHOLD, MAX_THRESHOLD, MatchRule, searches_crops
from dedupe.models import DuplicateGroup, KeeperRule, ProgressEvent, Skipped
from dedupe.store import Store, default_store_path
from dedupe.store import failure as store_failure

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from dedupe.store_pg import PostgresStore

F = TypeVar("F", bound=Callable[..., Any])


# --- output and errors ----------------------------------------------------------------------------------------


class Output:
    """The consoles of one command: out for what it reports (stdout), err for progress, notes and warnings. Each
    is made on first use, so that a command printing JSON or CSV quietly never loads rich (20-30 ms of a scan)."""

    @functools.cached_property
    def out(self) -> Console:
        from rich.console import Console

        out = Console(highlight=False, soft_wrap=False)
        if not out.is_terminal:
            out.width = 400  # piped or tested: never fold a path (a table's width)...
            out.soft_wrap = True  # ...nor a line of a plan or result longer than that (a deep folder's file)
        return out

    @functools.cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False)


# How a group's member is said to match its reference, in tables.
MATCH_LABEL = {"exact": "same bytes", "image": "same pixels", "near": "similar"}

# Made once per command, on first use (click keeps it in the context).
pass_output = click.make_pass_decorator(Output, ensure=True)


class QueryError(click.ClickException):
    """A failure of search or check: exit status 2, since 1 means that an image matched."""

    exit_code = 2


class DedupeCommand(click.Command):
    """A command whose library errors (DedupeError) end the run as one readable line: the one place where they
    become click errors (error: ClickException, exit status 1, or QueryError)."""

    def __init__(self, *args: Any, error: type[click.ClickException] = click.ClickException, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error = error

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DedupeError as e:
            raise self.error(display_path(str(e))) from None
        except Exception as e:
            # SQLite failing under the command (damaged, locked, full, read-only) is the store's, not a bug.
            store = ctx.meta.get(STORE_PATH) or default_store_path()
            failed = store_failure(e, store)
            if failed is None:
                raise
            raise self.error(display_path(str(failed))) from None


def command(
    name: str, *, error: type[click.ClickException] = click.ClickException
) -> Callable[[Callable[..., Any]], DedupeCommand]:
    """click.command for dedupe's commands: see DedupeCommand."""

    def decorate(f: Callable[..., Any]) -> DedupeCommand:
        made = click.command(name, cls=DedupeCommand, error=error)(f)
        assert isinstance(made, DedupeCommand)
        return made

    return decorate


# --- tables of files -----------------------------------------------------------------------------------------

# Below this width left for the path column, a terminal gets each file's facts on a line and its path below.
NARROW_PATH = 32


def fold_path(path: str, width: int) -> str:
    """path on lines of at most width cells, broken only after a "/": a folder or file name is never cut (one
    longer than width has a line of its own)."""
    from rich.cells import cell_len

    parts = path.split("/")
    lines: list[str] = []
    line = ""
    for seg in [p + "/" for p in parts[:-1]] + parts[-1:]:
        if line and cell_len(line) + cell_len(seg) > width:
            lines.append(line)
            line = ""
        line += seg
    lines.append(line)
    return "\n".join(lines)


def print_files(
    out: Console,
    columns: Sequence[str],
    rows: Sequence[list[Text]],
    ends: Sequence[bool],
    *,
    right: Sequence[str] = (),
    heading: str | None = None,
) -> None:
    """A table of files whose last column is the path. ends: a row that closes a section (a group), holding
    only a note in the path column. On a terminal, paths fold at "/" (rich would cut a file name anywhere); when
    the terminal leaves too little room for them, each file's facts go on a line with its path below, and
    heading (the name of the first column) starts each section. Elsewhere (piped) a path stays on one line."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    widths = [max(cell_len(columns[c]), *(r[c].cell_len for r in rows)) for c in range(len(columns))]
    if out.is_terminal:
        path_width = out.width - sum(widths[:-1]) - 3 * (len(widths) - 1) - 2
        if path_width < NARROW_PATH:
            _print_lines(out, rows, ends, heading)
            return
        folded = (Text(fold_path(r[-1].plain, path_width)) for r in rows)
        rows = [r if end else [*r[:-1], f] for r, end, f in zip(rows, ends, folded, strict=True)]
    else:
        # As wide as the longest path (rich caps a table at the console's width): a path is never folded.
        out.width = max(out.width, sum(widths) + 3 * len(widths) + 1)
    table = Table(show_lines=False, pad_edge=False, expand=False)
    for column in columns:
        justify = "right" if column in right else "left"
        table.add_column(column, justify=justify, no_wrap=column != columns[-1], overflow="fold")  # type: ignore[arg-type]
    for row, end in zip(rows, ends, strict=True):
        table.add_row(*row, end_section=end)
    out.print(table, soft_wrap=True)


def _print_lines(out: Console, rows: Sequence[list[Text]], ends: Sequence[bool], heading: str | None) -> None:
    from rich.text import Text

    for row, end in zip(rows, ends, strict=True):
        if end:
            out.print(Text("   ").append(row[-1]))
            continue
        facts = row[1:-1] if heading else row[:-1]
        if heading and row[0].plain:
            out.print(Text(f"{heading} {row[0].plain}", style="bold"))
        out.print(Text("  ").append(Text("  ").join(c for c in facts if c.plain)))
        for line in fold_path(row[-1].plain, out.width - 6).split("\n"):
            out.print(Text(f"    {line}"), soft_wrap=True)


# --- shared options -------------------------------------------------------------------------------------------


def check_jobs(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """Worker processes (scan -j, serve --workers) up to JOBS_PER_CORE per core: -j 100000 once forked thousands."""
    from dedupe.scan import JOBS_PER_CORE, max_jobs

    if value is not None and value > max_jobs():
        raise click.BadParameter(
            f"{value} is more than {max_jobs()} ({JOBS_PER_CORE} per core): more workers only compete for the"
            " cores and memory",
            ctx,
            param,
        )
    return value


def not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--db "" named no store: one command took it for the default store, another for the current folder."""
    if value == "":
        raise click.BadParameter("an empty path names no store", ctx, param)
    return value


def db_option(f: F) -> F:
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=str),
        envvar="DEDUPE_DB",
        show_envvar=True,
        callback=not_empty,
        help=f"The fingerprint store [default: {default_store_path()}].",
    )(f)


class Seconds(click.FloatRange):
    """A duration in seconds from low up to a day. click's FloatRange lets nan through (it compares false with
    both bounds), and a wait of inf or 1e12 s overflows the thread timer: a traceback minutes into a watch."""

    name = "seconds"

    def __init__(self, low: float) -> None:
        super().__init__(low, 86_400.0)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if seconds != seconds:  # nan
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


def format_option(*choices: str, help: str = "Output.") -> Callable[[F], F]:
    """--format (as the argument fmt): one of choices, the first by default."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True, help=help)


# The largest pHash distance the benchmark measured as safe (with the dHash second opinion, see match.py); above
# it most near pairs are different pictures.
SAFE_THRESHOLD = CANDIDATE_PHASH

GROUP_THRESHOLD_HELP = "Largest perceptual distance (bits of 64) for a near duplicate; 0 finds only identical pictures."
QUERY_THRESHOLD_HELP = "Largest pHash distance (bits of 64) that counts as a match; 0 matches only identical pictures."


def match_options(*, full: bool = True, threshold_help: str = GROUP_THRESHOLD_HELP) -> Callable[[F], F]:
    """The match options, handed to the command as one argument, rule: MatchRule. full=False: --threshold only
    (the other fields keep their defaults)."""

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def with_rule(*args: Any, **kwargs: Any) -> Any:
            fields = {name: kwargs.pop(name) for name in _RULE_FIELDS if name in kwargs}
            rule = MatchRule(**fields)
            if rule.threshold > SAFE_THRESHOLD:
                click.echo(
                    f"warning: --threshold {rule.threshold} is above the measured safe range (up to"
                    f" {SAFE_THRESHOLD}): at this distance different pictures match",
                    err=True,
                )
            return f(*args, rule=rule, **kwargs)

        decorated: Callable[..., Any] = with_rule
        for flags, help_text in reversed(_RULE_FLAGS if full else ()):
            # --crops has no fixed default: None leaves it to the number of pictures.
            crops = flags.startswith("--crops")
            option = click.option(flags, default=None if crops else True, show_default=not crops, help=help_text)
            decorated = option(decorated)
        decorated = click.option(
            "--threshold",
            type=click.IntRange(0, MAX_THRESHOLD),
            metavar="N",
            default=DEFAULT_THRESHOLD,
            show_default=True,
            help=threshold_help,
        )(decorated)
        return decorated  # type: ignore[return-value]

    return decorate


_RULE_FIELDS = ("threshold", "rotations", "two_stage", "bursts_apart", "crops")

# The switches of MatchRule beside --threshold, in the order --help lists them.
_RULE_FLAGS = (
    ("--rotations/--no-rotations", "Also match copies turned by 90/180/270 degrees or mirrored in their pixels."),
    (
        "--two-stage/--no-two-stage",
        "Also match when pHash is within 16 bits and dHash confirms within 2 (edited copies, watermarks).",
    ),
    (
        "--bursts-apart/--bursts-together",
        "Keep shots of one burst (same camera, EXIF times under 2 s apart) out of each other's groups.",
    ),
    (
        "--crops/--no-crops",
        "Also match copies with about 15-20% cut off their edges, or cut to 16:9 or square (confirmed by dHash and"
        f" colour). Default: on for up to {CROP_SEARCH_LIMIT:,} pictures (the search grows slow beyond).",
    ),
)


def _parse_keep(ctx: click.Context, param: click.Parameter, value: str) -> tuple[KeeperRule, ...]:
    from dedupe.plan import parse_rules

    try:
        return parse_rules(value)
    except DedupeError as e:
        raise click.BadParameter(str(e), ctx, param) from None


def keep_option(f: F) -> F:
    """--keep, handed to the command as rules: the parsed keeper rules."""
    from dedupe.plan import DEFAULT_RULES_TEXT

    return click.option(
        "--keep",
        "rules",
        default=DEFAULT_RULES_TEXT,
        show_default=True,
        metavar="RULES",
        callback=_parse_keep,
        help="Ordered keeper rules, comma-separated; later rules break ties of earlier ones: resolution, metadata"
        " (camera's EXIF), format (camera format over an export), taken (earliest date taken), order (folder named"
        " first), size, oldest, newest (date taken, then mtime), shortest (path), name (path order), path:FOLDER"
        " (prefer files in FOLDER). See README.",
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


def real(paths: Sequence[str]) -> list[str]:
    return [os.path.realpath(p) for p in paths]


# --- the store and the engine ---------------------------------------------------------------------------------


STORE_PATH = "dedupe.store"


def open_store(ctx: click.Context, db: str | None, *, readonly: bool = False, create: bool = False) -> Store:
    """The store, closed when the command ends. Only a command that fills the store (create: scan, import, watch)
    makes a new one; any other says where the store was looked for, rather than act on an empty one."""
    if not create:
        where = Path(db).expanduser() if db else default_store_path()
        if not where.exists():
            # A library error, so that search and check end with their own exit status for failures.
            raise StoreError(f"no store at {where}: run 'dedupe scan' first")
    store = ctx.with_resource(Store.open(db, readonly=readonly))
    ctx.meta[STORE_PATH] = store.path
    return store


def open_list_store(ctx: click.Context, db: str | None, *, readonly: bool = False) -> Store | PostgresStore:
    """The store of the commands that read or write fingerprint lists: SQLite, or postgresql://; closed when the
    command ends."""
    from dedupe.store_pg import open_any

    store = open_any(db, readonly=readonly)
    ctx.call_on_close(store.close)
    if isinstance(store, Store):
        ctx.meta[STORE_PATH] = store.path
    return store


def find_stored_groups(
    store: Store, roots: Sequence[str], rule: MatchRule
) -> tuple[list[DuplicateGroup], list[Skipped], int]:
    """stored_groups under the run's rule, saying so on stderr when the default left out the search for
    cropped copies."""
    from dedupe.group import stored_groups

    found = stored_groups(store, roots, rule)
    if rule.crops is None and not searches_crops(found[2], None):
        click.echo(
            f"note: cropped copies were not looked for among {found[2]:,} pictures (slow beyond"
            f" {CROP_SEARCH_LIMIT:,}); add --crops to look for them too",
            err=True,
        )
    return found


def note_no_images(dirs: Sequence[str]) -> None:
    click.echo(f"No images stored below {', '.join(map(display_path, dirs))}: run 'dedupe scan' on it first.", err=True)


# --- progress -------------------------------------------------------------------------------------------------


@contextmanager
def progress_bar(console: Console, *, enabled: bool) -> Iterator[Callable[[ProgressEvent], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

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
