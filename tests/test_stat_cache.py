"""What a re-scan compares of the stored files, and its copy beside the store (stat_cache.py): the copy gives exactly
what reading the store gives, and any change to the store, a damaged copy or another query makes it unused."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dedupe import stat_cache
from dedupe.models import VERSION
from dedupe.store import Store
from tests.conftest import make_fingerprint

ROOTS = ["/photos"]


def _stat(size: int, ino: int, mtime_ns: int = 0, ctime_ns: int = 0, dev: int = 1) -> os.stat_result:
    return os.stat_result(
        (0o100644, ino, dev, 1, 0, 0, size, 0, 0, 0, 0.0, mtime_ns / 1e9, ctime_ns / 1e9, 0, mtime_ns, ctime_ns)
    )


def _fill(store: Store, n: int) -> list[str]:
    """n stored files below /photos, fingerprinted, failed or with a fingerprint of another version, one with a name
    that is not UTF-8, one stored before ctimes were kept; and one file elsewhere."""
    paths = [f"/photos/{k % 3}/IMG_{k:04d}.jpg" for k in range(n)] + ["/photos/odd-\udcff.jpg", "/elsewhere/x.jpg"]
    with store.transaction():
        for k, path in enumerate(paths):
            fp = make_fingerprint(content_hash=f"c{k:04d}", image_hash=f"i{k:04d}", phash=k)
            if k % 5 == 1:
                store.put_file(path, _stat(100 + k, k + 1, 10 * k, 20 * k), None, "cannot decode", VERSION)
                continue
            store.put_fingerprint(fp, "old" if k % 7 == 2 else VERSION)
            store.put_file(path, _stat(100 + k, k + 1, 10 * k, 20 * k), fp.content_hash)
        store._conn.execute("UPDATE files SET ctime_ns = NULL WHERE path = ?", (paths[0].encode(),))
    return paths


def _cached(store: Store) -> tuple[dict[str, bytes], int] | None:
    """What the copy holds when it is current for the store as it is now, else None."""
    stats = stat_cache.stats_under(store, ROOTS, VERSION)
    return (stats.current, stats.images) if stats.cached else None


def _read(store: Store) -> tuple[dict[str, bytes], int]:
    """What the store holds, read from it."""
    return stat_cache.of_keys(store.stats_under(ROOTS, VERSION))


def _copy(store: Store) -> stat_cache.StoredStats:
    """Save a copy of what the store holds; what was saved."""
    stats = stat_cache.stats_under(store, ROOTS, VERSION)
    assert not stats.cached
    stat_cache.save(store, stats)
    return stats


def test_the_copy_gives_every_key_as_the_store_does(tmp_path: Path) -> None:
    """Fingerprinted, failed and outdated files, a name that is not UTF-8 and a NULL ctime all come back from the
    copy exactly as the store gives them."""
    with Store.open(tmp_path / "store.sqlite") as store:
        _fill(store, 40)
        _copy(store)
        assert _cached(store) == _read(store)
        keys = store.stats_under(ROOTS, VERSION)
        current, images = _read(store)
        assert images == sum(k[5] for k in keys.values()) == 28
        assert current["/photos/0/IMG_0000.jpg"] == current["/photos/1/IMG_0001.jpg"] == b""
        assert current["/photos/2/IMG_0002.jpg"] == b""
        assert current["/photos/odd-\udcff.jpg"] == stat_cache.KEY.pack(*keys["/photos/odd-\udcff.jpg"][:5])
        assert keys["/photos/0/IMG_0000.jpg"][4] is None
        assert keys["/photos/odd-\udcff.jpg"][5:] == (1, 0)
        assert keys["/photos/1/IMG_0001.jpg"][5:] == (0, 1)
        assert keys["/photos/2/IMG_0002.jpg"][5:] == (0, 0)
        assert "/elsewhere/x.jpg" not in keys


def test_an_empty_folder_has_an_empty_copy(tmp_path: Path) -> None:
    """No stored file below the roots is a copy too, and it reads back as no file."""
    with Store.open(tmp_path / "store.sqlite") as store:
        _copy(store)
        assert _cached(store) == ({}, 0)


_CHANGES = st.lists(st.tuples(st.sampled_from(range(11)), st.integers(0, 41), st.integers(0, 3)), max_size=4)


@settings(max_examples=60, deadline=None)
@given(_CHANGES)
def test_a_changed_store_never_gets_a_stale_copy(changes: list[tuple[int, int, int]]) -> None:
    """Whatever changes the store after the copy was made (a file's size, times, inode, device, error or content;
    a new, renamed or forgotten file; a fingerprint added, replaced or dropped; a write by another program), the
    keys read through the copy are the store's keys as they are now."""
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "store.sqlite") as store:
        paths = _fill(store, 40)
        first = _copy(store)
        for kind, k, delta in changes:
            _change(store, paths[k], kind, delta, Path(tmp) / "store.sqlite")
        got = stat_cache.stats_under(store, ROOTS, VERSION)
        assert (got.current, got.images) == _read(store)
        assert got.cached == stat_cache.unchanged_since(store, first)
        if not got.cached:  # read from the store: saved, the next read through the copy still agrees
            stat_cache.save(store, got)
            assert _cached(store) == _read(store)


def _change(store: Store, path: str, kind: int, delta: int, db: Path) -> None:
    row = store.get_file(path)
    size, ino, mtime, ctime, dev = (
        (row.size, row.ino, row.mtime_ns, row.ctime_ns or 0, row.dev) if row else (1, 1, 0, 0, 1)
    )
    content = row.content_hash if row else None
    edits: list[Callable[[], object]] = [
        lambda: store.put_file(path, _stat(size + delta, ino, mtime, ctime, dev), content),
        lambda: store.put_file(path, _stat(size, ino, mtime + delta, ctime, dev), content),
        lambda: store.set_ctime(path, ctime + delta),
        lambda: store.put_file(path, _stat(size, ino + delta, mtime, ctime, dev), content),
        lambda: store.put_file(path, _stat(size, ino, mtime, ctime, dev + delta), content),
        lambda: store.put_file(path, _stat(size, ino, mtime, ctime, dev), None, "unreadable" * delta or None, VERSION),
        lambda: store.forget_files([path]),
        lambda: store.rename_file(path, f"/photos/renamed-{delta}.jpg"),
        lambda: store.put_fingerprint(make_fingerprint(content_hash=content or "new", phash=delta), "v" * delta),
        lambda: (store.forget_files([path]), store.forget_orphan_images()),
        lambda: _other_program(db, path, delta),
    ]
    edits[kind]()


def _other_program(db: Path, path: str, delta: int) -> None:
    other = sqlite3.connect(db)
    other.execute(
        "UPDATE files SET mtime_ns = mtime_ns + ? WHERE path = ?", (delta, path.encode("utf-8", "surrogateescape"))
    )
    other.commit()
    other.close()


def test_a_rescan_writes_nothing_that_changes_the_tokens(tmp_path: Path) -> None:
    """What a scan writes for a file found as it was (its scan time alone) keeps both tokens, so the copy stays."""
    with Store.open(tmp_path / "store.sqlite") as store:
        paths = _fill(store, 10)
        _copy(store)
        row = store.get_file(paths[3])
        assert row is not None and row.ctime_ns is not None
        store.put_file(paths[3], _stat(row.size, row.ino, row.mtime_ns, row.ctime_ns, row.dev), row.content_hash)
        assert _cached(store) is not None


def test_another_query_or_a_damaged_copy_is_not_used(tmp_path: Path) -> None:
    """The copy answers only the roots and version it was made for, and a damaged or foreign copy is read from the
    store again."""
    with Store.open(tmp_path / "store.sqlite") as store:
        _fill(store, 20)
        _copy(store)
        assert not stat_cache.stats_under(store, ["/photos/1"], VERSION).cached
        assert not stat_cache.stats_under(store, ROOTS, "old").cached
        path = stat_cache.cache_path(store)
        whole = path.read_bytes()
        flipped = bytearray(whole)
        flipped[-len(whole) // 3] ^= 0x01  # one bit of the keys: the checksum tells
        for damaged in (whole[: len(whole) // 2], bytes(flipped), b"not a copy", b"DEDUPE-STATS\n" + b"\xff" * 40):
            path.write_bytes(damaged)
            got = stat_cache.stats_under(store, ROOTS, VERSION)
            assert not got.cached and (got.current, got.images) == _read(store)


def test_a_copy_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    """Saving beside a store whose folder has gone fails quietly: the copy is only ever a cache."""
    with Store.open(tmp_path / "store.sqlite") as store:
        _fill(store, 5)
        stats = stat_cache.stats_under(store, ROOTS, VERSION)
        store.path = tmp_path / "gone" / "store.sqlite"
        stat_cache.save(store, stats)
        assert not (tmp_path / "gone").exists()


def test_a_fresh_stat_gives_the_key_its_stored_row_gives(tmp_path: Path) -> None:
    """The key scan's walk makes of a file's stat is the one its stored row gives while the file is unchanged, and
    another once its times move."""
    path = tmp_path / "a.jpg"
    path.write_bytes(b"a")
    with Store.open(tmp_path / "store.sqlite") as store:
        store.put_fingerprint(make_fingerprint(content_hash="ca"), VERSION)
        store.put_file(str(path), path.stat(), "ca")
        current, images = stat_cache.of_keys(store.stats_under([str(tmp_path)], VERSION))
        assert images == 1 and current == {str(path): stat_cache.stat_key(path.stat())}
        os.utime(path, ns=(0, 10**9))
        assert current[str(path)] != stat_cache.stat_key(path.stat())
