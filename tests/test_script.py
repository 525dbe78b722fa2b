"""The POSIX shell script of a plan: every path quoted, every step checked first, sidecars carried along."""

from __future__ import annotations

import subprocess
from pathlib import Path

from click.testing import CliRunner

from dedupe.cli import cli
from dedupe.models import Action
from dedupe.plan import parse_rules, plan
from dedupe.script import plan_script
from dedupe.store import Store
from tests.conftest import copy_file, draw_photo, groups_of, save
from tests.test_sidecars import XMP, library, touch

SMALL = (400, 300)


def photo(path: Path, seed: int, size: tuple[int, int] = SMALL, **params: object) -> Path:
    return save(draw_photo(seed, size), path, **params)


def test_plan_script_is_quoted_and_checks_the_keeper(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "it's a photo.jpg", 22)
    dups = [copy_file(keeper, root / "$(touch pwned)" / f"copy {i}.jpg") for i in range(2)]
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.DELETE)
    script = tmp_path / "plan.sh"
    script.write_text(plan_script(p, "plan.sh"))
    assert "rm -f -- " in script.read_text()
    r = subprocess.run(["sh", str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert r.returncode == 0, r.stderr
    assert not any(d.exists() for d in dups) and keeper.exists() and not (tmp_path / "pwned").exists()
    # The same script again, now with the keeper changed: nothing is touched.
    for d in dups:
        copy_file(keeper, d)
    with keeper.open("ab") as f:
        f.write(b"x")
    r = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert all(d.exists() for d in dups) and "keeper" in r.stderr and "2 step(s) skipped" in r.stderr


def test_the_script_carries_the_sidecar(tmp_path: Path) -> None:
    root, db, _keeper, copy = library(tmp_path)
    xmp = touch(copy.with_suffix(".xmp"))
    dest = tmp_path / "moved"
    script = tmp_path / "plan.sh"
    args = ["review", str(root), "--db", db, "--action", "move", "--to", str(dest), "--script", str(script)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not copy.exists() and not xmp.exists()
    assert (dest / "photos" / "backup" / "a.jpg").exists()
    assert (dest / "photos" / "backup" / "a.xmp").read_bytes() == XMP


def test_a_keeper_named_with_a_newline_is_named_escaped_in_its_comment(tmp_path: Path, store: Store) -> None:
    """The comment over a group names its keeper as the terminal shows it (a newline as \\x0a, an escape sequence
    as \\x1b), and the script still acts on the exact names."""
    root = tmp_path / "p"
    keeper = photo(root / "new\nline\x1b[31m.jpg", 23)
    dup = copy_file(keeper, root / "copies" / "long name.jpg")
    script = tmp_path / "plan.sh"
    script.write_bytes(
        plan_script(plan(groups_of(store, root), parse_rules("shortest"), Action.DELETE), "plan.sh").encode()
    )
    comments = [line for line in script.read_text().splitlines() if line.startswith("# group")]
    assert comments == [f"# group 1: keep {root}/new\\x0aline\\x1b[31m.jpg (shortest path)"]
    r = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert keeper.exists() and not dup.exists()


def test_a_copy_named_at_the_length_limit_is_linked_by_the_script(tmp_path: Path, store: Store) -> None:
    """The script's temporary name for a link beside a copy named with all 255 bytes is shortened to fit, so the
    copy becomes a link to its keeper."""
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 24)
    dup = copy_file(keeper, root / "copies" / ("x" * 251 + ".jpg"))
    script = tmp_path / "plan.sh"
    script.write_text(plan_script(plan(groups_of(store, root), parse_rules("shortest"), Action.SYMLINK), "plan.sh"))
    r = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "0 step(s) skipped" in r.stderr, r.stderr
    assert dup.is_symlink() and dup.resolve() == keeper and [p.name for p in dup.parent.iterdir()] == [dup.name]


def test_names_with_control_characters_are_written_as_printf_escapes(tmp_path: Path, store: Store) -> None:
    """A copy whose name holds an escape sequence, a newline, a quote or a percent sign is named in the script
    with printf's octal escapes: no escape sequence reaches whoever reads the script, and it acts on the exact
    names."""
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 25)
    names = ["esc\x1b[31m'%s\\.jpg", "new\nline\x9b.jpg", "ends in newline\n"]
    dups = [copy_file(keeper, root / "copies" / name) for name in names]
    text = plan_script(plan(groups_of(store, root), parse_rules("shortest"), Action.DELETE), "plan.sh")
    assert "\x1b" not in text and "\x9b" not in text
    printed = [line for line in text.splitlines() if line.startswith("check ") and "$(printf '" in line]
    assert len(printed) == 2  # a name ending in a newline keeps plain quotes: $(...) would drop it
    script = tmp_path / "plan.sh"
    script.write_text(text)
    r = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "0 step(s) skipped" in r.stderr, r.stderr
    assert keeper.exists() and not any(d.exists() for d in dups)
