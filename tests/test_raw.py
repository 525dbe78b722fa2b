"""RAW files: fingerprinted from their embedded preview, and never trashed as a mere copy of their JPEG twin.

The RAW files here are synthetic containers, not camera files: a small TIFF written by Pillow (standing in for a
RAW's main IFD, with the JPEGInterchangeFormat tags of a camera's preview) followed by a full-size JPEG preview
stream, named .nef, .dng and so on. They have the structure dedupe reads (TIFF header and tags, embedded JPEG
streams), not real sensor data.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedupe import fingerprint
from dedupe.actions import quarantine
from dedupe.cli import cli
from dedupe.errors import FileSkipped
from dedupe.fingerprint import is_raw
from dedupe.models import (
    Action,
    DuplicateGroup,
    GroupMember,
    MatchKind,
    ScanOptions,
    StepState,
)
from dedupe.plan import RAW_KEPT, TWIN_KEPT, parse_rules, plan
from dedupe.scan import scan
from dedupe.store import Store
from tests.conftest import draw_photo, make_record, run_dedupe, save


def jpeg_bytes(im: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **params)
    return buf.getvalue()


def synthetic_raw(
    photo: Image.Image,
    *,
    preview: bytes | None = None,
    orientation: int = 1,
    thumb_side: int = 160,
    filler: bytes = b"",
) -> bytes:
    """A TIFF-container "RAW": a small thumbnail TIFF whose tags point at a full-size JPEG preview appended to it.

    filler goes between the TIFF and the preview, standing in for sensor data.
    """
    jpg = jpeg_bytes(photo, quality=90) if preview is None else preview
    thumb = photo.copy()
    thumb.thumbnail((thumb_side, thumb_side))

    def container(offset: int) -> bytes:
        buf = io.BytesIO()
        tags = {513: offset, 514: len(jpg), 271: "Synthetic", 272: "Container 1", 274: orientation}
        thumb.save(buf, "TIFF", tiffinfo=tags)
        return buf.getvalue()

    head = container(0)
    head = container(len(head) + len(filler))  # same length: the offset is a fixed-size LONG
    return head + filler + jpg


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- fingerprinting ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["nef", "dng", "cr2", "arw"])
def test_raw_is_fingerprinted_from_its_full_size_preview(tmp_path: Path, ext: str) -> None:
    photo = draw_photo(1)
    raw = write(tmp_path / f"IMG_0001.{ext.upper()}", synthetic_raw(photo))
    fp = fingerprint.fingerprint_file(raw)
    assert fp.format == f"RAW:{ext}"
    assert (fp.width, fp.height) == (1200, 900)  # the preview's, not the 160 px thumbnail IFD's
    assert fp.camera == "Synthetic Container 1"
    twin = fingerprint.fingerprint_file(save(photo, tmp_path / "IMG_0001.JPG", quality=85))
    assert fingerprint.hamming(fp.phash, twin.phash) <= 4
    assert fp.image_hash != twin.image_hash  # a RAW is "the same pixels" only as the same bytes


def test_the_same_container_named_tif_stays_a_tiff(tmp_path: Path) -> None:
    data = synthetic_raw(draw_photo(2))
    fp = fingerprint.fingerprint_file(write(tmp_path / "scan.tif", data))
    assert fp.format == "TIFF"
    assert fp.width == 160


def test_largest_decodable_preview_wins_over_thumbnails_and_broken_streams(tmp_path: Path) -> None:
    photo = draw_photo(3)
    small = jpeg_bytes(photo.resize((320, 240)))
    # A stream that follows JPEG structure but whose data is not decodable (SOF3, like lossless sensor data),
    # larger than the real preview.
    broken = b"\xff\xd8\xff\xc3\x00\x0b\x08\x10\x00\x10\x00\x01\x01\x11\x00\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    broken += bytes(range(1, 255)) * 4000 + b"\xff\xd9"
    filler = b"\x00" * 1000 + small + b"\x00" * 1000 + broken
    data = synthetic_raw(photo, filler=filler)
    spans = fingerprint.jpeg_streams(data)
    assert len(spans) >= 3
    assert spans[0][1] - spans[0][0] == len(broken)
    fp = fingerprint.fingerprint_file(write(tmp_path / "a.dng", data))
    assert (fp.width, fp.height) == (1200, 900)


def test_preview_with_an_exif_thumbnail_inside_is_read_whole(tmp_path: Path) -> None:
    photo = draw_photo(4)
    exif = Image.Exif()
    exif[271] = "Synthetic"
    # The preview carries its own small JPEG thumbnail in APP1: its EOI must not end the preview.
    exif_bytes = exif.tobytes() + jpeg_bytes(photo.resize((80, 60)))
    preview = jpeg_bytes(photo, quality=90, exif=exif_bytes)
    data = synthetic_raw(photo, preview=preview)
    start, end = fingerprint.jpeg_streams(data)[0]
    assert data[start:end] == preview


def test_container_orientation_turns_the_preview(tmp_path: Path) -> None:
    photo = draw_photo(5)
    upright = fingerprint.fingerprint_file(save(photo.transpose(Image.Transpose.ROTATE_270), tmp_path / "u.jpg"))
    fp = fingerprint.fingerprint_file(write(tmp_path / "turned.nef", synthetic_raw(photo, orientation=6)))
    assert (fp.width, fp.height) == (900, 1200)
    assert fingerprint.hamming(fp.phash, upright.phash) <= 4


def test_raw_without_a_preview_is_skipped_with_the_reason(tmp_path: Path) -> None:
    buf = io.BytesIO()
    draw_photo(6).resize((200, 150)).save(buf, "TIFF")
    path = write(tmp_path / "nopreview.nef", buf.getvalue())
    with pytest.raises(FileSkipped) as e:
        fingerprint.fingerprint_file(path)
    assert e.value.reason == fingerprint.NO_PREVIEW


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("x.cr3", b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom"),
        ("x.raf", b"FUJIFILMCCD-RAW 0201FF383501"),
        ("x.orf", b"IIRO\x08\x00\x00\x00"),
        ("x.rw2", b"IIU\x00\x08\x00\x00\x00"),
    ],
)
def test_non_tiff_raw_containers_are_recognised(tmp_path: Path, name: str, head: bytes) -> None:
    photo = draw_photo(7)
    path = write(tmp_path / name, head + b"\x00" * 200 + jpeg_bytes(photo) + b"\x00" * 50)
    fp = fingerprint.fingerprint_file(path)
    assert fp.format == "RAW:" + name.split(".")[1]
    assert (fp.width, fp.height) == (1200, 900)


def test_raw_name_with_other_content_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "fake.cr3", b"%PDF-1.4 not a raw file" + b"\x00" * 100)
    with pytest.raises(FileSkipped) as e:
        fingerprint.fingerprint_file(path)
    assert "unrecognised content" in e.value.reason
    assert not e.value.ignorable  # named like a photo: the user hears about it


# --- planning: a RAW is never removed as a mere copy of its JPEG twin -------------------------------------------

_FORMATS = ["JPEG", "HEIF", "RAW:nef", "RAW:dng"]


@st.composite
def raw_groups(draw: st.DrawFn) -> DuplicateGroup:
    n = draw(st.integers(2, 6))
    members = []
    for i in range(n):
        fmt = draw(st.sampled_from(_FORMATS))
        content = draw(st.sampled_from(["h1", "h2", "h3"]))
        width = draw(st.sampled_from([160, 1200, 6000]))
        rec = make_record(
            f"/p/{i}.{fmt[-3:].lower()}",
            size=draw(st.sampled_from([1000, 9000])),
            mtime_ns=10**18,
            ino=100 + i,
            content_hash=f"{fmt}:{content}",  # the same bytes are the same format
            image_hash=f"i{fmt}:{content}",
            format=fmt,
            width=width,
            height=100,
        )
        members.append(GroupMember(rec, MatchKind.NEAR, 3))
    return DuplicateGroup(MatchKind.NEAR, tuple(members))


@settings(max_examples=300, deadline=None)
@given(
    raw_groups(),
    st.sampled_from(["resolution", "size,resolution", "shortest", "path:/p/1"]),
    st.sampled_from([Action.TRASH, Action.DELETE, Action.MOVE]),
    st.one_of(st.none(), st.integers(0, 5)),
)
def test_a_raw_is_never_removed_without_include_raw(
    group: DuplicateGroup, rules: str, action: Action, pick: int | None
) -> None:
    keepers = {0: group.members[pick].file.path} if pick is not None and pick < len(group.members) else None
    p = plan([group], parse_rules(rules), action, destination="/moved", include_near=True, keepers=keepers)
    (g,) = p.groups
    for s in g.steps:
        # A RAW goes only as the exact bytes of a RAW that stays; a JPEG/HEIC never goes in favour of a RAW.
        assert not is_raw(s.file.fingerprint) or s.file.content_hash == s.keeper.content_hash
        assert is_raw(s.file.fingerprint) == is_raw(s.keeper.fingerprint)
        assert s.keeper.path not in {t.file.path for t in g.steps}
    touched = {s.file.path for s in g.steps}
    raw_contents = {m.file.content_hash for m in group.members if is_raw(m.file.fingerprint)}
    for content in raw_contents:  # every RAW picture keeps at least one file
        assert any(m.file.content_hash == content and m.file.path not in touched for m in group.members)
    left = {s.path: s.reason for s in g.left}
    if g.skipped:  # a tie the rules cannot break: only copies of one image go, the user picks in review
        assert all(s.match is not MatchKind.NEAR for s in g.steps)
    for m in [] if g.skipped else group.members:
        if is_raw(m.file.fingerprint) and m.file.path not in touched and m.file.path != g.choice.keeper.path:
            assert left[m.file.path] == RAW_KEPT
    # With include_raw the RAW is an ordinary photo again: the group still keeps a copy.
    loose = plan([group], parse_rules(rules), action, destination="/moved", include_near=True, include_raw=True)
    assert len(loose.groups[0].steps) < len(group.members)


class RawLibrary:
    """A synthetic RAW with its camera JPEG twin (smaller, so that resolution alone would keep the JPEG), an exact
    backup of the RAW, and an exact copy of the JPEG."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "photos"
        self.db = str(tmp_path / "store.sqlite")
        self.dups = tmp_path / "dups"
        photo = draw_photo(11, (800, 600))
        self.raw = write(self.root / "IMG_0001.NEF", synthetic_raw(photo.resize((400, 300))))
        self.jpg = save(photo, self.root / "IMG_0001.JPG", quality=90)
        self.raw_backup = write(self.root / "backup" / "IMG_0001.NEF", self.raw.read_bytes())
        self.jpg_copy = write(self.root / "backup" / "IMG_0001.JPG", self.jpg.read_bytes())
        self.no_preview = write(self.root / "IMG_0002.DNG", self._tiff())
        self.original = {p: p.read_bytes() for p in (self.raw, self.jpg, self.raw_backup, self.jpg_copy)}

    @staticmethod
    def _tiff() -> bytes:
        buf = io.BytesIO()
        draw_photo(12).resize((120, 90)).save(buf, "TIFF")
        return buf.getvalue()

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(cli, [*args, "--db", self.db])


def test_review_keeps_the_raw_beside_its_twin_and_moves_only_exact_copies(tmp_path: Path) -> None:
    lib = RawLibrary(tmp_path)
    scanned = lib.cli("scan", str(lib.root), "--format", "json")
    assert scanned.exit_code == 0, scanned.output
    assert fingerprint.NO_PREVIEW in scanned.output and "IMG_0002.DNG" in scanned.output
    groups = lib.cli("groups", str(lib.root), "--format", "json")
    assert groups.exit_code == 0
    assert all(str(p) in groups.output for p in lib.original)  # one group: the RAW is shown with its twin

    r = lib.cli("review", str(lib.root), "--yes", "--include-near", "--action", "move", "--to", str(lib.dups))
    assert r.exit_code == 0, r.output
    assert "RAW original kept" in r.output
    assert lib.raw.read_bytes() == lib.original[lib.raw] and lib.jpg.exists()
    assert not lib.raw_backup.exists() and not lib.jpg_copy.exists()  # exact copies are ordinary duplicates
    moved = sorted(p.relative_to(lib.dups) for p in lib.dups.rglob("*") if p.is_file())
    assert moved == [Path("photos/backup/IMG_0001.JPG"), Path("photos/backup/IMG_0001.NEF")]

    u = lib.cli("undo")
    assert u.exit_code == 0, u.output
    assert all(p.read_bytes() == data for p, data in lib.original.items())


def test_include_raw_lets_the_rules_choose_across_raw_and_jpeg(tmp_path: Path) -> None:
    lib = RawLibrary(tmp_path)
    assert lib.cli("scan", str(lib.root), "-q").exit_code == 0
    safe = lib.cli("review", str(lib.root), "--dry-run", "--include-near", "--format", "json")
    assert safe.exit_code == 0, safe.output
    planned = [s["path"] for g in json.loads(safe.output)["groups"] for s in g["steps"]]
    assert str(lib.raw) not in planned
    loose = lib.cli("review", str(lib.root), "--dry-run", "--include-near", "--include-raw", "--format", "json")
    planned = [s["path"] for g in json.loads(loose.output)["groups"] for s in g["steps"]]
    assert str(lib.raw) in planned  # asked for: the 400 px preview loses to the 800 px JPEG
    assert all(p.exists() for p in lib.original)  # dry runs change nothing


def test_a_raw_and_its_twin_through_a_real_subprocess(tmp_path: Path) -> None:
    lib = RawLibrary(tmp_path)
    s = run_dedupe("scan", str(lib.root), "--db", lib.db, "-q")
    assert s.returncode == 0, s.stderr
    r = run_dedupe("review", str(lib.root), "--db", lib.db, "--dry-run", "--include-near")
    assert r.returncode == 0, r.stderr
    assert "leave " in r.stdout and "RAW original kept" in r.stdout
    g = run_dedupe("groups", str(lib.root), "--db", lib.db, "--format", "json")
    assert str(lib.raw) in g.stdout and str(lib.jpg) in g.stdout


def test_watch_quarantine_leaves_a_raw_that_only_looks_like_its_twin(tmp_path: Path, store: Store) -> None:
    lib = RawLibrary(tmp_path)
    scan([str(lib.root)], store, ScanOptions(workers=1))
    (raw,) = store.records_under([str(lib.raw)], fingerprint.VERSION)
    (jpg,) = store.records_under([str(lib.jpg)], fingerprint.VERSION)
    (backup,) = store.records_under([str(lib.raw_backup)], fingerprint.VERSION)
    for copy, keeper, reason in ((raw, jpg, RAW_KEPT), (jpg, raw, TWIN_KEPT)):
        result = quarantine(copy, keeper, str(lib.dups), [str(lib.root)], store)
        assert (result.state, result.reason) == (StepState.SKIPPED, reason)
        assert Path(copy.path).read_bytes() == lib.original[Path(copy.path)]
    moved = quarantine(backup, raw, str(lib.dups), [str(lib.root)], store)  # the same bytes: an ordinary copy
    assert moved.state is StepState.DONE and not lib.raw_backup.exists()
