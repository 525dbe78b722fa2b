"""The fingerprint store: round trips of fingerprints and paths, roots, transactions, schema versions, and never
writing into a database that is not its own."""

from __future__ import annotations

import os
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedupe.cli import cli
from dedupe.errors import StoreError
from dedupe.models import Fingerprint
from dedupe.store import Store, default_store_path
from tests.conftest import draw_photo, make_fingerprint, run_dedupe, save

VERSION = "test-version"


def fingerprint(content: str, phash: int = 2**64 - 1, dhash: int = 2**63) -> Fingerprint:
    return make_fingerprint(
        content_hash=content,
        image_hash="img-" + content,
        width=4000,
        height=3000,
        phash=phash,
        dhash=dhash,
        taken="2020-01-02T03:04:05",
    )


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
            fp = make_fingerprint(content_hash=name, image_hash=name, width=10, height=10, phash=1, dhash=2)
            with store.transaction():
                store.put_fingerprint(fp, version)
                store.put_file(str(path), path.stat(), name)
        for roots in ([str(tmp_path / "a")], [str(tmp_path)], []):
            for wanted in (VERSION, None):
                assert store.count_records_under(roots, wanted) == len(store.records_under(roots, wanted))
        assert store.count_records_under([str(tmp_path / "a")], VERSION) == 2


# --- a store never writes into a database that is not its own --------------------------------------------------


def _foreign_db(path: Path, user_version: int = 0) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE bookmarks (url TEXT)")
    conn.execute("INSERT INTO bookmarks VALUES ('https://example.org')")
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """A database of another program given as --db is refused with a clear message and left byte for byte as it
    was, with no WAL file beside it."""
    save(draw_photo(1, (200, 150)), tmp_path / "photos" / "a.jpg")
    for version in (0, 1, 2):
        db = tmp_path / f"places{version}.sqlite"
        before = _foreign_db(db, version)
        result = CliRunner().invoke(cli, ["scan", str(tmp_path / "photos"), "--db", str(db), "-q"])
        assert result.exit_code == 1, result.output
        assert "not a dedupe store" in result.output
        assert db.read_bytes() == before
        assert not Path(f"{db}-wal").exists()


def test_another_programs_database_refused_in_a_subprocess(tmp_path: Path) -> None:
    """From the command line too: exit status 1, one clear line, no traceback, the database unchanged."""
    db = tmp_path / "app.db"
    before = _foreign_db(db)
    proc = run_dedupe("undo", "--list", "--db", str(db))
    assert proc.returncode == 1
    assert "not a dedupe store" in proc.stderr and "Traceback" not in proc.stderr
    assert db.read_bytes() == before


def test_an_empty_sqlite_file_still_becomes_a_store(tmp_path: Path) -> None:
    """An empty SQLite file is no other program's database: it becomes a store."""
    db = tmp_path / "empty.sqlite"
    sqlite3.connect(db).close()
    save(draw_photo(1, (200, 150)), tmp_path / "photos" / "a.jpg")
    result = CliRunner().invoke(cli, ["scan", str(tmp_path / "photos"), "--db", str(db), "-q"])
    assert result.exit_code == 0, result.output
    assert "1 images" in result.output


def test_processes_creating_the_same_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Several processes opening one new store at once all succeed: one migrates, the others wait for it."""
    for attempt in range(3):
        db = str(tmp_path / f"new{attempt}" / "store.sqlite")
        with ThreadPoolExecutor(4) as pool:
            procs = list(pool.map(lambda d: run_dedupe("undo", "--list", "--db", d), [db] * 4))
        assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
