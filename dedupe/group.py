"""Pure grouping of fingerprinted files: exact, same-image and near duplicates. No I/O.

Near duplicates are clustered around a reference: every member of a near group is within the threshold of
the group's reference, so a chain of small steps never joins two unlike photos.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pybktree

from dedupe.models import DuplicateGroup, FileRecord, GroupMember, MatchKind, Summary

DEFAULT_THRESHOLD = 4  # bits of 64 in pHash: the largest with no false pair on the benchmark, see README.md
MAX_THRESHOLD = 32

_MAX_KEY_BITS = 22  # block keys index a dense table of 2**bits bucket starts (16 MiB at 22 bits)
_SLAB = 4_000_000  # candidate pairs examined at once, to keep memory flat


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_pairs(values: Sequence[int], threshold: int) -> list[tuple[int, int]]:
    """All index pairs (i < j) whose values differ in 1..threshold bits, sorted.

    Multi-index search: split the 64 bits into m blocks; by the pigeonhole principle two values within the
    threshold differ in at most threshold // m bits of some block, so each value is only compared with the
    values whose key in some block is within that many bits of its own (every such key is enumerated and
    looked up in a table). The answer is exact, the same as querying a BK-tree with every value.
    """
    n = len(values)
    if n < 2 or threshold <= 0:
        return []
    try:
        arr = np.array(values, dtype=np.uint64)
    except OverflowError:
        arr = np.fromiter((v & 0xFFFFFFFFFFFFFFFF for v in values), dtype=np.uint64, count=n)
    return _search(arr, min(threshold, 64), *_plan(n, min(threshold, 64)))


def _search(arr: npt.NDArray[np.uint64], threshold: int, blocks: int, errors: int) -> list[tuple[int, int]]:
    """near_pairs with a given plan: blocks * (errors + 1) must exceed the threshold."""
    assert blocks * (errors + 1) > threshold
    n = len(arr)
    edges = [round(64 * k / blocks) for k in range(blocks + 1)]
    spans = [(edges[b], edges[b + 1] - edges[b]) for b in range(blocks)]
    found: list[npt.NDArray[np.int64]] = []
    for b, (shift, width) in enumerate(spans):
        keys = ((arr >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        starts = np.zeros((1 << width) + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys, minlength=1 << width), out=starts[1:])
        keys = keys[order]  # queries in key order walk the table nearly in order: far fewer cache misses
        for mask in _masks(width, errors):
            query = keys ^ mask
            lo = starts[query]
            counts = starts[query + 1] - lo
            found.extend(_candidates(arr, order, lo, counts, threshold, spans[:b], errors))
    if not found:
        return []
    codes = np.sort(np.concatenate(found))
    i, j = np.divmod(codes, n)
    return list(zip(i.tolist(), j.tolist(), strict=True))


def _plan(n: int, threshold: int) -> tuple[int, int]:
    """The number of blocks and the bits of difference enumerated per block key with the least estimated work."""
    best: tuple[float, int, int] | None = None
    for blocks in range(3, 65):
        width = -(-64 // blocks)
        if width > _MAX_KEY_BITS:
            continue
        errors = threshold // blocks
        variants = sum(math.comb(width, k) for k in range(errors + 1))
        cost = blocks * ((1 << width) + variants * n * (1 + n / (1 << width)))
        if best is None or cost < best[0]:
            best = (cost, blocks, errors)
        if errors == 0:
            break  # more blocks only make smaller keys and bigger buckets
    assert best is not None
    return best[1], best[2]


def _masks(width: int, errors: int) -> Iterator[int]:
    for k in range(errors + 1):
        for bits in itertools.combinations(range(width), k):
            yield sum(1 << bit for bit in bits)


def _candidates(
    arr: npt.NDArray[np.uint64],
    order: npt.NDArray[np.intp],
    lo: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    threshold: int,
    earlier: list[tuple[int, int]],
    errors: int,
) -> Iterator[npt.NDArray[np.int64]]:
    """Pairs (as i * n + j, i < j) within the threshold among each value (by rank in key order: row r is the
    value order[r]) and the bucket of order positions lo[r] .. lo[r] + counts[r] that it looks up.

    A pair that some earlier block also finds is left to that block, so every pair comes out once.
    """
    n = len(arr)
    active = np.flatnonzero(counts)
    if len(active) == 0:
        return
    ends = np.cumsum(counts[active])
    first = 0
    while first < len(active):
        base = ends[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(ends, base + _SLAB, side="right")))
        rows = active[first:last]
        sizes = counts[rows]
        total = int(sizes.sum())
        offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        i = order[np.repeat(rows, sizes)]
        j = order[np.repeat(lo[rows], sizes) + offsets]
        keep = i < j
        i, j = i[keep], j[keep]
        x = arr[i] ^ arr[j]
        keep = np.bitwise_count(x) <= threshold
        for shift, width in earlier:
            keep &= np.bitwise_count((x >> np.uint64(shift)) & np.uint64((1 << width) - 1)) > errors
        keep &= x != 0
        if keep.any():
            yield i[keep] * n + j[keep]
        first = last


def near_pairs_bktree(values: Sequence[int], threshold: int) -> list[tuple[int, int]]:
    """The same answer as near_pairs, from a BK-tree: the reference the fast path is tested against."""
    tree = pybktree.BKTree(lambda a, b: hamming(a[0], b[0]), [(v, i) for i, v in enumerate(values)])
    pairs = set()
    for i, v in enumerate(values):
        for d, (_, j) in tree.find((v, i), threshold):
            if d > 0 and i < j:
                pairs.add((i, j))
    return sorted(pairs)


def find_groups(records: Iterable[FileRecord], threshold: int = DEFAULT_THRESHOLD) -> list[DuplicateGroup]:
    """Group files holding the same picture. Deterministic: input order never changes the answer."""
    files = _distinct_files(records)
    # Classes of the same image data (which includes identical bytes).
    by_image: dict[str, list[FileRecord]] = defaultdict(list)
    for f in files:
        by_image[f.fingerprint.image_hash].append(f)
    # Nodes of identical pHash among images with enough detail to compare; low-information images only
    # group with their own image class.
    nodes: dict[int, list[str]] = defaultdict(list)
    solitary: list[list[str]] = []
    for image_hash, members in by_image.items():
        fp = members[0].fingerprint
        if fp.low_info:
            solitary.append([image_hash])
        else:
            nodes[fp.phash].append(image_hash)
    node_values = sorted(nodes)
    neighbours: dict[int, set[int]] = defaultdict(set)
    for i, j in near_pairs(node_values, threshold):
        neighbours[i].add(j)
        neighbours[j].add(i)

    def node_key(i: int) -> str:
        return min(f.path for h in nodes[node_values[i]] for f in by_image[h])

    clusters: list[tuple[int | None, list[str]]] = []
    assigned: set[int] = set()
    # The best-connected node becomes a reference first; ties go to the smallest path, never to input order.
    # A node with no neighbour is its own cluster whatever the order, so only linked nodes are ordered.
    for i in sorted(neighbours, key=lambda i: (-len(neighbours[i]), node_key(i))):
        if i in assigned:
            continue
        star = [i, *sorted(j for j in neighbours[i] if j not in assigned)]
        assigned.update(star)
        clusters.append((node_values[i], [h for m in star for h in nodes[node_values[m]]]))
    for i, value in enumerate(node_values):
        hashes = nodes[value]
        if i not in neighbours and (len(hashes) > 1 or len(by_image[hashes[0]]) > 1):
            clusters.append((value, hashes))
    clusters.extend((None, s) for s in solitary)

    groups = [
        _make_group([f for h in hashes for f in by_image[h]], centre)
        for centre, hashes in clusters
        if len(hashes) > 1 or len(by_image[hashes[0]]) > 1  # a lone file is no group: skip the work
    ]
    return sorted(groups, key=lambda g: g.reference.file.path)


def _distinct_files(records: Iterable[FileRecord]) -> list[FileRecord]:
    """One record per file: hardlinks and paths reaching one inode are the same file, not duplicates."""
    by_inode: dict[tuple[int, int], FileRecord] = {}
    for r in records:
        key = (r.dev, r.ino)
        if key not in by_inode or r.path < by_inode[key].path:
            by_inode[key] = r
    return sorted(by_inode.values(), key=lambda r: r.path)


def _quality(f: FileRecord) -> tuple[int, int, str]:
    return (-(f.fingerprint.width * f.fingerprint.height), -f.size, f.path)


def _make_group(files: list[FileRecord], centre: int | None) -> DuplicateGroup:
    # The reference is the best copy among the files at the cluster's centre, so that every member is
    # within the threshold of it.
    ref = min((f for f in files if centre is None or f.fingerprint.phash == centre), key=_quality)
    members: list[GroupMember] = [GroupMember(ref, MatchKind.EXACT, 0)]
    for f in files:
        if f is ref:
            continue
        if f.content_hash == ref.content_hash:
            members.append(GroupMember(f, MatchKind.EXACT, 0))
        elif f.fingerprint.image_hash == ref.fingerprint.image_hash:
            members.append(GroupMember(f, MatchKind.IMAGE, 0))
        else:
            members.append(GroupMember(f, MatchKind.NEAR, hamming(f.fingerprint.phash, ref.fingerprint.phash)))
    order = {MatchKind.EXACT: 0, MatchKind.IMAGE: 1, MatchKind.NEAR: 2}
    rest = sorted(members[1:], key=lambda m: (order[m.match], m.distance, m.file.path))
    kind = max((m.match for m in rest), key=order.__getitem__, default=MatchKind.EXACT)
    return DuplicateGroup(kind=kind, members=(members[0], *rest))


def summarize(groups: Sequence[DuplicateGroup], images: int, skipped: int) -> Summary:
    return Summary(
        images=images,
        groups=len(groups),
        duplicate_files=sum(len(g.members) - 1 for g in groups),
        reclaimable_bytes=sum(g.reclaimable_bytes for g in groups),
        skipped=skipped,
    )
