"""The pair search (pairs.py): exact, the same answer as a BK-tree and as comparing every pair."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupe import pairs as pairs_module
from dedupe.models import hamming
from dedupe.pairs import as_hashes, cross_pairs, join, join_within, near_pairs, near_pairs_bktree

_U64 = st.integers(min_value=0, max_value=2**64 - 1)


def flip(value: int, bits: list[int]) -> int:
    for b in bits:
        value ^= 1 << b
    return value


def _flip_some(value: int, rng: random.Random, most: int) -> int:
    return flip(value, rng.sample(range(64), rng.randrange(most + 1)))


@st.composite
def clustered_hashes(draw: st.DrawFn) -> list[int]:
    """Hashes in tight clusters, with exact repeats: the hard case for the search."""
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


@settings(max_examples=150, deadline=None)
@given(st.lists(_U64, max_size=30), st.lists(_U64, max_size=30), st.integers(0, 10))
def test_cross_pair_search_is_exact(queries: list[int], targets: list[int], threshold: int) -> None:
    # Close values: make half the queries near some target.
    queries = [
        flip(targets[i % len(targets)], [i % 64, (i * 7) % 64]) if targets and i % 2 else q
        for i, q in enumerate(queries)
    ]
    brute = sorted((i, j) for i, q in enumerate(queries) for j, t in enumerate(targets) if hamming(q, t) <= threshold)
    assert cross_pairs(queries, targets, threshold) == brute


@settings(max_examples=150, deadline=None)
@given(clustered_hashes(), clustered_hashes(), st.integers(0, 12))
def test_cross_pair_search_walks_runs_of_many_targets(queries: list[int], targets: list[int], threshold: int) -> None:
    """A cross search among clusters with repeats (a key shared by many targets, walked through its run) is exact."""
    targets = [*targets, *targets]  # runs longer than the few positions checked one after another
    brute = sorted((i, j) for i, q in enumerate(queries) for j, t in enumerate(targets) if hamming(q, t) <= threshold)
    assert cross_pairs(queries, targets, threshold) == brute


@contextmanager
def _threads(threaded: bool) -> Iterator[None]:
    """The cross search's choices of blocks shared between threads however little there is to do, or never."""
    saved = pairs_module._THREADED_WORK
    pairs_module._THREADED_WORK = 0 if threaded else 2**62
    try:
        yield
    finally:
        pairs_module._THREADED_WORK = saved


@settings(max_examples=150, deadline=None)
@given(clustered_hashes(), clustered_hashes(), st.integers(0, 12), st.booleans())
def test_a_cross_search_with_the_pairs_among_its_targets_is_both_searches(
    queries: list[int], targets: list[int], threshold: int, threaded: bool
) -> None:
    """join_within gives the cross pairs and the pairs among the targets, threaded or not; those among distinct
    targets are the BK-tree's near pairs."""
    targets = [*targets, *targets[:3]]  # repeats: runs of one key
    with _threads(threaded):
        qi, tj, a, b = join_within(as_hashes(queries), as_hashes(targets), threshold)
    cross = sorted((i, j) for i, x in enumerate(queries) for j, y in enumerate(targets) if hamming(x, y) <= threshold)
    assert list(zip(qi.tolist(), tj.tolist(), strict=True)) == cross
    n = len(targets)
    among = [(i, j) for i in range(n) for j in range(i + 1, n) if hamming(targets[i], targets[j]) <= threshold]
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == among
    distinct = sorted(set(targets))
    with _threads(threaded):
        a, b = join_within(as_hashes(queries), as_hashes(distinct), threshold)[2:]
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == near_pairs_bktree(distinct, threshold)


@pytest.mark.parametrize(
    ("threshold", "plan"),
    [
        *[(4, (5, 1)), (4, (6, 2)), (4, (7, 3)), (2, (3, 1)), (0, (1, 1)), (9, None)],
        *[(6, (12, 4)), (6, (13, 4)), (4, (9, 3))],  # coverings: not every choice of blocks
    ],
)
def test_every_join_plan_is_exact(threshold: int, plan: tuple[int, int] | None) -> None:
    # Large inputs choose keys of two blocks and more (folded into the table when wider): all must be exact.
    rng = random.Random(threshold)
    base = [rng.getrandbits(64) for _ in range(120)]
    values = [*base, *(_flip_some(v, rng, threshold + 2) for v in base for _ in range(2)), base[0]]
    queries = [_flip_some(v, rng, threshold + 2) for v in values[::3]]
    arr, qarr = np.array(values, dtype=np.uint64), np.array(queries, dtype=np.uint64)
    same = [
        (i, j)
        for i in range(len(values))
        for j in range(i + 1, len(values))
        if hamming(values[i], values[j]) <= threshold
    ]
    cross = [(i, j) for i, q in enumerate(queries) for j, v in enumerate(values) if hamming(q, v) <= threshold]
    i, j = join(arr, arr, threshold, same=True, plan=plan)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == same
    i, j = join(qarr, arr, threshold, same=False, plan=plan)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == cross
    assert len(same) > 40 and len(cross) > 20  # near pairs are there to find


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 11), st.data())
def test_a_covering_holds_a_clean_choice_for_every_set_of_differing_blocks(blocks: int, data: st.DataObject) -> None:
    """Whichever threshold blocks two values differ in, some choice of the covering lies in the other blocks."""
    threshold = data.draw(st.integers(0, blocks - 1))
    agree = data.draw(st.integers(1, blocks - threshold))
    choices = pairs_module._covering(blocks, agree, threshold)
    assert all(len(set(c)) == agree for c in choices)
    for dirty in itertools.combinations(range(blocks), threshold):
        assert any(not set(c) & set(dirty) for c in choices)


@pytest.mark.parametrize("key", sorted(pairs_module._SOLVED))
def test_a_stored_covering_holds_a_clean_choice_for_every_set_of_differing_blocks(key: tuple[int, int, int]) -> None:
    """A covering found once and stored is a covering, with fewer choices than the greedy one."""
    blocks, agree, threshold = key
    choices = pairs_module._covering(blocks, agree, threshold)
    assert all(len(set(c)) == agree and max(c) < blocks for c in choices)
    for dirty in itertools.combinations(range(blocks), threshold):
        assert any(not set(c) & set(dirty) for c in choices)
    saved = pairs_module._SOLVED.pop(key)
    pairs_module._COVERINGS.pop(key)
    try:
        assert len(choices) < len(pairs_module._covering(blocks, agree, threshold))
    finally:
        pairs_module._SOLVED[key] = saved
        pairs_module._COVERINGS.pop(key)


@settings(max_examples=100, deadline=None)
@given(clustered_hashes(), clustered_hashes(), st.integers(0, 6), st.data())
def test_a_join_by_a_covering_is_exact(
    queries: list[int], targets: list[int], threshold: int, data: st.DataObject
) -> None:
    """Keys of fewer blocks than must agree, chosen by a covering (not every choice), find every pair once."""
    blocks = data.draw(st.integers(threshold + 2, 13))
    plan = (blocks, data.draw(st.integers(1, blocks - threshold - 1)))
    qarr, tarr = as_hashes(queries), as_hashes(targets)
    i, j = join(qarr, tarr, threshold, same=False, plan=plan)
    cross = [(a, b) for a, q in enumerate(queries) for b, t in enumerate(targets) if hamming(q, t) <= threshold]
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == cross
    i, j = join(tarr, tarr, threshold, same=True, plan=plan)
    n = len(targets)
    same = [(a, b) for a in range(n) for b in range(a + 1, n) if hamming(targets[a], targets[b]) <= threshold]
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == same


@settings(max_examples=150, deadline=None)
@given(clustered_hashes(), clustered_hashes(), st.integers(0, 8), st.integers(0, 2**32), st.booleans())
def test_a_join_with_marks_keeps_the_pairs_whose_mask_and_mark_meet(
    queries: list[int], targets: list[int], threshold: int, seed: int, threaded: bool
) -> None:
    """With marks, join gives exactly the pairs within the threshold whose query's mask and target's mark share a
    bit: keys whose targets' marks miss together are passed over, a target marked with no bit pairs with nothing."""
    rng = np.random.default_rng(seed)
    targets = [*targets, *targets[:4]]  # runs of one key, their targets marked apart
    masks = rng.integers(0, 256, len(queries)).astype(np.uint8) & rng.integers(0, 256, len(queries)).astype(np.uint8)
    bits = np.uint8(1) << rng.integers(0, 8, len(targets)).astype(np.uint8)
    marks = (bits * (rng.random(len(targets)) < 0.9)).astype(np.uint8)
    with _threads(threaded):
        i, j = join(as_hashes(queries), as_hashes(targets), threshold, same=False, marks=(masks, marks))
    brute = [
        (a, b)
        for a, q in enumerate(queries)
        for b, t in enumerate(targets)
        if hamming(q, t) <= threshold and int(masks[a]) & int(marks[b])
    ]
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == brute


def test_near_pairs_leave_out_equal_values_and_read_signed_hashes() -> None:
    """Equal values are no near pair; a hash held signed (as SQLite keeps it) is the same hash."""
    values = [0, 0, 1, -1, 2**64 - 1]
    assert near_pairs(values, 2) == [(0, 2), (1, 2)]
    assert near_pairs(values, 64) == near_pairs_bktree([v & (2**64 - 1) for v in values], 64)
    assert cross_pairs([-1], [2**64 - 1, 0], 0) == [(0, 0)]
