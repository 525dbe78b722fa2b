"""The command line: click commands and rich output, over the dedupe library.

The commands live by what they work on: cli_library (scan, groups, report, calibrate), cli_review (review, undo),
cli_lists (search, check, export, import, watch), cli_serve (serve) and cli_store (store reset); cli_common holds
what they share.
"""

from __future__ import annotations

import os
import sys

import click

from dedupe import __version__
from dedupe.cli_library import calibrate_command, groups_command, report_command, scan_command
from dedupe.cli_lists import check_command, export_command, import_command, search_command, watch_command
from dedupe.cli_review import forget_command, review_command, undo_command
from dedupe.cli_serve import serve_command
from dedupe.cli_store import store_group
from dedupe.store import default_store_path
from dedupe.store import failure as store_failure


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="dedupe")
def cli() -> None:
    """Find exact and near-duplicate photos, and remove the redundant copies safely.

    Fingerprints live in a SQLite store, so re-scans only read what changed.
    """


@click.command("help")
@click.argument("name", metavar="[COMMAND]", required=False)
@click.pass_context
def help_command(ctx: click.Context, name: str | None) -> None:
    """Show the guide to dedupe, or to one COMMAND: the same text as --help, for those who look for a manual.

    Example:

    \b
        dedupe help
        dedupe help review
    """
    parent = ctx.parent
    assert parent is not None  # help is only ever run as a dedupe command
    if name is None:
        click.echo(cli.get_help(parent))
        return
    found = cli.get_command(parent, name)
    if found is None:
        raise click.UsageError(f"no command {name!r}; 'dedupe help' lists them", ctx)
    with click.Context(found, info_name=name, parent=parent) as sub:
        click.echo(found.get_help(sub))


# The one-line summaries of `dedupe --help`: whole sentences that fit beside the names in 80 columns (click would
# cut a docstring's first sentence mid-way).
SUMMARIES = {
    scan_command: "Fingerprint the images below folders; list duplicates.",
    groups_command: "List the duplicate groups again from the store.",
    review_command: "Keep one copy of each group; trash, move or link the rest.",
    undo_command: "Put back what a review run did.",
    forget_command: "List or forget the groups marked not duplicates.",
    report_command: "Write an HTML page showing each group side by side.",
    search_command: "List the stored images most like an image.",
    check_command: "Say whether images match anything in the store.",
    export_command: "Write stored fingerprints as a list to share.",
    import_command: "Add the fingerprints of an exported list.",
    calibrate_command: "Recommend a --threshold from your own photos.",
    watch_command: "Watch folders; report each new duplicate.",
    serve_command: "Answer check and search requests over HTTP.",
    store_group: "Look after the store: move a damaged one aside.",
    help_command: "Show the guide to a command, or to dedupe.",
}
for _command, _summary in SUMMARIES.items():
    _command.short_help = _summary
    cli.add_command(_command)


def main() -> None:
    try:
        cli(prog_name="dedupe")
    except Exception as e:  # a bug of ours: still one readable line, not a traceback
        failed = store_failure(e, default_store_path())
        if failed is not None:  # the store failing outside a command's own handling: not a bug
            click.echo(f"Error: {failed}", err=True)
            sys.exit(1)
        if os.environ.get("DEDUPE_DEBUG"):
            raise
        click.echo(f"dedupe: internal error: {type(e).__name__}: {e} (set DEDUPE_DEBUG=1 for details)", err=True)
        sys.exit(1)
