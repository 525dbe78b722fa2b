"""Pure grouping of fingerprinted files: exact, same-image and near duplicates. No I/O.

Near duplicates are clustered around a reference: every member of a near group matches the group's reference
itself (see find_groups for the rule: pHash, turned and mirrored pHashes, a dHash second opinion, bursts kept
apart), so a chain of small steps never joins two unlike photos.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pybktree

from dedupe.models import INVERSE, TRANSFORMS, DuplicateGroup, FileRecord, Fingerprint, GroupMember, MatchKind, Summary

DEFAULT_THRESHOLD = 4  # bits of 64 in pHash: the largest with no false pair on the benchmark, see README.md
MAX_THRESHOLD = 32
# Second opinion (measured on the benchmark, see README.md): pHash within 16 bits confirmed by dHash within 2.
CANDIDATE_PHASH = 16
CONFIRM_DHASH = 2
BURST_SECONDS = 2.0  # shots of one camera this close in time are a burst, not copies

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
    return _multi_index(arr, arr, threshold, blocks, errors, same=True)


def _multi_index(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    threshold: int,
    blocks: int,
    errors: int,
    *,
    same: bool,
) -> list[tuple[int, int]]:
    """(query, target) index pairs within the threshold, sorted, each once. With same (queries is targets):
    only i < j, and never two equal values."""
    assert blocks * (errors + 1) > threshold
    nt = len(targets)
    edges = [round(64 * k / blocks) for k in range(blocks + 1)]
    spans = [(edges[b], edges[b + 1] - edges[b]) for b in range(blocks)]
    found: list[npt.NDArray[np.int64]] = []
    for b, (shift, width) in enumerate(spans):
        bits = np.uint64((1 << width) - 1)
        tkeys = ((targets >> np.uint64(shift)) & bits).astype(np.int64)
        torder = np.argsort(tkeys, kind="stable")
        starts = np.zeros((1 << width) + 1, dtype=np.int64)
        np.cumsum(np.bincount(tkeys, minlength=1 << width), out=starts[1:])
        if same:
            qorder, qkeys = torder, tkeys[torder]
        else:
            qk = ((queries >> np.uint64(shift)) & bits).astype(np.int64)
            qorder = np.argsort(qk, kind="stable")
            qkeys = qk[qorder]
        # Queries in key order walk the table nearly in order: far fewer cache misses.
        for mask in _masks(width, errors):
            query = qkeys ^ mask
            lo = starts[query]
            counts = starts[query + 1] - lo
            found.extend(_candidates(queries, qorder, targets, torder, lo, counts, threshold, spans[:b], errors, same))
    if not found:
        return []
    codes = np.sort(np.concatenate(found))
    i, j = np.divmod(codes, nt)
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
    queries: npt.NDArray[np.uint64],
    qorder: npt.NDArray[np.intp],
    targets: npt.NDArray[np.uint64],
    torder: npt.NDArray[np.intp],
    lo: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    threshold: int,
    earlier: list[tuple[int, int]],
    errors: int,
    same: bool,
) -> Iterator[npt.NDArray[np.int64]]:
    """Pairs (as i * len(targets) + j) within the threshold among each query (by rank in key order: row r is
    the query qorder[r]) and the bucket of target positions lo[r] .. lo[r] + counts[r] that it looks up.

    A pair that some earlier block also finds is left to that block, so every pair comes out once.
    """
    nt = len(targets)
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
        i = qorder[np.repeat(rows, sizes)]
        j = torder[np.repeat(lo[rows], sizes) + offsets]
        if same:
            keep = i < j
            i, j = i[keep], j[keep]
        x = queries[i] ^ targets[j]
        keep = np.bitwise_count(x) <= threshold
        for shift, width in earlier:
            keep &= np.bitwise_count((x >> np.uint64(shift)) & np.uint64((1 << width) - 1)) > errors
        if same:
            keep &= x != 0
        if keep.any():
            yield i[keep].astype(np.int64) * nt + j[keep]
        first = last


def cross_pairs(queries: Sequence[int], targets: Sequence[int], threshold: int) -> list[tuple[int, int]]:
    """All (query index, target index) pairs within the threshold (0 included), sorted; exact, by multi-index.

    Used to look up every turned and mirrored pHash of a picture among the upright pHashes of all others.
    """
    nq, nt = len(queries), len(targets)
    if nq == 0 or nt == 0 or threshold < 0:
        return []
    qa = np.fromiter((v & 0xFFFFFFFFFFFFFFFF for v in queries), dtype=np.uint64, count=nq)
    ta = np.fromiter((v & 0xFFFFFFFFFFFFFFFF for v in targets), dtype=np.uint64, count=nt)
    threshold = min(threshold, 64)
    return _multi_index(qa, ta, threshold, *_plan(max(nq, nt), threshold), same=False)


def match_distance(a: Fingerprint, b: Fingerprint) -> tuple[int, str | None]:
    """How far picture a is from picture b, allowing a to be turned or mirrored when both know their variants.

    Returns the distance and the transform t that turns a into (something like) b, None when upright is best.
    A turned match is measured in both pictures' frames, t(a) against b and t's inverse of b against a, and
    the larger distance counts: pHash distances shift when a picture is turned, and a look-alike that is 6 bits
    away upright can come 4 bits close in one turned frame (measured on the benchmark), never in both.
    Ties go to upright, then to the order of models.TRANSFORMS. Symmetric: b to a is as far, by t's inverse.
    """
    best, how = hamming(a.phash, b.phash), None
    if len(a.variants) != len(TRANSFORMS) or len(b.variants) != len(TRANSFORMS):
        return best, how
    index = {name: k for k, name in enumerate(TRANSFORMS)}
    for k, name in enumerate(TRANSFORMS):
        back = index[INVERSE.get(name, name)]
        d = max(hamming(a.variants[k], b.phash), hamming(b.variants[back], a.phash))
        if d < best:
            best, how = d, name
    return best, how


def near_pairs_bktree(values: Sequence[int], threshold: int) -> list[tuple[int, int]]:
    """The same answer as near_pairs, from a BK-tree: the reference the fast path is tested against."""
    tree = pybktree.BKTree(lambda a, b: hamming(a[0], b[0]), [(v, i) for i, v in enumerate(values)])
    pairs = set()
    for i, v in enumerate(values):
        for d, (_, j) in tree.find((v, i), threshold):
            if d > 0 and i < j:
                pairs.add((i, j))
    return sorted(pairs)


@dataclass(frozen=True, slots=True)
class MatchRule:
    """When two pictures count as the same: see find_groups."""

    threshold: int = DEFAULT_THRESHOLD
    rotations: bool = True
    two_stage: bool = True
    bursts_apart: bool = True


_Key = tuple[int, tuple[int, ...], int, str, str]


def find_groups(
    records: Iterable[FileRecord],
    threshold: int = DEFAULT_THRESHOLD,
    *,
    rotations: bool = True,
    two_stage: bool = True,
    bursts_apart: bool = True,
) -> list[DuplicateGroup]:
    """Group files holding the same picture. Deterministic: input order never changes the answer.

    A file matches another when (see match):
    - their pHashes are within the threshold; with rotations, also when one of them turned or mirrored is
      within the threshold of the other in both pictures' frames (the member says which transform);
    - with two_stage, also when two independent hashes agree: pHash within CANDIDATE_PHASH (a looser first
      pass) confirmed by dHash within CONFIRM_DHASH (the member shows both distances);
    - with bursts_apart, never when both come from one camera and were taken 0 < dt <= BURST_SECONDS apart
      (shots of one burst are similar, not copies); copies of one shot keep its exact time.
    Groups are stars around a reference: every member matches the reference itself.
    """
    rule = MatchRule(threshold, rotations, two_stage, bursts_apart)
    files = _distinct_files(records)
    # Classes of the same image data (which includes identical bytes).
    by_image: dict[str, list[FileRecord]] = defaultdict(list)
    for f in files:
        by_image[f.fingerprint.image_hash].append(f)
    # Nodes of identical perceptual hashes (and, for bursts, camera and time) among images with enough detail to
    # compare; low-information images only group with their own image class.
    nodes: dict[_Key, list[str]] = defaultdict(list)
    solitary: list[list[str]] = []
    for image_hash, members in by_image.items():
        fp = members[0].fingerprint
        if fp.low_info:
            solitary.append([image_hash])
        else:
            nodes[_node_key(fp, rule)].append(image_hash)
    keys = sorted(nodes)
    bare = [_bare(k) for k in keys]
    neighbours = _neighbours(keys, bare, rule)

    def node_key(i: int) -> tuple[int, int, str]:
        return min(_quality(f) for h in nodes[keys[i]] for f in by_image[h])

    clusters: list[tuple[_Key | None, list[str]]] = []
    assigned: set[int] = set()
    # The best-connected node becomes a reference first; ties go to the node with the best copy (most pixels, then
    # largest file, then smallest path), never to input order. A node with no neighbour is its own cluster whatever
    # the order, so only linked nodes are ordered.
    for i in sorted(neighbours, key=lambda i: (-len(neighbours[i]), node_key(i))):
        if i in assigned:
            continue
        star = [i]
        for j in sorted(j for j in neighbours[i] if j not in assigned):
            # Two shots of one burst may each match a copy without a time: still never in one group.
            if not (rule.bursts_apart and any(same_burst(bare[j], bare[m]) for m in star)):
                star.append(j)
        assigned.update(star)
        clusters.append((keys[i], [h for m in star for h in nodes[keys[m]]]))
    for i, key in enumerate(keys):
        hashes = nodes[key]
        if i not in neighbours and (len(hashes) > 1 or len(by_image[hashes[0]]) > 1):
            clusters.append((key, hashes))
    clusters.extend((None, s) for s in solitary)

    groups = [
        _make_group([f for h in hashes for f in by_image[h]], centre, rule)
        for centre, hashes in clusters
        if len(hashes) > 1 or len(by_image[hashes[0]]) > 1  # a lone file is no group: skip the work
    ]
    return sorted(groups, key=lambda g: g.reference.file.path)


@dataclass(frozen=True, slots=True)
class Match:
    distance: int  # pHash bits to the other picture (in the matching frame)
    transform: str | None  # how the first picture is turned to look like the second
    dhash: int | None  # dHash bits, when the match needed the second opinion


def match(a: Fingerprint, b: Fingerprint, rule: MatchRule) -> Match | None:
    """Whether picture a matches picture b under the rule, and why; None when it does not. Symmetric."""
    if rule.bursts_apart and same_burst(a, b):
        return None
    if rule.rotations:
        distance, transform = match_distance(a, b)
    else:
        distance, transform = hamming(a.phash, b.phash), None
    if distance <= rule.threshold:
        return Match(distance, transform, None)
    if rule.two_stage:
        upright = hamming(a.phash, b.phash)
        confirm = hamming(a.dhash, b.dhash)
        if upright <= max(CANDIDATE_PHASH, rule.threshold) and confirm <= CONFIRM_DHASH:
            return Match(upright, None, confirm)
    return None


def same_burst(a: Fingerprint, b: Fingerprint) -> bool:
    """Two different shots of one burst: one camera, taken a moment apart (EXIF time with sub-seconds)."""
    if not (a.camera and a.camera == b.camera and a.taken and b.taken) or a.taken == b.taken:
        return False
    try:
        dt = abs((datetime.fromisoformat(a.taken) - datetime.fromisoformat(b.taken)).total_seconds())
    except ValueError:
        return False
    return 0 < dt <= BURST_SECONDS


def _node_key(fp: Fingerprint, rule: MatchRule) -> _Key:
    return (
        fp.phash,
        fp.variants if rule.rotations else (),
        fp.dhash if rule.two_stage else 0,
        (fp.camera or "") if rule.bursts_apart else "",
        (fp.taken or "") if rule.bursts_apart else "",
    )


def _neighbours(keys: Sequence[_Key], bare: Sequence[Fingerprint], rule: MatchRule) -> dict[int, set[int]]:
    """Node index -> the nodes that match it, found by exact multi-index searches, each candidate checked."""
    neighbours: dict[int, set[int]] = defaultdict(set)

    def check(i: int, js: Iterable[int]) -> None:
        for j in js:
            if i != j and j not in neighbours[i] and match(bare[i], bare[j], rule) is not None:
                neighbours[i].add(j)
                neighbours[j].add(i)

    def search(values_of: Sequence[int], threshold: int) -> None:
        values = sorted(set(values_of))
        at: dict[int, list[int]] = defaultdict(list)
        for i, v in enumerate(values_of):
            at[v].append(i)
        for same in at.values():
            for i in same:
                check(i, same)
        for i, j in near_pairs(values, threshold):
            for a in at[values[i]]:
                check(a, at[values[j]])

    phashes = [k[0] for k in keys]
    search(phashes, rule.threshold)
    if rule.rotations:
        # Turned matches: any variant of one within the threshold of the other's upright is a candidate.
        targets = sorted(set(phashes))
        at: dict[int, list[int]] = defaultdict(list)
        for i, v in enumerate(phashes):
            at[v].append(i)
        queries = [(i, v) for i, k in enumerate(keys) for v in k[1]]
        for q, t in cross_pairs([v for _, v in queries], targets, rule.threshold):
            check(queries[q][0], at[targets[t]])
    if rule.two_stage:
        # The second opinion indexes the tighter dHash condition, then checks the looser pHash one.
        search([k[2] for k in keys], CONFIRM_DHASH)
    return neighbours


def _bare(key: _Key) -> Fingerprint:
    """A fingerprint holding only a node's hashes, camera and time, for match."""
    return Fingerprint("", "", "", 0, 0, key[0], key[2], key[4] or None, False, key[1], key[3] or None)


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


def _make_group(files: list[FileRecord], centre: _Key | None, rule: MatchRule) -> DuplicateGroup:
    # The reference is the best copy among the files at the cluster's centre, so that every member matches it.
    ref = min((f for f in files if centre is None or _node_key(f.fingerprint, rule) == centre), key=_quality)
    members: list[GroupMember] = [GroupMember(ref, MatchKind.EXACT, 0)]
    for f in files:
        if f is ref:
            continue
        if f.content_hash == ref.content_hash:
            members.append(GroupMember(f, MatchKind.EXACT, 0))
        elif f.fingerprint.image_hash == ref.fingerprint.image_hash:
            members.append(GroupMember(f, MatchKind.IMAGE, 0))
        else:
            m = match(f.fingerprint, ref.fingerprint, rule)
            assert m is not None, "a star member always matches its centre"
            members.append(GroupMember(f, MatchKind.NEAR, m.distance, m.transform, m.dhash))
    order = {MatchKind.EXACT: 0, MatchKind.IMAGE: 1, MatchKind.NEAR: 2}
    rest = sorted(members[1:], key=lambda m: (order[m.match], m.distance, m.file.path))
    kind = max((m.match for m in rest), key=order.__getitem__, default=MatchKind.EXACT)
    return DuplicateGroup(kind=kind, members=(members[0], *rest))


def split_not_duplicates(
    groups: Iterable[DuplicateGroup],
    pairs: Collection[tuple[str, str]],
    threshold: int = DEFAULT_THRESHOLD,
    *,
    rotations: bool = True,
    two_stage: bool = True,
    bursts_apart: bool = True,
) -> list[DuplicateGroup]:
    """Take apart what the user said are not duplicates: no two members of a group form a remembered pair.

    Pairs are content hashes as (smaller, larger); a pair of one hash with itself means "these identical
    copies are meant to be kept". A group keeps its members in order while they fit; the members left over
    form groups of their own, each member matching its new reference under the same rule.
    """
    if not pairs:
        return list(groups)
    rule = MatchRule(threshold, rotations, two_stage, bursts_apart)

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
                fits = not any(apart(f, a) for a in accepted) and (not accepted or _close(accepted[0], f, rule))
                (accepted if fits else rest).append(f)
            if len(accepted) > 1:
                ref = accepted[0].fingerprint
                out.append(_make_group(accepted, None if ref.low_info else _node_key(ref, rule), rule))
            files = rest
    return sorted(out, key=lambda g: g.reference.file.path)


def _close(ref: FileRecord, f: FileRecord, rule: MatchRule) -> bool:
    if f.fingerprint.image_hash == ref.fingerprint.image_hash:
        return True
    if ref.fingerprint.low_info or f.fingerprint.low_info:
        return False
    return match(ref.fingerprint, f.fingerprint, rule) is not None


def summarize(groups: Sequence[DuplicateGroup], images: int, skipped: int) -> Summary:
    return Summary(
        images=images,
        groups=len(groups),
        duplicate_files=sum(len(g.members) - 1 for g in groups),
        reclaimable_bytes=sum(g.reclaimable_bytes for g in groups),
        skipped=skipped,
    )
