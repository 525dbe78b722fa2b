"""The grouping of fingerprinted files: exact, same-image and near duplicates.

Near duplicates are clustered around a reference: every member of a near group matches the group's reference
itself (see find_groups for the rule: pHash, turned and mirrored pHashes, a dHash second opinion, crops, bursts
kept apart), so a chain of small steps never joins two unlike photos.

The work is done on a Library's columns, in four steps: image classes and nodes (files alike in all the rule
compares), the matching pairs of nodes (pairs.join, confirmed by match.explain), stars around the best-connected
nodes, and each star's members. find_groups does it for records; stored_groups for the stored files below some
roots (reading the store, never a file). The module is about 750 lines, a little over the house's 700: the four
steps share the node key and its columns, which would have to become public to be split across modules.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from dedupe import column_cache
from dedupe.crop_search import crop_pairs
from dedupe.library import Library, gc_paused, release_freed_memory
from dedupe.match import (
    CONFIRM_DHASH,
    CROPS,
    KIND_RANK,
    KINDS,
    MatchRule,
    Times,
    explain,
    match,
    readings,
    same_bursts,
    searches_crops,
)
from dedupe.models import (
    TRANSFORMS,
    VERSION,
    DuplicateGroup,
    FileRecord,
    Fingerprint,
    GroupMember,
    MatchKind,
    Skipped,
    Summary,
)
from dedupe.pairs import differs, join, join_within, run_heads
from dedupe.store import Store

_Key = tuple[int, tuple[int, ...], int, str, str, bytes]


def find_groups(records: Iterable[FileRecord], rule: MatchRule = MatchRule()) -> list[DuplicateGroup]:
    """Group files holding the same picture. Deterministic: input order never changes the answer.

    A file matches another when (see match and MatchRule, in force as rule.for_count of the files gives it):
    - their pHashes are within rule.threshold; with rotations, also when one of them turned or mirrored is
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
    grouping = find_groups_in(Library.from_records(files), rule)
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
    kind: npt.NDArray[np.int8]  # each member's MatchKind, by KINDS
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
        kinds = [KINDS[k] for k in self.kind.tolist()]
        transforms = [None if t < 0 else TRANSFORMS[t] for t in self.transform.tolist()]
        dhashes = [None if d < 0 else d for d in self.dhash.tolist()]
        crops = [None if c < 0 else CROPS[c] for c in self.crop.tolist()]
        # A group's kind is its weakest member's (the reference is EXACT).
        group_kinds = [KINDS[k] for k in np.maximum.reduceat(self.kind, self.starts[:-1]).tolist()]
        starts = self.starts.tolist()
        with gc_paused():
            members = list(map(GroupMember, files, kinds, self.distance.tolist(), transforms, dhashes, crops))
            return [
                DuplicateGroup(kind=kind, members=tuple(members[start:end]))
                for kind, start, end in zip(group_kinds, starts, starts[1:], strict=False)
            ]


def find_groups_in(library: Library, rule: MatchRule = MatchRule()) -> Grouping:
    """find_groups on a library of files as columns: the same groups, as rows, made into records later.

    Paths reaching one inode are one file (the first path counts). Files are grouped into image classes (the same
    image data, which includes identical bytes), and classes with identical perceptual hashes (and, for bursts,
    camera and time) into nodes; low-information images only group with their own image class. Pairs of matching
    nodes are found and confirmed on arrays, stars are formed around the best-connected nodes, and each star's
    files are matched with its reference on arrays too.
    """
    lib = library
    files = lib.distinct_files()
    rule = rule.for_count(len(files))
    n = len(lib)
    path_rank, distinct_paths = lib.path_ranks()
    # The first file (in path order) of each image class stands for it.
    cls = np.full(n, -1, dtype=np.int64)
    image = lib.image[files]
    if len(files) and image.min() >= 0 and image.max() < 2 * n:  # numbered from 0 (as the store and records are)
        first = np.full(int(image.max()) + 1, n, dtype=np.int64)
        np.minimum.at(first, image, files)  # (a stable sort of the numbers took 0.2 s at 1M)
        cls[files] = first[image]
        del first
    else:
        order = files[np.argsort(image, kind="stable")]
        heads = run_heads(lib.image[order])
        cls[order] = order[np.flatnonzero(heads)][np.cumsum(heads) - 1]
        del order, heads
    del image
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
        # Quality of each file as a dense rank: most pixels, then largest file, then smallest path. Only the files
        # of linked nodes are ranked (only linked nodes are ordered by it), among themselves: the same order.
        linked = np.zeros(count, dtype=bool)
        linked[a] = linked[b] = True
        at = np.flatnonzero(in_node)
        at = at[linked[node_of[at]]]
        rows = files[at]
        area, size, rank = lib.width[rows] * lib.height[rows], lib.size[rows], path_rank[rows]
        q = np.lexsort((rank, -size, -area))
        changed = np.r_[True, differs(area[q]) | differs(size[q]) | differs(rank[q])]
        quality = np.empty(len(at), dtype=np.int64)
        quality[q] = np.cumsum(changed)
        del linked, rows, area, size, rank, q, changed
        best = np.full(count, len(files) + 1, dtype=np.int64)
        np.minimum.at(best, node_of[at], quality)
        del at, quality
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


@dataclass(frozen=True, slots=True)
class _NodeList:
    rep: npt.NDArray[np.int64]  # the row standing for each node (that of its first image class), in node order
    classes: npt.NDArray[np.int64]  # the rows standing for the image classes, node after node, each in path order
    node: npt.NDArray[np.int64]  # the node of each of classes


def _nodes(lib: Library, reps: npt.NDArray[np.int64], rule: MatchRule) -> _NodeList:
    """Image classes (by the rows standing for them) with identical perceptual hashes (and, for bursts, camera and
    time) as nodes, in key order: pHash first; classes with one pHash are split and ordered by their whole key."""
    order = np.argsort(lib.phash[reps])  # (runs of one pHash are ordered below, whatever their order here)
    sorted_phash = lib.phash[reps[order]]
    tied = sorted_phash[1:] == sorted_phash[:-1]
    new = run_heads(sorted_phash)  # where a node starts (refined below where pHashes are tied)
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
        # rot270 match of a to b is a rot90 match of b to a, so that variant need not be looked up. The pairs of
        # upright pHashes come from the same tables (join_within).
        # The turned nodes in the order of their rows: the turned pHashes are then read from the columns in
        # order (in node order, pHash order, each read was a cache miss: 0.3-0.6 s at 1M, 0.1 s in row order).
        node_at = np.full(len(lib), -1, dtype=np.int64)
        node_at[rep] = np.arange(count)
        at = node_at[node_at >= 0]
        at = at[turned[at]]
        del node_at
        ks = [k for k, name in enumerate(TRANSFORMS) if name != "rot270"]
        queries = np.empty(len(ks) * len(at), dtype=np.uint64)
        rows = rep[at]
        for j, k in enumerate(ks):  # a variant at a time: the turned pHashes of a million nodes take 48 MiB
            queries[j * len(at) : (j + 1) * len(at)] = lib.variants[rows, k]
        del rows
        qi, tj, ua, ub = join_within(queries, phash, rule.threshold)
        del queries
        found.append((ua, ub))
        a, b = at[qi % len(at)], tj
        keep = (a != b) & turned[b]
        found.append((np.minimum(a, b)[keep], np.maximum(a, b)[keep]))
        del qi, tj, ua, ub, keep, a, b
    else:
        found.append(join(phash, phash, rule.threshold, same=True))
    if rule.two_stage:
        # The second opinion indexes the tighter dHash condition; the looser pHash one is confirmed below.
        dhash = lib.dhash[rep]
        found.append(join(dhash, dhash, CONFIRM_DHASH, same=True))
    cropped = np.zeros(0, dtype=np.int64)
    has_crops = lib.has_crops[rep] if rule.crops else np.zeros(count, dtype=bool)
    if has_crops.any():
        at = np.flatnonzero(has_crops)
        x, y = crop_pairs(lib.crops, rep[at])
        x, y = at[x], at[y]
        found.append((x, y))
        cropped = np.sort(x.astype(np.int64) * count + y)
        cropped = cropped[run_heads(cropped)]  # (np.unique of a plain array imports numpy.ma: 6 ms of a scan)
    if lib.odd:
        found.append(_colour_reading_pairs(lib, rep, rule))
    codes = np.sort(np.concatenate([a.astype(np.int64) * count + b for a, b in found]))
    del found
    codes = codes[run_heads(codes)]
    a, b = np.divmod(codes, count)
    ra, rb = rep[a], rep[b]
    keep = explain(lib, ra, rb, rule, crops=False, bursts=False).ok
    if len(cropped):
        keep |= np.isin(codes, cropped)
    if rule.bursts_apart:
        keep &= ~same_bursts(lib, ra, rb)
    if lib.odd:
        for k in _odd_pairs(lib, ra, rb).tolist():
            keep[k] = match(lib.fingerprint(int(ra[k])), lib.fingerprint(int(rb[k])), rule) is not None
    return a[keep], b[keep]


def _colour_reading_pairs(
    lib: Library, rep: npt.NDArray[np.int64], rule: MatchRule
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Candidate node pairs (a < b) by the second reading of pictures with transparency (match.readings), found as
    the first readings are: its pHash and turned pHashes within the threshold of a node's pHash, and with the second
    opinion its dHash within CONFIRM_DHASH of a node's dHash. These rows are odd, so match confirms each pair."""
    at: list[int] = []
    colours: list[Fingerprint] = []
    for node in np.flatnonzero(np.isin(rep, np.fromiter(lib.odd, dtype=np.int64))).tolist():
        read = readings(lib.odd[int(rep[node])])
        if len(read) > 1:
            at.append(node)
            colours.append(read[1])
    empty = np.zeros(0, dtype=np.int64)
    if not at:
        return empty, empty
    nodes = np.array(at, dtype=np.int64)
    found = []
    turns = len(TRANSFORMS) if rule.rotations else 0
    queries = np.array([[c.phash, *c.variants[:turns]] for c in colours], dtype=np.uint64)
    qi, tj = join(queries.ravel(), lib.phash[rep], rule.threshold, same=False)
    found.append((nodes[qi // (1 + turns)], tj))
    if rule.two_stage:
        qi, tj = join(np.array([c.dhash for c in colours], dtype=np.uint64), lib.dhash[rep], CONFIRM_DHASH, same=False)
        found.append((nodes[qi], tj))
    a = np.concatenate([x for x, _ in found]).astype(np.int64)
    b = np.concatenate([y for _, y in found]).astype(np.int64)
    keep = a != b
    return np.minimum(a, b)[keep], np.maximum(a, b)[keep]


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
    times = Times()
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
    heads = first[run_heads(x[first])]
    centre_of[x[heads]] = y[heads]
    return centre_of


def _bursts_in_stars(centre_of: npt.NDArray[np.int64], burst: dict[int, tuple[bytes, bytes]], times: Times) -> bool:
    """Whether any star holds two shots of one burst (one camera, times 0 < dt <= BURST_SECONDS apart)."""
    nodes = np.fromiter(burst, dtype=np.int64, count=len(burst))
    star = centre_of[nodes]
    camera = np.array([burst[i][0] for i in nodes.tolist()], dtype=np.bytes_)
    taken = np.array([burst[i][1] for i in nodes.tolist()], dtype=np.bytes_)
    order = np.lexsort((taken, camera, star))
    star, camera, taken = star[order], camera[order], taken[order]
    # Runs of one star and camera; those holding more than one time are looked at closely.
    group = np.cumsum(run_heads(star) | run_heads(camera))
    other = np.flatnonzero((group[1:] == group[:-1]) & (taken[1:] != taken[:-1]))
    runs = group[other]  # ascending: group is a running count
    for g in runs[run_heads(runs)].tolist():
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
    times: Times,
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
    firsts = order[run_heads(cluster[order])]
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
        m = explain(lib, rows[near], ref[near], rule)
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
                    crop[f] = -1 if found.crop is None else CROPS.index(found.crop)
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
    by_id = np.argsort(lib.ids[member_rows])  # (ids are distinct)
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
    rest = sorted(members[1:], key=lambda m: (KIND_RANK[m.match], m.distance, m.file.path))
    kind = max((m.match for m in rest), key=KIND_RANK.__getitem__, default=MatchKind.EXACT)
    return DuplicateGroup(kind=kind, members=(members[0], *rest))


def split_not_duplicates(
    groups: Iterable[DuplicateGroup],
    pairs: Collection[tuple[str, str]],
    rule: MatchRule = MatchRule(),
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
    rule = rule.for_count(count)

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


def stored_groups(
    store: Store, roots: Sequence[str | os.PathLike[str]], rule: MatchRule = MatchRule()
) -> tuple[list[DuplicateGroup], list[Skipped], int]:
    """The duplicate groups among the stored files below the roots, without reading any file.

    Files the user said are not duplicates (see Store.add_not_duplicates) are never grouped together.

    Returns the groups, the files that could not be fingerprinted, and the number of images considered.
    """
    real_roots = [os.path.realpath(os.fspath(r)) for r in roots]
    crops = rule.crops
    with store.reading():  # one view of the store, for the files as columns and later the records of the grouped
        if crops is None and searches_crops(store.count_files_under(real_roots), None):
            crops = True  # no more pictures than files, so the window hashes are read with the rest, once
        library = column_cache.library_under(store, real_roots, VERSION, crops=bool(crops))
        images = len(library)
        if crops is None:  # decided by the number of pictures: their window hashes are read only when searched
            crops = searches_crops(images, None)
            if crops and images:
                library = column_cache.library_under(store, real_roots, VERSION, crops=True)
        rule = replace(rule, crops=crops)
        grouping = find_groups_in(library, rule)
        release_freed_memory()  # what the grouping freed (the C allocator keeps it), before the rows are taken
        grouped = library.take(grouping.rows)
        del library  # before the records are made
        release_freed_memory()
        records = store.records_of(grouped)
        del grouped  # the records hold what groups need
        release_freed_memory()
        # The groups are made on another thread (Python objects, 0.6 s at 330,000 files) while the store is read
        # here: SQLite lets go of the GIL, and these reads walk every path below the roots (0.3-0.4 s at 1M).
        with ThreadPoolExecutor(1, thread_name_prefix="dedupe-groups") as pool:
            made = pool.submit(grouping.groups, records)
            skipped = [Skipped(path, reason) for path, reason in store.errors_under(real_roots)]
            pairs = store.not_duplicate_pairs()
            undecoded = [_undecoded_group(files) for files in store.undecoded_copies_under(real_roots)]
            groups = made.result()
    return split_not_duplicates(groups, pairs, rule) + undecoded, skipped, images


def _undecoded_group(files: Sequence[tuple[str, int, int, int, int, str]]) -> DuplicateGroup:
    """Byte copies of a file that could not be decoded (a truncated photo): exact duplicates all the same, since
    byte identity needs no decoding. Their fingerprint holds only the content hash."""
    members = tuple(
        GroupMember(
            FileRecord(path, size, mtime_ns, dev, ino, Fingerprint(h, h, "undecodable", 0, 0, 0, 0, None, True)),
            MatchKind.EXACT,
            0,
        )
        for path, size, mtime_ns, dev, ino, h in files
    )
    return DuplicateGroup(MatchKind.EXACT, members)
