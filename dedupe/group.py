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
from typing import Any

import numpy as np
import numpy.typing as npt
import pybktree

from dedupe.fingerprint import CROP_BYTES, CROP_WINDOWS
from dedupe.models import INVERSE, TRANSFORMS, DuplicateGroup, FileRecord, Fingerprint, GroupMember, MatchKind, Summary

DEFAULT_THRESHOLD = 4  # bits of 64 in pHash: the largest with no false pair on the benchmark, see README.md
MAX_THRESHOLD = 32
# Second opinion (measured on the benchmark, see README.md): pHash within 16 bits confirmed by dHash within 2.
CANDIDATE_PHASH = 16
CONFIRM_DHASH = 2
BURST_SECONDS = 2.0  # shots of one camera this close in time are a burst, not copies
# Cropped copies (measured on the benchmark, see README.md): a picture is a crop of another when it is within
# CROP_PHASH bits of pHash and CROP_DHASH of dHash of one of the other's windows (fingerprint.CROP_WINDOWS), and
# of the same mean colour: chromaticities within CROP_CHROMA and brightness within CROP_LUMA (of 255).
CROP_PHASH = 6
CROP_DHASH = 8
CROP_CHROMA = 8
CROP_LUMA = 20
# Above this many pictures the search for crops is skipped unless asked for: the lookup of 49 windows a picture
# within 6 bits took 3.9 s at 100,000 random fingerprints and 8.7 s at 200,000, and grows faster than linearly
# (34 windows at 1,000,000: 84 s).
CROP_SEARCH_LIMIT = 200_000
_WINDOWS = len(CROP_WINDOWS)

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
    ap, bp, av, bv = a.phash, b.phash, a.variants, b.variants
    best, how = (ap ^ bp).bit_count(), None
    if len(av) != len(TRANSFORMS) or len(bv) != len(TRANSFORMS):
        return best, how
    for k, name in enumerate(TRANSFORMS):
        d = max((av[k] ^ bp).bit_count(), (bv[_INVERSE_AT[k]] ^ ap).bit_count())
        if d < best:
            best, how = d, name
    return best, how


_INVERSE_AT = tuple(TRANSFORMS.index(INVERSE.get(name, name)) for name in TRANSFORMS)  # k -> index of its inverse


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
    crops: bool = True


_Key = tuple[int, tuple[int, ...], int, str, str, bytes]


def _rule(threshold: int, rotations: bool, two_stage: bool, bursts_apart: bool, crops: bool) -> MatchRule:
    """The rule of find_groups: at threshold 0 only identical pictures match, so neither the two-stage rule nor
    crops apply."""
    return MatchRule(threshold, rotations, two_stage and threshold > 0, bursts_apart, crops and threshold > 0)


def find_groups(
    records: Iterable[FileRecord],
    threshold: int = DEFAULT_THRESHOLD,
    *,
    rotations: bool = True,
    two_stage: bool = True,
    bursts_apart: bool = True,
    crops: bool | None = None,
) -> list[DuplicateGroup]:
    """Group files holding the same picture. Deterministic: input order never changes the answer.

    A file matches another when (see match):
    - their pHashes are within the threshold; with rotations, also when one of them turned or mirrored is
      within the threshold of the other in both pictures' frames (the member says which transform);
    - with two_stage, also when two independent hashes agree: pHash within CANDIDATE_PHASH (a looser first
      pass) confirmed by dHash within CONFIRM_DHASH (the member shows both distances);
    - with crops, also when one is a crop of the other: close to one of the other's windows in pHash, dHash
      and mean colour (see crop_match; the member is marked cropped). None: only for up to CROP_SEARCH_LIMIT
      files (see searches_crops);
    - with bursts_apart, never when both come from one camera and were taken 0 < dt <= BURST_SECONDS apart
      (shots of one burst are similar, not copies); copies of one shot keep its exact time.
    Groups are stars around a reference: every member matches the reference itself.

    Files are grouped into image classes (the same image data, which includes identical bytes), and classes
    with identical perceptual hashes (and, for bursts, camera and time) into nodes; low-information images only
    group with their own image class. Pairs of matching nodes are found and confirmed on arrays; Python objects
    are only made for the files that end up in a group.
    """
    files = _distinct_files(records)
    rule = _rule(threshold, rotations, two_stage, bursts_apart, searches_crops(len(files), crops))
    fps = [f.fingerprint for f in files]
    n = len(fps)
    # The first file (in path order) of each image class stands for it.
    image_hashes = [fp.image_hash for fp in fps]
    first = dict(zip(reversed(image_hashes), range(n - 1, -1, -1), strict=True))
    of_class = np.fromiter(map(first.__getitem__, image_hashes), dtype=np.int64, count=n)
    del image_hashes, first
    class_size = np.bincount(of_class, minlength=n)
    low = np.fromiter((fp.low_info for fp in fps), dtype=bool, count=n)
    reps = np.flatnonzero(class_size > 0)
    members: dict[int, list[int]] = defaultdict(list)  # image classes of several files: their files, in order
    for k in np.flatnonzero(class_size[of_class] > 1).tolist():
        members[int(of_class[k])].append(k)

    nodes = _Nodes(fps, reps[~low[reps]], rule)
    neighbours = nodes.neighbours()
    count = len(nodes.rep)

    def files_of(node: int) -> list[int]:
        classes = nodes.extra.get(node)
        if classes is None:
            r = nodes.rep[node]
            return members.get(r) or [r]
        return [k for c in classes for k in members.get(c, (c,))]

    clusters: list[tuple[int | None, list[int]]] = []  # (centre node or None, file indices)
    if len(neighbours[0]):
        # Undirected adjacency, each node's neighbours in node (key) order.
        a, b = neighbours
        src = np.concatenate([a, b])
        order = np.argsort(src * count + np.concatenate([b, a]))
        adjacent = np.concatenate([b, a])[order].tolist()
        degree = np.bincount(src, minlength=count)
        ends = np.cumsum(degree).tolist()
        linked = np.flatnonzero(degree).tolist()
        degrees = degree.tolist()

        def rank(node: int) -> tuple[int, int, int, str]:
            r = nodes.rep[node]
            if r in members or node in nodes.extra:
                return (-degrees[node], *min(_quality(files[k]) for k in files_of(node)))
            f = files[r]
            fp = f.fingerprint
            return (-degrees[node], -(fp.width * fp.height), -f.size, f.path)

        # The best-connected node becomes a reference first; ties go to the node with the best copy (most pixels,
        # then largest file, then smallest path), never to input order. A node with no neighbour is its own
        # cluster whatever the order, so only linked nodes are ordered.
        ranked = sorted(linked, key=rank)
        burst: dict[int, Fingerprint] = {}
        if rule.bursts_apart:
            for i in linked:
                fp = fps[nodes.rep[i]]
                if fp.camera and fp.taken:
                    burst[i] = fp
        assigned = bytearray(count)
        spokes: list[tuple[int, int]] = []  # (member node, centre node) of every star
        for i in ranked:
            if assigned[i]:
                continue
            star = [i]
            for j in adjacent[ends[i] - degrees[i] : ends[i]]:
                if assigned[j]:
                    continue
                # Two shots of one burst may each match a copy without a time: still never in one group.
                fj = burst.get(j)
                if fj is None or not any(m in burst and same_burst(fj, burst[m]) for m in star):
                    star.append(j)
            for m in star:
                assigned[m] = 1
            clusters.append((i, [k for m in star for k in files_of(m)]))
            spokes.extend((m, i) for m in star[1:])
        known = nodes.explain(spokes)
    else:
        assigned = bytearray(count)
        known = {}
    for i in nodes.several(members).tolist():
        if not assigned[i]:
            clusters.append((i, files_of(i)))
    clusters.extend((None, members[c]) for c in reps[low[reps]].tolist() if c in members)

    groups = [
        _make_group(
            [files[k] for k in ks], None if centre is None else _node_key(fps[nodes.rep[centre]], rule), rule, known
        )
        for centre, ks in clusters
        if len(ks) > 1  # a lone file is no group
    ]
    return sorted((g for g in groups if len(g.members) > 1), key=lambda g: g.reference.file.path)


class _Nodes:
    """Image classes with identical perceptual hashes (and, for bursts, camera and time), in key order, with
    their hashes as arrays."""

    def __init__(self, fps: list[Fingerprint], reps: npt.NDArray[np.intp], rule: MatchRule) -> None:
        self.rule = rule
        self.fps = fps
        # Hashes are unsigned 64-bit; any other value is looked up by its low 64 bits and matched in Python.
        self.irregular = False
        # Read the hashes in file order (objects made one after another sit together in memory), then reorder.
        chosen = [fps[r] for r in reps.tolist()]
        count = len(chosen)
        phash = self._u64([fp.phash for fp in chosen])
        dhash = self._u64([fp.dhash for fp in chosen]) if rule.two_stage else np.zeros(count, dtype=np.uint64)
        variants = [fp.variants for fp in chosen] if rule.rotations else [()] * count
        del chosen
        turned = np.fromiter(map(len, variants), dtype=np.int64, count=count) == len(TRANSFORMS)
        if turned.all() and count:
            try:
                flat = np.fromiter(
                    itertools.chain.from_iterable(variants), dtype=np.uint64, count=count * len(TRANSFORMS)
                )
            except OverflowError:
                flat = self._u64(list(itertools.chain.from_iterable(variants)))
            table = flat.reshape(count, len(TRANSFORMS))
        else:
            table = np.zeros((count, len(TRANSFORMS)), dtype=np.uint64)
            for i in np.flatnonzero(turned).tolist():
                table[i] = self._u64(list(variants[i]))
        del variants
        # Node order is key order (pHash first); classes with one pHash are split and ordered by their whole key.
        order = np.argsort(phash, kind="stable")
        self.extra: dict[int, list[int]] = {}  # node -> its image classes, when it has several
        sorted_phash = phash[order]
        tied = np.flatnonzero(sorted_phash[1:] == sorted_phash[:-1])
        if len(tied):
            starts = tied[np.r_[True, tied[1:] != tied[:-1] + 1]]  # first position of each run of one pHash
            stops = np.searchsorted(sorted_phash, sorted_phash[starts], side="right")
            positions = order.tolist()
            rep_list = reps.tolist()
            out: list[int] = []  # positions into reps, in node order
            done = 0
            for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
                out.extend(positions[done:start])
                by_key: dict[_Key, list[int]] = defaultdict(list)
                for q in sorted(positions[start:stop]):  # classes in path order, as they were met
                    by_key[_node_key(fps[rep_list[q]], rule)].append(q)
                for key in sorted(by_key):
                    classes = by_key[key]
                    if len(classes) > 1:
                        self.extra[len(out)] = [rep_list[q] for q in classes]
                    out.append(classes[0])
                done = stop
            out.extend(positions[done:])
            order = np.array(out, dtype=np.intp)
        self.rep: list[int] = reps[order].tolist()
        self.phash = phash[order]
        self.dhash = dhash[order]
        self.turned = turned[order]
        self.variants = table[order]
        # Window hashes and colours for cropped copies, by node: (count, windows) arrays; has_crops says which.
        self.has_crops = np.zeros(len(self.rep), dtype=bool)
        self.crop_p = self.crop_d = np.zeros((0, _WINDOWS), dtype=np.uint64)
        self.crop_c = np.zeros((0, _WINDOWS, 3), dtype=np.uint8)
        blobs = [fps[r].crops for r in self.rep] if rule.crops else []
        if any(len(b) == CROP_BYTES for b in blobs):
            self.has_crops = np.fromiter((len(b) == CROP_BYTES for b in blobs), dtype=bool, count=len(blobs))
            self.crop_p, self.crop_d, self.crop_c = _unpack_crops(
                [b if len(b) == CROP_BYTES else bytes(CROP_BYTES) for b in blobs]
            )
            del blobs

    def _u64(self, values: list[int]) -> npt.NDArray[np.uint64]:
        try:
            return np.array(values, dtype=np.uint64)
        except OverflowError:
            self.irregular = True
            return np.array([v & 0xFFFFFFFFFFFFFFFF for v in values], dtype=np.uint64)

    def several(self, members: dict[int, list[int]]) -> npt.NDArray[np.intp]:
        """The nodes holding more than one file, in order."""
        out = [i for i, r in enumerate(self.rep) if r in members] if members else []
        return np.array(sorted({*out, *self.extra}), dtype=np.intp)

    def neighbours(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Node pairs (a < b) that match, sorted: found by exact multi-index searches, confirmed on arrays."""
        rule, count = self.rule, len(self.rep)
        found = [_join(self.phash, self.phash, rule.threshold, same=True)]
        if rule.rotations and self.turned.any():
            # Turned matches: any variant of one within the threshold of the other's upright is a candidate. A
            # rot270 match of a to b is a rot90 match of b to a, so that variant need not be looked up.
            at = np.flatnonzero(self.turned)
            ks = [k for k, name in enumerate(TRANSFORMS) if name != "rot270"]
            turned = self.variants if len(at) == count else self.variants[at]
            queries = turned[:, ks].T.ravel()
            del turned
            qi, tj = _join(queries, self.phash[at], rule.threshold, same=False)
            a, b = at[qi % len(at)], at[tj]
            keep = a != b
            found.append((np.minimum(a, b)[keep], np.maximum(a, b)[keep]))
        if rule.two_stage:
            # The second opinion indexes the tighter dHash condition; the looser pHash one is confirmed below.
            found.append(_join(self.dhash, self.dhash, CONFIRM_DHASH, same=True))
        cropped = np.zeros(0, dtype=np.int64)
        if rule.crops and self.has_crops.any():
            # Every window of each picture is looked up among the whole pictures; a hit is confirmed at once.
            at = np.flatnonzero(self.has_crops)
            queries = self.crop_p[at, 1:].T.ravel()
            qi, tj = _join(queries, self.crop_p[at, 0], CROP_PHASH, same=False)
            window, outer, inner = qi // len(at) + 1, at[qi % len(at)], at[tj]
            ok = (outer != inner) & self._crop_confirmed(outer, window, inner)
            x, y = np.minimum(outer, inner)[ok], np.maximum(outer, inner)[ok]
            found.append((x, y))
            cropped = np.unique(x.astype(np.int64) * count + y)
        codes = np.unique(np.concatenate([a.astype(np.int64) * count + b for a, b in found]))
        a, b = np.divmod(codes, count)
        if self.irregular:
            fps, rep = self.fps, self.rep
            pairs = zip(a.tolist(), b.tolist(), strict=True)
            keep = np.array([match(fps[rep[i]], fps[rep[j]], rule) is not None for i, j in pairs], dtype=bool)
            return a[keep], b[keep]
        keep = self._match(a, b)
        if len(cropped):
            keep |= np.isin(codes, cropped)
        a, b = a[keep], b[keep]
        if rule.bursts_apart and len(a):
            fps, rep = self.fps, self.rep
            apart = [same_burst(fps[rep[i]], fps[rep[j]]) for i, j in zip(a.tolist(), b.tolist(), strict=True)]
            keep = ~np.array(apart, dtype=bool)
            a, b = a[keep], b[keep]
        return a, b

    def explain(self, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], Match]:
        """match(a, b) for node pairs that match, on arrays, keyed by the ids of the fingerprints standing for a
        and b (any file holding one of those very objects matches the same way)."""
        if not pairs or self.irregular:
            return {}
        rule = self.rule
        a, b = (np.array(side, dtype=np.int64) for side in zip(*pairs, strict=True))
        pa, pb = self.phash[a], self.phash[b]
        upright = np.bitwise_count(pa ^ pb).astype(np.int64)
        best, how = upright, np.full(len(a), -1, dtype=np.int64)
        if rule.rotations:
            both = self.turned[a] & self.turned[b]
            va, vb = self.variants[a], self.variants[b]
            for k, back in enumerate(_INVERSE_AT):
                turned = np.maximum(np.bitwise_count(va[:, k] ^ pb), np.bitwise_count(vb[:, back] ^ pa))
                better = both & (turned < best)
                best = np.where(better, turned, best)
                how = np.where(better, k, how)
        near = best <= rule.threshold
        confirm = np.bitwise_count(self.dhash[a] ^ self.dhash[b]).astype(np.int64)
        second = ~near & (upright <= max(CANDIDATE_PHASH, rule.threshold)) & (confirm <= CONFIRM_DHASH)
        if not rule.two_stage:
            second[:] = False
        crop_d, crop_h, crop_wider = self._crop_distances(a, b, ~near & ~second)
        fps, rep = self.fps, self.rep
        out: dict[tuple[int, int], Match] = {}
        for i, j, d, t, u, c, is_near, is_second, cd, ch, cw in zip(
            a.tolist(),
            b.tolist(),
            best.tolist(),
            how.tolist(),
            upright.tolist(),
            confirm.tolist(),
            near.tolist(),
            second.tolist(),
            crop_d.tolist(),
            crop_h.tolist(),
            crop_wider.tolist(),
            strict=True,
        ):
            key = (id(fps[rep[i]]), id(fps[rep[j]]))
            if is_near:
                out[key] = Match(d, None if t < 0 else TRANSFORMS[t], None)
            elif is_second:
                out[key] = Match(u, None, c)
            elif cd >= 0:
                out[key] = Match(cd, None, ch, WIDER if cw else CROP)
        return out

    def _crop_confirmed(
        self, outer: npt.NDArray[np.int64], window: npt.NDArray[np.int64], inner: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Whether window k of each outer picture agrees with the whole inner picture in dHash and colour."""
        return _crop_agrees(
            self.crop_d[outer, window], self.crop_d[inner, 0], self.crop_c[outer, window], self.crop_c[inner, 0]
        )

    def _crop_distances(
        self, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], wanted: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """crop_match on arrays for the wanted pairs: (pHash, dHash) distances, -1 where there is no crop match,
        and whether a is the wider picture (b a crop of it)."""
        dist = np.full(len(a), -1, dtype=np.int64)
        dh = np.full(len(a), -1, dtype=np.int64)
        wider = np.zeros(len(a), dtype=bool)
        if not self.rule.crops or not len(a):
            return dist, dh, wider
        pick = np.flatnonzero(wanted & self.has_crops[a] & self.has_crops[b])
        bests = []
        for outer, inner in ((a[pick], b[pick]), (b[pick], a[pick])):
            best = np.full(len(pick), _NO_CROP, dtype=np.int64)
            for k in range(1, _WINDOWS):
                window = np.full(len(pick), k, dtype=np.int64)
                dp = np.bitwise_count(self.crop_p[outer, k] ^ self.crop_p[inner, 0]).astype(np.int64)
                dd = np.bitwise_count(self.crop_d[outer, k] ^ self.crop_d[inner, 0]).astype(np.int64)
                ok = (dp <= CROP_PHASH) & self._crop_confirmed(outer, window, inner)
                best = np.where(ok, np.minimum(best, dp * 65 + dd), best)
            bests.append(best)
        a_wider = bests[0] <= bests[1]  # as crop_match: a tie goes to a being the wider
        best = np.minimum(bests[0], bests[1])
        found = best < _NO_CROP
        dist[pick[found]], dh[pick[found]] = np.divmod(best[found], 65)
        wider[pick[found]] = a_wider[found]
        return dist, dh, wider

    def _match(self, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Whether node a matches node b under the rule (match, on arrays), bursts aside."""
        rule = self.rule
        pa, pb = self.phash[a], self.phash[b]
        upright = np.bitwise_count(pa ^ pb)
        best = upright
        if rule.rotations:
            both = self.turned[a] & self.turned[b]
            va, vb = self.variants[a], self.variants[b]
            for k, back in enumerate(_INVERSE_AT):
                turned = np.maximum(np.bitwise_count(va[:, k] ^ pb), np.bitwise_count(vb[:, back] ^ pa))
                best = np.where(both, np.minimum(best, turned), best)
        ok: npt.NDArray[np.bool_] = best <= rule.threshold
        if rule.two_stage:
            confirm = np.bitwise_count(self.dhash[a] ^ self.dhash[b])
            ok |= (upright <= max(CANDIDATE_PHASH, rule.threshold)) & (confirm <= CONFIRM_DHASH)
        return ok


def _join(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    threshold: int,
    *,
    same: bool,
    plan: tuple[int, int] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """All (query index, target index) pairs within the threshold (0 included), sorted; with same (queries is
    targets) only i < j. Exact: split the 64 bits into m blocks; two values within t bits agree exactly on at
    least m - t blocks, so every pair shares the key made of some m - t blocks (each such choice is one table
    lookup, and a pair is kept only by the first choice that finds it)."""
    nq, nt = len(queries), len(targets)
    empty = np.zeros(0, dtype=np.int64)
    if threshold < 0 or nq == 0 or nt == 0:
        return empty, empty
    threshold = min(threshold, 64)
    if threshold == 64:
        i, j = np.divmod(np.arange(nq * nt, dtype=np.int64), nt)
        keep = i < j if same else np.ones(len(i), dtype=bool)
        return i[keep], j[keep]
    blocks, agree = plan or _join_plan(max(nq, nt), threshold)
    assert blocks - agree <= threshold
    edges = [round(64 * k / blocks) for k in range(blocks + 1)]
    spans = [(edges[k], edges[k + 1] - edges[k]) for k in range(blocks)]
    kind = np.uint16 if max(width for _, width in spans) <= 16 else np.uint64
    tblocks = [((targets >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(kind) for shift, width in spans]
    qblocks = tblocks if same else [_block(queries, shift, width, kind) for shift, width in spans]
    combos = list(itertools.combinations(range(blocks), agree))
    found: list[npt.NDArray[np.int64]] = []
    for c, combo in enumerate(combos):
        # A pair belongs to the first choice whose blocks it agrees on: this one (a folded key can meet other
        # values too) and no earlier one.
        own = _combo_mask(spans, combo)
        earlier = [_combo_mask(spans, e) for e in combos[:c]]
        tkeys, bits = _block_key(tblocks, spans, combo)
        torder = _argsort_keys(tkeys, bits)
        if same:
            found.extend(_pairs_within_buckets(targets, tkeys[torder], torder, threshold, own, earlier))
            continue
        # Tables by key: how many targets (none, one, several), and where their run starts in key order.
        sorted_keys = tkeys[torder]
        del tkeys
        heads = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        sizes = np.diff(np.r_[heads, nt])
        head_keys = sorted_keys[heads]
        del sorted_keys
        how_many = np.zeros(1 << bits, dtype=np.int8)
        how_many[head_keys] = np.minimum(sizes, 2)
        head_of = np.zeros(1 << bits, dtype=np.int32)
        head_of[head_keys] = heads
        qkeys, _ = _block_key(qblocks, spans, combo)
        kind_of = how_many[qkeys]
        # Most keys that are there at all hold one target: no bucket to expand.
        one = np.flatnonzero(kind_of == 1)
        j = torder[head_of[qkeys[one]]]
        keep = _confirm(queries[one] ^ targets[j], threshold, own, earlier)
        found.append(one[keep].astype(np.int64) * nt + j[keep])
        hit = np.flatnonzero(kind_of == 2)
        del kind_of, one, j
        size_of = np.zeros(1 << bits, dtype=np.int32)
        size_of[head_keys] = sizes
        qkeys = qkeys[hit]
        lo = head_of[qkeys].astype(np.int64)
        counts = size_of[qkeys].astype(np.int64)
        del qkeys
        found.extend(_pairs_in_buckets(queries, targets, torder, hit, lo, counts, threshold, own, earlier))
    if not found:
        return empty, empty
    codes = np.sort(np.concatenate(found))
    return np.divmod(codes, nt)


def _block(values: npt.NDArray[np.uint64], shift: int, width: int, kind: type) -> npt.NDArray[np.generic]:
    return ((values >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(kind)


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


def _pairs_within_buckets(
    values: npt.NDArray[np.uint64],
    sorted_keys: npt.NDArray[np.signedinteger[Any]],
    order: npt.NDArray[np.intp],
    threshold: int,
    own: int,
    earlier: list[int],
) -> Iterator[npt.NDArray[np.int64]]:
    """Pairs (as i * n + j, i < j) within the threshold among values of one key (values[order] in key order)."""
    n = len(values)
    # Each position pairs with the later positions of its bucket.
    stops = np.searchsorted(sorted_keys, sorted_keys, side="right")
    later = stops - np.arange(n) - 1
    rows = np.flatnonzero(later)
    if len(rows) == 0:
        return
    ends = np.cumsum(later[rows])
    first = 0
    while first < len(rows):
        base = ends[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(ends, base + _SLAB, side="right")))
        part = rows[first:last]
        p, q = _expand(part, later[part], part + 1)
        a, b = order[p], order[q]
        keep = _confirm(values[a] ^ values[b], threshold, own, earlier)
        a, b = a[keep], b[keep]
        if len(a):
            yield np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)
        first = last


def _pairs_in_buckets(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    torder: npt.NDArray[np.intp],
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
    ends = np.cumsum(counts)
    first = 0
    while first < len(rows):
        base = ends[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(ends, base + _SLAB, side="right")))
        i, at = _expand(rows[first:last], counts[first:last], lo[first:last])
        j = torder[at]
        keep = _confirm(queries[i] ^ targets[j], threshold, own, earlier)
        i, j = i[keep], j[keep]
        if len(i):
            yield i.astype(np.int64) * nt + j
        first = last


@dataclass(frozen=True, slots=True)
class Match:
    distance: int  # pHash bits to the other picture (in the matching frame, or window of a crop)
    transform: str | None  # how the first picture is turned to look like the second
    dhash: int | None  # dHash bits, when the match needed the second opinion
    # CROP: the first picture is a crop of the second; WIDER: the second is a crop of the first (the distances
    # are then to the matching window of the wider one)
    crop: str | None = None


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
    if rule.crops and rule.threshold > 0:
        crop = crop_match(a, b)
        if crop is not None:
            return Match(crop[0], None, crop[1], crop[2])
    return None


_NO_CROP = 65 * 65
CROP = "crop"  # of two pictures, the first is a crop of the second
WIDER = "wider"  # the first shows more: the second is a crop of it


def searches_crops(pictures: int, crops: bool | None) -> bool:
    """Whether cropped copies are looked for among this many pictures: as asked, or by default (None) only up to
    CROP_SEARCH_LIMIT, beyond which the search takes minutes."""
    return crops if crops is not None else pictures <= CROP_SEARCH_LIMIT


def crop_match(a: Fingerprint, b: Fingerprint) -> tuple[int, int, str] | None:
    """Whether one picture is a crop of the other: its whole picture within CROP_PHASH bits of pHash and
    CROP_DHASH of dHash of a window of the other, with the same mean colour (see CROP_CHROMA and CROP_LUMA).
    Returns the (pHash, dHash) distances of the best such window and which way it goes: WIDER when b is a crop of
    a, CROP when a is a crop of b (a tie goes to WIDER); None when neither is a crop of the other."""
    wider, narrower = _crop_fits(a, b)
    best = min(wider, narrower)
    if best == _NO_CROP:
        return None
    return (*divmod(best, 65), WIDER if wider <= narrower else CROP)


def shows_more(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether b looks like a crop of a: a window of a fits the whole of b strictly better (pHash bits, then dHash
    bits) than any window of b fits the whole of a. A crop of 3-10% often matches its original as a plain near
    copy too; this tells it from a resized copy, whose windows fit both ways alike. Measured on the benchmark's
    40 originals: 32, 37 and 33 of 40 crops of 3%, 5% and 8% told, the other crops fitting no window at all; 6 of
    40 copies resized to 60% taken for wider, which only keeps a file that could have gone (comparing pHash bits
    alone took 2 resized copies for wider, but let one more original go in favour of its crop)."""
    wider, narrower = _crop_fits(a, b)
    return wider < narrower


def _crop_fits(a: Fingerprint, b: Fingerprint) -> tuple[int, int]:
    """How well b fits a window of a, and a a window of b: the best pHash * 65 + dHash of a window that passes the
    crop rule, _NO_CROP where none does."""
    if len(a.crops) != CROP_BYTES or len(b.crops) != CROP_BYTES:
        return _NO_CROP, _NO_CROP
    p, d, c = _unpack_crops([a.crops, b.crops])
    bests = []
    for outer, inner in ((0, 1), (1, 0)):
        dp = np.bitwise_count(p[outer, 1:] ^ p[inner, 0]).astype(np.int64)
        dd = np.bitwise_count(d[outer, 1:] ^ d[inner, 0]).astype(np.int64)
        ok = (dp <= CROP_PHASH) & _crop_agrees(d[outer, 1:], d[inner, 0], c[outer, 1:], c[inner, 0])
        bests.append(int((dp * 65 + dd)[ok].min()) if ok.any() else _NO_CROP)
    return bests[0], bests[1]


def _crop_agrees(
    window_dhash: npt.NDArray[np.uint64],
    whole_dhash: npt.NDArray[np.uint64] | np.uint64,
    window_colour: npt.NDArray[np.uint8],
    whole_colour: npt.NDArray[np.uint8],
) -> npt.NDArray[np.bool_]:
    """The confirmation of a crop candidate: the window's dHash within CROP_DHASH of the whole picture's, its
    chromaticities within CROP_CHROMA and its brightness within CROP_LUMA."""
    dh = np.bitwise_count(window_dhash ^ whole_dhash) <= CROP_DHASH
    diff = np.abs(window_colour.astype(np.int16) - whole_colour.astype(np.int16))
    ok: npt.NDArray[np.bool_] = dh & (diff[..., :2].max(axis=-1) <= CROP_CHROMA) & (diff[..., 2] <= CROP_LUMA)
    return ok


def _unpack_crops(
    blobs: Sequence[bytes],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    """Crop signatures (fingerprint.crop_signature, each CROP_BYTES long) as arrays: the pHashes and dHashes of
    every window, (signatures, windows), and their colours, (signatures, windows, 3)."""
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), CROP_BYTES)
    hashes = 16 * _WINDOWS
    phashes = raw[:, : 8 * _WINDOWS].copy().view(">u8").astype(np.uint64)
    dhashes = raw[:, 8 * _WINDOWS : hashes].copy().view(">u8").astype(np.uint64)
    return phashes, dhashes, raw[:, hashes:].reshape(len(raw), _WINDOWS, 3).copy()


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
        fp.crops if rule.crops else b"",
    )


def _distinct_files(records: Iterable[FileRecord]) -> list[FileRecord]:
    """One record per file: hardlinks and paths reaching one inode are the same file, not duplicates."""
    records = list(records)
    devices = {r.dev for r in records}
    inodes = [r.ino for r in records] if len(devices) == 1 else [(r.dev, r.ino) for r in records]
    if len(set(inodes)) == len(records):  # the usual case: no two records of one file
        return sorted(records, key=_path)
    by_inode: dict[tuple[int, int], FileRecord] = {}
    for r in records:
        key = (r.dev, r.ino)
        if key not in by_inode or r.path < by_inode[key].path:
            by_inode[key] = r
    return sorted(by_inode.values(), key=lambda r: r.path)


def _path(f: FileRecord) -> str:
    return f.path


def _quality(f: FileRecord) -> tuple[int, int, str]:
    return (-(f.fingerprint.width * f.fingerprint.height), -f.size, f.path)


def _make_group(
    files: list[FileRecord],
    centre: _Key | None,
    rule: MatchRule,
    known: dict[tuple[int, int], Match] | None = None,
) -> DuplicateGroup:
    """The group of files around the centre; known: matches already worked out, by ids of the fingerprints."""
    # The reference is the best copy among the files at the cluster's centre, so that every member matches it.
    ref = min(
        (
            f
            for f in files
            if centre is None or (f.fingerprint.phash == centre[0] and _node_key(f.fingerprint, rule) == centre)
        ),
        key=_quality,
    )
    members: list[GroupMember] = [GroupMember(ref, MatchKind.EXACT, 0)]
    for f in files:
        if f is ref:
            continue
        if f.content_hash == ref.content_hash:
            members.append(GroupMember(f, MatchKind.EXACT, 0))
        elif f.fingerprint.image_hash == ref.fingerprint.image_hash:
            members.append(GroupMember(f, MatchKind.IMAGE, 0))
        else:
            m = known.get((id(f.fingerprint), id(ref.fingerprint))) if known else None
            if m is None:
                m = match(f.fingerprint, ref.fingerprint, rule)
            if m is None:
                # A file of an image class whose other files matched, but which is itself another shot of the
                # reference's burst (same pixels, other camera time): never its duplicate, so left out.
                continue
            members.append(GroupMember(f, MatchKind.NEAR, m.distance, m.transform, m.dhash, m.crop))
    if len(members) == 2:  # the usual pair: nothing to sort
        return DuplicateGroup(kind=members[1].match, members=(members[0], members[1]))
    rest = sorted(members[1:], key=lambda m: (_KIND_ORDER[m.match], m.distance, m.file.path))
    kind = max((m.match for m in rest), key=_KIND_ORDER.__getitem__, default=MatchKind.EXACT)
    return DuplicateGroup(kind=kind, members=(members[0], *rest))


_KIND_ORDER = {MatchKind.EXACT: 0, MatchKind.IMAGE: 1, MatchKind.NEAR: 2}


def split_not_duplicates(
    groups: Iterable[DuplicateGroup],
    pairs: Collection[tuple[str, str]],
    threshold: int = DEFAULT_THRESHOLD,
    *,
    rotations: bool = True,
    two_stage: bool = True,
    bursts_apart: bool = True,
    crops: bool | None = None,
) -> list[DuplicateGroup]:
    """Take apart what the user said are not duplicates: no two members of a group form a remembered pair.

    Pairs are content hashes as (smaller, larger); a pair of one hash with itself means "these identical
    copies are meant to be kept". A group keeps its members in order while they fit; the members left over
    form groups of their own, each member matching its new reference under the same rule.
    """
    if not pairs:
        return list(groups)
    groups = list(groups)
    count = sum(len(g.members) for g in groups)
    rule = _rule(threshold, rotations, two_stage, bursts_apart, searches_crops(count, crops))

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
                group = _make_group(accepted, None if ref.low_info else _node_key(ref, rule), rule)
                if len(group.members) > 1:
                    out.append(group)
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
