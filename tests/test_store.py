"""The fingerprint store: round trips of fingerprints and paths, roots, transactions, schema versions, and never
writing into a database that is not its own."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dedupe import find_similar, fingerprint_file, scan
from dedupe.cli import cli
from dedupe.errors import StoreError
from dedupe.fingerprint import VERSION as FINGERPRINT_VERSION
from dedupe.models import Action, Fingerprint
from dedupe.store import _MIGRATIONS, Store, default_store_path
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
    with pytest.raises(StoreError, match=r"is not a SQLite database .* check --db"):
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


def test_stats_under_says_what_a_scan_compares_and_the_tokens_follow_it(tmp_path: Path) -> None:
    """stats_under gives each file's stat key as stored (fingerprinted with this version, failed); a change to any
    part of it replaces one of the two tokens, and a file written again as it was (its scan time alone) neither."""
    path = tmp_path / "a" / "1.jpg"
    path.parent.mkdir()
    path.write_bytes(b"1")
    st = path.stat()
    with Store.open(tmp_path / "s.sqlite") as store:
        fp = make_fingerprint(content_hash="c1")
        with store.transaction():
            store.put_fingerprint(fp, VERSION)
            store.put_file(str(path), st, "c1")
        key = (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_ctime_ns, 1, 0)
        assert store.stats_under([str(tmp_path / "a")], VERSION) == {str(path): key}
        assert store.stats_under([str(tmp_path / "a")], "old") == {str(path): (*key[:5], 0, 0)}
        assert store.stats_under([str(tmp_path / "b")], VERSION) == {}
        tokens = store.stat_token()
        store.put_file(str(path), st, "c1")
        assert store.stat_token() == tokens
        times = (st.st_atime, st.st_mtime, st.st_ctime, st.st_atime_ns, st.st_mtime_ns + 1, st.st_ctime_ns)
        later = os.stat_result((*tuple(st)[:10], *times))
        changes: list[Callable[[], object]] = [
            lambda: store.put_file(str(path), later, "c1"),
            lambda: store.set_ctime(str(path), st.st_ctime_ns + 1),
            lambda: store.put_file(str(path), st, None, "cannot decode", VERSION),
            lambda: store.put_file(str(path), st, "c1"),
        ]
        for change in changes:
            change()
            assert store.stat_token() != tokens
            tokens = store.stat_token()
        assert store.stats_under([str(tmp_path)], VERSION) == {str(path): key}


def test_failed_and_undecoded_files_are_found_only_below_the_roots(tmp_path: Path) -> None:
    """errors_under and undecoded_copies_under (read through their own indexes) give the files below the roots
    alone, in order, however many failed elsewhere."""
    st = (tmp_path / "s.sqlite").parent.stat()
    with Store.open(tmp_path / "s.sqlite") as store, store.transaction():
        for k, path in enumerate(["/p/b.jpg", "/p/a.jpg", "/p/sub/c.jpg", "/pq/d.jpg", "/q/e.jpg", "/p", "/p/ok.jpg"]):
            if path == "/p/ok.jpg":
                store.put_fingerprint(make_fingerprint(content_hash="ok"), VERSION)
                store.put_file(path, st, "ok")
                continue
            store.put_file(path, st, None, f"bad {k}", VERSION, "u1" if k % 2 else "u2")
    with Store.open(tmp_path / "s.sqlite", readonly=True) as store:
        assert store.errors_under(["/p"]) == [
            ("/p", "bad 5"),
            ("/p/a.jpg", "bad 1"),
            ("/p/b.jpg", "bad 0"),
            ("/p/sub/c.jpg", "bad 2"),
        ]
        assert [[f[0] for f in files] for files in store.undecoded_copies_under(["/p"])] == [
            ["/p", "/p/a.jpg"],
            ["/p/b.jpg", "/p/sub/c.jpg"],
        ]
        assert store.errors_under(["/q", "/pq"]) == [("/pq/d.jpg", "bad 3"), ("/q/e.jpg", "bad 4")]


# --- second readings of pictures with transparency (migration 11) ----------------------------------------------


def _second_readings(store: Store, version: str) -> dict[str, tuple[int, int]]:
    columns = store.second_reading_columns(version)
    return {
        bytes(c).decode(): (int(p), int(d))
        for c, p, d in zip(columns.content_hash, columns.phash, columns.dhash, strict=True)
    }


def test_a_second_reading_is_written_replaced_and_dropped_with_its_fingerprint(store: Store, tmp_path: Path) -> None:
    """A fingerprint with a second reading (models.ALPHA_VARIANTS variants) stores that reading's pHash and dHash
    beside it, top bits and all; writing the picture again without one drops it, and so does dropping the image."""
    turns = tuple(range(1, 8))
    clear = make_fingerprint(content_hash="a" * 32, variants=(*turns, 2**64 - 1, 2**63, *turns))
    opaque = make_fingerprint(content_hash="b" * 32, variants=turns)
    st_ = tmp_path.stat()
    with store.transaction():
        store.put_fingerprint(clear, VERSION)
        store.put_fingerprint(opaque, VERSION)
        store.put_file(str(tmp_path / "a.png"), st_, clear.content_hash)
        store.put_file(str(tmp_path / "b.jpg"), st_, opaque.content_hash)
    assert _second_readings(store, VERSION) == {clear.content_hash: (2**64 - 1, 2**63)}
    assert _second_readings(store, "other-version") == {}
    store.put_fingerprint(dataclasses.replace(clear, variants=turns), VERSION)
    assert _second_readings(store, VERSION) == {}
    store.put_fingerprint(clear, VERSION)
    store.forget_files([str(tmp_path / "a.png")])
    assert store.forget_orphan_images() == 1
    assert _second_readings(store, VERSION) == {}


def test_migration_11_reads_the_second_readings_of_pictures_stored_before_it(tmp_path: Path) -> None:
    """A store written before migration 11 (the first 10 migrations, holding a scan's rows) gets the second reading
    of each picture with transparency that it holds, as a scan writes it now, and a search finds the picture."""
    root = tmp_path / "photos"
    im = draw_photo(7, (900, 600)).convert("RGBA")
    im.putalpha(Image.linear_gradient("L").rotate(90).resize(im.size).point(lambda v: 20 + v * 200 // 255))
    png = save(im, root / "overlay.png")
    save(draw_photo(8, (900, 600)), root / "other.jpg", quality=90)
    query = save(im.convert("RGB"), tmp_path / "query" / "copy.jpg", quality=85)
    with Store.open(tmp_path / "new.sqlite") as new:
        scan([str(root)], new)
        scanned = _second_readings(new, FINGERPRINT_VERSION)
    assert list(scanned) == [fingerprint_file(png).content_hash]

    old = tmp_path / "old.sqlite"
    conn = sqlite3.connect(old)
    try:
        for script in _MIGRATIONS[:10]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 10")
        conn.execute("ATTACH DATABASE ? AS new", (str(tmp_path / "new.sqlite"),))
        conn.execute("INSERT INTO files SELECT * FROM new.files")
        conn.execute("INSERT INTO images SELECT * FROM new.images")
        conn.commit()
    finally:
        conn.close()
    with Store.open(old) as store:
        assert _second_readings(store, FINGERPRINT_VERSION) == scanned
        assert [Path(h.name).name for h in find_similar(query, store).hits] == ["overlay.png"]


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
    empty = tmp_path / "empty"
    empty.mkdir()
    for attempt in range(3):
        db = str(tmp_path / f"new{attempt}" / "store.sqlite")
        (tmp_path / f"new{attempt}").mkdir()
        with ThreadPoolExecutor(4) as pool:
            # scan makes a store (undo, like every command that only reads one, refuses a missing store).
            procs = list(pool.map(lambda d: run_dedupe("scan", str(empty), "-q", "--db", d), [db] * 4))
        assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]


# --- failures of the store: one sentence that says what to do ----------------------------------------------------


def _scanned_store(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "p"
    save(draw_photo(1, (200, 150)), root / "a.jpg")
    (root / "b.jpg").write_bytes((root / "a.jpg").read_bytes())
    db = tmp_path / "store.sqlite"
    r = CliRunner().invoke(cli, ["scan", str(root), "--db", str(db), "-q"])
    assert r.exit_code == 0, r.output
    return root, db


def _damage(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xa5" * 3996  # the schema's page, past the header: "database disk image is malformed"
    db.write_bytes(data)


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "{root}"],
        ["groups", "{root}"],
        ["review", "{root}", "--yes"],
        ["undo"],
        ["export", "{root}"],
        ["import", "{list}"],
        ["report", "{root}", "--html", "{tmp}/r.html"],
        ["search", "{root}/a.jpg"],
        ["check", "{root}/a.jpg"],
        ["watch", "{root}"],
    ],
)
def test_a_damaged_store_is_named_with_what_to_do_in_every_command(tmp_path: Path, args: list[str]) -> None:
    """A damaged store ends every command with one Error: line naming the store and the reset command, and
    saying that the undo history is what a reset gives up; never an internal error."""
    root, db = _scanned_store(tmp_path)
    listing = tmp_path / "list.csv"
    exported = CliRunner().invoke(cli, ["export", str(root), "--db", str(db), "-o", str(listing)])
    assert exported.exit_code == 0, exported.output
    _damage(db)
    filled = [a.format(root=root, list=listing, tmp=tmp_path) for a in args]
    r = run_dedupe(*filled, "--db", str(db), env={"DEDUPE_BUSY_TIMEOUT": "1"}, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode in (1, 2) and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"Error: the store at {db} is damaged (database disk image is malformed)")
    assert f"'dedupe store reset --db {db}'" in lines[0] and "can then no longer be undone" in lines[0]


def test_store_reset_moves_the_damaged_store_aside_and_the_next_scan_starts_anew(tmp_path: Path) -> None:
    """'dedupe store reset' keeps the damaged file (renamed) with the copies beside it, and a scan then builds a new
    store."""
    root, db = _scanned_store(tmp_path)
    CliRunner().invoke(cli, ["scan", str(root), "--db", str(db), "-q"])  # a re-scan that changed nothing: the copies
    beside = {suffix: Path(f"{db}{suffix}").read_bytes() for suffix in (".columns", ".stats")}
    _damage(db)
    damaged = db.read_bytes()
    r = CliRunner().invoke(cli, ["store", "reset", "--db", str(db)], input="n\n")
    assert r.exit_code == 1 and db.read_bytes() == damaged  # refused at the question: nothing moved
    r = CliRunner().invoke(cli, ["store", "reset", "--db", str(db), "--yes"])
    assert r.exit_code == 0, r.output
    (aside,) = [p for p in tmp_path.iterdir() if re.fullmatch(r"store\.sqlite\.damaged-[0-9-]+", p.name)]
    assert aside.read_bytes() == damaged and not db.exists()
    for suffix, data in beside.items():
        assert Path(f"{aside}{suffix}").read_bytes() == data and not Path(f"{db}{suffix}").exists()
    r = CliRunner().invoke(cli, ["scan", str(root), "--db", str(db), "-q"])
    assert r.exit_code == 0, r.output
    assert "1 duplicate file" in CliRunner().invoke(cli, ["groups", str(root), "--db", str(db)]).output


@pytest.mark.parametrize("args", [["review", "{root}", "--yes"], ["undo"]])
def test_a_locked_store_waits_then_says_it_is_busy(tmp_path: Path, args: list[str]) -> None:
    """A store held in a write transaction by another process: review and undo wait (the busy timeout), then end
    with one Error: line saying the store is busy, and nothing was changed."""
    root, db = _scanned_store(tmp_path)
    before = {p: p.read_bytes() for p in root.iterdir()}
    if args == ["undo"]:
        with Store.open(db) as s:
            b = s.get_file(str(root / "b.jpg"))
            assert b is not None and b.content_hash is not None
            run = s.start_run(Action.TRASH)  # planned, never done: undo writes that down
            s.journal_planned(run, Action.TRASH, b.path, str(root / "a.jpg"), b.content_hash, (root / "b.jpg").stat())
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        filled = [a.format(root=root) for a in args]
        r = run_dedupe(*filled, "--db", str(db), env={"DEDUPE_BUSY_TIMEOUT": "0.2"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"Error: the store at {db} is busy: another dedupe (or program) is writing to it")
    assert "internal error" not in r.stderr
    assert {p: p.read_bytes() for p in root.iterdir()} == before


def test_read_only_commands_open_a_store_on_a_read_only_file_system(
    tmp_path: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    """groups, export, report, search and check read a store on a read-only file system (mode=ro, else
    immutable=1); a command that writes says "read-only file system" and the path."""
    root = tmp_path / "p"
    save(draw_photo(1, (200, 150)), root / "a.jpg")
    (root / "b.jpg").write_bytes((root / "a.jpg").read_bytes())
    drive = mount_tmpfs("ro")
    db = drive / "store.sqlite"
    assert CliRunner().invoke(cli, ["scan", str(root), "--db", str(db), "-q"]).exit_code == 0
    subprocess.run(["mount", "-o", "remount,ro", str(drive)], check=True)
    for args in (
        ["groups", str(root)],
        ["export", str(root)],
        ["report", str(root), "--html", str(tmp_path / "r.html")],
    ):
        r = run_dedupe(*args, "--db", str(db))
        assert r.returncode == 0, (args, r.stderr)
    for query in ("search", "check"):
        r = run_dedupe(query, str(root / "a.jpg"), "--db", str(db))
        assert r.returncode == 1 and "same bytes" in r.stdout, r.stderr  # 1: it matched
    r = run_dedupe("review", str(root), "--yes", "--db", str(db))
    assert r.returncode == 1 and r.stderr.startswith(f"Error: cannot use the store at {db}: read-only file system")
    assert (root / "b.jpg").exists()


def _open_files_under(folder: Path) -> list[str]:
    """The files this process holds open below folder (Linux's /proc)."""
    found = []
    for fd in list(Path("/proc/self/fd").iterdir()):
        with contextlib.suppress(OSError):  # the descriptor of the listing itself is gone by now
            target = fd.readlink()
            if target.is_relative_to(folder):
                found.append(str(target))
    return found


def test_a_store_that_cannot_be_opened_to_write_leaves_no_file_open(
    tmp_path: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    """Opening a store to write on a read-only file system fails with a StoreError and closes the file SQLite
    had opened, so a long-running process does not hold it (nor keep the drive from being unmounted)."""
    drive = mount_tmpfs("ro")
    db = drive / "store.sqlite"
    Store.open(db).close()
    subprocess.run(["mount", "-o", "remount,ro", str(drive)], check=True)
    for _ in range(3):
        with pytest.raises(StoreError, match="read-only file system"):
            Store.open(db)
    assert _open_files_under(drive) == []


def test_a_store_refused_read_only_leaves_no_file_open(tmp_path: Path) -> None:
    """A store that opens but is refused read-only (written by a newer dedupe, here) raises a StoreError and
    closes the file SQLite had opened, as a refused store opened to write does."""
    db = tmp_path / "store.sqlite"
    Store.open(db).close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version = 999")
    for _ in range(3):
        with pytest.raises(StoreError, match="newer dedupe"):
            Store.open(db, readonly=True)
    assert _open_files_under(tmp_path) == []


def test_a_db_in_a_missing_folder_is_not_created(tmp_path: Path) -> None:
    """--db naming a folder that does not exist is refused (a typo), while the default store's folder is made."""
    root = tmp_path / "p"
    save(draw_photo(1, (200, 150)), root / "a.jpg")
    r = CliRunner().invoke(cli, ["scan", str(root), "--db", str(tmp_path / "typo" / "store.sqlite")])
    assert r.exit_code == 1 and "Error: no folder" in r.output and not (tmp_path / "typo").exists()
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "DEDUPE_DB": ""}
    r = CliRunner().invoke(cli, ["scan", str(root), "-q"], env=env)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "xdg" / "dedupe" / "store.sqlite").exists()
