"""The match rule (match.py): MatchRule in force for a number of pictures, the one hamming and kind ranking, and
match on two fingerprints agreeing with the rule on columns (explain) that the grouping uses."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedupe.fingerprint import fingerprint_file
from dedupe.group import stored_groups
from dedupe.library import Library
from dedupe.match import (
    CANDIDATE_PHASH,
    CROP_CHROMA,
    CROP_DHASH,
    CROP_LUMA,
    CROP_PHASH,
    CROP_SEARCH_LIMIT,
    KIND_RANK,
    KINDS,
    MatchRule,
    explain,
    hamming,
    match,
    readings,
    searches_crops,
    unpack_crops,
)
from dedupe.models import CROP_BYTES, TRANSFORMS, FileRecord, MatchKind, ScanOptions
from dedupe.scan import scan
from dedupe.store import Store
from tests.conftest import draw_photo, load_bench, make_record, save, transparent_logo


def test_a_rule_in_force_decides_crops_by_the_number_of_pictures() -> None:
    """crops None is on up to CROP_SEARCH_LIMIT pictures and off beyond; True and False stay as asked."""
    assert MatchRule().for_count(CROP_SEARCH_LIMIT).crops is True
    assert MatchRule().for_count(CROP_SEARCH_LIMIT + 1).crops is False
    assert MatchRule(crops=True).for_count(10**9).crops is True
    assert MatchRule(crops=False).for_count(2).crops is False
    for pictures in (0, 2, CROP_SEARCH_LIMIT + 1):
        assert MatchRule().for_count(pictures).crops is searches_crops(pictures, None)


def test_at_threshold_zero_only_identical_pictures_match() -> None:
    """At threshold 0 the rule in force has neither the second opinion nor crops; the rest is kept."""
    rule = MatchRule(0, rotations=False, bursts_apart=False, crops=True).for_count(5)
    assert rule == MatchRule(0, rotations=False, two_stage=False, bursts_apart=False, crops=False)
    assert MatchRule(5).for_count(5) == MatchRule(5, crops=True)
    a = make_record("/a.jpg", phash=0, dhash=0).fingerprint
    b = make_record("/b.jpg", content_hash="b", phash=(1 << 10) - 1, dhash=1).fingerprint
    assert match(a, b, MatchRule(0).for_count(2)) is None
    assert match(a, b, MatchRule(4).for_count(2)) is not None  # by the second opinion


def test_hamming_counts_differing_bits_of_signed_and_unsigned_hashes() -> None:
    """One hamming for hashes held unsigned (fingerprints) or signed (SQLite): the same 64 bits."""
    assert hamming(0, 2**64 - 1) == 64
    assert hamming(-1, 0) == 64
    assert hamming(-1, 2**64 - 1) == 0
    assert hamming(0b1011, 0b0001) == 2


def test_match_kinds_rank_from_strongest_to_weakest() -> None:
    assert KINDS == (MatchKind.EXACT, MatchKind.IMAGE, MatchKind.NEAR)
    assert sorted(MatchKind, key=KIND_RANK.__getitem__) == list(KINDS)


def _fingerprinted(rng: random.Random, n: int) -> list[FileRecord]:
    """Pictures near one another in pHash and dHash, some turned, some shots of one burst."""
    base = rng.getrandbits(64)
    out = []
    for k in range(n):
        flips = sum(1 << b for b in rng.sample(range(64), rng.randrange(CANDIDATE_PHASH + 4)))
        variants = tuple(base ^ (1 << (k % 64)) ^ (1 << t) for t in range(len(TRANSFORMS))) if k % 3 else ()
        out.append(
            make_record(
                f"/p/{k:03d}.jpg",
                ino=k,
                content_hash=f"c{k}",
                image_hash=f"i{k}",
                phash=base ^ flips,
                dhash=rng.getrandbits(3),
                variants=variants,
                camera=rng.choice([None, "Pixel 7"]),
                taken=rng.choice([None, "2024-05-01T10:00:00", "2024-05-01T10:00:01.500000"]),
            )
        )
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 12), st.booleans(), st.booleans(), st.booleans())
def test_match_on_columns_is_match_on_fingerprints(
    seed: int, threshold: int, rotations: bool, two_stage: bool, bursts_apart: bool
) -> None:
    """explain (the rule on a Library's columns) says what match says of every pair, and why."""
    records = _fingerprinted(random.Random(seed), 12)
    lib = Library.from_records(records)
    rule = MatchRule(threshold, rotations, two_stage, bursts_apart, crops=False)
    n = len(records)
    a, b = (x.ravel().astype(np.int64) for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    got = explain(lib, a, b, rule)
    for k, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        m = match(records[i].fingerprint, records[j].fingerprint, rule)
        assert bool(got.ok[k]) is (m is not None)
        if m is not None:
            transform = None if got.transform[k] < 0 else TRANSFORMS[got.transform[k]]
            dhash = None if got.dhash[k] < 0 else int(got.dhash[k])
            assert (int(got.distance[k]), transform, dhash) == (m.distance, m.transform, m.dhash)


def _semi_transparent(seed: int) -> Image.Image:
    """A picture whose every pixel is partly transparent, more so towards the top."""
    im = draw_photo(seed, (900, 600)).convert("RGBA")
    im.putalpha(Image.linear_gradient("L").rotate(90).resize(im.size).point(lambda v: 20 + v * 200 // 255))
    return im


def test_copies_that_drop_the_alpha_channel_group_with_the_transparent_original(tmp_path: Path) -> None:
    """A semi-transparent PNG groups with its copies converted to JPEG, WebP and PNG or resized by a tool that drops
    the alpha channel (they show the colours under it), while its flattened reading alone matches none of them."""
    root = tmp_path / "photos"
    original = save(_semi_transparent(7), root / "overlay.png")
    rgb = _semi_transparent(7).convert("RGB")
    save(rgb, root / "copy.jpg", quality=85)
    save(rgb, root / "copy.webp", quality=80)
    save(rgb, root / "copy.png")
    save(rgb.resize((450, 300)), root / "half.jpg", quality=90)
    save(draw_photo(8, (900, 600)), root / "other.jpg", quality=90)
    flattened = readings(fingerprint_file(original))[0]
    assert all(match(flattened, fingerprint_file(root / n), MatchRule()) is None for n in ("copy.jpg", "half.jpg"))
    with Store.open(tmp_path / "store.sqlite") as store:
        scan([str(root)], store, ScanOptions(workers=1))
        groups, _, _ = stored_groups(store, [str(root)])
    assert [sorted(Path(m.file.path).name for m in g.members) for g in groups] == [
        ["copy.jpg", "copy.png", "copy.webp", "half.jpg", "overlay.png"]
    ]


def test_two_transparent_logos_on_one_background_do_not_group(tmp_path: Path) -> None:
    """Two different logos cut by their alpha from one colour layer read alike by their colours alone, but two
    pictures with transparency are compared flattened, and do not group."""
    root = tmp_path / "logos"
    ring = fingerprint_file(save(transparent_logo(8, ring=True), root / "ring.png"))
    cross = fingerprint_file(save(transparent_logo(8, ring=False), root / "cross.png"))
    assert readings(ring)[1].phash == readings(cross)[1].phash
    assert match(ring, cross, MatchRule()) is None
    with Store.open(tmp_path / "store.sqlite") as store:
        scan([str(root)], store, ScanOptions(workers=1))
        assert stored_groups(store, [str(root)])[0] == []


def _one_design_in_two_colourings(seed: int) -> tuple[Image.Image, Image.Image]:
    """Two pictures of one design (two blurred layers of discs) coloured two ways, as a wallpaper series is, each
    brightened by adding 20% of white (+51 of 255): bench/crops.py's drawing."""
    first, second = (im.point(lambda x: min(255, x + 51)) for im in load_bench("crops").two_colourings(seed))
    return first, second


def test_one_design_in_other_colours_brightened_is_no_crop_of_it(tmp_path: Path) -> None:
    """Two pictures of one design in other colours, both brightened with white, are no crop of each other: a window
    of one comes within the crop rule's hash bounds of the other's whole, with mean colours that the white has
    brought together, but the two whole pictures fit each other better than that window, so neither shows less.
    The +20% white copies of the Ubuntu MATE Cold and Radioactive wallpapers are such a pair."""
    root = tmp_path / "series"
    first, second = _one_design_in_two_colourings(109)
    a = fingerprint_file(save(first, root / "cold.jpg", quality=90))
    b = fingerprint_file(save(second, root / "radioactive.jpg", quality=90))
    p, d, c = unpack_crops(np.frombuffer(a.crops + b.crops, dtype=np.uint8).reshape(2, CROP_BYTES))
    window_p = np.bitwise_count(p[0, 1:] ^ p[1, 0]).astype(np.int64)
    window_d = np.bitwise_count(d[0, 1:] ^ d[1, 0]).astype(np.int64)
    colour = np.abs(c[0, 1:].astype(np.int16) - c[1, 0])
    close = (window_p <= CROP_PHASH) & (window_d <= CROP_DHASH)
    close &= (colour[:, :2].max(axis=1) <= CROP_CHROMA) & (colour[:, 2] <= CROP_LUMA)
    whole = int(np.bitwise_count(p[0, 0] ^ p[1, 0])) * 65 + int(np.bitwise_count(d[0, 0] ^ d[1, 0]))
    assert close.any() and (window_p * 65 + window_d)[close].min() > whole
    assert match(a, b, MatchRule(crops=True)) is None
    with Store.open(tmp_path / "store.sqlite") as store:
        scan([str(root)], store, ScanOptions(workers=1))
        assert stored_groups(store, [str(root)])[0] == []
