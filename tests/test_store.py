from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedupe.errors import StoreError
from dedupe.models import Fingerprint
from dedupe.store import Store, default_store_path

VERSION = "test-version"


def fingerprint(content: str, phash: int = 2**64 - 1, dhash: int = 2**63) -> Fingerprint:
    return Fingerprint(content, "img-" + content, "JPEG", 4000, 3000, phash, dhash, "2020-01-02T03:04:05", False)


def test_fingerprints_round_trip_with_the_top_bit_set(store: Store, tmp_path: Path) -> None:
    fp = fingerprint("abc")
    st_ = tmp_path.stat()
    with store.transaction():
        store.put_fingerprint(fp, VERSION)
        store.put_file(str(tmp_path / "x.jpg"), st_, "abc")
    assert store.get_fingerprint("abc", VERSION) == fp
    assert store.get_fingerprint("abc", "other-version") is None
    (rec,) = store.records_under([str(tmp_path)], VERSION)
    assert rec.fingerprint == fp and rec.path == str(tmp_path / "x.jpg")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    names=st.lists(st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b), max_size=8),
    phash=st.integers(0, 2**64 - 1),
)
def test_any_file_name_survives_the_store(tmp_path: Path, names: list[bytes], phash: int) -> None:
    with Store.open(tmp_path / f"{uuid.uuid4().hex}.sqlite") as store:
        root = os.fsdecode(os.fsencode(str(tmp_path)) + b"/r\xff")
        paths = sorted({os.fsdecode(os.fsencode(root) + b"/" + n) for n in names if n not in (b".", b"..")})
        with store.transaction():
            store.put_fingerprint(fingerprint("h", phash=phash), VERSION)
            for p in paths:
                store.put_file(p, tmp_path.stat(), "h")
        got = [r.path for r in store.records_under([root], VERSION)]
        assert sorted(got) == paths
        assert [os.fsencode(p) for p in sorted(got)] == [os.fsencode(p) for p in paths]
        assert all(r.fingerprint.phash == phash for r in store.records_under([root], VERSION))


def test_roots_do_not_match_sibling_prefixes(store: Store, tmp_path: Path) -> None:
    with store.transaction():
        store.put_fingerprint(fingerprint("h"), VERSION)
        for p in ("/a/x.jpg", "/ab/y.jpg", "/a/sub/z.jpg", "/a"):
            store.put_file(p, tmp_path.stat(), "h")
    assert [r.path for r in store.records_under(["/a"], VERSION)] == ["/a", "/a/sub/z.jpg", "/a/x.jpg"]
    assert [r.path for r in store.records_under(["/"], VERSION)] == ["/a", "/a/sub/z.jpg", "/a/x.jpg", "/ab/y.jpg"]


def test_a_failed_transaction_leaves_nothing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.put_fingerprint(fingerprint("h"), VERSION)
        raise RuntimeError("boom")
    assert store.get_fingerprint("h", VERSION) is None


def test_schema_version_and_newer_store_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    Store.open(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer dedupe"):
        Store.open(db)


def test_unusable_store_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a folder"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match="no store"):
        Store.open(tmp_path / "missing.sqlite", readonly=True)
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store.open(tmp_path / "garbage.sqlite")


def test_default_store_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DEDUPE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "dedupe" / "store.sqlite"
    monkeypatch.setenv("DEDUPE_DB", str(tmp_path / "mine.db"))
    assert default_store_path() == tmp_path / "mine.db"


def test_count_records_under_agrees_with_records_under(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        for name, version in (("a/1.jpg", VERSION), ("a/2.jpg", VERSION), ("b/3.jpg", VERSION), ("a/4.jpg", "old")):
            path = tmp_path / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(name.encode())
            fp = Fingerprint(name, name, "JPEG", 10, 10, 1, 2, None, False)
            with store.transaction():
                store.put_fingerprint(fp, version)
                store.put_file(str(path), path.stat(), name)
        for roots in ([str(tmp_path / "a")], [str(tmp_path)], []):
            for version in (VERSION, None):
                assert store.count_records_under(roots, version) == len(store.records_under(roots, version))
        assert store.count_records_under([str(tmp_path / "a")], VERSION) == 2
