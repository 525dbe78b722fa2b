from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupe.group import _plan, _search, find_groups, hamming, near_pairs, near_pairs_bktree
from dedupe.models import FileRecord, Fingerprint, MatchKind

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
) -> FileRecord:
    content = content or f"c-{path}"
    fp = Fingerprint(
        content_hash=content,
        image_hash=image or f"i-{content}",
        format="JPEG",
        width=100,
        height=100,
        phash=phash,
        dhash=0,
        taken=None,
        low_info=low_info,
    )
    return FileRecord(path, size, 0, 1, ino if ino is not None else abs(hash(path)), fp)


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


@settings(max_examples=150, deadline=None)
@given(clustered_hashes(), st.integers(0, 12))
def test_fast_pair_search_equals_the_bktree(values: list[int], threshold: int) -> None:
    distinct = sorted(set(values))
    assert near_pairs(distinct, threshold) == near_pairs_bktree(distinct, threshold)


def test_fast_pair_search_on_random_hashes() -> None:
    rng = random.Random(4)
    base = [rng.getrandbits(64) for _ in range(300)]
    values = sorted({*base, *(flip(v, rng.sample(range(64), rng.randrange(12))) for v in base)})
    for t in (1, 4, 8, 10):
        assert near_pairs(values, t) == near_pairs_bktree(values, t)


def _records(values: list[int]) -> list[FileRecord]:
    return [record(f"/p/{i:03d}.jpg", v) for i, v in enumerate(values)]


@settings(max_examples=150, deadline=None)
@given(clustered_hashes(), st.integers(0, 12), st.randoms(use_true_random=False))
def test_grouping_invariants(values: list[int], threshold: int, rnd: random.Random) -> None:
    records = _records(values)
    groups = find_groups(records, threshold)
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
    assert find_groups(shuffled, threshold) == groups
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
    groups = find_groups(_records([a, b, c]), threshold=8)
    assert len(groups) == 1
    (g,) = groups
    assert g.reference.file.fingerprint.phash == b  # the centre, within 8 of both ends
    far = find_groups(_records([a, b, c, flip(c, list(range(16, 24)))]), threshold=8)
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


@pytest.mark.parametrize(("threshold", "blocks", "errors"), [(4, 3, 1), (3, 4, 0), (8, 3, 2), (6, 4, 1), (12, 13, 0)])
def test_every_search_plan_equals_the_bktree(threshold: int, blocks: int, errors: int) -> None:
    # Small inputs always get the cheapest plan; large ones enumerate near keys. Both must be exact.
    rng = random.Random(threshold * 100 + blocks)
    base = [rng.getrandbits(64) for _ in range(150)]
    values = sorted({*base, *(flip(v, rng.sample(range(64), rng.randrange(threshold + 3))) for v in base)})
    arr = np.array(values, dtype=np.uint64)
    assert _search(arr, threshold, blocks, errors) == near_pairs_bktree(values, threshold)


def test_large_inputs_plan_to_enumerate_near_keys() -> None:
    assert _plan(1_000_000, 4) == (3, 1)
    assert _plan(100, 4)[1] == 0
