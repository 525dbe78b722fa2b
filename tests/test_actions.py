"""Applying plans with re-checks and the journal, and undo: on real files, real mounts and a real store."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dedupe.actions import apply, undo
from dedupe.cli import cli
from dedupe.errors import DedupeError, StoreError
from dedupe.files import leftovers, temp_name
from dedupe.group import stored_groups
from dedupe.models import Action, JournalState, ScanOptions, StepState
from dedupe.plan import parse_rules, plan
from dedupe.scan import scan
from dedupe.store import Store
from dedupe.trash import trash_file
from tests.conftest import REPO, copy_file, draw_photo, exact_copy, groups_of, invoke, save, scanned

SMALL = (400, 300)


def photo(path: Path, seed: int, size: tuple[int, int] = SMALL, **params: object) -> Path:
    return save(draw_photo(seed, size), path, **params)


# --- delete, move, links ----------------------------------------------------------------------------------------


def test_delete_is_permanent_and_undo_passes_over_it_to_earlier_runs(
    tmp_path: Path, store: Store, trash_home: Path
) -> None:
    """A run of permanent deletes is no undo's business: plain undo reverses the run before it, and naming the
    delete run says that a delete cannot be undone."""
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 9)
    trashed = copy_file(keeper, root / "t" / "a.jpg")
    trashing = apply(plan(groups_of(store, root), parse_rules("shortest"), Action.TRASH), store)
    assert not trashed.exists()
    dup = copy_file(keeper, root / "z" / "a.jpg")
    result = apply(plan(groups_of(store, root), parse_rules("shortest"), Action.DELETE), store)
    assert result.count(StepState.DONE) == 1 and not dup.exists() and keeper.exists()
    back = undo(store)
    assert back.run_id == trashing.run_id and back.complete and trashed.read_bytes() == keeper.read_bytes()
    with pytest.raises(DedupeError, match="deleted files permanently: a delete cannot be undone"):
        undo(store, result.run_id)


def test_move_keeps_relative_paths_never_overwrites_and_undoes(tmp_path: Path, store: Store) -> None:
    root, dest = tmp_path / "photos", tmp_path / "dups"
    keeper = photo(root / "a.jpg", 10)
    dup = copy_file(keeper, root / "2019" / "trip" / "a.jpg")
    taken = dest / "photos" / "2019" / "trip" / "a.jpg"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(dest), roots=[str(root)])
    assert p.steps[0].destination == str(taken)
    result = apply(p, store)
    (r,) = result.results
    assert r.state is StepState.DONE and r.destination == str(taken.with_name("a (1).jpg"))
    assert taken.read_bytes() == b"someone else's file"
    assert Path(r.destination).read_bytes() == keeper.read_bytes() and not dup.exists()
    assert undo(store).complete
    assert dup.read_bytes() == keeper.read_bytes() and not Path(r.destination).exists()
    assert taken.read_bytes() == b"someone else's file"


def test_move_across_drives_copies_verifies_then_removes(
    tmp_path: Path, store: Store, mount_tmpfs: Callable[..., Path]
) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 11)
    dup = copy_file(keeper, root / "sub" / "a.jpg", mtime=1_234_567_890)
    drive = mount_tmpfs("other")
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(drive), roots=[str(root)])
    (r,) = apply(p, store).results
    moved = Path(r.destination or "")
    assert r.state is StepState.DONE and moved == drive / "p" / "sub" / "a.jpg"
    assert moved.read_bytes() == keeper.read_bytes() and moved.stat().st_mtime == 1_234_567_890
    assert not dup.exists()
    assert undo(store).complete and dup.read_bytes() == keeper.read_bytes() and not moved.exists()


def test_a_cross_drive_move_that_runs_out_of_space_leaves_no_partial_copy_file(
    tmp_path: Path, store: Store, mount_tmpfs: Callable[..., Path]
) -> None:
    root = tmp_path / "p"
    noise = Image.frombytes("RGB", (300, 300), random.Random(12).randbytes(300 * 300 * 3))
    keeper = save(noise, root / "a.png")  # noise does not compress: 270 KB, more than the drive holds
    dup = copy_file(keeper, root / "sub" / "a.png")
    drive = mount_tmpfs("full", size="64k")
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(drive), roots=[str(root)])
    result = apply(p, store)
    (r,) = result.results
    assert r.state is StepState.FAILED and "no space left" in r.reason.lower() and "original is kept" in r.reason
    assert dup.read_bytes() == keeper.read_bytes()
    assert not (drive / "p" / "sub" / "a.png").exists()
    assert [e.state for e in store.journal(result.run_id)] == [JournalState.FAILED]


def test_a_read_only_destination_fails_per_file_and_the_run_goes_on(
    tmp_path: Path, store: Store, mount_tmpfs: Callable[..., Path]
) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 13)
    dups = [copy_file(keeper, root / f"s{i}" / "a.jpg") for i in range(2)]
    ro = mount_tmpfs("ro", readonly=True)  # read-only for root too
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(ro), roots=[str(root)])
    result = apply(p, store)
    assert result.count(StepState.FAILED) == 2
    assert all("read-only file system" in r.reason for r in result.results)
    assert all(d.read_bytes() == keeper.read_bytes() for d in dups)


def test_an_immutable_or_unwritable_destination_folder_is_refused(tmp_path: Path, store: Store) -> None:
    root, dest = tmp_path / "p", tmp_path / "dest"
    keeper = photo(root / "a.jpg", 14)
    dup = copy_file(keeper, root / "s" / "a.jpg")
    target = dest / "p" / "s"
    target.mkdir(parents=True)
    if os.geteuid() == 0:
        # chmod does not stop root; the immutable attribute does.
        chattr = subprocess.run(["chattr", "+i", str(target)], capture_output=True, text=True)
        if chattr.returncode != 0:
            pytest.skip(f"running as root and chattr +i is not supported here: {chattr.stderr.strip()}")
    else:
        target.chmod(0o555)
    try:
        p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(dest), roots=[str(root)])
        (r,) = apply(p, store).results
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(target)], check=True)
        else:
            target.chmod(0o755)
    assert r.state is StepState.FAILED and ("not permitted" in r.reason or "permission denied" in r.reason)
    assert dup.read_bytes() == keeper.read_bytes() and list(target.iterdir()) == []


@pytest.mark.parametrize("action", [Action.HARDLINK, Action.SYMLINK])
def test_links_replace_the_copy_and_undo_restores_a_separate_file(tmp_path: Path, store: Store, action: Action) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 15)
    dup = copy_file(keeper, root / "s" / "a.jpg", mtime=1_111_111_111)
    dup.chmod(0o640)
    original = keeper.read_bytes()
    result = apply(plan(groups_of(store, root), parse_rules("shortest"), action), store)
    assert result.count(StepState.DONE) == 1
    if action is Action.HARDLINK:
        assert dup.stat().st_ino == keeper.stat().st_ino and not dup.is_symlink()
    else:
        assert dup.is_symlink() and dup.readlink() == keeper
    assert dup.read_bytes() == original
    assert [p.name for p in dup.parent.iterdir()] == ["a.jpg"]  # no temporary name left behind
    assert undo(store).complete
    assert not dup.is_symlink() and dup.stat().st_ino != keeper.stat().st_ino
    assert dup.read_bytes() == original and dup.stat().st_mtime == 1_111_111_111
    assert stat.S_IMODE(dup.stat().st_mode) == 0o640


@pytest.mark.parametrize("action", [Action.HARDLINK, Action.SYMLINK])
def test_a_copy_named_at_the_length_limit_is_linked_and_restored(tmp_path: Path, store: Store, action: Action) -> None:
    """A copy whose name takes all 255 bytes is replaced by a link (through a temporary name shortened to fit)
    and undo makes it a file again at the same bytes path, leaving no temporary file."""
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 16)
    dup = copy_file(keeper, root / "s" / ("\u00e9" * 125 + "x.jpg"), mtime=1_111_111_111)
    assert len(os.fsencode(dup.name)) == 255
    result = apply(plan(groups_of(store, root), parse_rules("shortest"), action), store)
    assert result.count(StepState.DONE) == 1, result.results
    assert dup.is_symlink() if action is Action.SYMLINK else dup.stat().st_ino == keeper.stat().st_ino
    assert [p.name for p in dup.parent.iterdir()] == [dup.name]
    assert undo(store).complete
    assert not dup.is_symlink() and dup.stat().st_ino != keeper.stat().st_ino
    assert dup.read_bytes() == keeper.read_bytes() and [p.name for p in dup.parent.iterdir()] == [dup.name]


def test_a_move_onto_a_taken_name_at_the_length_limit_takes_a_shortened_free_name(tmp_path: Path, store: Store) -> None:
    """A move whose destination name (255 bytes) is taken goes to "name (1).ext" shortened to fit, and undo
    moves it back to the same bytes path."""
    root, dest = tmp_path / "photos", tmp_path / "dups"
    name = "x" * 251 + ".jpg"
    keeper = photo(root / "a.jpg", 17)
    dup = copy_file(keeper, root / "b" / name)
    taken = dest / "photos" / "b" / name
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(dest), roots=[str(root)])
    (r,) = apply(p, store).results
    assert r.state is StepState.DONE, r.reason
    moved = Path(r.destination or "")
    assert moved.parent == taken.parent and moved.name.endswith(" (1).jpg") and len(moved.name) == 255
    assert moved.read_bytes() == keeper.read_bytes() and taken.read_bytes() == b"someone else's file"
    assert undo(store).complete and dup.read_bytes() == keeper.read_bytes() and not moved.exists()


def test_a_temporary_name_beside_a_long_name_fits_and_is_found_as_a_leftover(tmp_path: Path) -> None:
    """temp_name shortens a name near the limit so that the temporary name fits, and leftovers finds it."""
    path = str(tmp_path / ("y" * 255))
    temp = temp_name(path)
    assert len(os.fsencode(Path(temp).name)) <= 255
    Path(temp).write_bytes(b"left by a killed run")
    assert leftovers(path) == [temp]
    assert leftovers(str(tmp_path / ("y" * 200))) == []


# --- the checks right before acting -----------------------------------------------------------------------------


def test_files_changed_between_scan_and_action_are_skipped(tmp_path: Path, store: Store, trash_home: Path) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 16)
    changed = copy_file(keeper, root / "s1" / "a.jpg")
    grown = copy_file(keeper, root / "s2" / "a.jpg")
    gone = copy_file(keeper, root / "s3" / "a.jpg")
    swapped = copy_file(keeper, root / "s4" / "a.jpg")
    relinked = copy_file(keeper, root / "s5" / "a.jpg")
    p = plan(groups_of(store, root), parse_rules("shortest"))
    assert len(p.steps) == 5
    # Same size and mtime, different bytes: only the hash can tell.
    st1 = changed.stat()
    data = bytearray(changed.read_bytes())
    data[-3] ^= 0xFF
    changed.write_bytes(bytes(data))
    os.utime(changed, ns=(st1.st_atime_ns, st1.st_mtime_ns))
    with grown.open("ab") as f:
        f.write(b"more")
    gone.unlink()
    # Same bytes, but another file: made before the old one goes, so it cannot be given the freed inode again.
    copy_file(keeper, root / "s4" / "new.jpg").replace(swapped)
    relinked.unlink()
    os.link(keeper, relinked)  # now the keeper's own file: never a copy to remove
    result = apply(p, store)
    reasons = {Path(r.path).parent.name: r.reason for r in result.results}
    assert all(r.state is StepState.SKIPPED for r in result.results)
    assert reasons["s1"] == "has different bytes than at the scan"
    assert reasons["s2"] == "changed size since the scan"
    assert reasons["s3"] == "vanished since the scan"
    assert reasons["s4"] == "was replaced by another file since the scan"
    assert reasons["s5"] == "was replaced by another file since the scan"
    assert changed.exists() and grown.exists() and swapped.exists() and relinked.exists() and keeper.exists()
    assert not (trash_home / "files").exists() or list((trash_home / "files").iterdir()) == []


def test_a_changed_or_vanished_keeper_saves_the_whole_group(tmp_path: Path, store: Store, trash_home: Path) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 17)
    dups = [copy_file(keeper, root / f"s{i}" / "a.jpg") for i in range(2)]
    p = plan(groups_of(store, root), parse_rules("shortest"))
    with keeper.open("ab") as f:
        f.write(b"edited")
    result = apply(p, store)
    assert [r.reason for r in result.results] == ["its keeper changed size since the scan"] * 2
    keeper.unlink()
    result = apply(p, store)
    assert [r.reason for r in result.results] == ["its keeper vanished since the scan"] * 2
    assert all(d.exists() for d in dups)


def test_hardlinks_symlinks_and_overlapping_roots_never_make_a_file_its_own_copy_file(
    tmp_path: Path, store: Store, trash_home: Path
) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 18)
    os.link(keeper, root / "hard.jpg")
    (root / "via").symlink_to(root, target_is_directory=True)
    scan([str(root), str(root / "via"), str(root)], store, ScanOptions(workers=1, follow_symlinks=True))
    groups, _, images = stored_groups(store, [str(root)])
    assert images >= 2 and groups == []
    dup = copy_file(keeper, root / "z" / "a.jpg")
    groups = groups_of(store, root)
    (g,) = groups
    assert len(g.members) == 2
    result = apply(plan(groups, parse_rules("shortest")), store)
    assert [r.path for r in result.results if r.state is StepState.DONE] == [str(dup)]
    assert keeper.exists() and (root / "hard.jpg").exists()


def test_a_bind_mount_of_the_same_folder_is_not_a_copy_file(tmp_path: Path, store: Store, trash_home: Path) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 23)
    bind = tmp_path / "bind"
    bind.mkdir()
    r = subprocess.run(["mount", "--bind", str(root), str(bind)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        assert groups_of(store, root, bind) == []
        assert (bind / "a.jpg").read_bytes() == keeper.read_bytes()
    finally:
        subprocess.run(["umount", str(bind)], check=True)


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
    """A file seen through an overlay view of its own folder is the keeper's own file: neither trashed nor deleted."""
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


# --- the journal and undo ---------------------------------------------------------------------------------------


def test_a_run_killed_half_way_is_understood_by_undo(tmp_path: Path, trash_home: Path) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 19)
    dups = [copy_file(keeper, root / f"s{i}" / "a.jpg") for i in range(3)]
    db = tmp_path / "store.sqlite"
    with Store.open(db) as s:
        groups_of(s, root)
    # A real process that dies (os._exit: no cleanup at all) right after its first act.
    program = textwrap.dedent(
        f"""
        import os
        from dedupe import Store, apply, parse_rules, plan, stored_groups
        with Store.open({str(db)!r}) as store:
            groups, _, _ = stored_groups(store, [{str(root)!r}])
            apply(plan(groups, parse_rules("shortest")), store, on_progress=lambda e: os._exit(9))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_DATA_HOME": str(trash_home.parent)}
    r = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 9, r.stderr
    assert sum(not d.exists() for d in dups) == 1
    with Store.open(db) as store:
        (run,) = store.runs()
        assert run.finished is None and run.counts == {"done": 1}
        assert undo(store).complete
    assert all(d.read_bytes() == keeper.read_bytes() for d in dups)


def test_a_name_like_a_leftover_with_no_real_pid_is_left_alone(tmp_path: Path, trash_home: Path) -> None:
    """Files beside a trashed path named as a killed run's temporary file, but with a number too big for a pid or
    digits other than ASCII, are no leftovers: undo restores the file and removes neither."""
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 21)
    copy = copy_file(keeper, root / "s" / "a.jpg")
    db = tmp_path / "store.sqlite"
    with Store.open(db) as store:
        applied = apply(plan(groups_of(store, root), parse_rules("shortest")), store)
        assert [r.path for r in applied.results] == [str(copy)] and not copy.exists()
        pids = ("9" * 20, "\u0664" + "\u0669" * 6)  # past os.kill's range; 4,999,999 in Arabic-Indic digits
        strangers = [copy.parent / f".a.jpg.dedupe-{pid}-0.tmp" for pid in pids]
        for stranger in strangers:
            stranger.write_bytes(b"not dedupe's")
        assert undo(store).complete
    assert copy.read_bytes() == keeper.read_bytes()
    assert all(s.read_bytes() == b"not dedupe's" for s in strangers)


def killed_at(fault: str, program: str, env: dict[str, str] | None = None) -> None:
    """Run program in a real process that kills itself (SIGKILL, no clean-up) at the named fault point."""
    full = {**os.environ, "PYTHONPATH": str(REPO), "DEDUPE_FAULT": fault, **(env or {})}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(program)], env=full, capture_output=True, text=True)
    assert r.returncode == -9, r.stderr


def temporaries(*folders: Path) -> list[str]:
    return sorted(p.name for folder in folders for p in folder.rglob("*") if p.name.endswith(".tmp"))


APPLY_MOVE = """
    from dedupe import Action, Store, apply, parse_rules, plan, stored_groups
    with Store.open({db!r}) as store:
        groups, _, _ = stored_groups(store, [{root!r}])
        apply(plan(groups, parse_rules("shortest"), Action.MOVE, destination={dest!r}, roots=[{root!r}]), store)
"""

UNDO = """
    from dedupe import Store, undo
    with Store.open({db!r}) as store:
        undo(store)
"""


@pytest.mark.parametrize("fault", ["copying", "copied", "named"])
def test_a_cross_drive_move_killed_half_way_leaves_no_partial_file_and_undo_clears_it(
    tmp_path: Path, mount_tmpfs: Callable[..., Path], fault: str
) -> None:
    """A move across drives killed while copying, after copying or after naming the copy leaves at most a
    .NAME.dedupe-PID-N.tmp file in the target folder, never a partial file under the real name; undo removes it
    and the original stays."""
    root, db = tmp_path / "p", tmp_path / "store.sqlite"
    keeper = photo(root / "a.jpg", 21)
    dup = copy_file(keeper, root / "s" / "a.jpg")
    drive = mount_tmpfs("other")
    with Store.open(db) as s:
        groups_of(s, root)
    killed_at(fault, APPLY_MOVE.format(db=str(db), root=str(root), dest=str(drive)))
    target = drive / "p" / "s"
    named = (target / "a.jpg").exists()
    assert named == (fault == "named") and dup.read_bytes() == keeper.read_bytes()
    assert len(temporaries(drive)) == 1 and temporaries(drive)[0].startswith(".a.jpg.dedupe-")
    with Store.open(db) as store:
        assert undo(store).complete
    assert dup.read_bytes() == keeper.read_bytes() and temporaries(drive) == [] and not (target / "a.jpg").exists()


@pytest.mark.parametrize("fault", ["copying", "copied", "named"])
def test_an_undo_killed_while_moving_back_across_drives_is_finished_by_the_next_undo(
    tmp_path: Path, mount_tmpfs: Callable[..., Path], fault: str
) -> None:
    """An undo killed while copying a moved file back across drives leaves no file at the original path (only
    its own temporary file beside it), so the next undo is not blocked: it removes the leftover and finishes."""
    root, db = tmp_path / "p", tmp_path / "store.sqlite"
    keeper = photo(root / "a.jpg", 22)
    dup = copy_file(keeper, root / "s" / "a.jpg")
    drive = mount_tmpfs("other")
    with Store.open(db) as store:
        groups = groups_of(store, root)
        p = plan(groups, parse_rules("shortest"), Action.MOVE, destination=str(drive), roots=[str(root)])
        assert apply(p, store).count(StepState.DONE) == 1
    killed_at(fault, UNDO.format(db=str(db)))
    assert dup.exists() == (fault == "named")
    assert len(temporaries(root)) == 1
    with Store.open(db) as store:
        back = undo(store)
    assert back.complete, back.results
    assert dup.read_bytes() == keeper.read_bytes() and temporaries(root, drive) == []
    assert not (drive / "p" / "s" / "a.jpg").exists()


def test_an_undo_of_a_link_run_killed_mid_restore_leaves_no_temporary_copy(tmp_path: Path) -> None:
    """An undo of a hardlink run killed after writing the restored copy under its temporary name: the next undo
    removes that full-size .NAME.dedupe-PID-N.tmp and restores the file."""
    root, db = tmp_path / "p", tmp_path / "store.sqlite"
    keeper = photo(root / "a.jpg", 23)
    dup = copy_file(keeper, root / "s" / "a.jpg")
    with Store.open(db) as store:
        assert apply(plan(groups_of(store, root), parse_rules("shortest"), Action.HARDLINK), store).results
    killed_at("restored", UNDO.format(db=str(db)))
    assert len(temporaries(root)) == 1 and dup.stat().st_ino == keeper.stat().st_ino
    with Store.open(db) as store:
        assert undo(store).complete
    assert temporaries(root) == [] and dup.stat().st_ino != keeper.stat().st_ino
    assert dup.read_bytes() == keeper.read_bytes()


def test_a_review_clears_what_a_killed_run_left_in_flight(
    tmp_path: Path, mount_tmpfs: Callable[..., Path], trash_home: Path
) -> None:
    """A new review removes the temporary files that a killed run's planned acts left behind."""
    root, db = tmp_path / "p", tmp_path / "store.sqlite"
    keeper = photo(root / "a.jpg", 24)
    copy_file(keeper, root / "s" / "a.jpg")
    drive = mount_tmpfs("other")
    with Store.open(db) as s:
        groups_of(s, root)
    killed_at("copied", APPLY_MOVE.format(db=str(db), root=str(root), dest=str(drive)))
    assert len(temporaries(drive)) == 1
    with Store.open(db) as store:
        apply(plan(groups_of(store, root), parse_rules("shortest"), Action.TRASH), store)
    assert temporaries(drive) == []


def test_a_partial_file_an_older_undo_left_at_the_original_path_is_replaced(
    tmp_path: Path, store: Store, mount_tmpfs: Callable[..., Path]
) -> None:
    """A file at the original path holding only the beginning of the moved file (what an older dedupe's undo
    left when killed) is recognised as that undo's partial copy: undo replaces it by the whole file."""
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 25)
    dup = copy_file(keeper, root / "s" / "a.jpg")
    drive = mount_tmpfs("other")
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(drive), roots=[str(root)])
    assert apply(p, store).count(StepState.DONE) == 1
    dup.write_bytes(keeper.read_bytes()[:1000])
    dup.chmod(0o600)
    assert undo(store).complete
    assert dup.read_bytes() == keeper.read_bytes()


def test_acts_written_as_planned_but_never_marked_are_found_on_disk(
    tmp_path: Path, store: Store, trash_home: Path
) -> None:
    """A crash between an act and its journal update, for each kind of act."""
    root, dest = tmp_path / "p", tmp_path / "dest"
    keeper = photo(root / "a.jpg", 20)
    trashed = copy_file(keeper, root / "t" / "a.jpg")
    moved = copy_file(keeper, root / "m" / "a.jpg")
    half_moved = copy_file(keeper, root / "h" / "a.jpg")
    untouched = copy_file(keeper, root / "u" / "a.jpg")
    linked = copy_file(keeper, root / "l" / "a.jpg")
    h = groups_of(store, root)[0].members[0].file.content_hash
    run = store.start_run(Action.TRASH)
    for path, action, destination in (
        (trashed, Action.TRASH, None),
        (moved, Action.MOVE, dest / "m.jpg"),
        (half_moved, Action.MOVE, dest / "h.jpg"),
        (untouched, Action.TRASH, None),
        (linked, Action.SYMLINK, root / "l" / ".tmp-link"),
    ):
        where = str(destination) if destination else None
        store.journal_planned(run, action, str(path), str(keeper), h, path.stat(), where)
    trash_file(str(trashed))  # happened
    dest.mkdir()
    moved.rename(dest / "m.jpg")  # happened
    shutil.copy2(half_moved, dest / "h.jpg")  # copied across drives, original not yet removed
    (root / "l" / ".tmp-link").symlink_to(keeper)  # link made under its temporary name, not yet renamed
    result = undo(store)
    assert result.complete
    states = {Path(r.path).parent.name: (r.state, r.reason) for r in result.results}
    assert states["t"][0] is StepState.DONE and "restored from the trash" in states["t"][1]
    assert states["m"][0] is StepState.DONE
    assert states["h"] == (StepState.DONE, f"interrupted move: removed the copy at {dest / 'h.jpg'}")
    assert states["u"][0] is StepState.SKIPPED and states["l"][0] is StepState.SKIPPED
    for f in (trashed, moved, half_moved, untouched, linked):
        assert f.read_bytes() == keeper.read_bytes() and not f.is_symlink()
    assert list(dest.iterdir()) == [] and not (root / "l" / ".tmp-link").exists()


def test_undo_after_the_trashed_copy_was_put_back_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trashed copy that the user put back by hand counts as undone: undo says it is already back."""
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


def test_undo_escapes_control_characters_in_the_trash_path(tmp_path: Path, trash_home: Path) -> None:
    """Undo prints the restored path and the trash path in its reason with control characters escaped."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(1, SMALL), root / "keep" / "a.jpg", quality=90)
    copy = exact_copy(keeper, root / "backup" / "esc\x1b[2Jclear.jpg")
    (root / "backup" / "esc\x1b[2Jclear.xmp").write_bytes(b"edits")
    db = scanned(root, tmp_path)

    code, out = invoke("review", root, "--db", db, "--yes")
    assert code == 0, out
    assert "\x1b" not in out
    code, out = invoke("undo", "--db", db)
    assert code == 0, out
    assert copy.exists()
    assert "\x1b" not in out, repr(out)


def fill(drive: Path) -> None:
    """Fill a drive to the last byte."""
    fd = os.open(drive / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)


def test_a_full_disk_under_the_store_stops_the_run_and_says_what_was_done(
    tmp_path: Path, mount_tmpfs: Callable[..., Path], trash_home: Path
) -> None:
    """When the store's disk fills up during a run, the run stops with a StoreError that says how many files were
    done (and journaled, so undo reverses them) and how many were not touched; undo then restores them."""
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 26)
    dups = [copy_file(keeper, root / f"s{i}" / "a.jpg") for i in range(3)]
    drive = mount_tmpfs("store", size="2m")
    with Store.open(drive / "store.sqlite") as store:
        the_plan = plan(groups_of(store, root), parse_rules("shortest"), Action.TRASH)
    with Store.open(drive / "store.sqlite") as store:
        with pytest.raises(StoreError) as stopped:
            apply(the_plan, store, on_progress=lambda e: fill(drive) if e.done == 1 else None)
        message = str(stopped.value)
        assert message.startswith(f"cannot write to the store at {drive / 'store.sqlite'}: the disk is full")
        assert "stopped after 1 of 3 file(s) were done ('dedupe undo' reverses them" in message
        assert "2 were not touched" in message
        assert sum(not d.exists() for d in dups) == 1
        (drive / "filler").unlink()
        assert undo(store).complete
    assert all(d.read_bytes() == keeper.read_bytes() for d in dups)
