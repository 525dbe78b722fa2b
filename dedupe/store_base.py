"""What every part of the store shares: the connection and its lock, transactions, consistent reads, and the SQL
helpers several parts use. Store (store.py) is made of the parts built on StoreBase."""

from __future__ import annotations

import os
import shlex
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from dedupe.errors import StoreError
from dedupe.library import SEVEN, encode_path
from dedupe.models import Fingerprint, hamming

RESET_COMMAND = "dedupe store reset"


def explain(e: sqlite3.Error | OSError, path: Path | str) -> str:
    """A failure of the store as one sentence that says what happened, where, and what to do."""
    text = str(e)
    low = text.lower()
    reset = (
        f"run '{RESET_COMMAND} --db {shlex.quote(str(path))}' to move it aside and start a new one, then"
        " 'dedupe scan' to rebuild the fingerprints; past reviews can then no longer be undone (their journal"
        " stays in the damaged file)"
    )
    if isinstance(e, sqlite3.DatabaseError) and "not a database" in low:
        return f"{path} is not a SQLite database ({text}): check --db; if it is the damaged store, {reset}"
    if isinstance(e, sqlite3.DatabaseError) and ("malformed" in low or "corrupt" in low):
        return f"the store at {path} is damaged ({text}): {reset}"
    if "locked" in low or "busy" in low:
        return (
            f"the store at {path} is busy: another dedupe (or program) is writing to it; wait until it is done,"
            " then run the command again"
        )
    if "full" in low or _no_space(Path(path)):
        return f"cannot write to the store at {path}: the disk is full; free some space, then run the command again"
    unwritable = "readonly" in low or "read-only" in low or "unable to open" in low
    reason = _why_not_writable(Path(path)) if unwritable else ""
    if reason:
        return f"cannot use the store at {path}: {reason}"
    return f"cannot use the store at {path}: {text}"


def _no_space(path: Path) -> bool:
    """Whether the drive holding path has no free space left (SQLite then often says only "disk I/O error")."""
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def _why_not_writable(path: Path) -> str:
    """Why the store or its folder cannot be written ("read-only file system", "permission denied"), or ""."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError as e:
        return f"its folder cannot be used ({e.strerror or e})"
    for where in (path, folder):
        if where.exists() and not os.access(where, os.W_OK):
            return f"permission denied (cannot write {where})"
    if not path.exists() and not os.access(folder, os.R_OK | os.X_OK):
        return f"permission denied (cannot read {folder})"
    return ""


def failure(e: BaseException, path: Path | str) -> StoreError | None:
    """The StoreError that e is (a failure of SQLite or of the store), or None when it is something else."""
    if isinstance(e, StoreError):
        return e
    if isinstance(e, sqlite3.Error):
        return StoreError(explain(e, path))
    return None


_IMAGE_COLUMNS = (
    "i.content_hash, i.image_hash, i.format, i.width, i.height, i.phash, i.dhash, i.taken, i.low_info,"
    " i.variants, i.camera, i.crops"
)


def _word(packed: object, index: int) -> int | None:
    """The index-th 8-byte big-endian value of packed hashes (images.variants), signed as SQLite keeps integers."""
    if not isinstance(packed, bytes) or len(packed) < 8 * (index + 1):
        return None
    return int.from_bytes(packed[8 * index : 8 * index + 8], "big", signed=True)


class StoreBase:
    """A SQLite connection shared between threads behind one lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        conn.create_function("dedupe_hamming", 2, hamming, deterministic=True)  # for searches
        conn.create_function("dedupe_word", 2, _word, deterministic=True)  # for migration 11

    def failure(self, e: BaseException) -> StoreError | None:
        """The StoreError that e is, naming this store, or None when e is no failure of the store."""
        return failure(e, self.path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def transaction(self) -> _Transaction:
        """A write transaction: committed on success, rolled back on error."""
        return _Transaction(self)

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
                raise StoreError(explain(e, self.path)) from None

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
        SEVEN.unpack(packed) if len(packed) == 56 else struct.unpack_from(f">{len(packed) // 8}Q", packed),
        None if camera is None else str(camera),
        crops if type(crops) is bytes else b"",
    )


_TWO_TO_64 = 1 << 64


class _Transaction:
    def __init__(self, store: StoreBase) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._lock.acquire()
        try:
            self._store._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self._store._lock.release()
            raise StoreError(explain(e, self._store.path)) from None

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if et is None:
                self._store._conn.execute("COMMIT")
            else:
                self._store._conn.execute("ROLLBACK")
        except sqlite3.Error as e:
            if et is None:
                raise StoreError(explain(e, self._store.path)) from None
        finally:
            self._store._lock.release()
