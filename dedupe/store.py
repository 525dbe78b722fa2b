"""The fingerprint store: the only user of sqlite3.

Files are keyed by path (stored as bytes, so names that are not valid UTF-8 survive) and point to an image
fingerprint keyed by content hash, so identical files, moves and renames never need decoding twice.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from dedupe.errors import StoreError
from dedupe.fingerprint import CROP_BYTES
from dedupe.library import Library, gc_paused
from dedupe.models import (
    Action,
    FileRecord,
    Fingerprint,
    JournalEntry,
    JournalState,
    ListedFingerprint,
    PdqEntry,
    RunInfo,
)

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
    # 2: the journal of review runs (written before each act, for undo and crash recovery) and the
    # "not duplicates" decisions, remembered by content so that they survive renames and moves
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        action TEXT NOT NULL,
        started REAL NOT NULL,
        finished REAL,
        undone REAL
    );
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id),
        action TEXT NOT NULL,
        path BLOB NOT NULL,
        keeper BLOB NOT NULL,
        destination BLOB,
        content_hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        mode INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('planned', 'done', 'failed', 'undone')),
        reason TEXT,
        at REAL NOT NULL
    );
    CREATE INDEX journal_run ON journal (run_id);
    CREATE TABLE not_duplicates (
        hash_a TEXT NOT NULL,
        hash_b TEXT NOT NULL,
        decided_at REAL NOT NULL,
        PRIMARY KEY (hash_a, hash_b)
    );
    """,
    # 3: searching by image hash and by pHash blocks, and fingerprints imported from shared lists (issue 5)
    """
    CREATE INDEX images_image_hash ON images (image_hash);
    CREATE INDEX images_phash_block0 ON images (((phash >> 0) & 65535), phash);
    CREATE INDEX images_phash_block1 ON images (((phash >> 16) & 65535), phash);
    CREATE INDEX images_phash_block2 ON images (((phash >> 32) & 65535), phash);
    CREATE INDEX images_phash_block3 ON images (((phash >> 48) & 65535), phash);
    CREATE TABLE imported (
        id INTEGER PRIMARY KEY,
        version TEXT NOT NULL,
        content_hash TEXT NOT NULL UNIQUE,
        image_hash TEXT NOT NULL,
        phash INTEGER NOT NULL,
        dhash INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        low_info INTEGER NOT NULL,
        label TEXT NOT NULL,
        source TEXT NOT NULL,
        imported_at REAL NOT NULL
    );
    CREATE INDEX imported_image_hash ON imported (image_hash);
    CREATE TABLE imported_lists (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        version TEXT NOT NULL,
        listed INTEGER NOT NULL,
        added INTEGER NOT NULL,
        imported_at REAL NOT NULL
    );
    CREATE INDEX imported_phash_block0 ON imported (((phash >> 0) & 65535), phash);
    CREATE INDEX imported_phash_block1 ON imported (((phash >> 16) & 65535), phash);
    CREATE INDEX imported_phash_block2 ON imported (((phash >> 32) & 65535), phash);
    CREATE INDEX imported_phash_block3 ON imported (((phash >> 48) & 65535), phash);
    """,
    # 4: pHashes of the 7 turns and mirror images (8-byte big-endian each, packed), and the camera (EXIF Make Model)
    """
    ALTER TABLE images ADD COLUMN variants BLOB;
    ALTER TABLE images ADD COLUMN camera TEXT
    """,
    # 5: a sidecar (.xmp, .aae) that travelled with its photo is journaled as its own act, naming the photo
    """
    ALTER TABLE journal ADD COLUMN sidecar_of BLOB
    """,
    # 6: hashes and colours of windows inside each picture, for finding cropped copies (fingerprint.crop_signature)
    """
    ALTER TABLE images ADD COLUMN crops BLOB
    """,
)

# pHash split into blocks of this many bits, each indexed (migration 2), for searching by the pigeonhole principle.
# Each index also holds the whole pHash, so that SQLite measures a candidate's distance without reading its row.
PHASH_BLOCK_BITS = 16
PHASH_BLOCKS = 4


def _block_expr(block: int) -> str:
    """The SQL of one pHash block: the very text of the index expression, so that SQLite uses the index."""
    return f"((phash >> {block * PHASH_BLOCK_BITS}) & 65535)"


_IMAGE_COLUMNS = (
    "i.content_hash, i.image_hash, i.format, i.width, i.height, i.phash, i.dhash, i.taken, i.low_info,"
    " i.variants, i.camera, i.crops"
)


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


@dataclass(frozen=True, slots=True)
class FingerprintColumns:
    """Searchable fingerprints as parallel arrays: stored images (keyed by content hash) and imported ones (by id)."""

    imported: npt.NDArray[np.bool_]
    ident: npt.NDArray[np.int64]  # the imported row's id; 0 for a stored image
    content_hash: npt.NDArray[np.bytes_]  # 32 hex digits as ASCII
    image_hash: npt.NDArray[np.bytes_]
    phash: npt.NDArray[np.uint64]
    dhash: npt.NDArray[np.uint64]
    low_info: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.phash)

    @staticmethod
    def concat(parts: Sequence[FingerprintColumns]) -> FingerprintColumns:
        return FingerprintColumns(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in FingerprintColumns.__slots__)
        )


# (imported, id, content_hash, image_hash, phash, dhash, low_info) as SQLite returns them
_SEARCH_COLUMNS = {
    "images": "0, 0, content_hash, image_hash, phash, dhash, low_info",
    "imported": "1, id, content_hash, image_hash, phash, dhash, low_info",
}
_HASH_CHARS = 32


def _columns_from_rows(rows: Sequence[Sequence[Any]]) -> FingerprintColumns:
    # Hashes are compared as fixed-width bytes: wide enough for the longest, so none is cut short.
    width = max([_HASH_CHARS, *(len(str(r[k])) for r in rows for k in (2, 3))])
    return FingerprintColumns(
        imported=np.array([bool(r[0]) for r in rows], dtype=np.bool_),
        ident=np.array([int(r[1]) for r in rows], dtype=np.int64),
        content_hash=np.array([str(r[2]).encode("ascii", "replace") for r in rows], dtype=f"S{width}"),
        image_hash=np.array([str(r[3]).encode("ascii", "replace") for r in rows], dtype=f"S{width}"),
        phash=np.array([int(r[4]) for r in rows], dtype=np.int64).view(np.uint64),
        dhash=np.array([int(r[5]) for r in rows], dtype=np.int64).view(np.uint64),
        low_info=np.array([bool(r[6]) for r in rows], dtype=np.bool_),
    )


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
        conn.create_function("dedupe_hamming", 2, _hamming, deterministic=True)  # for searches

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
        # One statement, so one snapshot: another process creating the same new store may commit its first
        # migration between two reads, and its tables beside version 0 would look like another program's.
        version, names = self._conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version),"
            " (SELECT group_concat(name, char(0)) FROM sqlite_master WHERE type = 'table')"
        ).fetchone()
        tables = set(names.split("\0")) if names else set()
        if version > len(_MIGRATIONS):
            raise StoreError(
                f"the store at {self.path} was written by a newer dedupe (schema {version}); upgrade dedupe"
            )
        if (version == 0 and tables) or (version > 0 and "files" not in tables):
            # Another program's database (a typo in --db): adding our tables or WAL mode would change it.
            raise StoreError(f"{self.path} is a database of another program, not a dedupe store: not touched")
        if self.readonly:
            if version < len(_MIGRATIONS):
                raise StoreError(f"the store at {self.path} is from an older dedupe: run 'dedupe scan' to upgrade it")
            return
        self._wal()
        self._conn.execute("PRAGMA synchronous = NORMAL")
        for target in range(version + 1, len(_MIGRATIONS) + 1):
            with self.transaction():
                if self._conn.execute("PRAGMA user_version").fetchone()[0] >= target:
                    continue  # another process opening the same new store did it first
                # One statement at a time: executescript would commit half a migration.
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {target}")

    def _wal(self) -> None:
        """Switch to WAL. Two processes switching one new store at once each hold a read lock and want the other's
        gone, so SQLite answers one of them "locked" at once instead of waiting: it waits here and tries again."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

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
                    _text(error),
                    error_version,
                    time.time(),
                ),
            )

    def forget_files(self, paths: Iterable[str]) -> int:
        with self._lock:
            cur = self._conn.executemany("DELETE FROM files WHERE path = ?", ((encode_path(p),) for p in paths))
            return cur.rowcount

    def get_file(self, path: str) -> StoredFile | None:
        """The stored row at exactly this path."""
        with self._lock:
            row = self._conn.execute(
                "SELECT path, size, mtime_ns, dev, ino, content_hash, error, error_version FROM files WHERE path = ?",
                (encode_path(path),),
            ).fetchone()
        if row is None:
            return None
        raw, size, mtime_ns, dev, ino, content_hash, error, error_version = row
        return StoredFile(decode_path(raw), size, mtime_ns, dev, ino, content_hash, error, error_version)

    def files_with_content(self, content_hashes: Iterable[str]) -> list[StoredFile]:
        """Every stored file holding one of these contents, sorted by path."""
        rows: list[tuple[bytes, int, int, int, int, str | None, str | None, str | None]] = []
        with self._lock:
            for content_hash in sorted(set(content_hashes)):
                rows.extend(
                    self._conn.execute(
                        "SELECT path, size, mtime_ns, dev, ino, content_hash, error, error_version FROM files"
                        " WHERE content_hash = ?",
                        (content_hash,),
                    ).fetchall()
                )
        found = [StoredFile(decode_path(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]
        return sorted(found, key=lambda f: f.path)

    def rename_file(self, src: str, dest: str) -> bool:
        """Move a stored entry to a new path, as a rename on disk does: no decoding. False when src is not stored."""
        with self.transaction():
            if self._conn.execute("SELECT 1 FROM files WHERE path = ?", (encode_path(src),)).fetchone() is None:
                return False
            if src != dest:
                # A rename replaces whatever the destination held.
                self._conn.execute("DELETE FROM files WHERE path = ?", (encode_path(dest),))
                self._conn.execute("UPDATE files SET path = ? WHERE path = ?", (encode_path(dest), encode_path(src)))
            return True

    def rename_folder(self, src: str, dest: str) -> int:
        """Move every stored entry below folder src to the same place below dest; returns how many moved."""
        low, high = _prefix_bounds(src)
        src_raw = low  # src with its trailing separator
        dest_raw = encode_path(dest.rstrip(os.sep) or os.sep)
        if not dest_raw.endswith(os.sep.encode()):
            dest_raw += os.sep.encode()
        with self.transaction():
            old = [r[0] for r in self._conn.execute("SELECT path FROM files WHERE path >= ? AND path < ?", (low, high))]
            if not old or src_raw == dest_raw:
                return len(old)
            # What the destination held is replaced, as the rename on disk replaced it.
            dlow, dhigh = _prefix_bounds(dest)
            self._conn.execute("DELETE FROM files WHERE path >= ? AND path < ?", (dlow, dhigh))
            self._conn.executemany(
                "UPDATE files SET path = ? WHERE path = ?", ((dest_raw + raw[len(src_raw) :], raw) for raw in old)
            )
            return len(old)

    def forget_folder(self, folder: str) -> int:
        """Forget the entry at a path and every entry below it."""
        low, high = _prefix_bounds(folder)
        with self._lock:
            return self._conn.execute(
                "DELETE FROM files WHERE path = ? OR (path >= ? AND path < ?)", (encode_path(folder), low, high)
            ).rowcount

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
                " phash, dhash, taken, low_info, variants, camera, crops)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    b"".join(v.to_bytes(8, "big") for v in fp.variants),
                    fp.camera,
                    fp.crops or None,
                ),
            )

    def fingerprints(self, version: str) -> list[Fingerprint]:
        """Every stored image fingerprint of this version."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.version = ?", (version,))
            return [_fingerprint(r) for r in rows]

    def records_under(
        self, roots: Sequence[str], version: str | None = None, *, crops: bool = True
    ) -> list[FileRecord]:
        """Fingerprinted files at or below the roots (all files when roots is empty), sorted by path. Without
        crops, the window hashes (about 1 KB a picture) are left out."""
        where, params = self._roots_clause(roots)
        if version is not None:
            where += " AND i.version = ?"
            params.append(version)
        columns = _IMAGE_COLUMNS if crops else _IMAGE_COLUMNS.replace("i.crops", "NULL")
        with self._lock:
            rows = self._conn.execute(
                f"SELECT f.path, f.size, f.mtime_ns, f.dev, f.ino, {columns}"
                f" FROM files f JOIN images i ON i.content_hash = f.content_hash WHERE {where} ORDER BY f.path",
                params,
            ).fetchall()
        return [FileRecord(decode_path(r[0]), r[1], r[2], r[3], r[4], _fingerprint(r[5:])) for r in rows]

    def library_under(self, roots: Sequence[str], version: str, *, crops: bool = False) -> Library:
        """Fingerprinted files at or below the roots (all files when roots is empty) as columns, sorted by path,
        read without a Python object per file; Library.ids are the files' rowids (see records_by_id). Without
        crops, the window hashes (about 1 KB a picture) are left out."""
        with self.reading():
            parts = [_chunk_library(row, packed, crops) for row, packed in self._library_rows(roots, version, crops)]
            library, odd = _concat(parts, crops)
            del parts
            if len(odd):
                # Variants or crop signatures of other lengths, texts ending in NUL (never written by this dedupe):
                # read them whole.
                found = self.records_by_id(library.ids[odd].tolist(), crops=crops)
                library = replace(library, odd=dict(zip(odd.tolist(), (r.fingerprint for r in found), strict=True)))
        paths = library.paths
        if isinstance(paths, PathColumn) and not paths.utf8:
            # Names that are not UTF-8 can sort otherwise as bytes than as strings.
            names = list(paths)
            if not all(map(operator.lt, names, names[1:])):
                order = np.array(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64)
                library = replace(library, paths=names).take(order)
        return replace(library, distinct_paths=True)  # the store's key

    def _library_rows(self, roots: Sequence[str], version: str, crops: bool) -> Iterator[tuple[Any, bool]]:
        """The files below the roots a chunk at a time, each chunk one row of _LIBRARY_SQL, and whether its
        lengths are packed."""
        for low, high in _path_ranges(roots):
            while True:
                # group_concat hands over each column of many rows as one string, several times faster than
                # fetching rows.
                for lengths in (_PACKED_LENGTHS, _LENGTHS):
                    sql = _LIBRARY_SQL.format(
                        lengths=lengths,
                        crops_columns=_CROPS_COLUMNS if crops else "",
                        crops="CASE WHEN typeof(i.crops) = 'blob' THEN i.crops END" if crops else "NULL",
                        high="" if high is None else "AND f.path < ?",
                    )
                    limit = _CROPS_CHUNK if crops else _LIBRARY_CHUNK
                    row = self._conn.execute(sql, (low, *(() if high is None else (high,)), version, limit)).fetchone()
                    packed = lengths is _PACKED_LENGTHS
                    if not row[0] or not packed or _packed_fit(row[_PACKED_AT], row[0]):
                        break
                if not row[0]:
                    break
                yield row, packed
                low = row[1] + b"\x00"  # the next path after the last one read

    def records_of(self, library: Library) -> list[FileRecord]:
        """The records of a library's files (one from library_under, or part of one: Library.take), in row order, as
        records_under makes them (with crop signatures when the library holds them): what the library holds is
        taken from it, the rest (times, hashes as text, format, camera and time as stored) read by rowid. Call it
        inside the same reading() as library_under: rowids name other rows once the store has changed."""
        ids = library.ids
        n = len(ids)
        # The images by their rowids (Library.content), each once: files of one content share them.
        contents, of_content = np.unique(library.content, return_inverse=True)
        files: list[tuple[Any, ...]] = []
        images: list[tuple[Any, ...]] = []
        with self.reading():
            for chunk in _chunks(ids.tolist(), _IDS_AT_ONCE):
                marks = ",".join("?" * len(chunk))
                files.append(self._conn.execute(_FILES_SQL.format(marks=marks), chunk).fetchone())
            for chunk in _chunks(contents.tolist(), _IDS_AT_ONCE):
                marks = ",".join("?" * len(chunk))
                images.append(self._conn.execute(_IMAGES_SQL.format(marks=marks), chunk).fetchone())
        if sum(p[0] for p in files) != n or sum(p[0] for p in images) != len(contents):
            raise StoreError(f"files of the grouping are no longer in the store at {self.path}")
        # The rows come in the store's order: put them in the library's.
        file_rowids = np.concatenate([_parse_ints(p[1], p[0]) for p in files if p[0]] or [np.zeros(0, np.int64)])
        mtimes = np.concatenate([_parse_ints(p[2], p[0]) for p in files if p[0]] or [np.zeros(0, np.int64)])
        place = np.empty(n, dtype=np.int64)
        place[np.argsort(ids)] = np.argsort(file_rowids)
        mtime_list = mtimes[place].tolist()
        texts: list[list[Any]] = [[], [], [], [], []]  # content and image hashes, format, time, camera (or None)
        image_rowids: list[npt.NDArray[np.int64]] = []
        for count, *columns in images:
            if count:
                image_rowids.append(_parse_ints(columns[0], count))
                for k, strings in enumerate(texts):
                    strings.extend(_strings(columns[1 + 2 * k] or b"", _parse_ints(columns[2 + 2 * k], count)))
        content, image, fmt, taken, camera = texts
        found = np.concatenate(image_rowids) if image_rowids else np.zeros(0, dtype=np.int64)
        at = np.empty(len(contents), dtype=np.int64)
        at[np.argsort(contents)] = np.argsort(found)  # contents are sorted: the fetched rows in their order
        order = at[of_content].tolist()
        crops = [b""] * n
        for k in np.flatnonzero(library.has_crops).tolist():
            crops[k] = library.crops[k].tobytes()
        turns = _SEVEN.iter_unpack(library.variants.astype(">u8").tobytes())
        variants = [v if t else () for v, t in zip(turns, library.turned.tolist(), strict=True)]
        records: list[FileRecord] = []
        with gc_paused():
            for k, (path, size, dev, ino, width, height, phash, dhash, low_info, sig) in enumerate(
                zip(
                    library.paths,
                    library.size.tolist(),
                    library.dev.tolist(),
                    library.ino.tolist(),
                    library.width.tolist(),
                    library.height.tolist(),
                    library.phash.tolist(),
                    library.dhash.tolist(),
                    library.low_info.tolist(),
                    crops,
                    strict=True,
                )
            ):
                j = order[k]
                fp = library.odd.get(k) or Fingerprint(
                    content[j],
                    image[j],
                    fmt[j],
                    width,
                    height,
                    phash,
                    dhash,
                    taken[j],
                    low_info,
                    variants[k],
                    camera[j],
                    sig,
                )
                records.append(FileRecord(path, size, mtime_list[k], dev, ino, fp))
        return records

    def records_by_id(self, ids: Sequence[int], *, crops: bool = True) -> list[FileRecord]:
        """The stored files with these rowids (Library.ids), in that order, as records_under makes them."""
        columns = _IMAGE_COLUMNS if crops else _IMAGE_COLUMNS.replace("i.crops", "NULL")
        found: dict[int, FileRecord] = {}
        with self.reading(), gc_paused():
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for r in self._conn.execute(
                    f"SELECT f.rowid, f.path, f.size, f.mtime_ns, f.dev, f.ino, {columns}"
                    f" FROM files f JOIN images i ON i.content_hash = f.content_hash WHERE f.rowid IN ({marks})",
                    chunk,
                ):
                    found[r[0]] = FileRecord(decode_path(r[1]), r[2], r[3], r[4], r[5], _fingerprint(r[6:]))
        try:
            return [found[i] for i in ids]
        except KeyError as e:
            raise StoreError(f"the file with rowid {e} is no longer in the store at {self.path}") from None

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

    def count_files_under(self, roots: Sequence[str]) -> int:
        """How many files are stored at or below the roots, fingerprinted or not: at least as many as
        count_records_under, and counted from the paths alone (milliseconds where that join takes a second)."""
        where, params = self._roots_clause(roots)
        with self._lock:
            row = self._conn.execute(f"SELECT count(*) FROM files f WHERE {where}", params).fetchone()
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

    # --- journal of review runs -------------------------------------------------------------------------------
    # Each write outside a transaction commits at once: an entry is on disk before the act it announces.

    def start_run(self, action: Action) -> int:
        with self._lock:
            cur = self._conn.execute("INSERT INTO runs (action, started) VALUES (?, ?)", (action.value, time.time()))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def finish_run(self, run_id: int) -> None:
        with self._lock:
            self._conn.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), run_id))

    def mark_run_undone(self, run_id: int) -> None:
        with self._lock:
            self._conn.execute("UPDATE runs SET undone = ? WHERE id = ?", (time.time(), run_id))

    def journal_planned(
        self,
        run_id: int,
        action: Action,
        path: str,
        keeper: str,
        content_hash: str,
        st: os.stat_result,
        destination: str | None = None,
        sidecar_of: str | None = None,
    ) -> int:
        """Write down an act before it happens. sidecar_of: the photo whose sidecar file this is."""
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO journal (run_id, action, path, keeper, destination, content_hash, size, mtime_ns, mode,"
                " state, at, sidecar_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
                (
                    run_id,
                    action.value,
                    encode_path(path),
                    encode_path(keeper),
                    None if destination is None else encode_path(destination),
                    content_hash,
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_mode,
                    time.time(),
                    None if sidecar_of is None else encode_path(sidecar_of),
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def journal_update(
        self, entry_id: int, state: JournalState, *, destination: str | None = None, reason: str | None = None
    ) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE journal SET state = ?, destination = coalesce(?, destination), reason = ? WHERE id = ?",
                (state.value, None if destination is None else encode_path(destination), _text(reason), entry_id),
            )

    def journal(self, run_id: int) -> list[JournalEntry]:
        """A run's entries in the order they were written."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, run_id, action, path, keeper, destination, content_hash, size, mtime_ns, mode, state,"
                " reason, at, sidecar_of FROM journal WHERE run_id = ? ORDER BY id",
                (run_id,),
            ).fetchall()
        return [
            JournalEntry(
                id=r[0],
                run_id=r[1],
                action=Action(r[2]),
                path=decode_path(r[3]),
                keeper=decode_path(r[4]),
                destination=None if r[5] is None else decode_path(r[5]),
                content_hash=r[6],
                size=r[7],
                mtime_ns=r[8],
                mode=r[9],
                state=JournalState(r[10]),
                reason=r[11],
                at=r[12],
                sidecar_of=None if r[13] is None else decode_path(r[13]),
            )
            for r in rows
        ]

    def runs(self) -> list[RunInfo]:
        """Every run, newest first, with the number of journal entries in each state."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, action, started, finished, undone FROM runs ORDER BY id DESC"
            ).fetchall()
            counts: dict[int, dict[str, int]] = {}
            for run_id, state, n in self._conn.execute(
                "SELECT run_id, state, count(*) FROM journal GROUP BY run_id, state"
            ):
                counts.setdefault(run_id, {})[state] = n
        return [RunInfo(r[0], Action(r[1]), r[2], r[3], r[4], counts.get(r[0], {})) for r in rows]

    # --- "not duplicates" decisions -----------------------------------------------------------------------------

    def add_not_duplicates(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember that files with these contents are not to be grouped together."""
        now = time.time()
        with self._lock:
            self._conn.executemany(
                "INSERT OR IGNORE INTO not_duplicates (hash_a, hash_b, decided_at) VALUES (?, ?, ?)",
                ((min(a, b), max(a, b), now) for a, b in pairs),
            )

    def not_duplicate_pairs(self) -> set[tuple[str, str]]:
        """The remembered pairs of content hashes, each as (smaller, larger)."""
        with self._lock:
            return {(a, b) for a, b in self._conn.execute("SELECT hash_a, hash_b FROM not_duplicates")}

    # --- searching --------------------------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent view of the store for several reads; SQLite errors become a readable StoreError."""
        with self._lock:
            if self._conn.in_transaction:  # already inside reading() or a transaction: that view holds
                yield
                return
            try:
                self._conn.execute("BEGIN")
                try:
                    yield
                finally:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise StoreError(f"cannot read the store at {self.path}: {e}") from None

    def fingerprint_columns(self, version: str) -> FingerprintColumns:
        """Every searchable fingerprint of this algorithm version, read without a Python object per row."""
        with self.reading():
            return FingerprintColumns.concat([self._table_columns(table, version) for table in _SEARCH_COLUMNS])

    def _table_columns(self, table: str, version: str) -> FingerprintColumns:
        # group_concat hands over a whole column as one string, several times faster than fetching rows.
        ident = "id" if table == "imported" else "NULL"
        count, ids, content, image, phash, dhash, low_info = self._conn.execute(
            f"SELECT count(*), group_concat({ident}), group_concat(content_hash, ''), group_concat(image_hash, ''),"
            f" group_concat(phash), group_concat(dhash), group_concat(low_info != 0, '') FROM {table}"
            " WHERE version = ?",
            (version,),
        ).fetchone()
        if count == 0:
            return _columns_from_rows([])
        if len(content) != count * _HASH_CHARS or len(image) != count * _HASH_CHARS:
            # A hash of another length (never written by this dedupe): take the slow, general path.
            rows = self._conn.execute(
                f"SELECT {_SEARCH_COLUMNS[table]} FROM {table} WHERE version = ?", (version,)
            ).fetchall()
            return _columns_from_rows(rows)
        columns = FingerprintColumns(
            imported=np.full(count, table == "imported", dtype=np.bool_),
            ident=_parse_ints(ids, count) if table == "imported" else np.zeros(count, dtype=np.int64),
            content_hash=np.frombuffer(content.encode("ascii"), dtype=f"S{_HASH_CHARS}"),
            image_hash=np.frombuffer(image.encode("ascii"), dtype=f"S{_HASH_CHARS}"),
            phash=_parse_ints(phash, count).view(np.uint64),
            dhash=_parse_ints(dhash, count).view(np.uint64),
            low_info=np.frombuffer(low_info.encode("ascii"), dtype="S1") == b"1",
        )
        return columns

    def matching_fingerprints(
        self,
        version: str,
        content_hash: str,
        image_hash: str,
        phash_blocks: Sequence[Sequence[int]] = (),
        phash: int = 0,
        threshold: int = 0,
    ) -> FingerprintColumns:
        """The fingerprints with this content or image hash, and those with enough detail whose pHash is within
        the threshold of phash and whose pHash block k is one of phash_blocks[k].

        Each pHash block is indexed and the distance is measured inside SQLite, so this reads only what it returns.
        """
        rows: dict[tuple[int, int, str], Sequence[Any]] = {}
        with self.reading():
            for table, columns in _SEARCH_COLUMNS.items():
                queries: list[tuple[str, list[object]]] = [
                    (f"SELECT {columns} FROM {table} WHERE content_hash = ? AND version = ?", [content_hash, version]),
                    (f"SELECT {columns} FROM {table} WHERE image_hash = ? AND version = ?", [image_hash, version]),
                ]
                for block, values in enumerate(phash_blocks):
                    if values:
                        # Only terms the index answers: a row is read only when its pHash is within the threshold.
                        marks = ",".join("?" * len(values))
                        where = f"{_block_expr(block)} IN ({marks}) AND dedupe_hamming(phash, ?) <= ?"
                        params: list[object] = [*values, _signed(phash), threshold]
                        queries.append((f"SELECT {columns}, version FROM {table} WHERE {where}", params))
                for sql, params in queries:
                    for row in self._conn.execute(sql, params):
                        if len(row) == 7 or row[7] == version:
                            rows[(row[0], row[1], row[2])] = row[:7]
        return _columns_from_rows(list(rows.values()))

    def describe_images(self, content_hashes: Sequence[str]) -> dict[str, tuple[int, int, list[str]]]:
        """Width, height and the paths of stored files (sorted) for each content hash still stored."""
        found: dict[str, tuple[int, int, list[str]]] = {}
        with self.reading():
            for chunk in _chunks(content_hashes):
                marks = ",".join("?" * len(chunk))
                for content_hash, width, height, raw in self._conn.execute(
                    "SELECT i.content_hash, i.width, i.height, f.path FROM images i"
                    f" JOIN files f ON f.content_hash = i.content_hash WHERE i.content_hash IN ({marks})",
                    chunk,
                ):
                    found.setdefault(content_hash, (width, height, []))[2].append(decode_path(raw))
        for _, _, paths in found.values():
            paths.sort()
        return found

    def describe_imported(self, ids: Sequence[int]) -> dict[int, tuple[int, int, str]]:
        """Width, height and label of imported fingerprints by id."""
        found: dict[int, tuple[int, int, str]] = {}
        with self.reading():
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for ident, width, height, label in self._conn.execute(
                    f"SELECT id, width, height, label FROM imported WHERE id IN ({marks})", chunk
                ):
                    found[ident] = (width, height, label)
        return found

    # --- imported fingerprints --------------------------------------------------------------------------------

    def add_imported(self, items: Sequence[ListedFingerprint], version: str, source: str) -> int:
        """Add fingerprints from a shared list; one already imported (same content hash) is kept as it was.

        Call it inside transaction(): a list of a million fingerprints is then written at once.
        """
        now = time.time()
        with self._lock:
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO imported (version, content_hash, image_hash, phash, dhash, width, height,"
                " low_info, label, source, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        version,
                        f.content_hash,
                        f.image_hash,
                        _signed(f.phash),
                        _signed(f.dhash),
                        f.width,
                        f.height,
                        int(f.low_info),
                        f.label,
                        source,
                        now,
                    )
                    for f in items
                ),
            )
            added = self._conn.total_changes - before
            self._conn.execute(
                "INSERT INTO imported_lists (source, version, listed, added, imported_at) VALUES (?, ?, ?, ?, ?)",
                (source, version, len(items), added, now),
            )
            return added

    def forget_imported(self) -> int:
        with self._lock:
            self._conn.execute("DELETE FROM imported_lists")
            return self._conn.execute("DELETE FROM imported").rowcount

    def stale_imported(self, version: str) -> int:
        """How many imported fingerprints were made by another algorithm version: searches cannot use them.

        Answered from the small table of imports, not by reading every fingerprint, so a check stays fast.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT coalesce(sum(added), 0) FROM imported_lists WHERE version != ?", (version,)
            ).fetchone()
        return int(row[0])

    def imported(self, version: str | None = None) -> list[ListedFingerprint]:
        """Imported fingerprints in the order they were imported (only one algorithm version, when given)."""
        where, params = ("WHERE version = ?", (version,)) if version is not None else ("", ())
        with self._lock:
            rows = self._conn.execute(
                "SELECT content_hash, image_hash, phash, dhash, width, height, low_info, label"
                f" FROM imported {where} ORDER BY id",
                params,
            ).fetchall()
        return [_listed(r) for r in rows]

    def count_imported(self, version: str | None = None, *, other_versions: bool = False) -> int:
        """Imported fingerprints of this version (or, with other_versions, of any other one)."""
        sql = "SELECT count(*) FROM imported"
        params: tuple[str, ...] = ()
        if version is not None:
            sql += f" WHERE version {'!=' if other_versions else '='} ?"
            params = (version,)
        with self._lock:
            return int(self._conn.execute(sql, params).fetchone()[0])

    def listed_under(self, roots: Sequence[str], version: str) -> list[ListedFingerprint]:
        """One entry per stored fingerprint below the roots (all when empty), labelled with its first path."""
        where, params = self._roots_clause(roots)
        with self._lock:
            rows = self._conn.execute(
                "SELECT i.content_hash, i.image_hash, i.phash, i.dhash, i.width, i.height, i.low_info, min(f.path)"
                f" FROM images i JOIN files f ON f.content_hash = i.content_hash WHERE i.version = ? AND {where}"
                " GROUP BY i.content_hash ORDER BY min(f.path)",
                [version, *params],
            ).fetchall()
        return [_listed((*r[:7], decode_path(r[7]))) for r in rows]

    # --- the check service and PDQ lists (issue 16) ---------------------------------------------------------

    def data_version(self) -> int:
        """A number that changes when another connection commits to the store (PRAGMA data_version), so that a
        long-running reader can tell when to load its index again without reading the tables."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def add_one_imported(self, item: ListedFingerprint, version: str, source: str) -> tuple[int, bool]:
        """Import one fingerprint: its id, and whether it is new (one with its content hash is kept as it was)."""
        with self.transaction():
            added = self.add_imported([item], version, source)
            row = self._conn.execute("SELECT id FROM imported WHERE content_hash = ?", (item.content_hash,)).fetchone()
        return int(row[0]), added > 0

    def forget_imported_ids(self, ids: Sequence[int]) -> int:
        with self.transaction():
            return self._conn.executemany("DELETE FROM imported WHERE id = ?", ((i,) for i in ids)).rowcount

    def imported_entries(
        self, version: str | None = None, label: str | None = None
    ) -> list[tuple[int, ListedFingerprint, str, float]]:
        """Imported fingerprints with their ids, sources and import times, in the order imported; only those
        with this exact label, when given."""
        clauses, params = [], []
        if version is not None:
            clauses.append("version = ?")
            params.append(version)
        if label is not None:
            clauses.append("label = ?")
            params.append(label)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                "SELECT content_hash, image_hash, phash, dhash, width, height, low_info, label, id, source,"
                f" imported_at FROM imported {where} ORDER BY id",
                params,
            ).fetchall()
        return [(int(r[8]), _listed(r[:8]), str(r[9]), float(r[10])) for r in rows]

    def add_pdq(self, items: Sequence[PdqEntry], source: str) -> int:
        """Add PDQ hashes from an industry list; one already there (same hash) is kept as it was. Its table is made
        on first use, so that a store without PDQ lists keeps the schema every dedupe version knows.

        Call it inside transaction() to add a list all or none.
        """
        with self._lock:
            self._conn.execute(_PDQ_TABLE)
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO pdq (hash, label, quality, source, imported_at) VALUES (?, ?, ?, ?, ?)",
                ((e.hash, e.label, e.quality, source, time.time()) for e in items),
            )
            return self._conn.total_changes - before

    def forget_pdq(self) -> int:
        with self._lock:
            if not self._has_table("pdq"):
                return 0
            return self._conn.execute("DELETE FROM pdq").rowcount

    def pdq_entries(self) -> list[tuple[int, PdqEntry]]:
        """The PDQ hashes imported, with their ids, in the order imported."""
        with self._lock:
            if not self._has_table("pdq"):
                return []
            rows = self._conn.execute("SELECT id, hash, label, quality FROM pdq ORDER BY id").fetchall()
        return [(int(r[0]), PdqEntry(str(r[1]), str(r[2]), None if r[3] is None else int(r[3]))) for r in rows]

    def count_pdq(self) -> int:
        with self._lock:
            if not self._has_table("pdq"):
                return 0
            return int(self._conn.execute("SELECT count(*) FROM pdq").fetchone()[0])

    def _has_table(self, name: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None


_PDQ_TABLE = """
CREATE TABLE IF NOT EXISTS pdq (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    quality INTEGER,
    source TEXT NOT NULL,
    imported_at REAL NOT NULL
)
"""


# Rows of files read at once into columns, and fewer with crop signatures (about 1 KB each).
_LIBRARY_CHUNK = 1 << 17
_CROPS_CHUNK = 1 << 14
_LIBRARY_SQL = """
SELECT count(*), max(p), group_concat(r), group_concat(size), group_concat(dev), group_concat(ino), group_concat(c),
    group_concat(w * 4294967296 + ht), group_concat(ph), group_concat(dh), {lengths},
    CAST(group_concat(p, '') AS BLOB), CAST(group_concat(h, '') AS BLOB), CAST(group_concat(v, '') AS BLOB),
    CAST(group_concat(cam, '') AS BLOB), CAST(group_concat(tk, '') AS BLOB) {crops_columns}
FROM (
    SELECT p, r, size, dev, ino, c, w, ht, ph, dh, low, h, v, cam, tk, cr, length(p) lp, coalesce(length(h), 0) lh,
        coalesce(length(v), 0) lv, coalesce(length(cam), 0) lcam, coalesce(length(tk), 0) ltk
    FROM (
        SELECT f.path p, f.rowid r, f.size, f.dev, f.ino, i.rowid c, i.width w, i.height ht, i.phash ph,
            i.dhash dh, i.low_info != 0 low, CAST(i.image_hash AS BLOB) h,
            CASE WHEN typeof(i.variants) = 'blob' THEN i.variants END v, CAST(i.camera AS BLOB) cam,
            CAST(i.taken AS BLOB) tk, {crops} cr
        FROM files f JOIN images i ON i.content_hash = f.content_hash
        WHERE f.path >= ? {high} AND i.version = ?
        ORDER BY f.path LIMIT ?
    )
)
"""
# The lengths of the path, image hash, variants, camera and time and the low-information flag, packed into one
# number (each aggregate costs); any of 4095 bytes or more and the chunk is read again with them one by one.
_PACKED_LENGTHS = (
    "group_concat(((((min(lp, 4095) * 4096 + min(lh, 4095)) * 4096 + min(lv, 4095)) * 4096 + min(lcam, 4095)) * 4096"
    " + min(ltk, 4095)) * 2 + low)"
)
_LENGTHS = (
    "group_concat(lp), group_concat(lh), group_concat(lv), group_concat(lcam), group_concat(ltk), group_concat(low)"
)
_PACKED_AT = 10  # the column of packed lengths
_CROPS_COLUMNS = ", group_concat(coalesce(length(cr), 0)), CAST(group_concat(cr, '') AS BLOB)"


@dataclass(frozen=True, slots=True)
class _Chunk:
    library: Library  # without image numbers and odd rows
    paths: PathColumn  # the library's
    image: npt.NDArray[np.bytes_]  # image hashes
    odd: npt.NDArray[np.int64]  # rows of variants or crop signatures of other lengths


def _packed_fit(text: str, count: int) -> bool:
    """Whether no packed length of a chunk may have been cut (at 4095)."""
    lengths = _parse_ints(text, count)
    return not any((((lengths >> (1 + 12 * k)) & 4095) == 4095).any() for k in range(5))


def _chunk_library(row: Sequence[Any], packed: bool, crops: bool) -> _Chunk:
    """One _LIBRARY_SQL row as columns."""
    count = int(row[0])
    ids, size, dev, ino, content, sides, phash, dhash = (_parse_ints(t, count) for t in row[2:_PACKED_AT])
    at = _PACKED_AT
    if packed:
        lengths = _parse_ints(row[at], count)
        low_info = (lengths & 1).astype(bool)
        taken_lengths, camera_lengths, variants_lengths, image_lengths, path_lengths = (
            (lengths >> (1 + 12 * k)) & 4095 for k in range(5)
        )
        at += 1
    else:
        path_lengths, image_lengths, variants_lengths, camera_lengths, taken_lengths = (
            _parse_ints(t, count) for t in row[at : at + 5]
        )
        low_info = _parse_ints(row[at + 5], count).astype(bool)
        at += 6
    paths_raw, image_raw, variants_raw, camera_raw, taken_raw = (r or b"" for r in row[at : at + 5])
    turned = variants_lengths // 8 == 7
    variants = np.zeros((count, 7), dtype=np.uint64)
    variants[turned] = _rows_of(variants_raw, variants_lengths, turned, 56).view(">u8").astype(np.uint64)
    odd = (variants_lengths // 8 != 0) & ~turned
    crop_rows = np.zeros((count, CROP_BYTES if crops else 0), dtype=np.uint8)
    has_crops = np.zeros(count, dtype=bool)
    if crops:
        crops_lengths = _parse_ints(row[at + 5], count)
        has_crops = crops_lengths == CROP_BYTES
        crop_rows[has_crops] = _rows_of(row[at + 6] or b"", crops_lengths, has_crops, CROP_BYTES)
        odd |= (crops_lengths != 0) & ~has_crops
    camera, taken = _texts(camera_raw, camera_lengths), _texts(taken_raw, taken_lengths)
    odd |= _ends_in_nul(camera_raw, camera_lengths) | _ends_in_nul(taken_raw, taken_lengths)
    paths = PathColumn(paths_raw, np.cumsum(path_lengths))
    library = Library(
        ids=ids,
        paths=paths,
        size=size,
        dev=dev,
        ino=ino,
        content=content,
        image=np.zeros(count, dtype=np.int64),
        width=sides >> 32,
        height=sides & 0xFFFFFFFF,
        phash=phash.view(np.uint64),
        dhash=dhash.view(np.uint64),
        low_info=low_info,
        turned=turned,
        variants=variants,
        camera=camera,
        taken=taken,
        crops=crop_rows,
        has_crops=has_crops,
    )
    return _Chunk(library, paths, _texts(image_raw, image_lengths, marked=True), np.flatnonzero(odd))


def _concat(parts: Sequence[_Chunk], crops: bool) -> tuple[Library, npt.NDArray[np.int64]]:
    """The chunks as one library (image hashes numbered), and its odd rows."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Library(
            ids=empty,
            paths=[],
            size=empty,
            dev=empty,
            ino=empty,
            content=empty,
            image=empty,
            width=empty,
            height=empty,
            phash=empty.view(np.uint64),
            dhash=empty.view(np.uint64),
            low_info=np.zeros(0, dtype=bool),
            turned=np.zeros(0, dtype=bool),
            variants=np.zeros((0, 7), dtype=np.uint64),
            camera=np.zeros(0, dtype="S1"),
            taken=np.zeros(0, dtype="S1"),
            crops=np.zeros((0, CROP_BYTES if crops else 0), dtype=np.uint8),
            has_crops=np.zeros(0, dtype=bool),
        ), np.zeros(0, dtype=np.int64)
    fields: dict[str, Any] = {}
    for name in Library.__slots__:
        if name == "paths":
            fields[name] = PathColumn.concat([part.paths for part in parts])
        elif name not in ("odd", "distinct_paths"):
            fields[name] = np.concatenate([getattr(part.library, name) for part in parts])
    fields["image"] = _value_ids(np.concatenate([part.image for part in parts]))
    starts = np.cumsum([0, *(len(part.library) for part in parts)])
    odd = np.concatenate([part.odd + start for part, start in zip(parts, starts.tolist(), strict=False)])
    return Library(**fields), odd


def _path_ranges(roots: Sequence[str]) -> list[tuple[bytes, bytes | None]]:
    """Byte ranges [low, high) of the paths at or below the roots (everything when there is none), in order, apart."""
    if not roots:
        return [(b"", None)]
    ranges: list[tuple[bytes, bytes]] = []
    for root in roots:
        raw = encode_path(root)
        ranges.append((raw, raw + b"\x00"))  # the root itself
        ranges.append(_prefix_bounds(root))
    merged: list[tuple[bytes, bytes]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return [(low, high) for low, high in merged]


class PathColumn(Sequence[str]):
    """Paths as stored (bytes, one after another) and where each ends: a string is made only when one is read."""

    def __init__(self, raw: bytes, ends: npt.NDArray[np.int64]) -> None:
        self.raw = raw
        self.ends = ends
        self.utf8 = raw.isascii() or _is_utf8(raw)  # then bytes sort as the strings do
        self._bounds: tuple[list[int], list[int]] | None = None
        self._text: str | None = None

    @staticmethod
    def concat(parts: Sequence[PathColumn]) -> PathColumn:
        starts = np.cumsum([0, *(len(p.raw) for p in parts[:-1])])
        ends = [p.ends + start for p, start in zip(parts, starts.tolist(), strict=True)]
        return PathColumn(b"".join(p.raw for p in parts), np.concatenate(ends) if ends else np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ends)

    @overload
    def __getitem__(self, k: int) -> str: ...
    @overload
    def __getitem__(self, k: slice) -> list[str]: ...
    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if self._bounds is None:
            ends = self.ends.tolist()
            self._bounds = ([0, *ends[:-1]], ends)
            self._text = self.raw.decode("ascii") if self.raw.isascii() else None  # then sliced as it is
        starts, ends = self._bounds
        if self._text is not None:
            return self._text[starts[k] : ends[k]]
        return decode_path(self.raw[starts[k] : ends[k]])

    def __iter__(self) -> Iterator[str]:
        ends = self.ends.tolist()
        raw = self.raw
        if raw.isascii():
            text = raw.decode("ascii")
            return (text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True))
        return (decode_path(raw[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True))


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _rows_of(
    raw: bytes, lengths: npt.NDArray[np.int64], chosen: npt.NDArray[np.bool_], width: int
) -> npt.NDArray[np.uint8]:
    """The first width bytes of the chosen ones of blobs given one after another (lengths in bytes)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if len(raw) != int(lengths.sum()):
        raise StoreError("the store returned a damaged column of fingerprints")
    if len(data) == width * int(chosen.sum()):  # the usual case: only rows of exactly width bytes and empty ones
        return data.reshape(-1, width)
    starts = np.cumsum(lengths) - lengths
    rows: npt.NDArray[np.uint8] = data[starts[chosen][:, None] + np.arange(width)]
    return rows


def _ends_in_nul(raw: bytes, lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which of byte strings given one after another end in NUL: numpy would cut it off (Library.odd)."""
    if b"\x00" not in raw:
        return np.zeros(len(lengths), dtype=bool)
    ends = np.cumsum(lengths) - 1
    last = np.frombuffer(raw, dtype=np.uint8)[np.maximum(ends, 0)] if len(raw) else np.zeros(len(lengths))
    found: npt.NDArray[np.bool_] = (lengths > 0) & (last == 0)
    return found


def _strings(raw: bytes, lengths: npt.NDArray[np.int64]) -> list[str | None]:
    """Strings given as UTF-8 one after another (lengths in bytes, -1 for None)."""
    ends = np.cumsum(np.maximum(lengths, 0)).tolist()
    starts = [0, *ends[:-1]]
    if raw.isascii():
        text = raw.decode("ascii")
        found: list[str | None] = [text[a:b] for a, b in zip(starts, ends, strict=True)]
    else:
        found = [raw[a:b].decode() for a, b in zip(starts, ends, strict=True)]
    for k in np.flatnonzero(lengths < 0).tolist():
        found[k] = None
    return found


def _texts(raw: bytes, lengths: npt.NDArray[np.int64], *, marked: bool = False) -> npt.NDArray[np.bytes_]:
    """Byte strings given one after another (lengths in bytes) as one array; b"" where empty. marked: each followed
    by 0x01, for values that are only compared (image hashes): numpy cuts trailing NULs off its byte strings, which
    would make b"a" and b"a\x00" one value (two pictures taken for the same image data)."""
    n = len(lengths)
    widest = int(lengths.max()) if n else 0
    if len(raw) != int(lengths.sum()):
        raise StoreError("the store returned a damaged column of fingerprints")
    if widest == 0 and not marked:
        return np.zeros(n, dtype="S1")
    data = np.frombuffer(raw, dtype=np.uint8)
    uniform = len(data) == widest * n  # all of one length (hex hashes): no index arrays
    if uniform and not marked:
        return data.view(f"S{widest}").copy()
    out = np.zeros((n, widest + marked), dtype=np.uint8)
    if uniform:
        out[:, :widest] = data.reshape(n, widest)
    else:
        starts = np.cumsum(lengths) - lengths
        for width in np.unique(lengths[lengths > 0]).tolist():
            rows = np.flatnonzero(lengths == width)
            out[rows, :width] = data[starts[rows][:, None] + np.arange(width)]
    if marked:
        out[np.arange(n), lengths] = 1
    return out.view(f"S{widest + marked}").ravel()


def _value_ids(values: npt.NDArray[np.bytes_]) -> npt.NDArray[np.int64]:
    """A number per value, equal for equal values (of one width, so that no two differ only in trailing zeros)."""
    n = len(values)
    width = values.dtype.itemsize
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if width % 8:
        padded = np.zeros((n, width + 8 - width % 8), dtype=np.uint8)
        padded[:, :width] = values.view(np.uint8).reshape(n, width)
        words = padded.view(np.uint64)
    else:
        words = np.ascontiguousarray(values).view(np.uint64).reshape(n, width // 8)
    # Sorted by a 64-bit mix of the words; values that mix alike are compared whole.
    mixed = words[:, 0].copy()
    for k in range(1, words.shape[1]):
        mixed *= np.uint64(0x9E3779B97F4A7C15)
        mixed ^= mixed >> np.uint64(29)
        mixed ^= words[:, k]
    order = np.argsort(mixed, kind="stable")
    sorted_mixed = mixed[order]
    heads = np.r_[True, sorted_mixed[1:] != sorted_mixed[:-1]]
    ids = np.cumsum(heads) - 1
    alike = np.flatnonzero(~heads)
    firsts = order[np.flatnonzero(heads)[ids[alike]]]
    if not (words[order[alike]] == words[firsts]).all():
        _, inverse = np.unique(values, return_inverse=True)
        return inverse.astype(np.int64)
    out = np.empty(n, dtype=np.int64)
    out[order] = ids
    return out


def _listed(row: Sequence[object]) -> ListedFingerprint:
    content_hash, image_hash, phash, dhash, width, height, low_info, label = row
    assert isinstance(phash, int) and isinstance(dhash, int) and isinstance(width, int) and isinstance(height, int)
    return ListedFingerprint(
        content_hash=str(content_hash),
        image_hash=str(image_hash),
        phash=_unsigned(phash),
        dhash=_unsigned(dhash),
        width=width,
        height=height,
        low_info=bool(low_info),
        label=str(label),
    )


def _hamming(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


def _parse_ints(text: str, count: int) -> npt.NDArray[np.int64]:
    try:
        values = np.fromstring(text, dtype=np.int64, sep=",")
    except ValueError:  # a REAL or a text where dedupe writes integers: a damaged or foreign store
        raise StoreError("the store returned a damaged column of fingerprints") from None
    if len(values) != count:
        raise StoreError("the store returned a damaged column of fingerprints")
    return values


def _text(message: str | None) -> str | None:
    """A message for a TEXT column: a path in it may hold bytes that are not UTF-8 (surrogate escapes), which
    SQLite cannot store as text; they are kept as \\xNN escapes."""
    if message is None:
        return None
    try:
        raw = message.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = message.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _chunks(items: Sequence[object], size: int = 500) -> Iterator[list[object]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _fingerprint(row: Sequence[Any]) -> Fingerprint:
    content_hash, image_hash, fmt, width, height, phash, dhash, taken, low_info, variants, camera, crops = row
    assert isinstance(phash, int) and isinstance(dhash, int)
    packed = variants if type(variants) is bytes else b""
    return Fingerprint(
        str(content_hash),
        str(image_hash),
        str(fmt),
        int(width),
        int(height),
        phash + _TWO_TO_64 if phash < 0 else phash,  # _unsigned, written out: this runs for every record
        dhash + _TWO_TO_64 if dhash < 0 else dhash,
        None if taken is None else str(taken),
        bool(low_info),
        _SEVEN.unpack(packed) if len(packed) == 56 else struct.unpack_from(f">{len(packed) // 8}Q", packed),
        None if camera is None else str(camera),
        crops if type(crops) is bytes else b"",
    )


_TWO_TO_64 = 1 << 64
_IDS_AT_ONCE = 999  # rowids in one IN (...): the least limit of SQLite builds
# What records_of reads: the files' times, and their images' texts as UTF-8 one after another, each with its length
# (-1 for NULL).
_FILES_SQL = "SELECT count(*), group_concat(rowid), group_concat(mtime_ns) FROM files WHERE rowid IN ({marks})"
_IMAGES_SQL = (
    "SELECT count(*), group_concat(rowid)"
    + "".join(
        f", CAST(group_concat(CAST({c} AS BLOB), '') AS BLOB), group_concat(coalesce(length(CAST({c} AS BLOB)), -1))"
        for c in ("content_hash", "image_hash", "format", "taken", "camera")
    )
    + " FROM images WHERE rowid IN ({marks})"
)
_SEVEN = struct.Struct(">7Q")  # the usual variants: all 7 turns


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
