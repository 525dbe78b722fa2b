"""Finding the stored images nearest to a query image: for search, and for checking uploads against a blocklist.

A query is matched against every fingerprint of the store's current algorithm: the files that scans fingerprinted
and the fingerprints imported from shared lists. A stored fingerprint matches when it has the same bytes (content
hash), the same image data (image hash), or a pHash within the threshold; pictures too plain to compare
(low_info) only match by content or image hash, as in grouping. As in match, a picture with transparency matches
one without by either of its readings (match.readings), two pictures with transparency flattened only: a query with
transparency is also looked up by its colours alone, against the fingerprints without transparency, and finds its
copies that dropped the alpha channel; a query without transparency is also looked up against the second readings of
the stored pictures with transparency (their own block-indexed table, store migration 11), and finds the stored
picture it is such a copy of: a near match at the second reading's distances. Imported fingerprints carry no second
reading.

Two ways to search give the same answers:

- straight from a Store, reading only the candidate rows through the pHash block indexes (the pigeonhole
  principle, as in pairs.join): what a one-off `dedupe check` does, in milliseconds at a million
  fingerprints;
- from a SearchIndex, an immutable in-memory snapshot of the hashes scanned with numpy: for a long-running
  program (a web application) that checks many uploads, from as many threads as it likes.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dedupe import fingerprint
from dedupe.errors import FileSkipped
from dedupe.match import DEFAULT_THRESHOLD, KIND_RANK, KINDS, readings
from dedupe.models import ALPHA_VARIANTS, CheckResult, Fingerprint, HitSource, MatchKind, SearchHit, SearchResult
from dedupe.pdq import PDQ_THRESHOLD, PdqIndex
from dedupe.pdq import hash_bytes as hash_pdq
from dedupe.store import PHASH_BLOCK_BITS, PHASH_BLOCKS, FingerprintColumns, Store

if TYPE_CHECKING:
    from dedupe.store_pg import PostgresStore

# A query image: a path, the image's bytes (an upload), or a fingerprint already taken.
Query = str | os.PathLike[str] | bytes | Fingerprint

MAX_SEARCH_THRESHOLD = 64
# Above this radius per block (thresholds of 20 and more), the block indexes would hand over a good part of a
# large store: reading the hash columns whole is then faster (measured with bench/check_bench.py --structures).
_MAX_BLOCK_RADIUS = 4


@dataclass(frozen=True, slots=True)
class _Entry:
    """A matching fingerprint before its paths or label are looked up."""

    imported: bool
    ident: int
    content_hash: str
    match: MatchKind
    distance: int
    dhash_distance: int


class SearchIndex:
    """An immutable in-memory snapshot of a store's searchable fingerprints.

    Load it once (under a second per million fingerprints) and query it from any number of threads: a query only
    reads the arrays, and looks up the paths or labels of its matches in the store, which has its own lock. The
    index does not see later changes to the store: load a new one after a scan or an import.
    """

    def __init__(
        self,
        store: Store | PostgresStore,
        columns: FingerprintColumns,
        pdq: PdqIndex | None = None,
        second_readings: FingerprintColumns | None = None,
    ) -> None:
        """columns: the fingerprints; second_readings: the second readings of the stored pictures with
        transparency (SearchSQL.second_reading_columns), none when not given."""
        second = second_readings if second_readings is not None else FingerprintColumns.empty()
        for part in (columns, second):
            for name in FingerprintColumns.__slots__:
                getattr(part, name).flags.writeable = False
        self._store = store
        self._columns = columns
        self._second = second
        self.pdq = pdq if pdq is not None else PdqIndex.of([])

    @classmethod
    def load(cls, store: Store | PostgresStore, *, source: Store | PostgresStore | None = None) -> SearchIndex:
        """The index of a store's fingerprints (and PDQ hashes). With source, they are read through that
        connection instead, so that loading a new index never holds up queries made with the one in use."""
        reader = source or store
        with reader.reading():
            columns = reader.fingerprint_columns(fingerprint.VERSION)
            second = reader.second_reading_columns(fingerprint.VERSION)
            pdq = PdqIndex.load(reader) if reader.count_pdq() else None
        return cls(store, columns, pdq, second)

    def __len__(self) -> int:
        return len(self._columns) + len(self.pdq)

    @property
    def store(self) -> Store | PostgresStore:
        return self._store

    def find_similar(
        self, query: Query, *, threshold: int = DEFAULT_THRESHOLD, limit: int | None = None
    ) -> SearchResult:
        return find_similar(query, self, threshold=threshold, limit=limit)

    def check(self, query: Query, *, threshold: int = DEFAULT_THRESHOLD) -> CheckResult:
        return check(query, self, threshold=threshold)


def fingerprint_query(query: Query) -> tuple[str, Fingerprint]:
    """A query's display name and fingerprint; an unreadable or corrupt image raises FileSkipped with the reason."""
    if isinstance(query, Fingerprint):
        return f"fingerprint {query.content_hash}", query
    if isinstance(query, bytes | bytearray | memoryview):
        data = bytes(query)
        return f"{len(data)} bytes", fingerprint.fingerprint_bytes(data, fingerprint.hash_bytes(data))
    name = os.fspath(query)
    path = Path(name)
    # Said here, since fingerprint_file words these for a scan ("vanished during the scan").
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileSkipped("no such file") from None
    except OSError:
        mode = stat.S_IFREG  # fingerprint_file words why it cannot be read
    if stat.S_ISDIR(mode):
        raise FileSkipped("is a folder, not an image")
    if not stat.S_ISREG(mode):
        # Opening a named pipe waits for a writer, maybe for ever; as the scan does, none is opened.
        raise FileSkipped("not a regular file (a pipe, socket or device), not opened")
    return name, fingerprint.fingerprint_file(path)


def find_similar(
    query: Query,
    where: Store | PostgresStore | SearchIndex,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    limit: int | None = None,
) -> SearchResult:
    """The stored images and imported fingerprints that match a query image, closest first.

    Closest means: the same bytes, then the same image data, then by pHash distance, then by dHash distance.
    A stored image that several files hold gives one hit per file. limit caps the number of hits (None: all).
    When the store holds PDQ hashes, the query's PDQ hash is taken too (not for a Fingerprint query), and the
    listed hashes within PDQ_THRESHOLD follow, closest first, with hash "pdq".
    """
    _check_threshold(threshold)
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    name, fp = fingerprint_query(query)
    colours = readings(fp)[1:]
    # A query with transparency meets the stored pictures' second readings never (two pictures with transparency
    # are compared flattened only); a query without meets them all.
    if isinstance(where, SearchIndex):
        # Ranked outside the store's lock, so that threads sharing an index run their queries side by side.
        entries = _rank(where._columns, fp, threshold)
        by_colour = [_rank(where._columns, colour, threshold) for colour in colours]
        by_second = [] if colours else _rank(where._second, fp, threshold)
        with where.store.reading():
            entries = _closest(_with_colour_reading(where.store, entries, by_colour), by_second)
            hits = _describe(where.store, entries, limit)
    else:
        with where.reading():
            entries = _rank(_store_candidates(where, fp, threshold), fp, threshold)
            by_colour = [_rank(_store_candidates(where, colour, threshold), colour, threshold) for colour in colours]
            by_second = [] if colours else _rank(_second_reading_candidates(where, fp, threshold), fp, threshold)
            entries = _closest(_with_colour_reading(where, entries, by_colour), by_second)
            hits = _describe(where, entries, limit)
    if limit is None or len(hits) < limit:
        pdq = where.pdq if isinstance(where, SearchIndex) else _pdq_of(where)
        if len(pdq) and not isinstance(query, Fingerprint):
            if isinstance(query, bytes | bytearray | memoryview):
                data = bytes(query)
            else:
                data = fingerprint.read_image_bytes(os.fspath(query))
            value, _ = hash_pdq(data)
            hits += pdq.search(value, PDQ_THRESHOLD, None if limit is None else limit - len(hits))
    return SearchResult(query=name, fingerprint=fp, hits=tuple(hits))


def _pdq_of(store: Store | PostgresStore) -> PdqIndex:
    return PdqIndex.load(store) if store.count_pdq() else PdqIndex.of([])


def check(
    query: Query, where: Store | PostgresStore | SearchIndex, *, threshold: int = DEFAULT_THRESHOLD
) -> CheckResult:
    """Whether a query image matches any stored image or imported fingerprint, and the closest match.

    For an upload hook: pass the uploaded bytes and a SearchIndex (or a Store, read-only is enough). An image
    that cannot be read raises FileSkipped, whose reason can be shown to the uploader.
    """
    result = find_similar(query, where, threshold=threshold, limit=1)
    hit = result.hits[0] if result.hits else None
    return CheckResult(query=result.query, matched=hit is not None, hit=hit)


def _check_threshold(threshold: int) -> None:
    if not 0 <= threshold <= MAX_SEARCH_THRESHOLD:
        raise ValueError(f"threshold must be between 0 and {MAX_SEARCH_THRESHOLD}, not {threshold}")


def _store_candidates(store: Store | PostgresStore, fp: Fingerprint, threshold: int) -> FingerprintColumns:
    """A superset of the store's fingerprints that can match, read through the indexes when that pays."""
    blocks = _query_blocks(fp, threshold)
    if blocks is None:
        return store.fingerprint_columns(fingerprint.VERSION)
    return store.matching_fingerprints(fingerprint.VERSION, fp.content_hash, fp.image_hash, blocks, fp.phash, threshold)


def _second_reading_candidates(store: Store | PostgresStore, fp: Fingerprint, threshold: int) -> FingerprintColumns:
    """A superset of the stored second readings that can match, read as _store_candidates reads fingerprints."""
    blocks = _query_blocks(fp, threshold)
    if blocks is None:
        return store.second_reading_columns(fingerprint.VERSION)
    if not blocks:
        return FingerprintColumns.empty()
    return store.matching_second_readings(fingerprint.VERSION, blocks, fp.phash, threshold)


def _query_blocks(fp: Fingerprint, threshold: int) -> list[list[int]] | None:
    """The values of each pHash block that a match within the threshold can have; empty for a query too plain for
    perceptual matching (only the same content or image matches it); None when reading every hash pays better.

    Split 64 bits into 4 blocks: two hashes within the threshold differ in at most threshold // 4 bits in some
    block, so every match has a block within that radius of the query's block.
    """
    radius = threshold // PHASH_BLOCKS
    if fp.low_info:
        return []
    if radius > _MAX_BLOCK_RADIUS:
        return None
    mask = (1 << PHASH_BLOCK_BITS) - 1
    return [_within((fp.phash >> (k * PHASH_BLOCK_BITS)) & mask, radius, PHASH_BLOCK_BITS) for k in range(PHASH_BLOCKS)]


def _within(value: int, radius: int, bits: int) -> list[int]:
    """Every value of this many bits that differs from value in at most radius bits."""
    out = [value]
    for k in range(1, radius + 1):
        for flips in itertools.combinations(range(bits), k):
            v = value
            for bit in flips:
                v ^= 1 << bit
            out.append(v)
    return out


def _rank(columns: FingerprintColumns, fp: Fingerprint, threshold: int) -> list[_Entry]:
    """The matching fingerprints, closest first, in a deterministic order."""
    exact = columns.content_hash == fp.content_hash.encode("ascii", "replace")
    same = columns.image_hash == fp.image_hash.encode("ascii", "replace")
    phash_distance = np.bitwise_count(columns.phash ^ np.uint64(fp.phash))
    matched = exact | same
    if not fp.low_info:
        matched |= (phash_distance <= threshold) & ~columns.low_info
    idx = np.flatnonzero(matched)
    if len(idx) == 0:
        return []
    kind = np.where(exact[idx], 0, np.where(same[idx], 1, 2))
    pd = phash_distance[idx].astype(np.int64)
    dd = np.bitwise_count(columns.dhash[idx] ^ np.uint64(fp.dhash)).astype(np.int64)
    imported = columns.imported[idx]
    ident = columns.ident[idx]
    content = columns.content_hash[idx]
    # np.lexsort sorts by the last key first.
    order = np.lexsort((ident, content, imported, dd, pd, kind))
    return [
        _Entry(
            imported=bool(imported[i]),
            ident=int(ident[i]),
            content_hash=bytes(content[i]).decode("ascii"),
            match=KINDS[int(kind[i])],
            distance=int(pd[i]),
            dhash_distance=int(dd[i]),
        )
        for i in order.tolist()
    ]


def _order(e: _Entry) -> tuple[int, int, int, bool, str, int]:
    """_rank's order: closest first, then a fixed order of the fingerprints."""
    return (KIND_RANK[e.match], e.distance, e.dhash_distance, e.imported, e.content_hash, e.ident)


def _with_colour_reading(
    store: Store | PostgresStore, entries: list[_Entry], by_colour: Sequence[Sequence[_Entry]]
) -> list[_Entry]:
    """The matches of a query with transparency by either of its readings (match.readings), each fingerprint once
    and by its closer reading, closest first: entries by the flattened reading, by_colour by its colours alone (as
    a copy that dropped the alpha channel shows it). As in match, the colour reading counts only against a
    fingerprint without transparency: a stored image whose fingerprint has a second reading is left out of it
    (an imported fingerprint carries none). No colour reading: entries as they are."""
    return _closest(
        entries,
        itertools.chain.from_iterable(by_colour),
        lambda e: not e.imported and _transparent(store, e.content_hash),
    )


def _closest(
    entries: list[_Entry], more: Iterable[_Entry], passed_over: Callable[[_Entry], bool] | None = None
) -> list[_Entry]:
    """entries and more, each fingerprint once and by its closer entry, closest first; an entry of more for which
    passed_over says True is left out. Nothing more: entries as they are."""
    best: dict[tuple[bool, int, str], _Entry] | None = None
    for e in more:
        if best is None:
            best = {(x.imported, x.ident, x.content_hash): x for x in entries}
        key = (e.imported, e.ident, e.content_hash)
        if key in best and _order(best[key]) <= _order(e):
            continue
        if passed_over is not None and passed_over(e):
            continue
        best[key] = e
    return entries if best is None else sorted(best.values(), key=_order)


def _transparent(store: Store | PostgresStore, content_hash: str) -> bool:
    """Whether a stored image was read two ways (it has transparency)."""
    if not isinstance(store, Store):
        return False  # only imported fingerprints there
    fp = store.get_fingerprint(content_hash, fingerprint.VERSION)
    return fp is not None and len(fp.variants) == ALPHA_VARIANTS


def _describe(store: Store | PostgresStore, entries: Sequence[_Entry], limit: int | None) -> list[SearchHit]:
    """Hits with their paths or labels, in the entries' order; entries gone from the store are passed over."""
    hits: list[SearchHit] = []
    if limit == 0:
        return hits
    step = max(limit or 0, 64)
    for start in range(0, len(entries), step):
        chunk = entries[start : start + step]
        images = store.describe_images([e.content_hash for e in chunk if not e.imported])
        imported = store.describe_imported([e.ident for e in chunk if e.imported])
        for e in chunk:
            if e.imported:
                found = imported.get(e.ident)
                named = [] if found is None else [(found[2], found[0], found[1])]
                source = HitSource.IMPORTED
            else:
                image = images.get(e.content_hash)
                named = [] if image is None else [(path, image[0], image[1]) for path in image[2]]
                source = HitSource.FILE
            for name, width, height in named:
                hits.append(
                    SearchHit(
                        name=name,
                        source=source,
                        match=e.match,
                        distance=e.distance,
                        dhash_distance=e.dhash_distance,
                        content_hash=e.content_hash,
                        width=width,
                        height=height,
                    )
                )
                if limit is not None and len(hits) >= limit:
                    return hits
    return hits


__all__ = ["MAX_SEARCH_THRESHOLD", "Query", "SearchIndex", "check", "find_similar", "fingerprint_query"]
