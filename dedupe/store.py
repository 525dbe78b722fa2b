"""The fingerprint store: the only user of sqlite3.

Files are keyed by path (stored as bytes, so names that are not valid UTF-8 survive) and point to an image
fingerprint keyed by content hash, so identical files, moves and renames never need decoding twice.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from dedupe.errors import StoreError
from dedupe.models import FileRecord, Fingerprint

_MIGRATIONS: tuple[str, ...] = (
    # 1: files and their image fingerprints
    """
    CREATE TABLE files (
        path BLOB PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        content_hash TEXT,
        error TEXT,
        error_version TEXT,
        scanned_at REAL NOT NULL
    );
    CREATE INDEX files_content_hash ON files (content_hash);
    CREATE INDEX files_inode ON files (dev, ino);
    CREATE TABLE images (
        content_hash TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        image_hash TEXT NOT NULL,
        format TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        phash INTEGER NOT NULL,
        dhash INTEGER NOT NULL,
        taken TEXT,
        low_info INTEGER NOT NULL
    );
    """,
)

_IMAGE_COLUMNS = "i.content_hash, i.image_hash, i.format, i.width, i.height, i.phash, i.dhash, i.taken, i.low_info"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A row of the files table: what the last scan saw at a path."""

    path: str
    size: int
    mtime_ns: int
    dev: int
    ino: int
    content_hash: str | None
    error: str | None
    error_version: str | None


def default_store_path() -> Path:
    """$DEDUPE_DB, else a file in the user's data directory (XDG on Linux)."""
    env = os.environ.get("DEDUPE_DB")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "dedupe" / "store.sqlite"


_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def encode_path(path: str) -> bytes:
    return path.encode(_FS_ENCODING, _FS_ERRORS)  # os.fsencode, without its per-call checks


def decode_path(raw: bytes) -> str:
    return raw.decode(_FS_ENCODING, _FS_ERRORS)  # os.fsdecode, a quarter of its cost on 100k rows


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _unsigned(v: int) -> int:
    return v + (1 << 64) if v < 0 else v


def _prefix_bounds(root: str) -> tuple[bytes, bytes]:
    """Byte bounds of the paths strictly below a folder: root/ <= path < root0 ('0' follows '/')."""
    raw = encode_path(root.rstrip(os.sep) or os.sep)
    if raw.endswith(os.sep.encode()):
        return raw, raw[:-1] + bytes([raw[-1] + 1])
    return raw + os.sep.encode(), raw + bytes([os.sep.encode()[0] + 1])


class Store:
    """A SQLite fingerprint store. Safe to share between threads; use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, readonly: bool = False) -> Store:
        db = Path(path) if path is not None else default_store_path()
        db = db.expanduser()
        try:
            if db.is_dir():
                raise StoreError(f"cannot use {db} as a store: it is a folder")
            if readonly:
                if not db.exists():
                    raise StoreError(f"no store at {db}: run 'dedupe scan' first")
                conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            else:
                db.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            store = cls(conn, db.absolute(), readonly)
            store._prepare()
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open the store at {db}: {e}") from None
        return store

    def _prepare(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise StoreError(
                f"the store at {self.path} was written by a newer dedupe (schema {version}); upgrade dedupe"
            )
        if self.readonly:
            if version < len(_MIGRATIONS):
                raise StoreError(f"the store at {self.path} is from an older dedupe: run 'dedupe scan' to upgrade it")
            return
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        for target in range(version + 1, len(_MIGRATIONS) + 1):
            with self.transaction():
                # One statement at a time: executescript would commit half a migration.
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {target}")

    # --- life cycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def transaction(self) -> _Transaction:
        """A write transaction: committed on success, rolled back on error."""
        return _Transaction(self)

    def own_files(self) -> tuple[Path, ...]:
        """The store's own files, which a scan must never fingerprint."""
        return tuple(Path(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm", "-journal"))

    # --- files ------------------------------------------------------------------------------------------------

    def files_under(self, roots: Sequence[str]) -> Iterator[StoredFile]:
        """Every stored row at or below the given absolute paths."""
        with self._lock:
            rows: list[tuple[bytes, int, int, int, int, str | None, str | None, str | None]] = []
            for root in roots:
                low, high = _prefix_bounds(root)
                rows.extend(
                    self._conn.execute(
                        "SELECT path, size, mtime_ns, dev, ino, content_hash, error, error_version FROM files"
                        " WHERE path = ? OR (path >= ? AND path < ?)",
                        (encode_path(root), low, high),
                    ).fetchall()
                )
        for raw, size, mtime_ns, dev, ino, content_hash, error, error_version in rows:
            yield StoredFile(decode_path(raw), size, mtime_ns, dev, ino, content_hash, error, error_version)

    def put_file(
        self,
        path: str,
        st: os.stat_result,
        content_hash: str | None,
        error: str | None = None,
        error_version: str | None = None,
    ) -> None:
        """Record what a scan saw at a path: its content hash, or why it could not be fingerprinted."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO files (path, size, mtime_ns, dev, ino, content_hash, error, error_version, scanned_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,"
                " dev = excluded.dev, ino = excluded.ino, content_hash = excluded.content_hash,"
                " error = excluded.error, error_version = excluded.error_version, scanned_at = excluded.scanned_at",
                (
                    encode_path(path),
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_dev,
                    st.st_ino,
                    content_hash,
                    error,
                    error_version,
                    time.time(),
                ),
            )

    def forget_files(self, paths: Iterable[str]) -> int:
        with self._lock:
            cur = self._conn.executemany("DELETE FROM files WHERE path = ?", ((encode_path(p),) for p in paths))
            return cur.rowcount

    def forget_orphan_images(self) -> int:
        """Drop fingerprints that no stored file refers to any more."""
        with self._lock:
            return self._conn.execute(
                "DELETE FROM images WHERE content_hash NOT IN"
                " (SELECT content_hash FROM files WHERE content_hash IS NOT NULL)"
            ).rowcount

    def content_hash_by_inode(self, st: os.stat_result) -> str | None:
        """The content hash of a stored file with this device, inode, size and mtime: a rename or a hardlink."""
        with self._lock:
            row = self._conn.execute(
                "SELECT f.content_hash FROM files f JOIN images i ON i.content_hash = f.content_hash"
                " WHERE f.dev = ? AND f.ino = ? AND f.size = ? AND f.mtime_ns = ? LIMIT 1",
                (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns),
            ).fetchone()
        return row[0] if row else None

    # --- images -----------------------------------------------------------------------------------------------

    def get_fingerprint(self, content_hash: str, version: str) -> Fingerprint | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.content_hash = ? AND i.version = ?",
                (content_hash, version),
            ).fetchone()
        return _fingerprint(row) if row else None

    def known_hashes(self, version: str) -> set[str]:
        with self._lock:
            rows = self._conn.execute("SELECT content_hash FROM images WHERE version = ?", (version,))
            return {r[0] for r in rows}

    def put_fingerprint(self, fp: Fingerprint, version: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO images (content_hash, version, image_hash, format, width, height,"
                " phash, dhash, taken, low_info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fp.content_hash,
                    version,
                    fp.image_hash,
                    fp.format,
                    fp.width,
                    fp.height,
                    _signed(fp.phash),
                    _signed(fp.dhash),
                    fp.taken,
                    int(fp.low_info),
                ),
            )

    def records_under(self, roots: Sequence[str], version: str | None = None) -> list[FileRecord]:
        """Fingerprinted files at or below the roots (all files when roots is empty), sorted by path."""
        where, params = self._roots_clause(roots)
        if version is not None:
            where += " AND i.version = ?"
            params.append(version)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT f.path, f.size, f.mtime_ns, f.dev, f.ino, {_IMAGE_COLUMNS}"
                f" FROM files f JOIN images i ON i.content_hash = f.content_hash WHERE {where} ORDER BY f.path",
                params,
            ).fetchall()
        return [FileRecord(decode_path(r[0]), r[1], r[2], r[3], r[4], _fingerprint(r[5:])) for r in rows]

    def count_records_under(self, roots: Sequence[str], version: str | None = None) -> int:
        """How many files records_under would return, without building them."""
        where, params = self._roots_clause(roots)
        if version is not None:
            where += " AND i.version = ?"
            params.append(version)
        with self._lock:
            row = self._conn.execute(
                f"SELECT count(*) FROM files f JOIN images i ON i.content_hash = f.content_hash WHERE {where}", params
            ).fetchone()
        return int(row[0])

    def errors_under(self, roots: Sequence[str]) -> list[tuple[str, str]]:
        """(path, reason) of the files at or below the roots that could not be fingerprinted."""
        where, params = self._roots_clause(roots)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT f.path, f.error FROM files f WHERE f.error IS NOT NULL AND {where} ORDER BY f.path",
                params,
            ).fetchall()
        return [(decode_path(r[0]), r[1]) for r in rows]

    @staticmethod
    def _roots_clause(roots: Sequence[str]) -> tuple[str, list[object]]:
        if not roots:
            return "1", []
        clauses: list[str] = []
        params: list[object] = []
        for root in roots:
            low, high = _prefix_bounds(root)
            clauses.append("(f.path = ? OR (f.path >= ? AND f.path < ?))")
            params.extend((encode_path(root), low, high))
        return "(" + " OR ".join(clauses) + ")", params

    def count_files(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM files").fetchone()[0])


def _fingerprint(row: Sequence[object]) -> Fingerprint:
    content_hash, image_hash, fmt, width, height, phash, dhash, taken, low_info = row
    assert isinstance(phash, int) and isinstance(dhash, int)
    return Fingerprint(
        content_hash=str(content_hash),
        image_hash=str(image_hash),
        format=str(fmt),
        width=int(width),  # type: ignore[call-overload]
        height=int(height),  # type: ignore[call-overload]
        phash=_unsigned(phash),
        dhash=_unsigned(dhash),
        taken=None if taken is None else str(taken),
        low_info=bool(low_info),
    )


class _Transaction:
    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._lock.acquire()
        try:
            self._store._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self._store._lock.release()
            raise StoreError(f"cannot write to the store at {self._store.path}: {e}") from None

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if et is None:
                self._store._conn.execute("COMMIT")
            else:
                self._store._conn.execute("ROLLBACK")
        except sqlite3.Error as e:
            if et is None:
                raise StoreError(f"cannot write to the store at {self._store.path}: {e}") from None
        finally:
            self._store._lock.release()
