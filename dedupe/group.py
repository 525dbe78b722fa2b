"""Pure grouping of fingerprinted files: exact, same-image and near duplicates. No I/O.

Near duplicates are clustered around a reference: every member of a near group is within the threshold of
the group's reference, so a chain of small steps never joins two unlike photos.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pybktree

from dedupe.models import DuplicateGroup, FileRecord, GroupMember, MatchKind, Summary

DEFAULT_THRESHOLD = 4  # bits of 64 in pHash: the largest with no false pair on the benchmark, see README.md
MAX_THRESHOLD = 32

# Bucket comparisons are done in slabs of at most this many pairs, to keep memory flat.
_SLAB = 4_000_000


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_pairs(values: Sequence[int], threshold: int) -> list[tuple[int, int]]:
    """All index pairs (i < j) whose values differ in 1..threshold bits, sorted.

    Multi-index search: split the 64 bits into threshold + 1 blocks; by the pigeonhole principle two values
    within the threshold agree exactly on at least one block, so only values sharing a block are compared.
    The answer is exact, the same as querying a BK-tree with every value.
    """
    n = len(values)
    if n < 2 or threshold <= 0:
        return []
    arr = np.fromiter((v & 0xFFFFFFFFFFFFFFFF for v in values), dtype=np.uint64, count=n)
    blocks = min(threshold + 1, 64)
    edges = [round(64 * k / blocks) for k in range(blocks + 1)]
    found: list[npt.NDArray[np.int64]] = []
    for b in range(blocks):
        shift, width = edges[b], edges[b + 1] - edges[b]
        keys = (arr >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], n]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            if end - start >= 2:
                found.extend(_bucket_pairs(arr, order[start:end], threshold))
    if not found:
        return []
    codes = np.unique(np.concatenate(found))
    return [(int(c) // n, int(c) % n) for c in codes]


def _bucket_pairs(
    arr: npt.NDArray[np.uint64], idx: npt.NDArray[np.intp], threshold: int
) -> list[npt.NDArray[np.int64]]:
    """Pairs within the threshold inside one bucket, encoded as i * n + j with i < j."""
    n = len(arr)
    idx = np.sort(idx)
    vals = arr[idx]
    size = len(idx)
    out: list[npt.NDArray[np.int64]] = []
    rows = max(1, _SLAB // size)
    for lo in range(0, size - 1, rows):
        hi = min(size - 1, lo + rows)
        dist = np.bitwise_count(vals[lo:hi, None] ^ vals[None, :])
        ii, jj = np.nonzero(dist <= threshold)
        keep = jj > ii + lo  # upper triangle, and never a value with itself
        if keep.any():
            i = idx[ii[keep] + lo].astype(np.int64)
            j = idx[jj[keep]].astype(np.int64)
            out.append(i * n + j)
    return out


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
    for i in sorted(range(len(node_values)), key=lambda i: (-len(neighbours[i]), node_key(i))):
        if i in assigned:
            continue
        star = [i, *sorted(j for j in neighbours[i] if j not in assigned)]
        assigned.update(star)
        clusters.append((node_values[i], [h for m in star for h in nodes[node_values[m]]]))
    clusters.extend((None, s) for s in solitary)

    groups = [_make_group([f for h in hashes for f in by_image[h]], centre) for centre, hashes in clusters]
    return sorted((g for g in groups if len(g.members) > 1), key=lambda g: g.reference.file.path)


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


def split_not_duplicates(
    groups: Iterable[DuplicateGroup], pairs: Collection[tuple[str, str]], threshold: int = DEFAULT_THRESHOLD
) -> list[DuplicateGroup]:
    """Take apart what the user said are not duplicates: no two members of a group form a remembered pair.

    Pairs are content hashes as (smaller, larger); a pair of one hash with itself means "these identical
    copies are meant to be kept". A group keeps its members in order while they fit; the members left over
    form groups of their own, each member within the threshold of its new reference.
    """
    if not pairs:
        return list(groups)

    def apart(a: FileRecord, b: FileRecord) -> bool:
        x, y = a.content_hash, b.content_hash
        return (min(x, y), max(x, y)) in pairs

    out: list[DuplicateGroup] = []
    for group in groups:
        files = [m.file for m in group.members]
        while len(files) > 1:
            accepted: list[FileRecord] = []
            rest: list[FileRecord] = []
            for f in files:
                fits = not any(apart(f, a) for a in accepted) and (not accepted or _close(accepted[0], f, threshold))
                (accepted if fits else rest).append(f)
            if len(accepted) > 1:
                ref = accepted[0]
                centre = None if ref.fingerprint.low_info else ref.fingerprint.phash
                out.append(_make_group(accepted, centre))
            files = rest
    return sorted(out, key=lambda g: g.reference.file.path)


def _close(ref: FileRecord, f: FileRecord, threshold: int) -> bool:
    if f.fingerprint.image_hash == ref.fingerprint.image_hash:
        return True
    if ref.fingerprint.low_info or f.fingerprint.low_info:
        return False
    return hamming(ref.fingerprint.phash, f.fingerprint.phash) <= threshold


def summarize(groups: Sequence[DuplicateGroup], images: int, skipped: int) -> Summary:
    return Summary(
        images=images,
        groups=len(groups),
        duplicate_files=sum(len(g.members) - 1 for g in groups),
        reclaimable_bytes=sum(g.reclaimable_bytes for g in groups),
        skipped=skipped,
    )
