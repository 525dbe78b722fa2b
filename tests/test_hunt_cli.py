"""Hostile-input hunt: file names must not be able to drive the terminal or break a table's rows."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from dedupe.cli import cli, display_path
from tests.conftest import draw_photo, save


def test_control_characters_in_names_are_shown_escaped() -> None:
    assert display_path("/p/esc\x1b]0;pwned\x07.jpg") == "/p/esc\\x1b]0;pwned\\x07.jpg"
    assert display_path("/p/new\nline\r.jpg") == "/p/new\\x0aline\\x0d.jpg"
    assert display_path("/p/c1\x9b31m.jpg") == "/p/c1\\x9b31m.jpg"
    assert display_path("/p/bad" + os.fsdecode(b"\xff") + "é.jpg") == "/p/bad\\xffé.jpg"


def test_a_name_with_an_escape_sequence_does_not_reach_the_terminal(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    keeper = save(draw_photo(3, (300, 200)), root / "a.jpg")
    for name in ("esc\x1b[2Jclear.jpg", "new\nline.jpg"):
        (root / name).write_bytes(keeper.read_bytes())
    db = str(tmp_path / "store.sqlite")
    for args in (["scan", str(root), "-q"], ["groups"], ["review", "--dry-run", "--keep", f"path:{keeper}"]):
        result = CliRunner().invoke(cli, [*args, "--db", db])
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "esc\\x1b[2Jclear.jpg" in result.output
        assert "new\\x0aline.jpg" in result.output
