"""The fingerprint store: the only user of sqlite3.

Files are keyed by path (stored as bytes, so names that are not valid UTF-8 survive) and point to an image
fingerprint keyed by content hash, so identical files, moves and renames never need decoding twice.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dedupe.errors import StoreError
from dedupe.library import decode_path, encode_path
from dedupe.models import ALPHA_VARIANTS, CROP_BYTES, CROP_WINDOWS, TRANSFORMS, Fingerprint
from dedupe.store_base import _IMAGE_COLUMNS, _chunks, _fingerprint, _prefix_bounds, _signed, _text, _unsigned, explain
from dedupe.store_base import RESET_COMMAND as RESET_COMMAND
from dedupe.store_base import failure as failure
from dedupe.store_journal import JournalSQL
from dedupe.store_library import LibraryReads
from dedupe.store_search import PHASH_BLOCK_BITS as PHASH_BLOCK_BITS
from dedupe.store_search import PHASH_BLOCKS as PHASH_BLOCKS
from dedupe.store_search import FingerprintColumns as FingerprintColumns
from dedupe.store_search import PdqSQL, SearchSQL

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
    # 7: the ctime a scan saw (a same-size rewrite with its mtime put back still changes it; NULL: not yet seen),
    # and the hash of the bytes of a file that was read but could not be decoded (its byte copies are duplicates)
    """
    ALTER TABLE files ADD COLUMN ctime_ns INTEGER;
    ALTER TABLE files ADD COLUMN undecoded_hash TEXT
    """,
    # 8: a token that every change to what the grouping reads replaces (files and images, by triggers, whichever
    # program writes), so that a copy of the columns kept beside the store (column_cache.py) is known to be current
    """
    CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER NOT NULL);
    INSERT INTO changes (id, token) VALUES (1, random());
    CREATE TRIGGER changes_files_insert AFTER INSERT ON files BEGIN UPDATE changes SET token = random(); END;
    CREATE TRIGGER changes_files_delete AFTER DELETE ON files BEGIN UPDATE changes SET token = random(); END;
    CREATE TRIGGER changes_files_update AFTER UPDATE ON files
        WHEN old.path IS NOT new.path OR old.size IS NOT new.size OR old.dev IS NOT new.dev
            OR old.ino IS NOT new.ino OR old.content_hash IS NOT new.content_hash
        BEGIN UPDATE changes SET token = random(); END;
    CREATE TRIGGER changes_images_insert AFTER INSERT ON images BEGIN UPDATE changes SET token = random(); END;
    CREATE TRIGGER changes_images_delete AFTER DELETE ON images BEGIN UPDATE changes SET token = random(); END;
    CREATE TRIGGER changes_images_update AFTER UPDATE ON images BEGIN UPDATE changes SET token = random(); END
    """,
    # 9: a second token for what the first one leaves out of a file's row and a scan compares (its times and whether
    # it failed), so that a copy of the stat keys (stat_cache.py) is known to be current by the two together, while
    # the copy of the columns stays current through a touch
    """
    CREATE TABLE stat_changes (id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER NOT NULL);
    INSERT INTO stat_changes (id, token) VALUES (1, random());
    CREATE TRIGGER stat_changes_files_update AFTER UPDATE ON files
        WHEN old.mtime_ns IS NOT new.mtime_ns OR old.ctime_ns IS NOT new.ctime_ns OR old.error IS NOT new.error
        BEGIN UPDATE stat_changes SET token = random(); END
    """,
    # 10: the few files that failed, and those read but not decoded, found without reading every row below the
    # roots (what each grouping of the store reports beside its groups: store_library.errors_under and
    # undecoded_copies_under)
    """
    CREATE INDEX files_failed ON files (path) WHERE error IS NOT NULL;
    CREATE INDEX files_undecoded ON files (undecoded_hash, path) WHERE undecoded_hash IS NOT NULL
    """,
    # 11: the second reading (colours alone) of each picture with transparency, block-indexed as images' pHash is,
    # so that a search finds a stored transparent picture from a copy that dropped its alpha channel. Keyed by
    # content hash, as images is (INSERT OR REPLACE gives an image a new rowid); put_fingerprint writes it, a
    # trigger drops it with its image, and here it is filled from the variants of pictures already stored (their
    # 7 turns, then the second reading's pHash and dHash: models.ALPHA_VARIANTS values of 8 bytes)
    """
    CREATE TABLE second_readings (
        content_hash TEXT PRIMARY KEY,
        phash INTEGER NOT NULL,
        dhash INTEGER NOT NULL
    );
    CREATE INDEX second_readings_phash_block0 ON second_readings (((phash >> 0) & 65535), phash);
    CREATE INDEX second_readings_phash_block1 ON second_readings (((phash >> 16) & 65535), phash);
    CREATE INDEX second_readings_phash_block2 ON second_readings (((phash >> 32) & 65535), phash);
    CREATE INDEX second_readings_phash_block3 ON second_readings (((phash >> 48) & 65535), phash);
    CREATE TRIGGER second_readings_images_delete AFTER DELETE ON images
        BEGIN DELETE FROM second_readings WHERE content_hash = old.content_hash; END;
    INSERT INTO second_readings (content_hash, phash, dhash)
        SELECT content_hash, dedupe_word(variants, 7), dedupe_word(variants, 8) FROM images
        WHERE length(variants) = 128
    """,
)


def _second_reading(fp: Fingerprint) -> tuple[int, int] | None:
    """The pHash and dHash of a picture's colours alone, when it has transparency (as match.readings splits
    Fingerprint.variants; the store sits below match)."""
    if len(fp.variants) != ALPHA_VARIANTS:
        return None
    turns = len(TRANSFORMS)
    return fp.variants[turns], fp.variants[turns + 1]


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration, one at a time (a trigger's body holds semicolons of its own)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


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
    ctime_ns: int | None = None  # None: stored by a dedupe before ctimes were kept
    undecoded_hash: str | None = None  # the bytes' hash of a file read but not decoded (error is then set)


_FILE_COLUMNS = "path, size, mtime_ns, dev, ino, content_hash, error, error_version, ctime_ns, undecoded_hash"


StatKey = tuple[int, int, int, int, int | None, int, int]
"""(size, mtime_ns, dev, ino, ctime_ns, fingerprinted, failed) of a stored file: fingerprinted is 1 when its content
has a fingerprint of the version asked for, failed 1 when it holds an error. A file whose fresh stat gives
(st_size, st_mtime_ns, st_dev, st_ino, st_ctime_ns, 1, 0) is unchanged and needs nothing (scan._unchanged says why
these fields)."""


_STATS_SQL = (
    "SELECT path, size, mtime_ns, dev, ino, ctime_ns,"
    " EXISTS (SELECT 1 FROM images i WHERE i.content_hash = f.content_hash AND i.version = ?), error IS NOT NULL"
    " FROM files f WHERE path = ? OR (path >= ? AND path < ?)"
)


@dataclass(frozen=True, slots=True)
class SearchHashes:
    """What a search for the pictures close to a new one reads of a stored fingerprint (Store.search_hashes)."""

    rowid: int
    content_hash: str
    phash: int
    low_info: bool
    second: int | None  # the pHash of its second reading, when it has transparency (match.readings)
    crops: bytes | None  # the pHashes of its crop windows (8 bytes big-endian each), when it has a crop signature


def _stored(row: Sequence[object]) -> StoredFile:
    raw, size, mtime_ns, dev, ino, content_hash, error, error_version, ctime_ns, undecoded = row
    assert isinstance(raw, bytes) and isinstance(size, int) and isinstance(mtime_ns, int)
    assert isinstance(dev, int) and isinstance(ino, int)
    return StoredFile(
        decode_path(raw),
        size,
        mtime_ns,
        dev,
        ino,
        None if content_hash is None else str(content_hash),
        None if error is None else str(error),
        None if error_version is None else str(error_version),
        ctime_ns if isinstance(ctime_ns, int) else None,
        None if undecoded is None else str(undecoded),
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


# The files beside a store that belong to it: SQLite's, and the copies of its columns and of its files' stats.
_BESIDE = ("-wal", "-shm", "-journal", ".columns", ".stats")


def reset_store(path: str | os.PathLike[str] | None = None) -> Path:
    """Move a (damaged) store aside, with the files beside it (-wal, -shm, the copies), so that the next open starts
    a new one.
    Returns where the old store now is: PATH.damaged-YYYYMMDD-HHMMSS (nothing is deleted)."""
    db = (Path(path) if path is not None else default_store_path()).expanduser()
    if not db.exists():
        raise StoreError(f"no store at {db}: nothing to reset")
    aside = db.with_name(f"{db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        aside = db.with_name(f"{db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    try:
        for suffix in (*_BESIDE, ""):
            part = Path(f"{db}{suffix}")
            if part.exists():
                part.rename(f"{aside}{suffix}")
    except OSError as e:
        raise StoreError(f"cannot move the store at {db} aside: {e.strerror or e}") from None
    return aside


class Store(LibraryReads, SearchSQL, PdqSQL, JournalSQL):
    """A SQLite fingerprint store. Safe to share between threads; use as a context manager.

    Made of parts with a job each: StoreBase (store_base.py: the connection, transactions, reads), LibraryReads
    (store_library.py), SearchSQL and PdqSQL (store_search.py) and JournalSQL (store_journal.py); here opening and
    migrating, and the files and fingerprints a scan writes."""

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, readonly: bool = False) -> Store:
        """Open (or create) the store. readonly: never written, for the commands that only read; it opens on a
        read-only file system or in a folder the user cannot write too.

        Only the default store's folder is created: a --db in a missing folder is a typo, not a wish."""
        db = Path(path) if path is not None else default_store_path()
        db = db.expanduser()
        try:
            if db.is_dir():
                raise StoreError(f"cannot use {db} as a store: it is a folder")
            if readonly:
                if not db.exists():
                    raise StoreError(f"no store at {db}: run 'dedupe scan' first")
                return cls._open_readonly(db)
            if path is None or os.environ.get("DEDUPE_DB") == str(path):
                db.parent.mkdir(parents=True, exist_ok=True)
            elif not db.parent.is_dir():
                raise StoreError(f"no folder {db.parent} for the store {db}: create it first, or correct --db")
            conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            try:
                store = cls(conn, db.absolute(), readonly)
                store._busy_timeout()
                store._prepare()
            except BaseException:
                conn.close()  # else the file stays open (a drive that cannot be unmounted) until the process ends
                raise
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as e:
            raise StoreError(explain(e, db.absolute())) from None
        return store

    @classmethod
    def _open_readonly(cls, db: Path) -> Store:
        """mode=ro; where that cannot work (a WAL store needs its -shm file, which a read-only folder cannot
        hold), immutable=1: SQLite then takes no locks and reads the file as it is."""
        uri = db.absolute().as_uri()
        first: sqlite3.Error | None = None
        for query in ("mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(f"{uri}?{query}", uri=True, check_same_thread=False)
            try:
                store = cls(conn, db.absolute(), True)
                store._busy_timeout()
                store._prepare()
                return store
            except sqlite3.Error as e:
                conn.close()
                first = first or e
            except BaseException:
                conn.close()  # a store refused (newer, older, another program's): its file is not kept open
                raise
        assert first is not None
        raise first

    def _busy_timeout(self) -> None:
        """How long to wait for another process's write: $DEDUPE_BUSY_TIMEOUT seconds (30 by default)."""
        seconds = float(os.environ.get("DEDUPE_BUSY_TIMEOUT") or 30)
        self._conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

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
                for statement in _statements(_MIGRATIONS[target - 1]):
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

    def own_files(self) -> tuple[Path, ...]:
        """The store's own files, which a scan must never fingerprint (with the copies beside it: column_cache,
        stat_cache), and the folder of the review page's thumbnails (web.thumbs), which a scan must not enter."""
        return tuple(Path(f"{self.path}{suffix}") for suffix in ("", *_BESIDE, "-thumbs"))

    # --- files and fingerprints -------------------------------------------------------------------------------

    def files_under(self, roots: Sequence[str]) -> Iterator[StoredFile]:
        """Every stored row at or below the given absolute paths."""
        with self._lock:
            rows: list[tuple[object, ...]] = []
            for root in roots:
                low, high = _prefix_bounds(root)
                rows.extend(
                    self._conn.execute(
                        f"SELECT {_FILE_COLUMNS} FROM files WHERE path = ? OR (path >= ? AND path < ?)",
                        (encode_path(root), low, high),
                    ).fetchall()
                )
        for row in rows:
            yield _stored(row)

    def stats_under(self, roots: Sequence[str], version: str) -> dict[str, StatKey]:
        """What the last scan saw of every stored file at or below the given absolute paths, by path: cheap to
        compare with a fresh stat (see StatKey), where a StoredFile per file costs ten times as much to make."""
        rows: list[Any] = []
        with self.reading():
            for root in roots:
                low, high = _prefix_bounds(root)
                rows.extend(self._conn.execute(_STATS_SQL, (version, encode_path(root), low, high)).fetchall())
        return {decode_path(r[0]): r[1:] for r in rows}

    def stat_token(self) -> tuple[int, int]:
        """Two numbers that every change to what stats_under reads replaces (by triggers, whoever writes): the
        change token (LibraryReads.change_token) and one for the times and errors of files. Read it inside the
        reading() that reads the rest."""
        with self._lock:
            row = self._conn.execute("SELECT (SELECT token FROM changes), (SELECT token FROM stat_changes)").fetchone()
        return int(row[0]), int(row[1])

    def put_file(
        self,
        path: str,
        st: os.stat_result,
        content_hash: str | None,
        error: str | None = None,
        error_version: str | None = None,
        undecoded_hash: str | None = None,
    ) -> None:
        """Record what a scan saw at a path: its content hash, or why it could not be fingerprinted (and then the
        hash of its bytes, when they were read)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO files (path, size, mtime_ns, dev, ino, content_hash, error, error_version, scanned_at,"
                " ctime_ns, undecoded_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,"
                " dev = excluded.dev, ino = excluded.ino, content_hash = excluded.content_hash,"
                " error = excluded.error, error_version = excluded.error_version, scanned_at = excluded.scanned_at,"
                " ctime_ns = excluded.ctime_ns, undecoded_hash = excluded.undecoded_hash",
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
                    st.st_ctime_ns,
                    undecoded_hash,
                ),
            )

    def set_ctime(self, path: str, ctime_ns: int) -> None:
        """Record the ctime of a file found unchanged otherwise (a row from before ctimes were kept, or a file
        whose ctime moved while its bytes stayed)."""
        with self._lock:
            self._conn.execute("UPDATE files SET ctime_ns = ? WHERE path = ?", (ctime_ns, encode_path(path)))

    def forget_files(self, paths: Iterable[str]) -> int:
        with self._lock:
            cur = self._conn.executemany("DELETE FROM files WHERE path = ?", ((encode_path(p),) for p in paths))
            return cur.rowcount

    def get_file(self, path: str) -> StoredFile | None:
        """The stored row at exactly this path."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE path = ?", (encode_path(path),)
            ).fetchone()
        return None if row is None else _stored(row)

    def files_with_content(self, content_hashes: Iterable[str]) -> list[StoredFile]:
        """Every stored file holding one of these contents, sorted by path."""
        rows: list[tuple[object, ...]] = []
        with self._lock:
            for content_hash in sorted(set(content_hashes)):
                rows.extend(
                    self._conn.execute(
                        f"SELECT {_FILE_COLUMNS} FROM files WHERE content_hash = ?", (content_hash,)
                    ).fetchall()
                )
        return sorted((_stored(r) for r in rows), key=lambda f: f.path)

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

    def get_fingerprint(self, content_hash: str, version: str) -> Fingerprint | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.content_hash = ? AND i.version = ?",
                (content_hash, version),
            ).fetchone()
        return _fingerprint(row) if row else None

    def has_fingerprint(self, content_hash: str, version: str) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM images WHERE content_hash = ? AND version = ?", (content_hash, version)
            ).fetchone()
        return row is not None

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
            # INSERT OR REPLACE fires no delete trigger: the image's old second reading goes here.
            second = _second_reading(fp)
            if second is None:
                self._conn.execute("DELETE FROM second_readings WHERE content_hash = ?", (fp.content_hash,))
            else:
                self._conn.execute(
                    "INSERT OR REPLACE INTO second_readings (content_hash, phash, dhash) VALUES (?, ?, ?)",
                    (fp.content_hash, _signed(second[0]), _signed(second[1])),
                )

    def fingerprints(self, version: str) -> list[Fingerprint]:
        """Every stored image fingerprint of this version."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.version = ?", (version,))
            return [_fingerprint(r) for r in rows]

    def fingerprint_keys(self) -> str:
        """The rowid and content hash of every stored fingerprint, of any version, as "ROWID HASH" items joined by
        commas: made inside SQLite from the content hashes' index alone (a few MB, where the rows hold about 2 KB
        each), in one string that is compared at once with the last one. A reader that keeps what it made of the
        rows tells by these which rows came, went or were written again since (watch_report)."""
        with self._lock:
            row = self._conn.execute("SELECT group_concat(rowid || ' ' || content_hash, ',') FROM images").fetchone()
        return str(row[0] or "")

    def search_hashes(self, version: str, rowids: Sequence[int] | None = None) -> list[SearchHashes]:
        """What a search for the stored pictures close to a new one reads of the fingerprints of this version (all,
        or those with these rowids), in rowid order: the order in which fingerprints() gives them."""
        sql = (
            "SELECT rowid, content_hash, phash, low_info,"
            f" CASE WHEN typeof(variants) = 'blob' AND length(variants) / 8 = {ALPHA_VARIANTS}"
            f" THEN dedupe_word(variants, {len(TRANSFORMS)}) END,"
            f" CASE WHEN typeof(crops) = 'blob' AND length(crops) = {CROP_BYTES}"
            f" THEN substr(crops, 1, {8 * len(CROP_WINDOWS)}) END"
            " FROM images WHERE version = ?"
        )
        with self._lock:
            if rowids is None:
                rows = self._conn.execute(sql + " ORDER BY rowid", (version,)).fetchall()
            else:
                rows = []
                for chunk in _chunks(sorted(rowids)):
                    marks = ",".join("?" * len(chunk))
                    rows.extend(self._conn.execute(f"{sql} AND rowid IN ({marks})", (version, *chunk)))
                rows.sort(key=lambda r: r[0])
        return [
            SearchHashes(
                rowid,
                str(content_hash),
                _unsigned(phash),
                bool(low_info),
                None if second is None else _unsigned(second),
                crops if isinstance(crops, bytes) else None,
            )
            for rowid, content_hash, phash, low_info, second, crops in rows
        ]

    def contents_of_image(self, image_hash: str, version: str) -> list[str]:
        """The content hashes of the stored fingerprints of this version with this image hash (the same pixels)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT content_hash FROM images WHERE image_hash = ? AND version = ?", (image_hash, version)
            )
            return [str(r[0]) for r in rows]
