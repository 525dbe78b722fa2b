"""The command line: click commands and rich output, over the dedupe library.

The commands live by what they work on: cli_library (scan, groups, report, calibrate), cli_review (review, undo),
cli_lists (search, check, export, import, watch) and cli_store (store reset); cli_common holds what they share.
"""

from __future__ import annotations

import os
import sys

import click

from dedupe import __version__
from dedupe.cli_library import calibrate_command, groups_command, report_command, scan_command
from dedupe.cli_lists import check_command, export_command, import_command, search_command, watch_command
from dedupe.cli_review import review_command, undo_command
from dedupe.cli_store import store_group
from dedupe.store import default_store_path
from dedupe.store import failure as store_failure


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="dedupe")
def cli() -> None:
    """Find exact and near-duplicate photos, and remove the redundant copies safely.

    Fingerprints live in a SQLite store, so re-scans only read what changed.
    """


for _command in (
    scan_command,
    groups_command,
    review_command,
    undo_command,
    report_command,
    search_command,
    check_command,
    export_command,
    import_command,
    calibrate_command,
    watch_command,
    store_group,
):
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
