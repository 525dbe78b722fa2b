"""Pure grouping of fingerprinted files: exact, same-image and near duplicates. No I/O.

Near duplicates are clustered around a reference: every member of a near group matches the group's reference
itself (see find_groups for the rule: pHash, turned and mirrored pHashes, a dHash second opinion, bursts kept
apart), so a chain of small steps never joins two unlike photos.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pybktree

from dedupe.library import Library, gc_paused
from dedupe.models import (
    CROP_BYTES,
    CROP_WINDOWS,
    INVERSE,
    TRANSFORMS,
    DuplicateGroup,
    FileRecord,
    Fingerprint,
    GroupMember,
    MatchKind,
    Summary,
)

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

    The work is done on columns (see find_groups_in): the records are only read once, into a Library.
    """
    files = _distinct_files(records)
    grouping = find_groups_in(
        Library.from_records(files),
        threshold,
        rotations=rotations,
        two_stage=two_stage,
        bursts_apart=bursts_apart,
        crops=crops,
    )
    return grouping.groups([files[k] for k in grouping.ids.tolist()])


@dataclass(frozen=True, slots=True, eq=False)
class Grouping:
    """Which files of a library form which groups, and why, before any record is made (see find_groups_in).

    Members are listed group after group, each group's reference first; groups are in the order of their
    references' paths, members as DuplicateGroup orders them.
    """

    ids: npt.NDArray[np.int64]  # Library.ids of the files in groups, ascending, each once
    rows: npt.NDArray[np.int64]  # their rows in the library
    member: npt.NDArray[np.int64]  # each member's position in ids
    starts: npt.NDArray[np.int64]  # where each group's members start in member, and the end
    kind: npt.NDArray[np.int8]  # each member's MatchKind, by _KINDS
    distance: npt.NDArray[np.int64]
    transform: npt.NDArray[np.int8]  # by TRANSFORMS, -1 for none
    dhash: npt.NDArray[np.int64]  # -1 for none
    crop: npt.NDArray[np.int8]  # 0 CROP, 1 WIDER, -1 for none

    def __len__(self) -> int:
        return len(self.starts) - 1

    def groups(self, records: Sequence[FileRecord]) -> list[DuplicateGroup]:
        """The duplicate groups, given the record of each file: records[k] is the file of ids[k]."""
        if len(records) != len(self.ids):
            raise ValueError(f"{len(self.ids)} records are needed, {len(records)} were given")
        if not len(self):
            return []
        files = [records[k] for k in self.member.tolist()]
        kinds = [_KINDS[k] for k in self.kind.tolist()]
        transforms = [None if t < 0 else TRANSFORMS[t] for t in self.transform.tolist()]
        dhashes = [None if d < 0 else d for d in self.dhash.tolist()]
        crops = [None if c < 0 else _CROPS[c] for c in self.crop.tolist()]
        # A group's kind is its weakest member's (the reference is EXACT).
        group_kinds = [_KINDS[k] for k in np.maximum.reduceat(self.kind, self.starts[:-1]).tolist()]
        starts = self.starts.tolist()
        with gc_paused():
            members = list(map(GroupMember, files, kinds, self.distance.tolist(), transforms, dhashes, crops))
            return [
                DuplicateGroup(kind=kind, members=tuple(members[start:end]))
                for kind, start, end in zip(group_kinds, starts, starts[1:], strict=False)
            ]


def find_groups_in(
    library: Library,
    threshold: int = DEFAULT_THRESHOLD,
    *,
    rotations: bool = True,
    two_stage: bool = True,
    bursts_apart: bool = True,
    crops: bool | None = None,
) -> Grouping:
    """find_groups on a library of files as columns: the same groups, as rows, made into records later.

    Paths reaching one inode are one file (the first path counts). Files are grouped into image classes (the same
    image data, which includes identical bytes), and classes with identical perceptual hashes (and, for bursts,
    camera and time) into nodes; low-information images only group with their own image class. Pairs of matching
    nodes are found and confirmed on arrays, stars are formed around the best-connected nodes, and each star's
    files are matched with its reference on arrays too.
    """
    lib = library
    files = _first_paths(lib)
    rule = _rule(threshold, rotations, two_stage, bursts_apart, searches_crops(len(files), crops))
    n = len(lib)
    path_rank, distinct_paths = (np.arange(n), True) if lib.distinct_paths else _path_ranks(lib.paths)
    # The first file (in path order) of each image class stands for it.
    cls = np.full(n, -1, dtype=np.int64)
    order = files[np.argsort(lib.image[files], kind="stable")]
    heads = _run_heads(lib.image[order])
    cls[order] = order[np.flatnonzero(heads)][np.cumsum(heads) - 1]
    del order, heads
    class_size = np.bincount(cls[files], minlength=n)
    reps = np.flatnonzero(class_size)
    low = lib.low_info[reps]

    nodes = _nodes(lib, reps[~low], rule)
    count = len(nodes.rep)
    node_of_class = np.full(n, -1, dtype=np.int64)
    node_of_class[nodes.classes] = nodes.node
    node_of = node_of_class[cls[files]]  # each file's node, -1 for low-information classes
    del node_of_class
    in_node = node_of >= 0
    node_files = np.bincount(node_of[in_node], minlength=count)

    a, b = _node_pairs(lib, nodes.rep, rule)
    # Clusters: stars first, in the order they are made, then nodes of several files left over, then
    # low-information classes of several files.
    cluster_of_node = np.full(count, -1, dtype=np.int64)
    centres: list[int] = []
    if len(a):
        # Quality of each file as a dense rank: most pixels, then largest file, then smallest path.
        area = lib.width[files] * lib.height[files]
        q = np.lexsort((path_rank[files], -lib.size[files], -area))
        changed = np.r_[True, _differs(area[q]) | _differs(lib.size[files][q]) | _differs(path_rank[files][q])]
        quality = np.empty(len(files), dtype=np.int64)
        quality[q] = np.cumsum(changed)
        del area, q, changed
        best = np.full(count, len(files) + 1, dtype=np.int64)
        np.minimum.at(best, node_of[in_node], quality[in_node])
        centres = _stars(lib, nodes.rep, a, b, best, rule, cluster_of_node)
    several = np.flatnonzero((cluster_of_node < 0) & (node_files > 1))
    cluster_of_node[several] = np.arange(len(centres), len(centres) + len(several))
    centre_node = np.r_[np.array(centres, dtype=np.int64), several]
    low_reps = reps[low]
    low_reps = low_reps[class_size[low_reps] > 1]
    clusters = len(centre_node) + len(low_reps)
    # Every file of a cluster, with its place in the cluster's listing: its node (the centre first, then in node
    # order), its class (in path order) and itself (in path order).
    cluster = np.r_[cluster_of_node, -1][node_of]  # node -1 (none) reads the -1 at the end
    low_cluster = np.full(n, -1, dtype=np.int64)
    low_cluster[low_reps] = np.arange(len(centre_node), clusters)
    cluster = np.where(in_node, cluster, low_cluster[cls[files]])
    take = np.flatnonzero(cluster >= 0)
    rows, cluster = files[take], cluster[take]
    centre_row = np.r_[nodes.rep[centre_node], np.full(len(low_reps), -1, dtype=np.int64)]
    node = node_of[take]
    is_centre = (node >= 0) & (node == np.r_[centre_node, np.full(len(low_reps), -1)][cluster])
    # (Only needed to order files of one path, which records may hold: a store's paths are distinct.)
    listing = () if distinct_paths else (rows, cls[rows], node, ~is_centre)
    del take, node, low_cluster, node_of, in_node
    return _members(lib, rows, cluster, centre_row, listing, path_rank, rule)


def _first_paths(lib: Library) -> npt.NDArray[np.int64]:
    """The rows that are distinct files: of the paths reaching one inode, the first."""
    n = len(lib)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    single = bool((lib.dev == lib.dev[0]).all())
    order = np.argsort(lib.ino, kind="stable") if single else np.lexsort((lib.ino, lib.dev))
    same = lib.ino[order[1:]] == lib.ino[order[:-1]]
    if not single:
        same &= lib.dev[order[1:]] == lib.dev[order[:-1]]
    if not same.any():
        return np.arange(n, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    keep[order[1:][same]] = False  # within one inode the rows are in path order: the first stays
    return np.flatnonzero(keep)


def _path_ranks(paths: Sequence[str]) -> tuple[npt.NDArray[np.int64], bool]:
    """Each row's rank by path, equal paths ranked alike (rows are in path order); and whether all are distinct."""
    n = len(paths)
    same = np.fromiter(map(operator.eq, paths[1:], paths[:-1]), dtype=bool, count=max(n - 1, 0))
    if not same.any():
        return np.arange(n, dtype=np.int64), True
    return np.cumsum(np.r_[False, ~same]).astype(np.int64), False


def _differs(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = values[1:] != values[:-1]
    return out


def _run_heads(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Where each run of equal values starts."""
    heads: npt.NDArray[np.bool_] = np.r_[len(values) > 0, _differs(values)][: len(values)]
    return heads


@dataclass(frozen=True, slots=True)
class _NodeList:
    rep: npt.NDArray[np.int64]  # the row standing for each node (that of its first image class), in node order
    classes: npt.NDArray[np.int64]  # the rows standing for the image classes, node after node, each in path order
    node: npt.NDArray[np.int64]  # the node of each of classes


def _nodes(lib: Library, reps: npt.NDArray[np.int64], rule: MatchRule) -> _NodeList:
    """Image classes (by the rows standing for them) with identical perceptual hashes (and, for bursts, camera and
    time) as nodes, in key order: pHash first; classes with one pHash are split and ordered by their whole key."""
    order = np.argsort(lib.phash[reps], kind="stable")
    sorted_phash = lib.phash[reps[order]]
    tied = sorted_phash[1:] == sorted_phash[:-1]
    new = _run_heads(sorted_phash)  # where a node starts (refined below where pHashes are tied)
    if tied.any():
        at = np.flatnonzero(np.r_[tied, False] | np.r_[False, tied])  # positions in runs of one pHash
        rows = reps[order[at]]
        odd = bool(lib.odd) and bool(np.isin(rows, np.fromiter(lib.odd, dtype=np.int64)).any())
        if odd or (rule.crops and lib.has_crops[rows].any()):
            order, new = _split_in_python(lib, reps, order, at, rule)
        else:
            keys = _key_columns(lib, rows, rule)
            by_key = np.lexsort((rows, *reversed(keys)))  # classes of one key in path order
            order[at] = order[at[by_key]]
            same = at[1:] == at[:-1] + 1
            for column in keys:
                column = column[by_key]
                same &= column[1:] == column[:-1]
            new[at[1:]] = ~same
    classes = reps[order]
    return _NodeList(classes[new], classes, np.cumsum(new) - 1)


def _key_columns(lib: Library, rows: npt.NDArray[np.int64], rule: MatchRule) -> list[npt.NDArray[Any]]:
    """_node_key of rows (without crop signatures) as columns, the most significant first: a 7-tuple of variants
    comes after none, then goes by its values."""
    columns: list[npt.NDArray[Any]] = [lib.phash[rows]]
    if rule.rotations:
        columns.append(lib.turned[rows])
        columns.extend(lib.variants[rows, k] for k in range(len(TRANSFORMS)))
    if rule.two_stage:
        columns.append(lib.dhash[rows])
    if rule.bursts_apart:
        columns.extend((lib.camera[rows], lib.taken[rows]))
    return columns


def _split_in_python(
    lib: Library,
    reps: npt.NDArray[np.int64],
    order: npt.NDArray[np.intp],
    at: npt.NDArray[np.intp],
    rule: MatchRule,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """_nodes for runs of one pHash holding odd rows or crop signatures, by whole keys in Python."""
    runs = np.split(at, np.flatnonzero(np.diff(at) > 1) + 1)
    positions = order.tolist()
    rep_list = reps.tolist()
    new = np.ones(len(order), dtype=bool)
    out = list(positions)
    sorted_phash = lib.phash[reps[order]]
    for run in runs:
        # A run of positions may hold several pHashes one after another.
        cuts = np.flatnonzero(sorted_phash[run[1:]] != sorted_phash[run[:-1]]) + 1
        for part in np.split(run, cuts):
            start, stop = int(part[0]), int(part[-1]) + 1
            by_key: dict[_Key, list[int]] = defaultdict(list)
            for q in sorted(positions[start:stop]):  # classes in path order, as they were met
                by_key[_key_at(lib, rep_list[q], rule)].append(q)
            k = start
            for key in sorted(by_key):
                classes = by_key[key]
                out[k : k + len(classes)] = classes
                new[k + 1 : k + len(classes)] = False
                k += len(classes)
    return np.array(out, dtype=np.intp), new


def _key_at(lib: Library, row: int, rule: MatchRule) -> _Key:
    """_node_key of a row."""
    fp = lib.odd.get(row)
    if fp is not None:
        return _node_key(fp, rule)
    return (
        int(lib.phash[row]),
        tuple(lib.variants[row].tolist()) if rule.rotations and lib.turned[row] else (),
        int(lib.dhash[row]) if rule.two_stage else 0,
        lib.camera[row].decode("utf-8", "surrogatepass") if rule.bursts_apart else "",
        lib.taken[row].decode("utf-8", "surrogatepass") if rule.bursts_apart else "",
        lib.crops[row].tobytes() if rule.crops and lib.has_crops[row] else b"",
    )


def _node_pairs(
    lib: Library, rep: npt.NDArray[np.int64], rule: MatchRule
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Node pairs (a < b) that match, sorted: found by exact multi-index searches, confirmed on arrays."""
    count = len(rep)
    phash = lib.phash[rep]
    found: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    turned = lib.turned[rep] if rule.rotations else np.zeros(count, dtype=bool)
    if turned.any():
        # Turned matches: any variant of one within the threshold of the other's upright is a candidate. A
        # rot270 match of a to b is a rot90 match of b to a, so that variant need not be looked up. The upright
        # pHashes are looked up in the same pass (each pair then comes twice, and each node meets itself).
        at = np.flatnonzero(turned)
        ks = [k for k, name in enumerate(TRANSFORMS) if name != "rot270"]
        queries = np.empty(count + len(ks) * len(at), dtype=np.uint64)
        queries[:count] = phash
        rows = rep[at]
        for j, k in enumerate(ks):  # a variant at a time: the turned pHashes of a million nodes take 48 MiB
            queries[count + j * len(at) : count + (j + 1) * len(at)] = lib.variants[rows, k]
        del rows
        qi, tj = _join(queries, phash, rule.threshold, same=False)
        del queries
        upright = qi < count
        keep = upright & (qi < tj)
        found.append((qi[keep], tj[keep]))
        a, b = at[(qi[~upright] - count) % len(at)], tj[~upright]
        keep = (a != b) & turned[b]
        found.append((np.minimum(a, b)[keep], np.maximum(a, b)[keep]))
        del qi, tj, upright, keep, a, b
    else:
        found.append(_join(phash, phash, rule.threshold, same=True))
    if rule.two_stage:
        # The second opinion indexes the tighter dHash condition; the looser pHash one is confirmed below.
        dhash = lib.dhash[rep]
        found.append(_join(dhash, dhash, CONFIRM_DHASH, same=True))
    cropped = np.zeros(0, dtype=np.int64)
    has_crops = lib.has_crops[rep] if rule.crops else np.zeros(count, dtype=bool)
    if has_crops.any():
        # Every window of each picture is looked up among the whole pictures; a hit is confirmed at once.
        at = np.flatnonzero(has_crops)
        cp, cd, cc = _unpack_crops(lib.crops[rep[at]])
        qi, tj = _join(cp[:, 1:].T.ravel(), cp[:, 0], CROP_PHASH, same=False)
        window, outer, inner = qi // len(at) + 1, qi % len(at), tj
        ok = (outer != inner) & _crop_agrees(cd[outer, window], cd[inner, 0], cc[outer, window], cc[inner, 0])
        x, y = at[np.minimum(outer, inner)[ok]], at[np.maximum(outer, inner)[ok]]
        found.append((x, y))
        cropped = np.unique(x.astype(np.int64) * count + y)
        del cp, cd, cc
    codes = np.sort(np.concatenate([a.astype(np.int64) * count + b for a, b in found]))
    del found
    codes = codes[_run_heads(codes)]
    a, b = np.divmod(codes, count)
    ra, rb = rep[a], rep[b]
    keep = _explain(lib, ra, rb, rule, crops=False, bursts=False).ok
    if len(cropped):
        keep |= np.isin(codes, cropped)
    if rule.bursts_apart:
        keep &= ~_same_bursts(lib, ra, rb)
    if lib.odd:
        for k in _odd_pairs(lib, ra, rb).tolist():
            keep[k] = match(lib.fingerprint(int(ra[k])), lib.fingerprint(int(rb[k])), rule) is not None
    return a[keep], b[keep]


def _odd_pairs(lib: Library, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Where either row of a pair is odd (see Library.odd)."""
    odd = np.array(sorted(lib.odd), dtype=np.int64)
    return np.flatnonzero(np.isin(a, odd) | np.isin(b, odd))


def _stars(
    lib: Library,
    rep: npt.NDArray[np.int64],
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    best: npt.NDArray[np.int64],
    rule: MatchRule,
    cluster_of_node: npt.NDArray[np.int64],
) -> list[int]:
    """Stars around references: the best-connected node becomes a reference first; ties go to the node with the
    best copy (best: the best quality rank of its files), never to input order. Each star takes the linked nodes
    not yet taken, but never two shots of one burst. Fills cluster_of_node with each star's number; returns the
    centre of each star."""
    count = len(rep)
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    degree = np.bincount(src, minlength=count)
    linked = np.flatnonzero(degree)
    # A node with no neighbour is its own cluster whatever the order, so only linked nodes are ordered.
    ranked = linked[np.lexsort((linked, best[linked], -degree[linked]))]
    burst: dict[int, tuple[bytes, bytes]] = {}  # linked nodes with a camera and a time: both
    if rule.bursts_apart:
        rows = rep[linked]
        timed = np.flatnonzero((lib.camera[rows] != b"") & (lib.taken[rows] != b""))
        pairs = zip(lib.camera[rows[timed]].tolist(), lib.taken[rows[timed]].tolist(), strict=True)
        burst = dict(zip(linked[timed].tolist(), pairs, strict=True))
        for i, r in zip(linked.tolist(), rows.tolist(), strict=True) if lib.odd else ():
            fp = lib.odd.get(r)
            if fp is not None:  # its texts as they are
                burst.pop(i, None)
                if fp.camera and fp.taken:
                    burst[i] = (fp.camera.encode("utf-8", "surrogatepass"), fp.taken.encode("utf-8", "surrogatepass"))
    times = _Times()
    centre_of = _greedy_stars(src, dst, ranked, count)
    if centre_of is None or (burst and _bursts_in_stars(centre_of, burst, times)):
        # The stars one at a time, where a shot of a burst is refused by a star holding another.
        centre_of = _stars_in_python(src, dst, degree, ranked, burst, times)
    centres = ranked[centre_of[ranked] == ranked]
    number = np.full(count, -1, dtype=np.int64)
    number[centres] = np.arange(len(centres))
    cluster_of_node[linked] = number[centre_of[linked]]
    listed: list[int] = centres.tolist()
    return listed


_ROUNDS = 64  # rounds of deciding stars on arrays before they are made one at a time


def _greedy_stars(
    src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64], ranked: npt.NDArray[np.int64], count: int
) -> npt.NDArray[np.int64] | None:
    """The centre of each linked node's star (-1 for others) when stars are made in rank order, each taking every
    neighbour not yet taken: a node is a centre when no neighbour ranked before it is one, and belongs to the first
    centre among its neighbours otherwise. Decided in rounds on arrays (a node is decided once the neighbours
    ranked before it are); None when that takes more than _ROUNDS rounds (long chains)."""
    rank = np.full(count, count, dtype=np.int64)
    rank[ranked] = np.arange(len(ranked))
    before = rank[dst] < rank[src]
    u, v = src[before], dst[before]  # v is ranked before u
    status = np.zeros(count, dtype=np.int8)  # 1 centre, 2 taken
    seen_centre = np.full(count, -1, dtype=np.int64)  # the round in which a centre was seen before the node
    seen_open = np.full(count, -1, dtype=np.int64)  # the round in which an undecided node was seen before it
    open_nodes = ranked
    for r in range(_ROUNDS):
        if not len(open_nodes):
            break
        sv = status[v]
        seen_centre[u[sv == 1]] = r
        seen_open[u[sv == 0]] = r
        taken = seen_centre[open_nodes] == r
        centre = ~taken & (seen_open[open_nodes] != r)
        status[open_nodes[taken]] = 2
        status[open_nodes[centre]] = 1
        open_nodes = open_nodes[~taken & ~centre]
        keep = status[u] == 0
        u, v = u[keep], v[keep]
    else:
        if len(open_nodes):
            return None
    # Each taken node belongs to its first centre.
    centre_of = np.full(count, -1, dtype=np.int64)
    centre_of[ranked[status[ranked] == 1]] = ranked[status[ranked] == 1]
    by = (status[src] == 2) & (status[dst] == 1)
    x, y = src[by], dst[by]
    first = np.lexsort((rank[y], x))
    heads = first[_run_heads(x[first])]
    centre_of[x[heads]] = y[heads]
    return centre_of


def _bursts_in_stars(centre_of: npt.NDArray[np.int64], burst: dict[int, tuple[bytes, bytes]], times: _Times) -> bool:
    """Whether any star holds two shots of one burst (one camera, times 0 < dt <= BURST_SECONDS apart)."""
    nodes = np.fromiter(burst, dtype=np.int64, count=len(burst))
    star = centre_of[nodes]
    camera = np.array([burst[i][0] for i in nodes.tolist()], dtype=np.bytes_)
    taken = np.array([burst[i][1] for i in nodes.tolist()], dtype=np.bytes_)
    order = np.lexsort((taken, camera, star))
    star, camera, taken = star[order], camera[order], taken[order]
    # Runs of one star and camera; those holding more than one time are looked at closely.
    group = np.cumsum(_run_heads(star) | _run_heads(camera))
    other = np.flatnonzero((group[1:] == group[:-1]) & (taken[1:] != taken[:-1]))
    for g in np.unique(group[other]).tolist():
        shots = sorted(set(taken[group == g].tolist()))
        if any(times.apart(x, y) for x, y in itertools.combinations(shots, 2)):
            return True
    return False


def _stars_in_python(
    src: npt.NDArray[np.int64],
    dst: npt.NDArray[np.int64],
    degree: npt.NDArray[np.int64],
    ranked: npt.NDArray[np.int64],
    burst: dict[int, tuple[bytes, bytes]],
    times: _Times,
) -> npt.NDArray[np.int64]:
    """_greedy_stars one star at a time, where a star refuses a shot of a burst when it holds another shot of it."""
    adjacent = dst[np.lexsort((dst, src))].tolist()  # each node's neighbours in node order
    ends = np.cumsum(degree).tolist()
    degrees = degree.tolist()

    def same_shot_burst(x: tuple[bytes, bytes], y: tuple[bytes, bytes]) -> bool:
        return x[0] == y[0] and x[1] != y[1] and times.apart(x[1], y[1])

    centre_of = [-1] * len(degree)
    for i in ranked.tolist():
        if centre_of[i] >= 0:
            continue
        star = [i]
        for j in adjacent[ends[i] - degrees[i] : ends[i]]:
            if centre_of[j] >= 0:
                continue
            # Two shots of one burst may each match a copy without a time: still never in one group.
            fj = burst.get(j)
            if fj is None or not any(m in burst and same_shot_burst(fj, burst[m]) for m in star):
                star.append(j)
        for m in star:
            centre_of[m] = i
    return np.array(centre_of, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Explained:
    """match on arrays, for pairs of rows: whether each pair matches, and why."""

    ok: npt.NDArray[np.bool_]
    distance: npt.NDArray[np.int64]
    transform: npt.NDArray[np.int64]  # by TRANSFORMS, -1 for upright
    dhash: npt.NDArray[np.int64]  # -1 when not needed
    crop: npt.NDArray[np.int64]  # 0 CROP, 1 WIDER, -1 when not a crop


def _explain(
    lib: Library,
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    rule: MatchRule,
    *,
    crops: bool = True,
    bursts: bool = True,
) -> _Explained:
    """match(a, b) for rows a and b, on arrays (odd rows aside: see Library.odd); without crops or bursts, that
    part of the rule is left out."""
    pa, pb = lib.phash[a], lib.phash[b]
    upright = np.bitwise_count(pa ^ pb).astype(np.int64)
    best, how = upright, np.full(len(a), -1, dtype=np.int64)
    if rule.rotations:
        both = np.flatnonzero(lib.turned[a] & lib.turned[b])
        if len(both):
            va, vb = lib.variants[a[both]], lib.variants[b[both]]
            pa2, pb2 = pa[both], pb[both]
            sub, subhow = upright[both], how[both]
            for k, back in enumerate(_INVERSE_AT):
                turned = np.maximum(np.bitwise_count(va[:, k] ^ pb2), np.bitwise_count(vb[:, back] ^ pa2))
                better = turned < sub
                sub = np.where(better, turned, sub)
                subhow = np.where(better, k, subhow)
            best = best.copy()
            best[both], how[both] = sub, subhow
    near = best <= rule.threshold
    confirm = np.bitwise_count(lib.dhash[a] ^ lib.dhash[b]).astype(np.int64)
    second = ~near & (upright <= max(CANDIDATE_PHASH, rule.threshold)) & (confirm <= CONFIRM_DHASH)
    if not rule.two_stage:
        second[:] = False
    ok = near | second
    distance = np.where(near, best, upright)
    dhash = np.where(second, confirm, -1)
    crop = np.full(len(a), -1, dtype=np.int64)
    if crops and rule.crops and lib.crops.shape[1]:
        pick = np.flatnonzero(~ok & lib.has_crops[a] & lib.has_crops[b])
        if len(pick):
            crop_d, crop_h, a_wider = _crop_distances(lib.crops[a[pick]], lib.crops[b[pick]])
            found = crop_d >= 0
            at = pick[found]
            ok[at] = True
            distance[at], dhash[at] = crop_d[found], crop_h[found]
            crop[at] = np.where(a_wider[found], 1, 0)
    if bursts and rule.bursts_apart:
        ok &= ~_same_bursts(lib, a, b)
    return _Explained(ok, distance, np.where(near, how, -1), dhash, crop)


def _crop_distances(
    a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """crop_match on arrays of crop signatures: (pHash, dHash) distances, -1 where there is no crop match, and
    whether a is the wider picture (b a crop of it)."""
    pa, da, ca = _unpack_crops(a)
    pb, db, cb = _unpack_crops(b)
    bests = []
    for p_out, d_out, c_out, p_in, d_in, c_in in ((pa, da, ca, pb, db, cb), (pb, db, cb, pa, da, ca)):
        dp = np.bitwise_count(p_out[:, 1:] ^ p_in[:, :1]).astype(np.int64)
        dd = np.bitwise_count(d_out[:, 1:] ^ d_in[:, :1]).astype(np.int64)
        ok = (dp <= CROP_PHASH) & _crop_agrees(d_out[:, 1:], d_in[:, :1], c_out[:, 1:], c_in[:, :1])
        bests.append(np.where(ok, dp * 65 + dd, _NO_CROP).min(axis=1, initial=_NO_CROP))
    a_wider = bests[0] <= bests[1]  # as crop_match: a tie goes to a being the wider
    best = np.minimum(bests[0], bests[1])
    found = best < _NO_CROP
    dist, dh = np.divmod(best, 65)
    return np.where(found, dist, -1), np.where(found, dh, -1), a_wider & found


def _same_bursts(lib: Library, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """same_burst for pairs of rows."""
    ca, ta, tb = lib.camera[a], lib.taken[a], lib.taken[b]
    maybe = np.flatnonzero((ca != b"") & (ca == lib.camera[b]) & (ta != b"") & (tb != b"") & (ta != tb))
    out = np.zeros(len(a), dtype=bool)
    if len(maybe):
        times = _Times()
        out[maybe] = [times.apart(x, y) for x, y in zip(ta[maybe].tolist(), tb[maybe].tolist(), strict=True)]
    return out


class _Times:
    """EXIF times (UTF-8) read once each, for telling shots of one burst apart as same_burst does."""

    def __init__(self) -> None:
        self._read: dict[bytes, datetime | None] = {}

    def apart(self, x: bytes, y: bytes) -> bool:
        """Whether two different times are 0 < dt <= BURST_SECONDS apart."""
        a, b = self._get(x), self._get(y)
        if a is None or b is None:
            return False
        return 0 < abs((a - b).total_seconds()) <= BURST_SECONDS

    def _get(self, raw: bytes) -> datetime | None:
        if raw not in self._read:
            try:
                self._read[raw] = datetime.fromisoformat(raw.decode("utf-8", "surrogatepass"))
            except ValueError:
                self._read[raw] = None
        return self._read[raw]


def _members(
    lib: Library,
    rows: npt.NDArray[np.int64],
    cluster: npt.NDArray[np.int64],
    centre_row: npt.NDArray[np.int64],
    listing: tuple[npt.NDArray[Any], ...],
    path_rank: npt.NDArray[np.int64],
    rule: MatchRule,
) -> Grouping:
    """The groups of clustered files: each cluster's reference is the best copy among its files that share the
    centre's key (so that every member matches it); the other files are exact copies, the same image, or matched
    against the reference (a file that does not match, another shot of the reference's burst, is left out)."""
    centre = centre_row[cluster]
    eligible = (centre < 0) | _same_keys(lib, rows, np.maximum(centre, 0), rule)
    # Quality as in _quality, ties to the first in the cluster's listing.
    area = lib.width[rows] * lib.height[rows]
    order = np.lexsort((*listing, path_rank[rows], -lib.size[rows], -area, ~eligible, cluster))
    firsts = order[_run_heads(cluster[order])]
    ref_of = np.empty(len(centre_row), dtype=np.int64)
    ref_of[cluster[firsts]] = rows[firsts]
    ref = ref_of[cluster]
    is_ref = rows == ref
    exact = is_ref | (lib.content[rows] == lib.content[ref])
    image = ~exact & (lib.image[rows] == lib.image[ref])
    near = np.flatnonzero(~exact & ~image)
    kind = np.where(exact, 0, np.where(image, 1, 2)).astype(np.int8)
    keep = exact | image
    distance = np.zeros(len(rows), dtype=np.int64)
    transform = np.full(len(rows), -1, dtype=np.int64)
    dhash = np.full(len(rows), -1, dtype=np.int64)
    crop = np.full(len(rows), -1, dtype=np.int64)
    if len(near):
        m = _explain(lib, rows[near], ref[near], rule)
        keep[near], distance[near], transform[near], dhash[near], crop[near] = (
            m.ok,
            m.distance,
            m.transform,
            m.dhash,
            m.crop,
        )
        if lib.odd:
            for k in _odd_pairs(lib, rows[near], ref[near]).tolist():
                f = near[k]
                found = match(lib.fingerprint(int(rows[f])), lib.fingerprint(int(ref[f])), rule)
                keep[f] = found is not None
                if found is not None:
                    distance[f], dhash[f] = found.distance, -1 if found.dhash is None else found.dhash
                    transform[f] = -1 if found.transform is None else TRANSFORMS.index(found.transform)
                    crop[f] = -1 if found.crop is None else _CROPS.index(found.crop)
    # A cluster whose other files all turned out to be other shots of its reference's burst is no group.
    kept = np.flatnonzero(keep)
    sizes = np.bincount(cluster[kept], minlength=len(centre_row))
    kept = kept[sizes[cluster[kept]] > 1]
    # Groups in the order of their references' paths; the reference first, then exact copies, same images and near
    # copies, each by distance and path.
    ref_rank = path_rank[ref_of]
    cl = cluster[kept]
    order = np.lexsort(
        (
            *(key[kept] for key in listing),
            path_rank[rows[kept]],
            distance[kept],
            kind[kept],
            ~is_ref[kept],
            cl,
            ref_rank[cl],
        )
    )
    chosen = kept[order]
    cl = cluster[chosen]
    starts = np.flatnonzero(np.r_[True, cl[1:] != cl[:-1], True]) if len(cl) else np.zeros(1, dtype=np.int64)
    member_rows = rows[chosen]
    by_id = np.argsort(lib.ids[member_rows], kind="stable")
    member = np.empty(len(chosen), dtype=np.int64)
    member[by_id] = np.arange(len(chosen))  # a file is in one group at most
    return Grouping(
        ids=lib.ids[member_rows[by_id]],
        rows=member_rows[by_id],
        member=member,
        starts=starts.astype(np.int64),
        kind=kind[chosen],
        distance=distance[chosen],
        transform=transform[chosen].astype(np.int8),
        dhash=dhash[chosen],
        crop=crop[chosen].astype(np.int8),
    )


def _same_keys(
    lib: Library, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], rule: MatchRule
) -> npt.NDArray[np.bool_]:
    """Whether rows a and b have the same _node_key."""
    same: npt.NDArray[np.bool_] = lib.phash[a] == lib.phash[b]
    if rule.rotations:
        same &= lib.turned[a] == lib.turned[b]
        same &= (lib.variants[a] == lib.variants[b]).all(axis=1)
    if rule.two_stage:
        same &= lib.dhash[a] == lib.dhash[b]
    if rule.bursts_apart:
        same &= (lib.camera[a] == lib.camera[b]) & (lib.taken[a] == lib.taken[b])
    if rule.crops:
        same &= lib.has_crops[a] == lib.has_crops[b]
        if lib.crops.shape[1]:
            same &= (lib.crops[a] == lib.crops[b]).all(axis=1)
    if lib.odd:
        for k in _odd_pairs(lib, a, b).tolist():
            same[k] = _key_at(lib, int(a[k]), rule) == _key_at(lib, int(b[k]), rule)
    return same


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
    combos = list(itertools.combinations(range(blocks), agree))
    if not same:
        return _cross(queries, targets, threshold, spans, combos)
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


_QUERY_SLAB = 1 << 17  # queries looked up at once: their arrays stay in the cache
_WALK = 4  # positions of a run of targets checked one after another before the rest is expanded at once


def _cross(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    threshold: int,
    spans: list[tuple[int, int]],
    combos: list[tuple[int, ...]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """_join of queries and other targets. For each choice of blocks the targets are put in tables by key (none, one
    or several targets; the first one; where their run starts in key order and how long it is); the queries look
    their keys up a slab at a time, and only keys holding several targets are walked. With much to do, the choices
    of blocks are shared out between threads (numpy lets go of the GIL while it looks up a slab)."""
    workers = min(_CROSS_THREADS, len(combos), os.cpu_count() or 1)
    if workers < 2 or len(queries) * len(combos) < _THREADED_WORK:
        found = _cross_part(queries, targets, threshold, spans, combos, range(len(combos)))
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="dedupe-join") as pool:
            shares = [range(k, len(combos), workers) for k in range(workers)]  # widths of keys alike in each
            parts = pool.map(lambda share: _cross_part(queries, targets, threshold, spans, combos, share), shares)
            found = [codes for part in parts for codes in part]
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.divmod(np.sort(np.concatenate(found)), len(targets))


_CROSS_THREADS = 2  # each holds tables of its own (about 70 MiB at 22-bit keys)
_THREADED_WORK = 1 << 17  # queries times choices of blocks from which threads pay


def _cross_part(
    queries: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.uint64],
    threshold: int,
    spans: list[tuple[int, int]],
    combos: list[tuple[int, ...]],
    share: range,
) -> list[npt.NDArray[np.int64]]:
    """_cross for the choices of blocks at these positions of combos: the pairs found, as codes."""
    nq, nt = len(queries), len(targets)
    # Keys wider than so many values need are folded: the tables stay small for few.
    widest = max(sum(spans[k][1] for k in combo) for combo in combos)
    bits = min(widest, _MAX_KEY_BITS, max(16, max(nq, nt).bit_length()))
    # Tables reused from one choice of blocks to the next, cleared where they were written.
    kind_of = np.zeros(1 << bits, dtype=np.int8)
    first_of = np.zeros(1 << bits, dtype=np.uint64)
    run_of = np.zeros(1 << bits, dtype=np.int64)  # where the run of a key starts in key order << 32 | its length
    buffers = (np.empty(min(nq, _QUERY_SLAB), dtype=np.uint64), np.empty(min(nq, _QUERY_SLAB), dtype=np.uint64))
    target_buffers = (np.empty(nt, dtype=np.uint64), np.empty(nt, dtype=np.uint64))
    found: list[npt.NDArray[np.int64]] = []
    for c in share:
        combo = combos[c]
        own = _combo_mask(spans, combo)
        earlier = [_combo_mask(spans, e) for e in combos[:c]]
        parts = [spans[k] for k in combo]
        tkeys = _slab_key(targets, parts, *target_buffers, bits)
        torder = _argsort_keys(tkeys, bits)
        sorted_keys = tkeys[torder]
        del tkeys
        sorted_values = targets[torder]
        heads = np.nonzero(_run_heads(sorted_keys))[0]
        sizes = np.diff(heads, append=nt)
        head_keys = sorted_keys[heads]
        del sorted_keys
        kind_of[head_keys] = np.minimum(sizes, 2)
        first_of[head_keys] = sorted_values[heads]
        run_of[head_keys] = (heads << 32) | sizes
        del heads, sizes
        for start in range(0, nq, _QUERY_SLAB):
            values = queries[start : start + _QUERY_SLAB]
            keys = _slab_key(values, parts, buffers[0][: len(values)], buffers[1][: len(values)], bits)
            kinds = kind_of[keys]
            hit = np.nonzero(kinds != 0)[0]  # (a bool array is searched several times faster)
            keys = keys[hit]
            values = values[hit]
            keep = _confirm(values ^ first_of[keys], threshold, own, earlier)
            if len(keep):
                found.append((hit[keep] + start) * nt + torder[run_of[keys[keep]] >> 32])
            more = np.nonzero(kinds[hit] == 2)[0]
            if len(more):
                # The rest of each run of several targets: a few positions one after another, then what is left
                # of long runs at once.
                hit, values, runs = hit[more], values[more], run_of[keys[more]]
                at = (runs >> 32) + 1
                stop = at + (runs & 0xFFFFFFFF) - 1
                for _ in range(_WALK):
                    keep = _confirm(values ^ sorted_values[at], threshold, own, earlier)
                    if len(keep):
                        found.append((hit[keep] + start) * nt + torder[at[keep]])
                    at += 1
                    more = np.nonzero(at < stop)[0]
                    hit, values, at, stop = hit[more], values[more], at[more], stop[more]
                if len(hit):
                    rest = _pairs_in_buckets(
                        queries, targets, torder, hit + start, at, stop - at, threshold, own, earlier
                    )
                    found.extend(rest)
        kind_of[head_keys] = 0
    return found


def _slab_key(
    values: npt.NDArray[np.uint64],
    parts: list[tuple[int, int]],
    out: npt.NDArray[np.uint64],
    scratch: npt.NDArray[np.uint64],
    bits: int,
) -> npt.NDArray[np.int64]:
    """The key of each value made of the chosen blocks (shift, width), folded to at most bits bits, written into
    out."""
    at = 0
    for shift, width in parts:
        part = out if at == 0 else scratch
        np.right_shift(values, np.uint64(shift), out=part)
        np.bitwise_and(part, np.uint64((1 << width) - 1), out=part)
        if at:
            np.left_shift(part, np.uint64(at), out=part)
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
_CROPS = (CROP, WIDER)  # Grouping.crop


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
    p, d, c = _unpack_crops(np.frombuffer(a.crops + b.crops, dtype=np.uint8).reshape(2, CROP_BYTES))
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
    raw: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    """Crop signatures (fingerprint.crop_signature, one CROP_BYTES row each) as arrays: the pHashes and dHashes of
    every window, (signatures, windows), and their colours, (signatures, windows, 3)."""
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


def _make_group(files: list[FileRecord], centre: _Key | None, rule: MatchRule) -> DuplicateGroup:
    """The group of files around the centre."""
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
_KINDS = (MatchKind.EXACT, MatchKind.IMAGE, MatchKind.NEAR)  # Grouping.kind


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
