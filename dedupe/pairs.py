"""The pair search over 64-bit hashes: every pair of values within a number of differing bits, exactly.

One engine (join): the 64 bits are cut into blocks, and two values within t bits agree on all but t of them, so
every such pair shares a key made of some choice of blocks; each choice is one table lookup. near_pairs and
cross_pairs are its plain-list forms; near_pairs_bktree answers as near_pairs does, from a BK-tree, and is the
reference the fast path is tested against.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import pybktree

from dedupe.models import hamming

_MAX_KEY_BITS = 22  # block keys index a dense table of 2**bits bucket starts (16 MiB at 22 bits)


_SLAB = 4_000_000  # candidate pairs examined at once, to keep memory flat


def near_pairs(values: Sequence[int], threshold: int) -> list[tuple[int, int]]:
    """All index pairs (i < j) whose values differ in 1..threshold bits, sorted (equal values are no pair)."""
    if len(values) < 2 or threshold <= 0:
        return []
    arr = as_hashes(values)
    i, j = join(arr, arr, threshold, same=True)
    keep = arr[i] != arr[j]
    return list(zip(i[keep].tolist(), j[keep].tolist(), strict=True))


def cross_pairs(queries: Sequence[int], targets: Sequence[int], threshold: int) -> list[tuple[int, int]]:
    """All (query index, target index) pairs within the threshold (0 included), sorted."""
    i, j = join(as_hashes(queries), as_hashes(targets), threshold, same=False)
    return list(zip(i.tolist(), j.tolist(), strict=True))


def as_hashes(values: Sequence[int]) -> npt.NDArray[np.uint64]:
    """64-bit hashes, held signed or not, as an unsigned array."""
    return np.fromiter((v & 0xFFFFFFFFFFFFFFFF for v in values), dtype=np.uint64, count=len(values))


def near_pairs_bktree(values: Sequence[int], threshold: int) -> list[tuple[int, int]]:
    """The same answer as near_pairs, from a BK-tree: the reference the fast path is tested against."""
    tree = pybktree.BKTree(lambda a, b: hamming(a[0], b[0]), [(v, i) for i, v in enumerate(values)])
    pairs = set()
    for i, v in enumerate(values):
        for d, (_, j) in tree.find((v, i), threshold):
            if d > 0 and i < j:
                pairs.add((i, j))
    return sorted(pairs)


def join(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    threshold: int,
    *,
    same: bool,
    plan: tuple[int, int] | None = None,
    marks: Marks | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """All (query index, target index) pairs within the threshold (0 included), sorted; with same (queries is
    targets) only i < j. Exact: split the 64 bits into m blocks; two values within t bits agree exactly on at
    least m - t blocks, so every pair shares the key made of some m - t blocks (each such choice is one table
    lookup, and a pair is kept only by the first choice that finds it).

    marks (not with same): a mask of bits for each query and a mark for each target; only the pairs whose mask and
    mark share a bit are wanted. The caller's own condition on another property (say, coarse cells of a colour)
    put as bits: a key whose targets' marks all miss the query's mask is passed over without reading them."""
    nq, nt = len(queries), len(targets)
    empty = np.zeros(0, dtype=np.int64)
    if threshold < 0 or nq == 0 or nt == 0:
        return empty, empty
    if marks is not None:
        assert not same
        return _marked_join(queries, targets, threshold, plan, marks)
    threshold = min(threshold, 64)
    if threshold == 64:
        i, j = np.divmod(np.arange(nq * nt, dtype=np.int64), nt)
        keep = i < j if same else np.ones(len(i), dtype=bool)
        return i[keep], j[keep]
    if not same:
        spans, combos = _blocks(plan, threshold) if plan else _cross_plan(nq, nt, threshold)
        return _cross(queries, targets, threshold, spans, combos, within=False)[0]
    spans, combos = _blocks(plan or _join_plan(max(nq, nt), threshold), threshold)
    kind = np.uint16 if max(width for _, width in spans) <= 16 else np.uint64
    tblocks = [((targets >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(kind) for shift, width in spans]
    found: list[npt.NDArray[np.int64]] = []
    for c, combo in enumerate(combos):
        # A pair belongs to the first choice whose blocks it agrees on: this one (a folded key can meet other
        # values too) and no earlier one.
        own = _combo_mask(spans, combo)
        earlier = [_combo_mask(spans, e) for e in combos[:c]]
        tkeys, bits = _block_key(tblocks, spans, combo)
        torder = _argsort_keys(tkeys, bits)
        found.extend(_pairs_within_buckets(targets, tkeys[torder], torder, threshold, own, earlier))
    if not found:
        return empty, empty
    codes = np.sort(np.concatenate(found))
    return np.divmod(codes, nt)


# join's marks: a mask per query, a mark per target (of one unsigned kind of 8 or 16 bits)
Marks = tuple[npt.NDArray[np.unsignedinteger[Any]], npt.NDArray[np.unsignedinteger[Any]]]


def _marked_join(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    threshold: int,
    plan: tuple[int, int] | None,
    marks: Marks,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """join with marks: targets marked with no bit can pair with nothing and are left out of the tables; a pair
    found under a key whose other targets' marks met the query's mask is dropped when its own do not."""
    masks, tmarks = marks
    at = np.flatnonzero(tmarks)
    threshold = min(threshold, 64)
    if not len(at):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    if threshold == 64:
        i, j = np.divmod(np.arange(len(queries) * len(at), dtype=np.int64), len(at))
    else:
        spans, combos = _blocks(plan, threshold) if plan else _cross_plan(len(queries), len(at), threshold)
        i, j = _cross(queries, targets[at], threshold, spans, combos, within=False, marks=(masks, tmarks[at]))[0]
    keep = (masks[i] & tmarks[at[j]]) != 0
    return i[keep], at[j[keep]]


def join_within(
    queries: npt.NDArray[np.uint64], targets: npt.NDArray[np.uint64], threshold: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """join(queries, targets, threshold, same=False) and join(targets, targets, threshold, same=True) at once, each
    pair as join gives it. The pairs among the targets are those within the runs of one key in the tables the
    cross search makes anyway, so the targets need not look themselves up (each would meet itself under every
    choice of blocks)."""
    nq, nt = len(queries), len(targets)
    threshold = min(threshold, 64)
    if threshold < 0 or threshold == 64 or nq == 0 or nt < 2:
        return (*join(queries, targets, threshold, same=False), *join(targets, targets, threshold, same=True))
    spans, combos = _cross_plan(nq, nt, threshold)
    cross, among = _cross(queries, targets, threshold, spans, combos, within=True)
    return (*cross, *among)


def _blocks(plan: tuple[int, int], threshold: int) -> tuple[list[tuple[int, int]], list[tuple[int, ...]]]:
    """The blocks of a plan (so many blocks, keys of so many) as (shift, width), and the choices of blocks that
    make the keys (see _covering)."""
    blocks, agree = plan
    assert blocks - agree >= min(threshold, blocks)
    return _spans(blocks), _covering(blocks, agree, threshold)


def _spans(blocks: int) -> list[tuple[int, int]]:
    """The 64 bits cut into so many blocks, as (shift, width)."""
    edges = [round(64 * k / blocks) for k in range(blocks + 1)]
    return [(edges[k], edges[k + 1] - edges[k]) for k in range(blocks)]


def _cross_plan(nq: int, nt: int, threshold: int) -> tuple[list[tuple[int, int]], list[tuple[int, ...]]]:
    """The blocks and the choices of blocks with the least estimated work for a cross join: those of _join_plan
    (every choice of the blocks that must agree), or a covering of more, smaller blocks (see _covering) whose
    keys are as wide but fewer."""
    plans = [_blocks(_join_plan(max(nq, nt), threshold), threshold)]
    if nq * nt >= _COVERING_WORK:
        bits = min(_MAX_KEY_BITS, max(16, max(nq, nt).bit_length()))
        for blocks in range(threshold + 2, _COVERING_BLOCKS + 1):
            for agree in range(1, blocks - threshold):
                if bits - 3 <= 64 * agree / blocks <= bits:  # folded keys cost more to make and meet more targets
                    plans.append(_blocks((blocks, agree), threshold))
    return min(plans, key=lambda plan: _cross_cost(nq, nt, *plan))


_COVERING_WORK = 1 << 36  # pairs of queries and targets from which a covering may pay (below, the choice costs)


_COVERING_BLOCKS = 13  # the most blocks a covering is sought for (its search grows with their choices)


def _cross_cost(nq: int, nt: int, spans: list[tuple[int, int]], combos: list[tuple[int, ...]]) -> float:
    """The estimated time of a cross join by these choices of blocks, roughly in ns (profiled on a 2-core EPYC at
    a million targets): each query's key costs half a pass a block, its lookup a few passes more, and each target
    met under a key (about nt / 2**width of them) some 30 more."""
    work = 0.0
    for combo in combos:
        width = min(sum(spans[k][1] for k in combo), _MAX_KEY_BITS)
        work += nq * (3 + 0.5 * len(combo) + 30 * nt / 2**width) + nt * 10
    return work


def _covering(blocks: int, agree: int, threshold: int) -> list[tuple[int, ...]]:
    """Choices of agree blocks of these blocks such that any blocks - threshold of them hold one: two values within
    the threshold differ in at most threshold blocks, so they agree on the blocks of some choice. Fewer than all
    choices when agree < blocks - threshold (within 6 bits, 12 blocks by 4: 56 choices of 20-24-bit keys, where
    9 blocks by 3 take all 84 of 21-22 bits). One of _SOLVED, or found greedily (each choice holds the most
    differing-block sets not yet held), then trimmed of choices the others make needless; deterministic, and kept."""
    if agree >= blocks - threshold:
        return list(itertools.combinations(range(blocks), agree))
    if (blocks, agree, threshold) in _COVERINGS:
        return _COVERINGS[blocks, agree, threshold]
    if (blocks, agree, threshold) in _SOLVED:
        found = [tuple(int(k, 16) for k in c) for c in _SOLVED[blocks, agree, threshold].split()]
        _COVERINGS[blocks, agree, threshold] = found
        return found
    choices = list(itertools.combinations(range(blocks), agree))
    dirty = list(itertools.combinations(range(blocks), min(threshold, blocks)))
    choice_bits = np.array([sum(1 << k for k in c) for c in choices], dtype=np.int64)
    dirty_bits = np.array([sum(1 << k for k in d) for d in dirty], dtype=np.int64)
    clean = (choice_bits[:, None] & dirty_bits[None, :]) == 0  # choice c holds when the dirty blocks are d
    left = np.ones(len(dirty), dtype=bool)
    chosen: list[int] = []
    while left.any():
        best = int(np.argmax(clean[:, left].sum(axis=1)))
        chosen.append(best)
        left &= ~clean[best]
    for c in list(chosen):
        rest = [k for k in chosen if k != c]
        if clean[rest].any(axis=0).all():
            chosen = rest
    found = _COVERINGS[blocks, agree, threshold] = [choices[c] for c in sorted(chosen)]
    return found


_COVERINGS: dict[tuple[int, int, int], list[tuple[int, ...]]] = {}


# Coverings found by an integer program (scipy's HiGHS, 5 minutes, not proven the least), with fewer choices than
# the greedy one, as hexadecimal blocks: (blocks, agree, threshold) -> choices. Within 6 bits by 12 blocks, keys of
# 4 (the crop search): 56 choices, where the greedy covering takes 62.
_SOLVED = {
    (12, 4, 6): (
        "0123 014b 0157 0168 0169 018a 0235 0246 0257 0289 02ab 0349 036b 0458 047a 056a 059b 078b 124a 126b "
        "1279 1346 135a 137b 1389 13ab 1459 1478 158b 167a 19ab 2348 2357 236a 239b 247b 249b 2568 259a 2679 "
        "278a 345b 3569 358a 3678 379a 389b 4567 4689 468a 46ab 48ab 5789 57ab 679b 689a "
    ),
}


_QUERY_SLAB = 1 << 17  # queries looked up at once: their arrays stay in the cache


def _cross(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    threshold: int,
    spans: list[tuple[int, int]],
    combos: list[tuple[int, ...]],
    *,
    within: bool,
    marks: Marks | None = None,
) -> tuple[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """join of queries and other targets; with within, also the pairs among the targets (see join_within). For
    each choice of blocks the targets are put in tables by key (none, one or several targets; where their run
    starts in key order); the queries look their keys up a slab at a time, and only keys holding several targets
    are walked. With much to do, the choices of blocks are shared out between threads (numpy lets go of the GIL
    while it looks up a slab)."""
    workers = min(_CROSS_THREADS, len(combos), os.cpu_count() or 1)
    if workers < 2 or len(queries) * len(combos) < _THREADED_WORK:
        parts = [_cross_part(queries, targets, threshold, spans, combos, range(len(combos)), within, marks)]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="dedupe-join") as pool:
            shares = [range(k, len(combos), workers) for k in range(workers)]  # widths of keys alike in each
            parts = list(
                pool.map(
                    lambda share: _cross_part(queries, targets, threshold, spans, combos, share, within, marks), shares
                )
            )
    nt = len(targets)
    return _decode([c for found, _ in parts for c in found], nt), _decode([c for _, among in parts for c in among], nt)


def _decode(found: list[npt.NDArray[np.int64]], n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pairs found as codes i * n + j, as sorted arrays of i and j."""
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.divmod(np.sort(np.concatenate(found)), n)


_CROSS_THREADS = 2  # each holds tables of its own (about 70 MiB at 22-bit keys)


_THREADED_WORK = 1 << 17  # queries times choices of blocks from which threads pay


def _cross_part(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    threshold: int,
    spans: list[tuple[int, int]],
    combos: list[tuple[int, ...]],
    share: range,
    within: bool,
    marks: Marks | None,
) -> tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.int64]]]:
    """_cross for the choices of blocks at these positions of combos: the pairs found, as codes; and with within,
    the pairs among the targets."""
    nq, nt = len(queries), len(targets)
    # Keys wider than so many values need are folded: the tables stay small for few.
    widest = max(sum(spans[k][1] for k in combo) for combo in combos)
    bits = min(widest, _MAX_KEY_BITS, max(16, max(nq, nt).bit_length()))
    # Tables reused from one choice of blocks to the next, cleared where they were written. Every lookup reads the
    # small table of marks (4 MiB at 22-bit keys); only a key met reads its run, which also says how many targets
    # it holds. (A key's first target is read through its run, sorted_values[run_of[key]]: a table of first values
    # would take another 32 MiB per thread at 22-bit keys, for no time saved.) Positions are held in 32 bits where
    # the targets allow: the table of runs is then 16 MiB a thread at 22-bit keys, not 32.
    position = np.int32 if nt < 2**_SHIFT32 else np.int64
    shift = position(_SHIFT32 if nt < 2**_SHIFT32 else _SHIFT64)
    mark_of = np.zeros(1 << bits, dtype=np.uint8 if marks is None else marks[1].dtype)  # its targets' marks together
    run_of = np.zeros(1 << bits, dtype=position)  # where its run starts in key order; above shift 1, 2 or 3: more
    run_end = np.zeros(nt, dtype=position)  # at the start of each run of three targets or more, where it ends
    slab = min(max(nq, nt), _QUERY_SLAB)
    buffers = (np.empty(slab, dtype=np.uint64), np.empty(slab, dtype=np.uint64))
    tkeys = np.empty(nt, dtype=np.int32)  # the targets' keys, made a slab at a time (below 2**_MAX_KEY_BITS)
    found: list[npt.NDArray[np.int64]] = []
    among: list[npt.NDArray[np.int64]] = []
    for c in share:
        combo = combos[c]
        own = _combo_mask(spans, combo)
        earlier = [_combo_mask(spans, e) for e in combos[:c]]
        parts = [spans[k] for k in combo]
        for start in range(0, nt, slab):
            values = targets[start : start + slab]
            tkeys[start : start + len(values)] = _slab_key(
                values, parts, buffers[0][: len(values)], buffers[1][: len(values)], bits
            )
        torder: npt.NDArray[np.signedinteger[Any]] = _argsort_keys(tkeys, bits).astype(position)
        sorted_keys = tkeys[torder]
        sorted_values = targets[torder]
        heads: npt.NDArray[np.signedinteger[Any]] = np.nonzero(run_heads(sorted_keys))[0].astype(position)
        sizes = np.diff(heads, append=position(nt))
        head_keys = sorted_keys[heads]
        del sorted_keys
        mark_of[head_keys] = 1 if marks is None else np.bitwise_or.reduceat(marks[1][torder], heads)
        run_of[head_keys] = heads | (np.minimum(sizes, 3) << shift)
        several = sizes > 1
        longer = sizes > 2
        run_end[heads[longer]] = heads[longer] + sizes[longer]
        if within:
            among.extend(_pairs_in_runs(targets, torder, heads[several], sizes[several], threshold, own, earlier))
        del heads, sizes, several, longer
        for start in range(0, nq, _QUERY_SLAB):
            values = queries[start : start + _QUERY_SLAB]
            keys = _slab_key(values, parts, buffers[0][: len(values)], buffers[1][: len(values)], bits)
            # (np.take gathers a quarter faster than indexing; a bool array is searched several times faster.)
            met = np.take(mark_of, keys)
            if marks is not None:
                np.bitwise_and(met, marks[0][start : start + _QUERY_SLAB], out=met)
            hit = np.nonzero(met != 0)[0]
            values = np.take(values, hit)
            firsts = np.take(run_of, np.take(keys, hit))
            kinds = firsts >> shift
            firsts &= (1 << shift) - 1
            keep = _confirm(values ^ np.take(sorted_values, firsts), threshold, own, earlier)
            if len(keep):
                found.append((hit[keep] + start) * nt + torder[firsts[keep]])
            more = np.nonzero(kinds >= 2)[0]
            if len(more):
                # The second target of each run of several (most runs hold two), then the rest of longer runs
                # at once.
                hit, values, firsts, kinds = hit[more], values[more], firsts[more], kinds[more]
                at = firsts + 1
                keep = _confirm(values ^ np.take(sorted_values, at), threshold, own, earlier)
                if len(keep):
                    found.append((hit[keep] + start) * nt + torder[at[keep]])
                more = np.nonzero(kinds == 3)[0]
                if len(more):
                    at = at[more].astype(np.int64) + 1
                    stop = run_end[firsts[more]].astype(np.int64)
                    rest = _pairs_in_buckets(
                        queries, targets, torder, hit[more] + start, at, stop - at, threshold, own, earlier
                    )
                    found.extend(rest)
        mark_of[head_keys] = 0
    return found, among


_SHIFT32, _SHIFT64 = 29, 61  # where the size of a key's run is held in run_of, with positions of 32 bits or 64


def _slab_key(
    values: npt.NDArray[np.uint64],
    parts: list[tuple[int, int]],
    out: npt.NDArray[np.uint64],
    scratch: npt.NDArray[np.uint64],
    bits: int,
) -> npt.NDArray[np.int64]:
    """The key of each value made of the chosen blocks (shift, width), folded to at most bits bits, written into
    out. Neighbouring blocks are cut out together, and each run moved straight to its place in the key: a pass
    or three a run, not four a block."""
    runs: list[list[int]] = []
    for shift, width in parts:
        if runs and runs[-1][0] + runs[-1][1] == shift:
            runs[-1][1] += width
        else:
            runs.append([shift, width])
    at = 0
    for shift, width in runs:
        part = out if at == 0 else scratch
        if shift > at:
            np.right_shift(values, np.uint64(shift - at), out=part)
            np.bitwise_and(part, np.uint64(((1 << width) - 1) << at), out=part)
        else:
            np.bitwise_and(values, np.uint64(((1 << width) - 1) << at), out=part)
        if at:
            np.bitwise_or(out, part, out=out)
        at += width
    if at > bits:
        np.copyto(scratch, out)
        for shift in range(bits, at, bits):
            np.bitwise_xor(out, scratch >> np.uint64(shift), out=out)
        np.bitwise_and(out, np.uint64((1 << bits) - 1), out=out)
    return out.view(np.int64)


def _join_plan(n: int, threshold: int) -> tuple[int, int]:
    """The number of blocks and of blocks that must agree with the least estimated work for n values."""
    best: tuple[float, int, int] | None = None
    for blocks in range(threshold + 1, 65):
        agree = blocks - threshold
        combos = math.comb(blocks, agree)
        bits = min(64 * agree / blocks, _MAX_KEY_BITS)
        cost = combos * (2 * n + (1 << int(bits)) / 8 + n * n / 2**bits)
        if best is None or cost < best[0]:
            best = (cost, blocks, agree)
        if combos > 1000:
            break
    assert best is not None
    return best[1], best[2]


def _block_key(
    blocks: list[npt.NDArray[np.generic]], spans: list[tuple[int, int]], combo: tuple[int, ...]
) -> tuple[npt.NDArray[np.signedinteger[Any]], int]:
    """The key of each value made of the chosen blocks, folded to at most _MAX_KEY_BITS bits; and its bits."""
    width = sum(spans[k][1] for k in combo)
    if width <= _MAX_KEY_BITS:
        key = blocks[combo[0]].astype(np.int32)
        for k in combo[1:]:
            key <<= spans[k][1]
            key |= blocks[k].astype(np.int32)
        return key, width
    wide = np.zeros(len(blocks[0]), dtype=np.uint64)
    for k in combo:
        wide = (wide << np.uint64(spans[k][1])) | blocks[k].astype(np.uint64)
    folded = wide
    for shift in range(_MAX_KEY_BITS, 64, _MAX_KEY_BITS):
        folded = folded ^ (wide >> np.uint64(shift))
    return (folded & np.uint64((1 << _MAX_KEY_BITS) - 1)).astype(np.int64), _MAX_KEY_BITS


def _argsort_keys(keys: npt.NDArray[np.signedinteger[Any]], bits: int) -> npt.NDArray[np.intp]:
    """A stable argsort of keys below 2**bits: two 16-bit radix passes when that is enough."""
    if bits > 32:
        return np.argsort(keys, kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if bits > 16:
        order = order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]
    return order


def _combo_mask(spans: list[tuple[int, int]], combo: tuple[int, ...]) -> int:
    return sum(((1 << bits) - 1) << shift for shift, bits in (spans[k] for k in combo))


def _confirm(x: npt.NDArray[np.uint64], threshold: int, own: int, earlier: list[int]) -> npt.NDArray[np.intp]:
    """Where the differences are within the threshold, zero under own and not left to an earlier choice of blocks."""
    keep = np.flatnonzero(np.bitwise_count(x) <= threshold)
    if len(keep):
        near = x[keep]
        mine = (near & np.uint64(own)) == 0
        for mask in earlier:
            mine &= (near & np.uint64(mask)) != 0
        keep = keep[mine]
    return keep


def _expand(
    rows: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64], lo: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each row repeated sizes times, beside the positions lo .. lo + size - 1."""
    total = int(sizes.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(rows, sizes), np.repeat(lo, sizes) + offsets


def _slabs(sizes: npt.NDArray[np.int64]) -> Iterator[tuple[int, int]]:
    """Consecutive ranges [first, last) of rows whose sizes (candidate pairs) add up to about _SLAB, one row at
    least: the pairs of one range are expanded at once, so memory stays flat however many there are."""
    ends = np.cumsum(sizes)
    first = 0
    while first < len(sizes):
        base = ends[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(ends, base + _SLAB, side="right")))
        yield first, last
        first = last


def _pairs_within_buckets(
    values: npt.NDArray[np.uint64],
    sorted_keys: npt.NDArray[np.signedinteger[Any]],
    order: npt.NDArray[np.intp],
    threshold: int,
    own: int,
    earlier: list[int],
) -> Iterator[npt.NDArray[np.int64]]:
    """Pairs (as i * n + j, i < j) within the threshold among values of one key (values[order] in key order)."""
    heads = np.flatnonzero(run_heads(sorted_keys))
    sizes = np.diff(heads, append=len(sorted_keys))
    several = sizes > 1
    return _pairs_in_runs(values, order, heads[several], sizes[several], threshold, own, earlier)


def _pairs_in_runs(
    values: npt.NDArray[np.uint64],
    order: npt.NDArray[np.signedinteger[Any]],
    heads: npt.NDArray[np.signedinteger[Any]],
    sizes: npt.NDArray[np.signedinteger[Any]],
    threshold: int,
    own: int,
    earlier: list[int],
) -> Iterator[npt.NDArray[np.int64]]:
    """Pairs (as i * n + j, i < j) within the threshold among values of one key, given the runs of several values
    in key order (values[order]: each starts at heads and is sizes long)."""
    n = len(values)
    if not len(heads):
        return
    sizes = sizes.astype(np.int64)
    offsets = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    positions = np.repeat(heads.astype(np.int64), sizes) + offsets
    later = np.repeat(sizes, sizes) - offsets - 1  # each position pairs with the later positions of its run
    rows = np.flatnonzero(later)
    for first, last in _slabs(later[rows]):
        part = rows[first:last]
        p, q = _expand(positions[part], later[part], positions[part] + 1)
        a, b = order[p], order[q]
        keep = _confirm(values[a] ^ values[b], threshold, own, earlier)
        a, b = a[keep], b[keep]
        if len(a):
            yield np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)


def _pairs_in_buckets(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    torder: npt.NDArray[np.signedinteger[Any]],
    rows: npt.NDArray[np.int64],
    lo: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    threshold: int,
    own: int,
    earlier: list[int],
) -> Iterator[npt.NDArray[np.int64]]:
    """Pairs (as i * len(targets) + j) within the threshold among each query rows[r] and the bucket of target
    positions lo[r] .. lo[r] + counts[r] (in torder)."""
    nt = len(targets)
    for first, last in _slabs(counts):
        i, at = _expand(rows[first:last], counts[first:last], lo[first:last])
        j = torder[at]
        keep = _confirm(queries[i] ^ targets[j], threshold, own, earlier)
        i, j = i[keep], j[keep]
        if len(i):
            yield i.astype(np.int64) * nt + j


def differs(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = values[1:] != values[:-1]
    return out


def run_heads(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Where each run of equal values starts."""
    heads: npt.NDArray[np.bool_] = np.r_[len(values) > 0, differs(values)][: len(values)]
    return heads
