"""The command line: click commands and rich output, over the dedupe library.

The commands live by what they work on: cli_library (scan, groups, report, calibrate), cli_review (review, undo),
cli_lists (search, check, export, import, watch), cli_serve (serve) and cli_store (store reset); cli_common holds
what they share.
"""

from __future__ import annotations

import gc
import importlib
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from dedupe import __version__

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

# Each command: the module and name it is defined under, and its one-line summary in `dedupe --help`: whole
# sentences that fit beside the names in 80 columns (click would cut a docstring's first sentence mid-way). A
# command's module is imported only when the command runs or shows its own help: the listing, --version and the
# shell's completion of command names start without numpy, Pillow or rich.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "scan": ("dedupe.cli_library", "scan_command", "Fingerprint the images below folders; list duplicates."),
    "groups": ("dedupe.cli_library", "groups_command", "List the duplicate groups again from the store."),
    "review": ("dedupe.cli_review", "review_command", "Keep one copy of each group; trash, move or link the rest."),
    "undo": ("dedupe.cli_review", "undo_command", "Put back what a review run did."),
    "forget": ("dedupe.cli_review", "forget_command", "List or forget the groups marked not duplicates."),
    "report": ("dedupe.cli_library", "report_command", "Write an HTML page showing each group side by side."),
    "search": ("dedupe.cli_lists", "search_command", "List the stored images most like an image."),
    "check": ("dedupe.cli_lists", "check_command", "Say whether images match anything in the store."),
    "export": ("dedupe.cli_lists", "export_command", "Write stored fingerprints as a list to share."),
    "import": ("dedupe.cli_lists", "import_command", "Add the fingerprints of an exported list."),
    "calibrate": ("dedupe.cli_library", "calibrate_command", "Recommend a --threshold from your own photos."),
    "watch": ("dedupe.cli_lists", "watch_command", "Watch folders; report each new duplicate."),
    "serve": ("dedupe.cli_serve", "serve_command", "Answer check and search requests over HTTP."),
    "store": ("dedupe.cli_store", "store_group", "Look after the store: move a damaged one aside."),
    "help": (__name__, "help_command", "Show the guide to a command, or to dedupe."),
}


# What OpenBLAS (numpy's matrix library) reads, in this order, for the number of threads it starts when it loads.
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """While a command's module is imported (and numpy with it), OpenBLAS starts one thread rather than one per
    core, unless the user chose a number. Its idle threads spin: about 50 ms of CPU of a one-image check, taken
    from the command itself on a busy machine, and dedupe's matrix products (8x32 DCTs) are too small to be
    shared out. The variable is read only when the library loads, so it is set for the import alone: programs
    that dedupe starts (--exec, a fork server's workers) see the environment as it was."""
    if any(name in os.environ for name in _BLAS_THREADS):
        yield
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


@contextmanager
def frozen_imports() -> Iterator[None]:
    """While a command's module is imported, no cyclic garbage collection (the objects of numpy, Pillow and rich
    pile up and each collection would walk them all again: about 35 ms of a scan's start); then what was imported
    is frozen (gc.freeze), so that no later collection walks it again: not the grouping of a million files, not
    the scan's forked workers (whose pages stay shared), not the collections Python runs at exit (40 ms). Import
    leaves a few hundred objects of cyclic garbage, which stay."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's "Lazily Loading Subcommands"); its listing and
    the completion of command names come from COMMANDS alone."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, name, summary = COMMANDS[cmd_name]
            with one_blas_thread(), frozen_imports():
                loaded = getattr(importlib.import_module(module), name)
            assert isinstance(loaded, click.Command), (module, name)
            loaded.short_help = summary
            self.add_command(loaded, cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMANDS:
            # A mistyped name: click suggests the names it has loaded ("Did you mean ..."), so load them all.
            for name in COMMANDS:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click.Group.format_commands, with each summary from COMMANDS rather than from the loaded command.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        # click.Group.shell_complete, naming the commands from COMMANDS; then the group's own options.
        from click.shell_completion import CompletionItem

        results = [
            CompletionItem(name, help=COMMANDS[name][2])
            for name in self.list_commands(ctx)
            if name.startswith(incomplete)
        ]
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="dedupe")
def cli() -> None:
    """Find exact and near-duplicate photos, and remove the redundant copies safely.

    Fingerprints live in a SQLite store, so re-scans only read what changed.
    """


@click.command("help")
@click.argument("names", metavar="[COMMAND]...", nargs=-1)
@click.pass_context
def help_command(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show the guide to dedupe, or to one COMMAND: the same text as --help, for those who look for a manual.

    Example:

    \b
        dedupe help
        dedupe help review
        dedupe help store reset
    """
    parent = ctx.parent
    assert parent is not None  # help is only ever run as a dedupe command
    found: click.Command = cli
    context = parent
    for n, name in enumerate(names, start=1):
        sub = found.get_command(context, name) if isinstance(found, click.Group) else None
        if sub is None:
            raise click.UsageError(f"no command {' '.join(names[:n])!r}; 'dedupe help' lists them", ctx)
        found, context = sub, click.Context(sub, info_name=name, parent=context)
    click.echo(found.get_help(context))


def main() -> None:
    # A name the output's encoding cannot hold (PYTHONIOENCODING=ascii, a Latin-1 locale) is printed as its
    # \N{...} name rather than ending the command (stdout is strict) or looking like the \xNN of a byte that is
    # not UTF-8 (stderr's backslashreplace): rich writes to these streams as they are.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors in ("strict", "backslashreplace"):
            stream.reconfigure(errors="namereplace")
    if sys.stdin is None:  # started with stdin closed (`<&-` in a cron line): a question reads end of input
        from pathlib import Path

        sys.stdin = Path(os.devnull).open()  # noqa: SIM115 (the process's stdin, open until it exits)
    try:
        cli(prog_name="dedupe")
    except Exception as e:  # a bug of ours: still one readable line, not a traceback
        from dedupe.store import default_store_path
        from dedupe.store import failure as store_failure

        failed = store_failure(e, default_store_path())
        if failed is not None:  # the store failing outside a command's own handling: not a bug
            click.echo(f"Error: {failed}", err=True)
            sys.exit(1)
        if os.environ.get("DEDUPE_DEBUG"):
            raise
        click.echo(f"dedupe: internal error: {type(e).__name__}: {e} (set DEDUPE_DEBUG=1 for details)", err=True)
        sys.exit(1)
    finally:
        # Python's last collections walk every object still alive only to free what the exit frees anyway
        # (10-15 ms of a scan's end); the files and the store were closed by the command itself.
        gc.freeze()
