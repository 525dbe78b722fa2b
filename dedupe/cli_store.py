"""dedupe store: looking after the store file itself (moving a damaged one aside)."""

from __future__ import annotations

import click

from dedupe.cli_common import DedupeCommand, db_option
from dedupe.formats import display_path
from dedupe.store import reset_store


@click.group("store")
def store_group() -> None:
    """Look after the fingerprint store itself: 'reset' moves a damaged store aside.

    Example:

    \b
        dedupe store reset
    """


@store_group.command(
    "reset", cls=DedupeCommand, short_help="Move a damaged store aside, so that the next scan starts a new one."
)
@db_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def reset_command(db: str | None, yes: bool) -> None:
    """Move a damaged store aside (renamed STORE.damaged-DATE, nothing deleted) so that the next scan starts a
    new one. The fingerprints are rebuilt by scanning again; the undo history of past reviews stays in the old
    file only, so 'dedupe undo' can no longer reverse them.

    Example:

    \b
        dedupe store reset
        dedupe scan ~/Pictures
    """
    if not yes:
        click.confirm(
            "Past reviews can no longer be undone after a reset (their journal stays in the old file). Reset?",
            abort=True,
        )
    aside = reset_store(db)
    click.echo(f"Moved the store aside to {display_path(str(aside))}. Run 'dedupe scan' to build a new one.")
