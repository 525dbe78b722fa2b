"""The grouping (group.py): its invariants under hypothesis (no path in two groups, input order never matters,
identical pictures share a group), stars around references, the second opinion and bursts, and pictures that
must not be grouped."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedupe.crop_search import crop_pairs
from dedupe.fingerprint import fingerprint_file
from dedupe.group import find_groups, stored_groups
from dedupe.match import (
    CANDIDATE_PHASH,
    CROP_PHASH,
    Match,
    MatchRule,
    crop_agrees,
    hamming,
    match,
    match_distance,
    same_burst,
    unpack_crops,
)
from dedupe.models import CROP_BYTES, CROP_WINDOWS, Action, FileRecord, MatchKind
from dedupe.pairs import join
from dedupe.plan import parse_rules, plan
from dedupe.store import Store
from tests.conftest import copy_file, draw_photo, groups_of, invoke, make_record, save

_U64 = st.integers(min_value=0, max_value=2**64 - 1)


def record(
    path: str,
    phash: int,
    *,
    content: str | None = None,
    image: str | None = None,
    ino: int | None = None,
    low_info: bool = False,
    size: int = 1000,
    dhash: int | None = None,
    camera: str | None = None,
    taken: str | None = None,
) -> FileRecord:
    content = content or f"c-{path}"
    return make_record(
        path,
        size=size,
        ino=ino if ino is not None else abs(hash(path)),
        content_hash=content,
        image_hash=image or f"i-{content}",
        width=100,
        height=100,
        phash=phash,
        # unrelated dHashes unless asked: the second opinion then never confirms by chance
        dhash=random.Random(path).getrandbits(64) if dhash is None else dhash,
        taken=taken,
        low_info=low_info,
        camera=camera,
    )


def flip(value: int, bits: list[int]) -> int:
    for b in bits:
        value ^= 1 << b
    return value


@st.composite
def clustered_hashes(draw: st.DrawFn) -> list[int]:
    """Hashes in tight clusters, with exact repeats: the hard case for grouping."""
    centres = draw(st.lists(_U64, min_size=1, max_size=6))
    out: list[int] = []
    for c in centres:
        for _ in range(draw(st.integers(1, 6))):
            out.append(flip(c, draw(st.lists(st.integers(0, 63), max_size=7))))
    return out


def _records(values: list[int]) -> list[FileRecord]:
    return [record(f"/p/{i:03d}.jpg", v) for i, v in enumerate(values)]


@settings(max_examples=150, deadline=None)
@given(clustered_hashes(), st.integers(0, 12), st.randoms(use_true_random=False))
def test_grouping_invariants(values: list[int], threshold: int, rnd: random.Random) -> None:
    records = _records(values)
    groups = find_groups(records, MatchRule(threshold))
    # No path appears in two groups, and every group has at least two files.
    paths = [m.file.path for g in groups for m in g.members]
    assert len(paths) == len(set(paths))
    assert all(len(g.members) >= 2 for g in groups)
    # Every member is within the threshold of its reference, and shows that distance.
    for g in groups:
        ref = g.reference.file.fingerprint.phash
        for m in g.members:
            assert m.distance == hamming(m.file.fingerprint.phash, ref) <= threshold
    # Input order does not change the answer.
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert find_groups(shuffled, MatchRule(threshold)) == groups
    # Items with identical hashes always share a group.
    where = {m.file.path: n for n, g in enumerate(groups) for m in g.members}
    for a in records:
        for b in records:
            if a.path < b.path and a.fingerprint.phash == b.fingerprint.phash:
                assert a.path in where and where[a.path] == where.get(b.path)


def test_chains_never_join_unlike_photos() -> None:
    a = 0
    b = flip(a, list(range(8)))
    c = flip(b, list(range(8, 16)))  # 16 bits from a
    groups = find_groups(_records([a, b, c]), MatchRule(8))
    assert len(groups) == 1
    (g,) = groups
    assert g.reference.file.fingerprint.phash == b  # the centre, within 8 of both ends
    far = find_groups(_records([a, b, c, flip(c, list(range(16, 24)))]), MatchRule(8))
    for g in far:
        assert all(m.distance <= 8 for m in g.members)


def test_kinds_exact_image_near() -> None:
    recs = [
        record("/a.jpg", 5, content="x"),
        record("/b.jpg", 5, content="x"),
        record("/c.jpg", 5, content="y", image="i-x"),
        record("/d.jpg", flip(5, [1, 2])),
    ]
    (exact,) = find_groups(recs[:2])
    assert exact.kind is MatchKind.EXACT
    (image,) = find_groups(recs[:3])
    assert image.kind is MatchKind.IMAGE
    (near,) = find_groups(recs)
    assert near.kind is MatchKind.NEAR
    assert [m.match for m in near.members] == [MatchKind.EXACT, MatchKind.EXACT, MatchKind.IMAGE, MatchKind.NEAR]
    assert near.members[-1].distance == 2
    assert near.reclaimable_bytes == 3000


def test_hardlinks_are_one_file() -> None:
    recs = [record("/a.jpg", 5, content="x", ino=7), record("/b.jpg", 5, content="x", ino=7)]
    assert find_groups(recs) == []


def test_low_information_images_group_only_when_their_pixels_are_the_same() -> None:
    recs = [
        record("/blank1.png", 0, low_info=True),
        record("/blank2.png", 0, low_info=True),
        record("/blank3.png", 0, content="same", low_info=True),
        record("/blank4.png", 0, content="same", low_info=True),
    ]
    groups = find_groups(recs)
    assert [[m.file.path for m in g.members] for g in groups] == [["/blank3.png", "/blank4.png"]]


def test_reference_is_the_best_copy_at_the_centre() -> None:
    small = record("/small.jpg", 9, content="s", size=10)
    big = record("/big.jpg", 9, content="b", size=99)
    groups = find_groups([small, big])
    assert groups[0].reference.file.path == "/big.jpg"


# --- turned and mirrored copies ---------------------------------------------------------------------------------


def turned(path: str, phash: int, variants: tuple[int, ...], **kw: object) -> FileRecord:
    r = record(path, phash, **kw)  # type: ignore[arg-type]
    return FileRecord(r.path, r.size, r.mtime_ns, r.dev, r.ino, replace(r.fingerprint, variants=variants))


@st.composite
def turned_records(draw: st.DrawFn) -> list[FileRecord]:
    """Pictures with 7 variant hashes; some files are turned copies of others (variant near the other's upright)."""
    out: list[FileRecord] = []
    for n in range(draw(st.integers(1, 12))):
        turned_copy: bool = bool(out) and draw(st.booleans())
        if turned_copy:
            base = out[draw(st.integers(0, len(out) - 1))].fingerprint
            k = draw(st.integers(0, 6))
            # this file is the other turned by TRANSFORMS[k]: its upright is near the other's variant k
            phash = flip(base.variants[k], draw(st.lists(st.integers(0, 63), max_size=4)))
            variants = tuple(
                flip(v, draw(st.lists(st.integers(0, 63), max_size=3)))
                for v in draw(st.permutations([base.phash, *base.variants[:6]]))
            )
        else:
            phash = draw(_U64)
            variants = tuple(draw(st.lists(_U64, min_size=7, max_size=7)))
        out.append(turned(f"/p/{n:03d}.jpg", phash, variants))
    if draw(st.booleans()):
        out.append(turned("/p/dup.jpg", out[0].fingerprint.phash, out[0].fingerprint.variants))
    return out


@settings(max_examples=200, deadline=None)
@given(turned_records(), st.integers(0, 10), st.randoms(use_true_random=False))
def test_grouping_invariants_with_rotations(records: list[FileRecord], threshold: int, rnd: random.Random) -> None:
    groups = find_groups(records, MatchRule(threshold))
    paths = [m.file.path for g in groups for m in g.members]
    assert len(paths) == len(set(paths))
    for g in groups:
        ref = g.reference.file.fingerprint
        for m in g.members[1:]:
            # the distance and transform shown are the real ones, within the threshold of the reference
            assert (m.distance, m.transform) == match_distance(m.file.fingerprint, ref)
            assert m.distance <= threshold and m.dhash is None
            assert match(m.file.fingerprint, ref, MatchRule(threshold)) == Match(m.distance, m.transform, None)
            if m.transform is None:
                assert m.distance == hamming(m.file.fingerprint.phash, ref.phash)
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert find_groups(shuffled, MatchRule(threshold)) == groups
    # Identical fingerprints always share a group.
    where = {m.file.path: n for n, g in enumerate(groups) for m in g.members}
    for a in records:
        for b in records:
            fa, fb = a.fingerprint, b.fingerprint
            if a.path < b.path and (fa.phash, fa.variants) == (fb.phash, fb.variants):
                assert a.path in where and where[a.path] == where.get(b.path)
    # Without rotations, only upright distances count.
    for g in find_groups(records, MatchRule(threshold, rotations=False)):
        ref = g.reference.file.fingerprint
        assert all(
            m.transform is None and m.distance == hamming(m.file.fingerprint.phash, ref.phash) for m in g.members
        )


def test_a_turned_copy_matches_through_its_variant_and_says_how() -> None:
    original = turned(
        "/a.jpg",
        0,
        tuple(
            flip(
                0,
                [
                    10 * k + 1,
                    10 * k + 2,
                    10 * k + 3,
                    10 * k + 4,
                    10 * k + 5,
                    10 * k + 6,
                    10 * k + 7,
                    10 * k + 8,
                    10 * k + 9,
                ],
            )
            for k in range(1, 8)
        ),
    )
    rot90_of_a = original.fingerprint.variants[0]
    unlike = [flip(2**64 - 1, [k]) for k in range(7)]
    # b turned back (rot270) looks like a: both frames agree, within 1 bit
    copy = turned("/b.jpg", flip(rot90_of_a, [63]), (*unlike[:2], flip(0, [62]), *unlike[3:]), content="b")
    (g,) = find_groups([original, copy], MatchRule(4))
    member = g.members[1]
    assert member.distance == 1
    # a turned by rot90 is b, so b turned back by rot270 is a (or the other way round, by reference choice)
    assert {g.reference.file.path, member.file.path} == {"/a.jpg", "/b.jpg"}
    assert member.transform == ("rot270" if member.file.path == "/b.jpg" else "rot90")
    assert find_groups([original, copy], MatchRule(4, rotations=False)) == []
    # A match in one frame only (a look-alike that comes close once turned) is no match.
    one_frame = turned("/c.jpg", flip(rot90_of_a, [63]), tuple(unlike), content="c")
    assert find_groups([original, one_frame], MatchRule(4)) == []


# --- second opinion and bursts ----------------------------------------------------------------------------------


@st.composite
def mixed_records(draw: st.DrawFn) -> list[FileRecord]:
    """Clustered pHashes and dHashes, some shots of one camera a moment apart."""
    p_centres = draw(st.lists(_U64, min_size=1, max_size=4))
    d_centres = draw(st.lists(_U64, min_size=1, max_size=3))
    out: list[FileRecord] = []
    for n in range(draw(st.integers(1, 14))):
        p = flip(draw(st.sampled_from(p_centres)), draw(st.lists(st.integers(0, 63), max_size=12)))
        d = flip(draw(st.sampled_from(d_centres)), draw(st.lists(st.integers(0, 63), max_size=3)))
        camera = draw(st.sampled_from([None, "Canon EOS R6", "Pixel 7"]))
        taken = draw(
            st.sampled_from(
                [
                    None,
                    "2024-05-01T10:00:00",
                    "2024-05-01T10:00:00.500000",
                    "2024-05-01T10:00:01.900000",
                    "2024-05-01T10:00:09",
                ]
            )
        )
        out.append(record(f"/p/{n:03d}.jpg", p, dhash=d, camera=camera, taken=taken))
    return out


@settings(max_examples=200, deadline=None)
@given(mixed_records(), st.integers(0, 8), st.booleans(), st.booleans(), st.randoms(use_true_random=False))
def test_grouping_invariants_with_second_opinion_and_bursts(
    records: list[FileRecord], threshold: int, two_stage: bool, bursts_apart: bool, rnd: random.Random
) -> None:
    rule = MatchRule(threshold, True, two_stage, bursts_apart)
    groups = find_groups(records, rule)
    paths = [m.file.path for g in groups for m in g.members]
    assert len(paths) == len(set(paths))
    for g in groups:
        ref = g.reference.file.fingerprint
        for m in g.members[1:]:
            # every member matches the reference itself, for the reason it shows
            assert match(m.file.fingerprint, ref, rule) == Match(m.distance, m.transform, m.dhash)
            if m.dhash is not None:
                assert two_stage and m.distance <= CANDIDATE_PHASH and m.dhash <= 2
            else:
                assert m.distance <= threshold
        if bursts_apart:
            fps = [m.file.fingerprint for m in g.members]
            assert not any(same_burst(a, b) for a in fps for b in fps)
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert find_groups(shuffled, rule) == groups


def test_second_opinion_matches_a_farther_phash_only_when_dhash_agrees() -> None:
    a = record("/a.jpg", 0, dhash=0)
    b = record("/b.jpg", flip(0, list(range(10))), dhash=flip(0, [3]))
    c = record("/c.jpg", flip(0, list(range(20, 30))), dhash=flip(0, [3, 4, 5]))
    (g,) = find_groups([a, b, c])
    assert [m.file.path for m in g.members] == ["/a.jpg", "/b.jpg"]
    assert (g.members[1].distance, g.members[1].dhash, g.members[1].why) == (10, 1, "phash 10, dhash 1")
    assert find_groups([a, b, c], MatchRule(two_stage=False)) == []


def test_burst_shots_are_kept_apart_but_copies_of_one_shot_are_not() -> None:
    shot1 = record("/burst1.jpg", 0, camera="Canon", taken="2024-05-01T10:00:00.250000")
    shot2 = record("/burst2.jpg", flip(0, [1, 2]), camera="Canon", taken="2024-05-01T10:00:00.750000")
    copy1 = record("/copy_of_1.jpg", flip(0, [5]), camera="Canon", taken="2024-05-01T10:00:00.250000")
    later = record("/later.jpg", flip(0, [9]), camera="Canon", taken="2024-05-01T10:05:00")
    groups = find_groups([shot1, shot2, copy1, later])
    together = [sorted(m.file.path for m in g.members) for g in groups]
    assert ["/burst1.jpg", "/burst2.jpg"] not in together and not any(
        {"/burst1.jpg", "/burst2.jpg"} <= set(t) for t in together
    )
    assert any({"/burst1.jpg", "/copy_of_1.jpg"} <= set(t) for t in together)
    assert find_groups([shot1, shot2], MatchRule(bursts_apart=False)) != []
    assert find_groups([shot1, shot2]) == []
    other_camera = record("/b2.jpg", flip(0, [1, 2]), camera="Nikon", taken="2024-05-01T10:00:00.750000")
    assert len(find_groups([shot1, other_camera])) == 1


def test_a_burst_shot_reached_through_an_image_class_is_left_out_not_a_crash() -> None:
    # x1 and x2 hold the same image data; x2 carries the camera time of shot B's burst, x1 none. B's star may take
    # the class in through x1, but x2 is another shot of B's burst: it must not be grouped with B, nor crash.
    shot = record("/b.jpg", 0, camera="Pixel 7", taken="2024-05-01T10:00:00.500000", size=5000)
    x1 = record("/a1.jpg", flip(0, [1, 2]), content="x1", image="X")
    x2 = record("/a2.jpg", flip(0, [1, 2]), content="x2", image="X", camera="Pixel 7", taken="2024-05-01T10:00:01")
    for records in ([shot, x1, x2], [x2, x1, shot]):
        for g in find_groups(records):
            paths = {m.file.path for m in g.members}
            assert not {"/b.jpg", "/a2.jpg"} <= paths
            ref = g.reference.file.fingerprint
            assert all(m.match is not MatchKind.NEAR or match(m.file.fingerprint, ref, MatchRule(4)) for m in g.members)


# --- pictures that must not be grouped, and pairs marked as not duplicates (through scan) -------------------

SMALL = (400, 300)


def photo(path: Path, seed: int, size: tuple[int, int] = SMALL, **params: object) -> Path:
    return save(draw_photo(seed, size), path, **params)


def _gradient(c0: tuple[int, int, int], c1: tuple[int, int, int], vertical: bool, size: tuple[int, int]) -> Image.Image:
    w, h = size
    t = np.linspace(0.0, 1.0, h if vertical else w)
    line = np.array(c0, float)[None, :] * (1 - t[:, None]) + np.array(c1, float)[None, :] * t[:, None]
    a = np.repeat(line[:, None, :], w, axis=1) if vertical else np.repeat(line[None, :, :], h, axis=0)
    return Image.fromarray(a.astype(np.uint8))


def _groups(root: Path, tmp_path: Path, *extra: str) -> list[list[str]]:
    db = str(tmp_path / "store.sqlite")
    code, out = invoke("scan", root, "--db", db, "-q", "--format", "json", *extra)
    assert code == 0, out
    return [sorted(Path(f["path"]).name for f in g["files"]) for g in json.loads(out)["groups"]]


def test_two_different_gradients_are_not_grouped(tmp_path: Path) -> None:
    """A black-to-white vertical gradient and a blue-to-yellow horizontal one are not grouped, with
    --no-rotations --no-two-stage --no-crops neither: the pHash of any smooth gradient is
    0x8000000000000000 (its rounded DCT is zero outside one row or column, so the median is 0 and one bit is
    set), so such pictures count as saying nothing to a perceptual hash. (Their dHashes are 0 and all ones.)"""
    root = tmp_path / "photos"
    save(_gradient((0, 0, 0), (255, 255, 255), True, (640, 480)), root / "grey_vertical.png")
    save(_gradient((0, 0, 120), (255, 230, 0), False, (640, 480)), root / "blue_yellow_horizontal.png")
    assert _groups(root, tmp_path) == []
    assert _groups(root, tmp_path, "--no-rotations", "--no-two-stage", "--no-crops") == []


def test_not_duplicates_are_remembered_by_content_and_survive_renames(tmp_path: Path, store: Store) -> None:
    """Files the user said are not duplicates stay apart, by content: renaming one keeps it apart."""
    root = tmp_path / "p"
    a = photo(root / "a.jpg", 21, quality=95)
    photo(root / "b.jpg", 21, quality=60)
    a2 = copy_file(a, root / "c.jpg")
    (g,) = groups_of(store, root)
    hashes = {m.file.path: m.file.content_hash for m in g.members}
    store.add_not_duplicates([(hashes[str(a)], hashes[str(root / "b.jpg")])])
    (g,) = groups_of(store, root)  # a and its exact copy still group; b is apart now
    assert {m.file.path for m in g.members} == {str(a), str(a2)}
    (root / "b.jpg").rename(root / "renamed.jpg")
    a2.unlink()
    assert groups_of(store, root) == []


def test_the_engine_needs_no_pillow() -> None:
    """The grouping and everything it reads (match rule, pair search, library, store) import neither the Pillow
    module fingerprint nor Pillow: the constants they share live in models."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "dedupe"
    engine = ["group", "match", "pairs", "library", "models", "store", "store_base", "store_journal"]
    engine += ["store_library", "store_search"]
    for name in engine:
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not {"dedupe.fingerprint", "PIL", "imagehash"} & imported, name
        assert "fingerprint" not in names or "dedupe" not in imported, name
        assert all(dep.split(".")[0] in {"dedupe", "numpy", "pybktree"} or dep in _STDLIB for dep in imported), name


_STDLIB = {
    "__future__", "collections", "collections.abc", "concurrent.futures", "contextlib", "ctypes", "dataclasses",
    "datetime", "enum", "gc", "importlib.metadata", "importlib.util", "itertools", "math", "operator", "os", "pathlib",
    "re", "shlex", "sqlite3", "struct", "sys", "threading", "time", "types", "typing",
}  # fmt: skip


def test_a_truncated_photo_and_its_byte_copy_are_an_exact_group(tmp_path: Path, store: Store) -> None:
    """Two byte-identical files that cannot be decoded (a truncated JPEG) are still exact duplicates: byte
    identity needs no decoding. Both stay in the skipped list with the reason, and a plan acts on the copy."""
    root = tmp_path / "p"
    good = save(draw_photo(7, (400, 300)), tmp_path / "good.jpg").read_bytes()
    cut = root / "a.jpg"
    cut.parent.mkdir()
    cut.write_bytes(good[: len(good) // 3])
    twin = copy_file(cut, root / "b" / "a.jpg")
    (root / "other.jpg").write_bytes(good[: len(good) // 2])  # undecodable too, but other bytes
    (group,) = groups_of(store, root)
    assert group.kind is MatchKind.EXACT
    assert sorted(m.file.path for m in group.members) == sorted([str(cut), str(twin)])
    _, skipped, _ = stored_groups(store, [str(root)])
    assert {Path(s.path).name for s in skipped} == {"a.jpg", "other.jpg"} and len(skipped) == 3
    (step,) = plan([group], parse_rules("shortest"), Action.TRASH).steps
    assert step.file.path == str(twin) and step.keeper.path == str(cut)


def test_turned_copies_without_alpha_group_with_the_transparent_original(tmp_path: Path) -> None:
    """The second reading of a transparent picture is looked up as the first is: a copy that dropped the alpha
    channel and was turned, and one re-encoded at low quality, group with the transparent original among others."""
    pic = draw_photo(21, (900, 600)).convert("RGBA")
    pic.putalpha(pic.convert("L").point(lambda v: 24 + v * 196 // 255))
    paths = [save(pic, tmp_path / "overlay.png")]
    rgb = pic.convert("RGB")
    paths.append(save(rgb.transpose(Image.Transpose.ROTATE_90), tmp_path / "turned.jpg", quality=90))
    paths.append(save(rgb, tmp_path / "low.jpg", quality=40))
    paths += [save(draw_photo(30 + k, (900, 600)), tmp_path / f"other{k}.jpg", quality=90) for k in range(5)]
    records = [FileRecord(str(p), 1000 + k, 0, 1, k + 1, fingerprint_file(p)) for k, p in enumerate(paths)]
    groups = find_groups(records)
    assert [sorted(Path(m.file.path).name for m in g.members) for g in groups] == [
        ["low.jpg", "overlay.png", "turned.jpg"]
    ]
    assert {Path(m.file.path).name: m.transform is not None for m in groups[0].members}["turned.jpg"]


def _signatures(rng: np.random.Generator, n: int, copies: float) -> npt.NDArray[np.uint8]:
    """n crop signatures like real ones: random, but the first 40 windows' pHashes a bit or two from the picture's
    whole one (as a photo's large windows are), their dHashes a bit off and their colours the same; a share of the
    pictures crops of another (whole as one of its large windows, its pHash one bit off or not, the same dHash and
    colour): a window fits those better than the other's whole, as crop_agrees asks."""
    raw = rng.integers(0, 256, size=(n, CROP_BYTES), dtype=np.uint8)
    w = len(CROP_WINDOWS)
    ph = raw[:, : 8 * w].copy().view(">u8").astype(np.uint64)
    dh = raw[:, 8 * w : 16 * w].copy().view(">u8").astype(np.uint64)
    colour = raw[:, 16 * w :].reshape(n, w, 3)
    for k in range(1, 40):
        one, two = (np.uint64(1) << rng.integers(0, 64, n).astype(np.uint64) for _ in range(2))
        ph[:, k] = ph[:, 0] ^ one ^ two
        dh[:, k] = dh[:, 0] ^ one
        colour[:, k] = colour[:, 0]
    source, window = rng.integers(0, n, n), rng.integers(1, 40, n)
    copy = np.flatnonzero(rng.random(n) < copies)
    flip = rng.integers(0, 2, len(copy)).astype(np.uint64) << rng.integers(0, 64, len(copy)).astype(np.uint64)
    ph[copy, 0] = ph[source[copy], window[copy]] ^ flip
    dh[copy, 0] = dh[source[copy], window[copy]]
    colour[copy, 0] = colour[source[copy], window[copy]]
    raw[:, : 8 * w] = ph.astype(">u8").view(np.uint8).reshape(n, -1)
    raw[:, 8 * w : 16 * w] = dh.astype(">u8").view(np.uint8).reshape(n, -1)
    return raw


def _crop_pairs_unpacked(crops: npt.NDArray[np.uint8], rows: npt.NDArray[np.int64]) -> set[tuple[int, int]]:
    """The crop search as it was: every signature unpacked, every window looked up with pairs.join."""
    p, d, c = unpack_crops(crops[rows])
    n = len(rows)
    qi, tj = join(p[:, 1:].T.ravel(), p[:, 0], CROP_PHASH, same=False)
    window, outer, inner = qi // n + 1, qi % n, tj
    ok = (outer != inner) & crop_agrees(p, d, c, outer, window, inner)
    return set(zip(np.minimum(outer, inner)[ok].tolist(), np.maximum(outer, inner)[ok].tolist(), strict=True))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 60), st.floats(0, 1))
def test_the_crop_search_finds_the_pairs_of_every_window_looked_up(seed: int, n: int, copies: float) -> None:
    """crop_pairs gives the pairs of the plain search (every signature unpacked, every window looked up among the
    whole pictures); a picture's windows close to its own whole are no pair of it with itself, and rows not in
    order or repeated pictures (ties) change nothing."""
    rng = np.random.default_rng(seed)
    crops = _signatures(rng, n + 3, copies)
    crops[: n // 4] = crops[n // 4 : 2 * (n // 4)]  # ties: the same signature twice
    rows = rng.permutation(n + 3)[:n].astype(np.int64)
    x, y = crop_pairs(crops, rows)
    assert bool((x < y).all())
    assert set(zip(x.tolist(), y.tolist(), strict=True)) == _crop_pairs_unpacked(crops, rows)


def test_the_crop_search_over_many_pictures_is_the_plain_search() -> None:
    """At 5,000 pictures (half a million windows, looked up a slab at a time) the same pairs as the plain search."""
    rng = np.random.default_rng(3)
    crops = _signatures(rng, 5_000, 0.2)
    rows = np.arange(5_000, dtype=np.int64)
    x, y = crop_pairs(crops, rows)
    expected = _crop_pairs_unpacked(crops, rows)
    assert set(zip(x.tolist(), y.tolist(), strict=True)) == expected and len(expected) > 200
