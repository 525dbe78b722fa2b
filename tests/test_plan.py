"""Keeper rules and planning: pure, on records and on real scanned files."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedupe.cli import cli
from dedupe.errors import DedupeError
from dedupe.match import MatchRule
from dedupe.models import ALPHA_VARIANTS, Action, DuplicateGroup, FileRecord, GroupMember, MatchKind
from dedupe.plan import choose_keeper, parse_rules, plan
from dedupe.store import Store
from tests.conftest import copy_file, draw_photo, groups_of, make_record, save

SMALL = (400, 300)


def photo(path: Path, seed: int, size: tuple[int, int] = SMALL, **params: object) -> Path:
    return save(draw_photo(seed, size), path, **params)


# --- keeper rules -----------------------------------------------------------------------------------------------


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
    b = copy_file(a, root / "b.jpg", mtime=1_000_000_000)
    os.utime(a, (1_500_000_000, 1_500_000_000))
    (group,) = groups_of(store, root)
    assert choose_keeper(group, parse_rules("oldest")).keeper.path == str(b)
    assert choose_keeper(group, parse_rules("newest")).keeper.path == str(a)


def test_an_unbreakable_tie_is_flagged_and_its_group_left_alone(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    a = photo(root / "a.jpg", 3)
    b = copy_file(a, root / "b.jpg")
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
    copy_file(small, ref / "again" / "small.png")
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
    same = copy_file(best, root / "copy-of-best.jpg")
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


# --- the keeper's own file is never its copy --------------------------------------------------------------------


def record(path: str, dev: int, ino: int) -> FileRecord:
    return make_record(path, size=9000, mtime_ns=1_700_000_000_000_000_000, dev=dev, ino=ino, phash=1, dhash=2)


def test_same_inode_size_and_time_on_another_device_is_left_alone() -> None:
    """An overlay, NFS or SMB view of a folder shows its files with the same inode number, size and time on
    another device: such a file is the keeper's own file, never its copy."""
    keeper = record("/mnt/view/x.jpg", 39, 1234)
    view = record("/data/photos/x.jpg", 65024, 1234)
    group = DuplicateGroup(
        MatchKind.EXACT, (GroupMember(keeper, MatchKind.EXACT, 0), GroupMember(view, MatchKind.EXACT, 0))
    )
    for action in (Action.TRASH, Action.DELETE, Action.SYMLINK):
        p = plan([group], action=action, keepers={0: keeper.path})
        assert p.steps == ()
        assert "another mount" in p.groups[0].left[0].reason


def test_a_real_copy_on_another_device_is_still_acted_on() -> None:
    """A real copy on another device (another inode number) is acted on."""
    keeper = record("/mnt/a/x.jpg", 39, 1234)
    copy = record("/mnt/b/x.jpg", 40, 5678)
    group = DuplicateGroup(
        MatchKind.EXACT, (GroupMember(keeper, MatchKind.EXACT, 0), GroupMember(copy, MatchKind.EXACT, 0))
    )
    assert [s.file.path for s in plan([group], keepers={0: keeper.path}).steps] == ["/mnt/b/x.jpg"]


# --- the run's match rule ---------------------------------------------------------------------------------------


def test_the_runs_threshold_decides_whether_a_copy_beside_crops_is_a_plain_near_copy_file() -> None:
    """A copy in a group with crops goes only when it is a near copy of its keeper under the run's own rule: at
    --threshold 2, a copy 3 bits away is not one, though the default threshold (4) would call it one."""
    keeper = make_record("/p/keeper.jpg", ino=1, content_hash="k" * 32, image_hash="K" * 32, phash=0, dhash=0)
    # Three pHash bits from the keeper, and a dHash far off, so that only the pHash threshold can match them.
    near = make_record("/p/near.jpg", ino=2, content_hash="n" * 32, image_hash="N" * 32, phash=0b111, dhash=2**64 - 1)
    group = DuplicateGroup(
        MatchKind.NEAR,
        (GroupMember(keeper, MatchKind.EXACT, 0), GroupMember(near, MatchKind.NEAR, 3, crop="crop")),
    )
    by_default = plan([group], keepers={0: keeper.path})
    assert [s.file.path for s in by_default.steps] == [near.path]
    strict = plan([group], keepers={0: keeper.path}, match_rule=MatchRule(threshold=2))
    assert strict.steps == ()
    assert "neither a crop nor a copy of its keeper" in strict.groups[0].left[0].reason
    loose = plan([group], keepers={0: keeper.path}, match_rule=MatchRule(threshold=8, crops=True))
    assert [s.file.path for s in loose.steps] == [near.path]


# --- hypothesis: the plan's invariants --------------------------------------------------------------------------


@st.composite
def groups(draw: st.DrawFn) -> tuple[DuplicateGroup, list[str]]:
    n = draw(st.integers(2, 6))
    names = draw(st.lists(st.sampled_from(["a", "bb", "ref/c", "ref/dd", "x/y/e", "f"]), min_size=n, max_size=n))
    paths = [f"/p/{name}{i}.jpg" for i, name in enumerate(names)]
    hashes = draw(st.lists(st.sampled_from(["h1", "h2", "h3"]), min_size=n, max_size=n))
    members = []
    for i, path in enumerate(paths):
        width = draw(st.sampled_from([100, 200]))
        phash = draw(st.integers(0, 3))
        taken = draw(st.sampled_from([None, "2019-01-01T10:00:00", "2020-05-05T10:00:00"]))
        rec = make_record(
            path,
            size=draw(st.sampled_from([1000, 2000])),
            mtime_ns=draw(st.sampled_from([1, 2])) * 10**18,
            dev=draw(st.sampled_from([1, 2])),
            ino=draw(st.integers(1, 4)) if draw(st.booleans()) else 100 + i,
            content_hash=hashes[i],
            image_hash="i" + hashes[i],
            width=width,
            height=100,
            phash=phash,
            taken=taken,
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
def test_the_keeper_is_a_member_and_a_group_never_loses_its_last_copy_file(
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
    # Every file a step keeps stays; a tie leaves only the similar copies alone.
    assert not set(touched) & {s.keeper.path for s in g.steps}
    if choice.is_tie:
        assert all(s.match is not MatchKind.NEAR for s in g.steps)
    # Member order never changes the choice.
    shuffled = list(group.members)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    again = choose_keeper(DuplicateGroup(group.kind, tuple(shuffled)), parsed, refs)
    assert again.keeper.path == choice.keeper.path and again.tied == choice.tied


# --- a photographer's backup drive, end to end through the CLI ----------------------------------------------------

PHOTOS = 3


def _exif(i: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS 80D"
    exif.get_ifd(0x8769)[36867] = f"2019:05:0{i + 1} 10:00:00"
    return exif.tobytes()


def _with_comment(data: bytes, text: bytes) -> bytes:
    """The same JPEG with a comment segment after SOI: other metadata, the same image data."""
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:]


def build_drive(root: Path) -> dict[str, list[Path]]:
    """Per photo: the camera original, a byte-identical backup, a copy with a shorter path, a phone-dump copy with
    more metadata, a larger re-encode without EXIF, PNG and WebP exports and a half-size copy."""
    layout: dict[str, list[Path]] = {"original": [], "same": [], "near": []}
    for i in range(PHOTOS):
        im = draw_photo(100 + i, (1200, 800))
        original = save(im, root / "DCIM" / f"IMG_{i:04}.JPG", quality=90, exif=_exif(i))
        data = original.read_bytes()
        backup = root / "Backup_2019" / "DCIM" / f"IMG_{i:04}.JPG"
        backup.parent.mkdir(parents=True, exist_ok=True)
        backup.write_bytes(data)
        short = root / "p" / f"{i}.jpg"
        short.parent.mkdir(parents=True, exist_ok=True)
        short.write_bytes(data)
        phone = root / "Phone" / f"IMG_{i:04}.JPG"
        phone.parent.mkdir(parents=True, exist_ok=True)
        phone.write_bytes(_with_comment(data, b"phone dump: GPS 52.37N 4.89E, album Holidays"))
        layout["original"].append(original)
        layout["same"] += [backup, short, phone]
        layout["near"] += [
            save(im, root / "Exports" / f"IMG_{i:04}_q97.jpg", quality=97),
            save(im, root / "Exports" / f"IMG_{i:04}.png"),
            save(im, root / "Exports" / f"IMG_{i:04}.webp", quality=90),
            save(im.resize((600, 400)), root / "WhatsApp" / f"IMG-{i:04}-WA.jpg", quality=80),
        ]
    return layout


def _review_plan(root: Path, db: str, *extra: str) -> dict[str, object]:
    r = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--dry-run", "--format", "json", *extra])
    assert r.exit_code == 0, r.output
    out: dict[str, object] = json.loads(r.output)
    return out


def _acted(plan: dict[str, object]) -> set[str]:
    groups = plan["groups"]
    assert isinstance(groups, list)
    return {step["path"] for g in groups for step in g["steps"]}


def test_a_backup_drive_keeps_the_camera_original(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    layout = build_drive(root)
    db = str(tmp_path / "s.sqlite")
    r = CliRunner().invoke(cli, ["scan", str(root), "--db", db, "-q", "--format", "json"])
    assert r.exit_code == 0, r.output
    groups = json.loads(r.output)["groups"]
    assert len(groups) == PHOTOS
    # Plain edits are never taken for crops.
    assert not [f["path"] for g in groups for f in g["files"] if f["cropped"]]
    originals = {str(p) for p in layout["original"]}
    same = {str(p) for p in layout["same"]}
    near = {str(p) for p in layout["near"]}

    # --yes alone cuts every set of byte or same-image copies to one file, whatever the group's keeper is: the
    # one with the most metadata (the phone dump's copy; its camera EXIF is the original's, and more).
    phones = {str(p) for p in layout["same"] if p.parent.name == "Phone"}
    acted = _acted(_review_plan(root, db))
    assert acted == (same | originals) - phones and not acted & near

    # With --include-near, exactly that copy of each camera original is left: no re-encode, export or resize.
    acted = _acted(_review_plan(root, db, "--include-near"))
    assert acted == (same | originals | near) - phones

    # Folders named first win over a file's size: naming DCIM first keeps the camera's own files.
    r = CliRunner().invoke(
        cli, ["review", str(root / "DCIM"), str(root), "--db", db, "--dry-run", "--format", "json", "--include-near"]
    )
    assert r.exit_code == 0, r.output
    assert _acted(json.loads(r.output)) == same | near

    # The reasons never call a plain edit a crop.
    text = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--dry-run", "--include-near"]).output
    assert "crop" not in text


def test_a_picture_with_transparency_is_kept_over_its_copies_without_it() -> None:
    """A PNG with an alpha channel wins over a JPEG made from it at the same size: the JPEG lost the transparency,
    and a camera format is only preferred among pictures that both have none."""
    alpha = make_record("/p/overlay.png", format="PNG", variants=tuple(range(ALPHA_VARIANTS)))
    flat = make_record("/p/flat.jpg", size=99_000, format="JPEG", ino=1)
    group = DuplicateGroup(
        MatchKind.NEAR, (GroupMember(flat, MatchKind.EXACT, 0), GroupMember(alpha, MatchKind.NEAR, 0))
    )
    choice = choose_keeper(group)
    assert choice.keeper.path == "/p/overlay.png" and "keeps its transparency" in choice.reason


def test_the_reason_names_the_date_that_decided() -> None:
    """Copies with one date taken are told apart by their file times, and the reason says so."""
    taken = "2019-05-01T10:00:00"
    first = make_record("/p/b/a.jpg", mtime_ns=10**18, taken=taken)
    later = make_record("/p/a/a.jpg", mtime_ns=2 * 10**18, ino=1, taken=taken)
    group = DuplicateGroup(
        MatchKind.EXACT, (GroupMember(later, MatchKind.EXACT, 0), GroupMember(first, MatchKind.EXACT, 0))
    )
    choice = choose_keeper(group, parse_rules("oldest"))
    assert choice.keeper is first and choice.reason.startswith("oldest (modified ")
    other = make_record("/p/c/a.jpg", mtime_ns=3 * 10**18, ino=2, taken="2018-01-01T00:00:00")
    group = DuplicateGroup(MatchKind.EXACT, (*group.members, GroupMember(other, MatchKind.EXACT, 0)))
    assert choose_keeper(group, parse_rules("oldest")).reason == "oldest (taken 2018-01-01 00:00:00)"
