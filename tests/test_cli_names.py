"""CLI messages escape control characters in names: to fold into test_cli.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from dedupe.cli import cli
from tests.conftest import draw_photo, save


def test_folder_names_with_control_characters_are_escaped_in_messages(tmp_path: Path) -> None:
    """A folder name holding escape sequences is printed escaped, in 'groups' and in 'review --script'."""
    odd = tmp_path / "ph\x1b]0;TITLE\x07\x1b[31m"
    odd.mkdir()
    db = tmp_path / "store.sqlite"
    other = tmp_path / "other"
    other.mkdir()
    assert CliRunner().invoke(cli, ["scan", str(other), "--db", str(db), "-q"]).exit_code == 0
    r = CliRunner().invoke(cli, ["groups", str(odd), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "No images stored below" in r.output and "\x1b" not in r.output and "\x07" not in r.output
    script = odd / "plan.sh"
    save(draw_photo(1, (300, 200)), odd / "a.jpg")
    shutil.copyfile(odd / "a.jpg", odd / "b.jpg")
    assert CliRunner().invoke(cli, ["scan", str(odd), "--db", str(db), "-q"]).exit_code == 0
    r = CliRunner().invoke(cli, ["review", str(odd), "--db", str(db), "--script", str(script)])
    assert r.exit_code == 0, r.output
    assert "Wrote" in r.output and "\x1b" not in r.output and script.exists()
