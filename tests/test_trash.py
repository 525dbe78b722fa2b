"""The desktop trash: files go to the right trash under a free name with their .trashinfo, and come back."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dedupe.actions import apply, undo
from dedupe.content_hash import hash_file
from dedupe.errors import DedupeError
from dedupe.files import Refused
from dedupe.group import stored_groups
from dedupe.models import JournalState, StepState
from dedupe.plan import parse_rules, plan
from dedupe.store import Store
from dedupe.trash import find_in_trash, trash_file
from tests.conftest import copy_file, draw_photo, exact_copy, groups_of, invoke, save, scanned

SMALL = (400, 300)


def photo(path: Path, seed: int, size: tuple[int, int] = SMALL, **params: object) -> Path:
    return save(draw_photo(seed, size), path, **params)


def test_trash_then_undo_restores_byte_identical_files(tmp_path: Path, store: Store, trash_home: Path) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "IMG 1.jpg", 6)
    # Same names: the trash calls the second one "IMG 1 1.jpg", and the journal must know which is which.
    copies = [copy_file(keeper, root / f"backup{i}" / "IMG 1.jpg", mtime=2_000_000_000) for i in range(2)]
    original = keeper.read_bytes()
    groups = groups_of(store, root)
    p = plan(groups, parse_rules("oldest,shortest"))
    assert p.groups[0].choice.keeper.path == str(keeper)
    assert {s.file.path for s in p.steps} == {str(c) for c in copies}

    result = apply(p, store)
    assert result.count(StepState.DONE) == 2 and result.freed_bytes == 2 * len(original)
    assert keeper.read_bytes() == original
    assert not any(c.exists() for c in copies)
    trashed = sorted((trash_home / "files").iterdir())
    assert len(trashed) == 2 and all(t.read_bytes() == original for t in trashed)
    infos = sorted((trash_home / "info").iterdir())
    assert [t.name for t in trashed] == ["IMG 1 1.jpg", "IMG 1.jpg"]
    assert len(infos) == 2
    for r in result.results:
        info = trash_home / "info" / (Path(r.destination or "").name + ".trashinfo")
        assert f"Path={r.path.replace(' ', '%20')}" in info.read_text()
    journal = store.journal(result.run_id)
    assert [e.state for e in journal] == [JournalState.DONE] * 2
    # The store forgets what is gone: no group is proposed any more.
    assert stored_groups(store, [str(root)])[0] == []

    back = undo(store)
    assert back.complete and back.run_id == result.run_id
    assert all(c.read_bytes() == original for c in copies)
    assert all(c.stat().st_mtime == 2_000_000_000 for c in copies)
    assert list((trash_home / "files").iterdir()) == [] and list((trash_home / "info").iterdir()) == []
    assert [e.state for e in store.journal(result.run_id)] == [JournalState.UNDONE] * 2
    assert len(stored_groups(store, [str(root)])[0]) == 1
    with pytest.raises(DedupeError, match="nothing to undo"):
        undo(store)


def test_no_usable_trash_means_the_file_stays(
    tmp_path: Path, store: Store, trash_home: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    drive = mount_tmpfs("usb")
    # A drive whose trash folder cannot be used: .Trash-UID exists but is a plain file.
    (drive / f".Trash-{os.getuid()}").write_text("not a folder")
    keeper = photo(drive / "a.jpg", 7)
    dup = copy_file(keeper, drive / "b" / "a.jpg")
    p = plan(groups_of(store, drive), parse_rules("shortest"))
    result = apply(p, store)
    (r,) = result.results
    assert r.state is StepState.FAILED and "not deleted" in r.reason and r.path == str(dup)
    assert dup.read_bytes() == keeper.read_bytes()
    assert store.journal(result.run_id)[0].state is JournalState.FAILED
    with pytest.raises(Refused, match="not deleted"):
        trash_file(str(dup))
    assert dup.exists()


def test_trash_on_another_drive_goes_to_that_drives_trash_and_comes_back(
    tmp_path: Path, store: Store, trash_home: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    drive = mount_tmpfs("usb")
    keeper = photo(drive / "a.jpg", 8)
    dup = copy_file(keeper, drive / "sub" / "a.jpg")
    result = apply(plan(groups_of(store, drive), parse_rules("shortest")), store)
    (r,) = result.results
    assert r.state is StepState.DONE and r.destination == str(drive / f".Trash-{os.getuid()}" / "files" / "a.jpg")
    assert not dup.exists() and not trash_home.exists()
    assert "Path=sub/a.jpg" in (drive / f".Trash-{os.getuid()}" / "info" / "a.jpg.trashinfo").read_text()
    assert undo(store).complete and dup.read_bytes() == keeper.read_bytes()


def test_the_home_trash_is_the_one_in_xdg_data_home_as_set_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$XDG_DATA_HOME is read at each trashing, not once per process."""
    for n in range(2):
        home = tmp_path / f"home{n}"
        monkeypatch.setenv("XDG_DATA_HOME", str(home))
        f = tmp_path / f"f{n}.jpg"
        f.write_bytes(b"photo")
        assert trash_file(str(f)) == str(home / "Trash" / "files" / f.name)
        assert (home / "Trash" / "files" / f.name).read_bytes() == b"photo" and not f.exists()


def test_a_taken_name_in_the_trash_is_never_reused(tmp_path: Path, trash_home: Path) -> None:
    """A name is taken by a file or by a .trashinfo alone (another program's half-done trashing): the next file
    of that name goes to "name 2.ext", and what was there stays as it was."""
    (trash_home / "files").mkdir(parents=True)
    (trash_home / "info").mkdir()
    (trash_home / "files" / "a.jpg").write_bytes(b"trashed before")
    (trash_home / "info" / "a 1.jpg.trashinfo").write_text("[Trash Info]\nPath=/elsewhere/a.jpg\n")
    f = tmp_path / "p" / "a.jpg"
    f.parent.mkdir()
    f.write_bytes(b"photo")
    where = trash_file(str(f))
    assert where == str(trash_home / "files" / "a 2.jpg") and Path(where).read_bytes() == b"photo"
    assert (trash_home / "files" / "a.jpg").read_bytes() == b"trashed before"
    assert (trash_home / "info" / "a 1.jpg.trashinfo").read_text() == "[Trash Info]\nPath=/elsewhere/a.jpg\n"
    assert f"Path={f}" in (trash_home / "info" / "a 2.jpg.trashinfo").read_text()
    assert find_in_trash(str(f), 0, "not its hash") is None


def test_a_failed_move_to_the_trash_leaves_no_trashinfo(
    tmp_path: Path, trash_home: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    """A drive whose .Trash-UID cannot take the file (its files folder is a plain file): the photo stays, and no
    .trashinfo is left behind claiming it was trashed."""
    drive = mount_tmpfs("usb")
    trash = drive / f".Trash-{os.getuid()}"
    (trash / "info").mkdir(parents=True)
    (trash / "files").write_text("not a folder")
    f = drive / "a.jpg"
    f.write_bytes(b"photo")
    with pytest.raises(Refused, match="not deleted"):
        trash_file(str(f))
    assert f.read_bytes() == b"photo" and list((trash / "info").iterdir()) == []


@pytest.mark.parametrize("name", [os.fsdecode(b"caf\xe9") + ".jpg", "x" * 251 + ".jpg"], ids=["not-utf8", "255-bytes"])
def test_review_trashes_an_oddly_named_copy_and_undo_restores_it(tmp_path: Path, trash_home: Path, name: str) -> None:
    """review --yes trashes a copy whose name is not UTF-8 or takes all 255 bytes, and undo restores it at the
    same bytes path; the journal records both."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(1, SMALL), root / "keep" / "a.jpg", quality=90)
    copy = exact_copy(keeper, root / "backup" / name)
    db = scanned(root, tmp_path)
    code, out = invoke("review", root, "--db", db, "--yes")
    assert code == 0, out
    assert not copy.exists()
    code, out = invoke("undo", "--db", db)
    assert code == 0, out
    assert "internal error" not in out
    assert copy.read_bytes() == keeper.read_bytes()
    code, out = invoke("undo", "--list", "--db", db)
    assert "undone" in out


def test_a_name_at_the_length_limit_is_trashed_under_a_shorter_name_and_restored(
    tmp_path: Path, trash_home: Path
) -> None:
    """A file whose name takes all 255 bytes goes to the trash under a name shortened (at a whole character)
    to leave room for its .trashinfo; the .trashinfo keeps the original path, and undo puts it back there."""
    name = "\u00e9" * 125 + "x.jpg"
    assert len(os.fsencode(name)) == 255
    f = tmp_path / "p" / name
    f.parent.mkdir()
    f.write_bytes(b"photo")
    where = Path(trash_file(str(f)) or "")
    assert where.parent == trash_home / "files" and where.read_bytes() == b"photo" and not f.exists()
    assert where.name.endswith(".jpg") and len(os.fsencode(where.name + ".trashinfo")) <= 255
    assert os.fsencode(where.name).decode("utf-8").startswith("\u00e9")  # cut at a character, not inside one
    found = find_in_trash(str(f), 0, hash_file(str(where)))
    assert found == (str(where), str(trash_home / "info" / (where.name + ".trashinfo")))
    second = tmp_path / "q" / name
    second.parent.mkdir()
    second.write_bytes(b"other")
    again = Path(trash_file(str(second)) or "")
    assert again != where and again.name.endswith(" 1.jpg") and len(os.fsencode(again.name)) <= 245
