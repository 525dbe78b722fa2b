"""Keeper rules, planning, checked applying, the journal and undo: on real files, real mounts and a real store."""

from __future__ import annotations

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
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedupe import actions
from dedupe.actions import apply, choose_keeper, parse_rules, plan, plan_script, trash_file, undo
from dedupe.errors import DedupeError
from dedupe.group import stored_groups
from dedupe.models import (
    Action,
    DuplicateGroup,
    FileRecord,
    Fingerprint,
    GroupMember,
    JournalState,
    MatchKind,
    ScanOptions,
    StepState,
)
from dedupe.scan import scan
from dedupe.store import Store
from tests.conftest import REPO, draw_photo, save

SMALL = (400, 300)


def photo(path: Path, seed: int, size: tuple[int, int] = SMALL, **params: object) -> Path:
    return save(draw_photo(seed, size), path, **params)


def copy(src: Path, dst: Path, mtime: float | None = None) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    if mtime is not None:
        os.utime(dst, (mtime, mtime))
    return dst


def groups_of(store: Store, *roots: Path) -> list[DuplicateGroup]:
    scan([str(r) for r in roots], store, ScanOptions(workers=1))
    groups, _, _ = stored_groups(store, [str(r) for r in roots])
    return groups


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount a small real tmpfs (another device) under tmp_path; skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "4m", readonly: bool = False) -> Path:
        where = tmp_path / name
        where.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=True)


# --- keeper rules ---------------------------------------------------------------------------------------------


def test_parse_rules_reads_an_ordered_list_and_refuses_nonsense() -> None:
    rules = parse_rules("resolution, size,oldest,path:/mnt/photos,shortest")
    assert [str(r) for r in rules] == ["resolution", "size", "oldest", "path:/mnt/photos", "shortest"]
    with pytest.raises(DedupeError, match="unknown keeper rule 'biggest'"):
        parse_rules("biggest")
    with pytest.raises(DedupeError, match="needs a folder"):
        parse_rules("path:")
    with pytest.raises(DedupeError, match="takes no argument"):
        parse_rules("size:3")


def test_keeper_rules_on_real_files(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    big = photo(root / "deep" / "folder" / "big.png", 1, (800, 600))
    small = save(draw_photo(1, (800, 600)).resize((400, 300)), root / "small.png")
    groups = groups_of(store, root)
    assert len(groups) == 1
    choice = choose_keeper(groups[0], parse_rules("resolution"))
    assert choice.keeper.path == str(big) and choice.reason == "largest resolution (800x600)"
    choice = choose_keeper(groups[0], parse_rules("shortest,resolution"))
    assert choice.keeper.path == str(small) and choice.reason == "shortest path"
    choice = choose_keeper(groups[0], parse_rules(f"path:{root / 'deep'},shortest"))
    assert choice.keeper.path == str(big) and "preferred folder" in choice.reason


def test_oldest_and_newest_use_mtime_when_no_date_taken(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    a = photo(root / "a.jpg", 2)
    b = copy(a, root / "b.jpg", mtime=1_000_000_000)
    os.utime(a, (1_500_000_000, 1_500_000_000))
    (group,) = groups_of(store, root)
    assert choose_keeper(group, parse_rules("oldest")).keeper.path == str(b)
    assert choose_keeper(group, parse_rules("newest")).keeper.path == str(a)


def test_an_unbreakable_tie_is_flagged_and_its_group_left_alone(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    a = photo(root / "a.jpg", 3)
    b = copy(a, root / "b.jpg")
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    (group,) = groups_of(store, root)
    choice = choose_keeper(group, parse_rules("resolution,size,oldest,shortest"))
    assert choice.is_tie and set(choice.tied) == {str(a), str(b)}
    p = plan([group], parse_rules("resolution,size,oldest,shortest"))
    assert p.steps == () and p.groups[0].skipped is not None and "tie" in p.groups[0].skipped
    # A keeper picked by the user breaks the tie.
    p = plan([group], parse_rules("size"), keepers={0: str(b)})
    assert [s.file.path for s in p.steps] == [str(a)] and p.groups[0].choice.reason == "chosen by you"


def test_reference_folders_always_win_and_are_never_touched(tmp_path: Path, store: Store) -> None:
    ref, other = tmp_path / "ref", tmp_path / "other"
    small = save(draw_photo(4, (800, 600)).resize((400, 300)), ref / "small.png")
    save(draw_photo(4, (800, 600)), other / "big.png")
    copy(small, ref / "again" / "small.png")
    groups = groups_of(store, ref, other)
    p = plan(groups, parse_rules("resolution"), references=[str(ref)])
    (g,) = p.groups
    assert g.choice.keeper.path.startswith(str(ref)) and "reference folder" in g.choice.reason
    assert [s.file.path for s in g.steps] == [str(other / "big.png")]
    assert [s.path for s in g.left] == [str(ref / "small.png")] or [s.path for s in g.left] == [
        str(ref / "again" / "small.png")
    ]
    assert all("reference folder" in s.reason for s in g.left)


def test_near_copies_need_include_near_and_links_need_identical_bytes(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    best = photo(root / "best.jpg", 5, (800, 600), quality=95)
    same = copy(best, root / "copy-of-best.jpg")
    worse = photo(root / "worse.jpg", 5, (800, 600), quality=40)
    (group,) = groups_of(store, root)
    assert group.kind is MatchKind.NEAR
    rules = parse_rules("size,shortest")
    p = plan([group], rules, include_near=False)
    assert p.groups[0].choice.keeper.path == str(best)
    assert [s.file.path for s in p.steps] == [str(same)]
    assert [s.path for s in p.groups[0].left] == [str(worse)] and "--include-near" in p.groups[0].left[0].reason
    p = plan([group], rules, include_near=True)
    assert sorted(s.file.path for s in p.steps) == sorted([str(same), str(worse)])
    p = plan([group], rules, Action.HARDLINK, include_near=True)
    assert [s.file.path for s in p.steps] == [str(same)]
    assert [s.path for s in p.groups[0].left] == [str(worse)] and "link would lose" in p.groups[0].left[0].reason


def test_a_move_needs_a_destination() -> None:
    with pytest.raises(DedupeError, match="--to"):
        plan([], action=Action.MOVE)


# --- hypothesis: the plan's invariants --------------------------------------------------------------------------


@st.composite
def groups(draw: st.DrawFn) -> tuple[DuplicateGroup, list[str]]:
    n = draw(st.integers(2, 6))
    names = draw(st.lists(st.sampled_from(["a", "bb", "ref/c", "ref/dd", "x/y/e", "f"]), min_size=n, max_size=n))
    paths = [f"/p/{name}{i}.jpg" for i, name in enumerate(names)]
    hashes = draw(st.lists(st.sampled_from(["h1", "h2", "h3"]), min_size=n, max_size=n))
    members = []
    for i, path in enumerate(paths):
        fp = Fingerprint(
            content_hash=hashes[i],
            image_hash="i" + hashes[i],
            format="JPEG",
            width=draw(st.sampled_from([100, 200])),
            height=100,
            phash=draw(st.integers(0, 3)),
            dhash=0,
            taken=draw(st.sampled_from([None, "2019-01-01T10:00:00", "2020-05-05T10:00:00"])),
            low_info=False,
        )
        rec = FileRecord(
            path=path,
            size=draw(st.sampled_from([1000, 2000])),
            mtime_ns=draw(st.sampled_from([1, 2])) * 10**18,
            dev=draw(st.sampled_from([1, 2])),
            ino=draw(st.integers(1, 4)) if draw(st.booleans()) else 100 + i,
            fingerprint=fp,
        )
        kind = MatchKind.EXACT if i == 0 or hashes[i] == hashes[0] else MatchKind.NEAR
        members.append(GroupMember(rec, kind, 0 if kind is MatchKind.EXACT else 3))
    refs = draw(st.sampled_from([[], ["/p/ref"]]))
    return DuplicateGroup(MatchKind.NEAR, tuple(members)), refs


rule_lists = st.lists(
    st.sampled_from(["resolution", "size", "oldest", "newest", "shortest", "path:/p/x"]), min_size=1, max_size=4
)


@settings(max_examples=300, deadline=None)
@given(groups(), rule_lists, st.sampled_from(list(Action)), st.booleans(), st.randoms())
def test_the_keeper_is_a_member_and_a_group_never_loses_its_last_copy(
    gr: tuple[DuplicateGroup, list[str]], rules: list[str], action: Action, near: bool, rnd: object
) -> None:
    group, refs = gr
    parsed = parse_rules(",".join(rules))
    choice = choose_keeper(group, parsed, refs)
    paths = [m.file.path for m in group.members]
    assert choice.keeper.path in paths
    if refs and any(p.startswith("/p/ref/") for p in paths):
        assert choice.keeper.path.startswith("/p/ref/")
    p = plan([group], parsed, action, references=refs, destination="/moved", include_near=near)
    (g,) = p.groups
    touched = [s.file.path for s in g.steps]
    assert choice.keeper.path not in touched or g.choice.keeper.path != choice.keeper.path
    assert g.choice.keeper.path not in touched
    assert len(touched) < len(paths) and len(set(touched)) == len(touched)
    if refs:
        assert not any(t.startswith("/p/ref/") for t in touched)
    assert all((s.file.dev, s.file.ino) != (s.keeper.dev, s.keeper.ino) for s in g.steps)
    if choice.is_tie:
        assert touched == []
    # Member order never changes the choice.
    shuffled = list(group.members)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    again = choose_keeper(DuplicateGroup(group.kind, tuple(shuffled)), parsed, refs)
    assert again.keeper.path == choice.keeper.path and again.tied == choice.tied


# --- applying: trash and undo ----------------------------------------------------------------------------------


def test_trash_then_undo_restores_byte_identical_files(tmp_path: Path, store: Store, trash_home: Path) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "IMG 1.jpg", 6)
    # Same names: the trash calls the second one "IMG 1 1.jpg", and the journal must know which is which.
    copies = [copy(keeper, root / f"backup{i}" / "IMG 1.jpg", mtime=2_000_000_000) for i in range(2)]
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
    dup = copy(keeper, drive / "b" / "a.jpg")
    p = plan(groups_of(store, drive), parse_rules("shortest"))
    result = apply(p, store)
    (r,) = result.results
    assert r.state is StepState.FAILED and "not deleted" in r.reason and r.path == str(dup)
    assert dup.read_bytes() == keeper.read_bytes()
    assert store.journal(result.run_id)[0].state is JournalState.FAILED
    with pytest.raises(actions.Refused, match="not deleted"):
        trash_file(str(dup))
    assert dup.exists()


def test_trash_on_another_drive_goes_to_that_drives_trash_and_comes_back(
    tmp_path: Path, store: Store, trash_home: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    drive = mount_tmpfs("usb")
    keeper = photo(drive / "a.jpg", 8)
    dup = copy(keeper, drive / "sub" / "a.jpg")
    result = apply(plan(groups_of(store, drive), parse_rules("shortest")), store)
    (r,) = result.results
    assert r.state is StepState.DONE and r.destination == str(drive / f".Trash-{os.getuid()}" / "files" / "a.jpg")
    assert not dup.exists() and not trash_home.exists()
    assert "Path=sub/a.jpg" in (drive / f".Trash-{os.getuid()}" / "info" / "a.jpg.trashinfo").read_text()
    assert undo(store).complete and dup.read_bytes() == keeper.read_bytes()


# --- applying: delete, move, links -------------------------------------------------------------------------------


def test_delete_is_permanent_and_undo_says_so(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 9)
    dup = copy(keeper, root / "z" / "a.jpg")
    result = apply(plan(groups_of(store, root), parse_rules("shortest"), Action.DELETE), store)
    assert result.count(StepState.DONE) == 1 and not dup.exists() and keeper.exists()
    back = undo(store)
    assert not back.complete and back.results[0].state is StepState.FAILED
    assert "permanently" in back.results[0].reason


def test_move_keeps_relative_paths_never_overwrites_and_undoes(tmp_path: Path, store: Store) -> None:
    root, dest = tmp_path / "photos", tmp_path / "dups"
    keeper = photo(root / "a.jpg", 10)
    dup = copy(keeper, root / "2019" / "trip" / "a.jpg")
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
    dup = copy(keeper, root / "sub" / "a.jpg", mtime=1_234_567_890)
    drive = mount_tmpfs("other")
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(drive), roots=[str(root)])
    (r,) = apply(p, store).results
    moved = Path(r.destination or "")
    assert r.state is StepState.DONE and moved == drive / "p" / "sub" / "a.jpg"
    assert moved.read_bytes() == keeper.read_bytes() and moved.stat().st_mtime == 1_234_567_890
    assert not dup.exists()
    assert undo(store).complete and dup.read_bytes() == keeper.read_bytes() and not moved.exists()


def test_a_cross_drive_move_that_runs_out_of_space_leaves_no_partial_copy(
    tmp_path: Path, store: Store, mount_tmpfs: Callable[..., Path]
) -> None:
    root = tmp_path / "p"
    noise = Image.frombytes("RGB", (300, 300), random.Random(12).randbytes(300 * 300 * 3))
    keeper = save(noise, root / "a.png")  # noise does not compress: 270 KB, more than the drive holds
    dup = copy(keeper, root / "sub" / "a.png")
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
    dups = [copy(keeper, root / f"s{i}" / "a.jpg") for i in range(2)]
    ro = mount_tmpfs("ro", readonly=True)  # read-only for root too
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.MOVE, destination=str(ro), roots=[str(root)])
    result = apply(p, store)
    assert result.count(StepState.FAILED) == 2
    assert all("read-only file system" in r.reason for r in result.results)
    assert all(d.read_bytes() == keeper.read_bytes() for d in dups)


def test_an_immutable_or_unwritable_destination_folder_is_refused(tmp_path: Path, store: Store) -> None:
    root, dest = tmp_path / "p", tmp_path / "dest"
    keeper = photo(root / "a.jpg", 14)
    dup = copy(keeper, root / "s" / "a.jpg")
    target = dest / "p" / "s"
    target.mkdir(parents=True)
    if os.geteuid() == 0:
        # chmod does not stop root; the immutable attribute does.
        r = subprocess.run(["chattr", "+i", str(target)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"running as root and chattr +i is not supported here: {r.stderr.strip()}")
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
    dup = copy(keeper, root / "s" / "a.jpg", mtime=1_111_111_111)
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


# --- the checks right before acting ------------------------------------------------------------------------------


def test_files_changed_between_scan_and_action_are_skipped(tmp_path: Path, store: Store, trash_home: Path) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 16)
    changed = copy(keeper, root / "s1" / "a.jpg")
    grown = copy(keeper, root / "s2" / "a.jpg")
    gone = copy(keeper, root / "s3" / "a.jpg")
    swapped = copy(keeper, root / "s4" / "a.jpg")
    relinked = copy(keeper, root / "s5" / "a.jpg")
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
    copy(keeper, root / "s4" / "new.jpg").replace(swapped)
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
    dups = [copy(keeper, root / f"s{i}" / "a.jpg") for i in range(2)]
    p = plan(groups_of(store, root), parse_rules("shortest"))
    with keeper.open("ab") as f:
        f.write(b"edited")
    result = apply(p, store)
    assert [r.reason for r in result.results] == ["its keeper changed size since the scan"] * 2
    keeper.unlink()
    result = apply(p, store)
    assert [r.reason for r in result.results] == ["its keeper vanished since the scan"] * 2
    assert all(d.exists() for d in dups)


def test_hardlinks_symlinks_and_overlapping_roots_never_make_a_file_its_own_copy(
    tmp_path: Path, store: Store, trash_home: Path
) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 18)
    os.link(keeper, root / "hard.jpg")
    (root / "via").symlink_to(root, target_is_directory=True)
    scan([str(root), str(root / "via"), str(root)], store, ScanOptions(workers=1, follow_symlinks=True))
    groups, _, images = stored_groups(store, [str(root)])
    assert images >= 2 and groups == []
    dup = copy(keeper, root / "z" / "a.jpg")
    groups = groups_of(store, root)
    (g,) = groups
    assert len(g.members) == 2
    result = apply(plan(groups, parse_rules("shortest")), store)
    assert [r.path for r in result.results if r.state is StepState.DONE] == [str(dup)]
    assert keeper.exists() and (root / "hard.jpg").exists()


def test_a_bind_mount_of_the_same_folder_is_not_a_copy(tmp_path: Path, store: Store, trash_home: Path) -> None:
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


# --- the journal after a crash -----------------------------------------------------------------------------------


def test_a_run_killed_half_way_is_understood_by_undo(tmp_path: Path, trash_home: Path) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "a.jpg", 19)
    dups = [copy(keeper, root / f"s{i}" / "a.jpg") for i in range(3)]
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


def test_acts_written_as_planned_but_never_marked_are_found_on_disk(
    tmp_path: Path, store: Store, trash_home: Path
) -> None:
    """A crash between an act and its journal update, for each kind of act."""
    root, dest = tmp_path / "p", tmp_path / "dest"
    keeper = photo(root / "a.jpg", 20)
    trashed = copy(keeper, root / "t" / "a.jpg")
    moved = copy(keeper, root / "m" / "a.jpg")
    half_moved = copy(keeper, root / "h" / "a.jpg")
    untouched = copy(keeper, root / "u" / "a.jpg")
    linked = copy(keeper, root / "l" / "a.jpg")
    h = groups_of(store, root)[0].members[0].file.content_hash
    run = store.start_run(Action.TRASH)
    for path, action, destination in (
        (trashed, Action.TRASH, None),
        (moved, Action.MOVE, dest / "m.jpg"),
        (half_moved, Action.MOVE, dest / "h.jpg"),
        (untouched, Action.TRASH, None),
        (linked, Action.SYMLINK, root / "l" / ".tmp-link"),
    ):
        store.journal_planned(run, action, str(path), str(keeper), h, path.stat(), destination and str(destination))
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


# --- "not duplicates" -------------------------------------------------------------------------------------------


def test_not_duplicates_are_remembered_by_content_and_survive_renames(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    a = photo(root / "a.jpg", 21, quality=95)
    photo(root / "b.jpg", 21, quality=60)
    a2 = copy(a, root / "c.jpg")
    (g,) = groups_of(store, root)
    hashes = {m.file.path: m.file.content_hash for m in g.members}
    store.add_not_duplicates([(hashes[str(a)], hashes[str(root / "b.jpg")])])
    (g,) = groups_of(store, root)  # a and its exact copy still group; b is apart now
    assert {m.file.path for m in g.members} == {str(a), str(a2)}
    (root / "b.jpg").rename(root / "renamed.jpg")
    a2.unlink()
    assert groups_of(store, root) == []


def test_plan_script_is_quoted_and_checks_the_keeper(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    keeper = photo(root / "it's a photo.jpg", 22)
    dups = [copy(keeper, root / "$(touch pwned)" / f"copy {i}.jpg") for i in range(2)]
    p = plan(groups_of(store, root), parse_rules("shortest"), Action.DELETE)
    script = tmp_path / "plan.sh"
    script.write_text(plan_script(p, "plan.sh"))
    assert "rm -f -- " in script.read_text()
    r = subprocess.run(["sh", str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert r.returncode == 0, r.stderr
    assert not any(d.exists() for d in dups) and keeper.exists() and not (tmp_path / "pwned").exists()
    # The same script again, now with the keeper changed: nothing is touched.
    for d in dups:
        copy(keeper, d)
    with keeper.open("ab") as f:
        f.write(b"x")
    r = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert all(d.exists() for d in dups) and "keeper" in r.stderr and "2 step(s) skipped" in r.stderr
