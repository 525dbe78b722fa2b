"""The copy of the stored columns beside the store (column_cache.py): grouping from it gives exactly the groups of
reading the store, and any change to the store, a damaged copy or another query makes it unused."""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dedupe import column_cache
from dedupe.group import stored_groups
from dedupe.library import Library
from dedupe.match import MatchRule
from dedupe.models import CROP_BYTES, VERSION, DuplicateGroup, FileRecord
from dedupe.store import Store
from tests.conftest import make_record


def _stat(size: int, ino: int, mtime_ns: int = 0) -> os.stat_result:
    return os.stat_result((0o100644, ino, 1, 1, 0, 0, size, 0, 0, 0, 0.0, mtime_ns / 1e9, 0.0, 0, 0, mtime_ns))


def _put(store: Store, records: list[FileRecord]) -> None:
    with store.transaction():
        for r in records:
            store.put_fingerprint(r.fingerprint, VERSION)
            store.put_file(r.path, _stat(r.size, r.ino, r.mtime_ns), r.fingerprint.content_hash)


def _records(phashes: list[int], seed: int) -> list[FileRecord]:
    """Files with these pHashes (and turned hashes, dHashes, cameras and times near each other, so that every part
    of the rule has something to do); some share their bytes, some their image data."""
    rng = random.Random(seed)
    out = []
    for k, phash in enumerate(phashes):
        content = f"c{rng.randrange(len(phashes) + 3):05d}"
        out.append(
            make_record(
                f"/photos/{k % 3}/IMG_{k:04d}.jpg",
                size=1000 + rng.randrange(3),
                ino=k + 1,
                content_hash=content,
                image_hash=f"i{int(content[1:]) % 7}" if rng.random() < 0.2 else f"i-{content}",
                width=400,
                height=300,
                phash=phash,
                dhash=phash ^ (1 << rng.randrange(64)) if rng.random() < 0.5 else rng.getrandbits(64),
                variants=tuple(phash ^ (1 << rng.randrange(64)) for _ in range(7)) if rng.random() < 0.7 else (),
                camera="Cam" if rng.random() < 0.3 else None,
                taken=f"2024-01-01T10:00:0{rng.randrange(4)}" if rng.random() < 0.3 else None,
                low_info=rng.random() < 0.05,
                crops=rng.randbytes(CROP_BYTES) if rng.random() < 0.3 else b"",
            )
        )
    return out


_CLUSTERED = st.lists(
    st.tuples(st.integers(0, 2**64 - 1), st.lists(st.integers(0, 63), max_size=6)), min_size=1, max_size=25
).map(lambda xs: [v ^ sum(1 << b for b in set(bits)) for v, bits in xs for _ in (0, 1)])


def _as_lists(groups: list[DuplicateGroup]) -> list[list[tuple[object, ...]]]:
    return [[(m.file, m.match, m.distance, m.transform, m.dhash, m.crop) for m in g.members] for g in groups]


@settings(max_examples=40, deadline=None)
@given(_CLUSTERED, st.integers(0, 2**32), st.sampled_from([0, 4, 8]))
def test_groups_from_the_copy_are_the_groups_read_from_the_store(phashes: list[int], seed: int, threshold: int) -> None:
    """Grouping from the copy of the columns gives exactly the groups of reading them from the store."""
    with tempfile.TemporaryDirectory() as tmp:
        with Store.open(Path(tmp) / "store.sqlite") as store:
            _put(store, _records(phashes, seed))
            rule = MatchRule(threshold)
            plain = stored_groups(store, ["/photos"], rule)  # reads the store, writes the copy
            cache = column_cache.cache_path(store)
            assert cache.exists()
            with store.reading():  # so few pictures: with their crop signatures (searched by default)
                state = column_cache._state(store, ["/photos"], VERSION, True)
                assert column_cache._load(cache, state) is not None  # the next grouping takes the copy
            from_copy = stored_groups(store, ["/photos"], rule)
        assert _as_lists(from_copy[0]) == _as_lists(plain[0])
        assert from_copy[1:] == plain[1:]


def _same_library(a: Library, b: Library) -> bool:
    names = [n for n in Library.__slots__ if n not in ("paths", "odd", "distinct_paths")]
    return list(a.paths) == list(b.paths) and all((getattr(a, n) == getattr(b, n)).all() for n in names)


def _cached(store: Store) -> Library | None:
    with store.reading():
        state = column_cache._state(store, ["/photos"], VERSION, False)
        return column_cache._load(column_cache.cache_path(store), state)


def test_every_change_to_what_grouping_reads_makes_the_copy_unused(tmp_path: Path) -> None:
    """A new file, a changed file, a renamed or forgotten file and a new fingerprint each make the copy unused, and
    the next grouping reads the store and writes a current copy."""
    with Store.open(tmp_path / "store.sqlite") as store:
        records = _records([random.Random(k).getrandbits(64) for k in range(30)], 1)
        _put(store, records)
        extra = make_record("/photos/new.jpg", ino=999, content_hash="new", image_hash="inew", phash=5)
        changed = make_record("/x", content_hash=records[4].fingerprint.content_hash, phash=77).fingerprint
        changes: list[Callable[[], object]] = [
            lambda: _put(store, [extra]),
            lambda: store.put_file(records[0].path, _stat(5, 1), records[1].fingerprint.content_hash),
            lambda: store.rename_file(records[2].path, "/photos/renamed.jpg"),
            lambda: store.forget_files([records[3].path]),
            lambda: store.put_fingerprint(changed, VERSION),
        ]
        for change in changes:
            column_cache.library_under(store, ["/photos"], VERSION)
            assert _cached(store) is not None
            change()
            assert _cached(store) is None
            fresh = column_cache.library_under(store, ["/photos"], VERSION)
            with store.reading():
                assert _same_library(fresh, store.library_under(["/photos"], VERSION))
            assert _cached(store) is not None


def test_after_a_vacuum_the_columns_name_the_rows_as_the_store_does(tmp_path: Path) -> None:
    """A VACUUM fires no trigger but may number rows anew: the columns then come from the store again, so their
    rowids (Library.ids, read by Store.records_of) are always the store's."""
    with Store.open(tmp_path / "store.sqlite") as store:
        records = _records([random.Random(k).getrandbits(64) for k in range(40)], 5)
        _put(store, records)
        store.forget_files([r.path for r in records[:40:3]])
        store.forget_orphan_images()
        column_cache.library_under(store, ["/photos"], VERSION)
        assert _cached(store) is not None
        store._conn.execute("VACUUM")
        got = column_cache.library_under(store, ["/photos"], VERSION)
        with store.reading():
            assert _same_library(got, store.library_under(["/photos"], VERSION))
            assert [r.path for r in store.records_of(got)] == list(got.paths)


def test_a_change_by_another_connection_makes_the_copy_unused(tmp_path: Path) -> None:
    """The store's triggers count a change made by any program, here a plain sqlite3 connection."""
    with Store.open(tmp_path / "store.sqlite") as store:
        _put(store, _records([1, 2, 3, 2**40], 2))
        column_cache.library_under(store, ["/photos"], VERSION)
        assert _cached(store) is not None
        other = sqlite3.connect(tmp_path / "store.sqlite")
        other.execute("UPDATE images SET phash = phash + 1 WHERE rowid = 1")
        other.commit()
        other.close()
        assert _cached(store) is None


def test_a_mtime_or_scan_time_alone_keeps_the_copy(tmp_path: Path) -> None:
    """A re-scan that finds a file as it was (its scan time rewritten) keeps the copy: the columns did not change."""
    with Store.open(tmp_path / "store.sqlite") as store:
        records = _records([1, 2, 3], 3)
        _put(store, records)
        column_cache.library_under(store, ["/photos"], VERSION)
        store.put_file(records[0].path, _stat(records[0].size, records[0].ino), records[0].fingerprint.content_hash)
        assert _cached(store) is not None


def test_another_query_or_a_damaged_copy_is_not_used(tmp_path: Path) -> None:
    """The copy answers only the roots, version and crops it was made for, and a damaged copy is read from the
    store again."""
    with Store.open(tmp_path / "store.sqlite") as store:
        _put(store, _records([1, 2, 3, 4], 4))
        column_cache.library_under(store, ["/photos"], VERSION)
        path = column_cache.cache_path(store)
        with store.reading():
            others = ((["/photos/1"], VERSION, False), (["/photos"], "old", False), (["/photos"], VERSION, True))
            for roots, version, crops in others:
                assert column_cache._load(path, column_cache._state(store, roots, version, crops)) is None
        whole = path.read_bytes()
        for damaged in (whole[: len(whole) // 2], b"not a copy", b"DEDUPE-COLUMNS\n" + b"\xff" * 40):
            path.write_bytes(damaged)
            assert _cached(store) is None
            again = column_cache.library_under(store, ["/photos"], VERSION)
            assert len(again) == 4
            assert _cached(store) is not None
