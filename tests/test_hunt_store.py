"""Hostile-input hunt: the store must never write into a database that is not its own."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from click.testing import CliRunner

from dedupe.cli import cli
from tests.conftest import draw_photo, run_dedupe, save


def _foreign_db(path: Path, user_version: int = 0) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE bookmarks (url TEXT)")
    conn.execute("INSERT INTO bookmarks VALUES ('https://example.org')")
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
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
    db = tmp_path / "app.db"
    before = _foreign_db(db)
    proc = run_dedupe("undo", "--list", "--db", str(db))
    assert proc.returncode == 1
    assert "not a dedupe store" in proc.stderr and "Traceback" not in proc.stderr
    assert db.read_bytes() == before


def test_an_empty_sqlite_file_still_becomes_a_store(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite"
    sqlite3.connect(db).close()
    save(draw_photo(1, (200, 150)), tmp_path / "photos" / "a.jpg")
    result = CliRunner().invoke(cli, ["scan", str(tmp_path / "photos"), "--db", str(db), "-q"])
    assert result.exit_code == 0, result.output
    assert "1 images" in result.output


def test_processes_creating_the_same_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    for attempt in range(3):
        db = str(tmp_path / f"new{attempt}" / "store.sqlite")
        with ThreadPoolExecutor(4) as pool:
            procs = list(pool.map(lambda d: run_dedupe("undo", "--list", "--db", d), [db] * 4))
        assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
