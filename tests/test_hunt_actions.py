"""Hostile-input hunt: the same file seen through another mount must never be treated as its own copy."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dedupe.cli import cli
from dedupe.models import Action, DuplicateGroup, FileRecord, Fingerprint, GroupMember, MatchKind
from dedupe.plan import plan
from tests.conftest import draw_photo, save


def _record(path: str, dev: int, ino: int) -> FileRecord:
    fp = Fingerprint("c" * 32, "i" * 32, "JPEG", 400, 300, 1, 2, None, False)
    return FileRecord(path, 9000, 1_700_000_000_000_000_000, dev, ino, fp)


def test_same_inode_size_and_time_on_another_device_is_left_alone() -> None:
    # An overlay, NFS or SMB view of a folder shows its files with the same inode number on another device.
    keeper = _record("/mnt/view/x.jpg", 39, 1234)
    view = _record("/data/photos/x.jpg", 65024, 1234)
    group = DuplicateGroup(
        MatchKind.EXACT, (GroupMember(keeper, MatchKind.EXACT, 0), GroupMember(view, MatchKind.EXACT, 0))
    )
    for action in (Action.TRASH, Action.DELETE, Action.SYMLINK):
        p = plan([group], action=action, keepers={0: keeper.path})
        assert p.steps == ()
        assert "another mount" in p.groups[0].left[0].reason


def test_a_real_copy_on_another_device_is_still_acted_on() -> None:
    keeper = _record("/mnt/a/x.jpg", 39, 1234)
    copy = _record("/mnt/b/x.jpg", 40, 5678)
    group = DuplicateGroup(
        MatchKind.EXACT, (GroupMember(keeper, MatchKind.EXACT, 0), GroupMember(copy, MatchKind.EXACT, 0))
    )
    assert [s.file.path for s in plan([group], keepers={0: keeper.path}).steps] == ["/mnt/b/x.jpg"]


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(lower folder, overlay view of it); skipped where mounting is not allowed."""
    lower, upper, work, view = (tmp_path / n for n in ("lower_folder", "upper", "work", "v"))
    for d in (lower, upper, work, view):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(view)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount an overlay here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield lower, view
    finally:
        subprocess.run(["umount", str(view)], check=True)


@pytest.mark.parametrize("action", ["trash", "delete"])
def test_deleting_a_file_through_its_overlay_view_is_refused(
    overlay: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    lower, view = overlay
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    original = save(draw_photo(7, (400, 300)), lower / "x.jpg")
    data = original.read_bytes()
    db = str(tmp_path / "store.sqlite")
    runner = CliRunner()
    assert runner.invoke(cli, ["scan", str(view), str(lower), "--db", db, "-q"]).exit_code == 0
    # The view's path is shorter, so it is the keeper and the "copy" is the one real file under it.
    result = runner.invoke(cli, ["review", "--db", db, "--yes", "--action", action])
    assert result.exit_code == 0, result.output
    assert "another mount" in result.output
    assert original.read_bytes() == data
    assert [p.name for p in lower.iterdir()] == ["x.jpg"]


def test_undo_after_the_trashed_copy_was_put_back_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    keeper = save(draw_photo(4, (300, 200)), tmp_path / "p" / "a" / "x.jpg")
    copy = tmp_path / "p" / "b" / "x.jpg"
    copy.parent.mkdir()
    copy.write_bytes(keeper.read_bytes())
    db = str(tmp_path / "store.sqlite")
    runner = CliRunner()
    assert runner.invoke(cli, ["scan", str(tmp_path / "p"), "--db", db, "-q"]).exit_code == 0
    assert runner.invoke(cli, ["review", "--db", db, "--yes", "--keep", f"path:{keeper.parent}"]).exit_code == 0
    (tmp_path / "xdg" / "Trash" / "files" / "x.jpg").rename(copy)  # the user restores it with a file manager
    result = runner.invoke(cli, ["undo", "--db", db])
    assert result.exit_code == 0, result.output
    assert "left in the trash" not in result.output
    assert "already back" in result.output
    assert runner.invoke(cli, ["undo", "--db", db]).output.strip() == "Error: nothing to undo"
    assert copy.read_bytes() == keeper.read_bytes()
