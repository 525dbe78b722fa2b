"""Reading stored files below some folders: as records, or as a Library of columns without a Python object per
file (the decoding of what SQLite hands over is library.py's)."""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from dedupe.errors import StoreError
from dedupe.library import (
    PACKED_AT,
    Library,
    PathColumn,
    decode_path,
    encode_path,
    gc_paused,
    library_from_rows,
    packed_fit,
    records_from_rows,
)
from dedupe.models import FileRecord
from dedupe.store_base import _IMAGE_COLUMNS, StoreBase, _chunks, _fingerprint, _prefix_bounds


class LibraryReads(StoreBase):
    """The fingerprinted files below some roots, and how many there are."""

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
            library, odd = library_from_rows(self._library_rows(roots, version, crops), crops)
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
                    if not row[0] or not packed or packed_fit(row[PACKED_AT], row[0]):
                        break
                if not row[0]:
                    break
                yield row, packed
                low = row[1] + b"\x00"  # the next path after the last one read

    def records_of(self, library: Library) -> list[FileRecord]:
        """The records of a library's files (one from library_under, or part of one: Library.take), in row order, as
        records_under makes them (with crop signatures when the library holds them): what the library holds is
        taken from it, the rest (times, hashes as text, format, camera and time as stored) read by rowid. Call it
        inside the same reading() as library_under: rowids name other rows once the store has changed.

        The rows are read a slice at a time, and a slice's records are made on another thread while the next slice
        is read: SQLite lets go of the GIL while it reads (0.4-0.5 s at 330,000 files, beside about 1 s of making
        records)."""
        n = len(library)
        at_once = min(_IDS_AT_ONCE, self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        made: list[Future[list[FileRecord]]] = []
        # The collector waits for all of them (between two slices it would walk every record made so far).
        with self.reading(), gc_paused(), ThreadPoolExecutor(1, thread_name_prefix="dedupe-records") as pool:
            for lo in range(0, n, at_once):
                part = library if at_once >= n else library.part(lo, min(n, lo + at_once))
                rows = self._record_rows(part)
                if len(made) > 1:
                    made[-2].result()  # one slice of rows waiting at most: they are large beside their records
                made.append(pool.submit(records_from_rows, part, *rows))
            records: list[FileRecord] = []
            for future in made:
                records.extend(future.result())
        return records

    def _record_rows(
        self, library: Library
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], npt.NDArray[np.int64], npt.NDArray[np.intp]]:
        """What records_from_rows reads beside a library of at most _IDS_AT_ONCE files: the files' row and their
        images' row (each image once: files of one content share it), the images' rowids and each file's place
        among them."""
        contents, of_content = np.unique(library.content, return_inverse=True)
        ids = library.ids.tolist()
        files = self._conn.execute(_FILES_SQL.format(marks=",".join("?" * len(ids))), ids).fetchone()
        chunk = contents.tolist()
        images = self._conn.execute(_IMAGES_SQL.format(marks=",".join("?" * len(chunk))), chunk).fetchone()
        if files[0] != len(ids) or images[0] != len(chunk):
            raise StoreError(f"files of the grouping are no longer in the store at {self.path}")
        return [files], [images], contents, of_content

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
        # Named, or SQLite reads every row below the roots (the ranges of their OR) to find the few that failed.
        with self._lock:
            rows = self._conn.execute(
                f"SELECT f.path, f.error FROM files f INDEXED BY files_failed WHERE f.error IS NOT NULL AND {where}"
                " ORDER BY f.path",
                params,
            ).fetchall()
        return [(decode_path(r[0]), r[1]) for r in rows]

    def undecoded_copies_under(self, roots: Sequence[str]) -> list[list[tuple[str, int, int, int, int, str]]]:
        """Files below the roots that were read but not decoded (a truncated photo) and share their bytes with
        another such file: (path, size, mtime_ns, dev, ino, content_hash) lists, one per content, by path."""
        where, params = self._roots_clause(roots)
        with self._lock:
            rows = self._conn.execute(
                "SELECT f.path, f.size, f.mtime_ns, f.dev, f.ino, f.undecoded_hash"
                f" FROM files f INDEXED BY files_undecoded WHERE f.undecoded_hash IS NOT NULL AND {where}"
                " ORDER BY f.undecoded_hash, f.path",
                params,
            ).fetchall()
        by_content: dict[str, list[tuple[str, int, int, int, int, str]]] = {}
        for raw, size, mtime_ns, dev, ino, content_hash in rows:
            by_content.setdefault(content_hash, []).append((decode_path(raw), size, mtime_ns, dev, ino, content_hash))
        return [files for files in by_content.values() if len(files) > 1]

    def change_token(self) -> int:
        """A number that every change to the stored files and fingerprints replaces (by triggers, whoever writes):
        what a copy of the columns is checked against (see column_cache). Read it inside the reading() that
        reads the rest."""
        with self._lock:
            return int(self._conn.execute("SELECT token FROM changes WHERE id = 1").fetchone()[0])

    def table_marks(self) -> list[int]:
        """The rows and largest rowid of the files and images tables: a VACUUM may number rows anew without any
        trigger firing, and then these change too (it closes the gaps that renumbering needs)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT (SELECT count(*) FROM files), (SELECT max(rowid) FROM files),"
                " (SELECT count(*) FROM images), (SELECT max(rowid) FROM images)"
            ).fetchone()
        return [int(v or 0) for v in row]

    def count_files(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM files").fetchone()[0])


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


_CROPS_COLUMNS = ", group_concat(coalesce(length(cr), 0)), CAST(group_concat(cr, '') AS BLOB)"


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


# Rowids in one IN (...), when the SQLite build allows so many (999 before 3.32, 32766 since): each statement costs
# its parse and plan, and 330,000 rowids read 999 at a time took 0.75 s where 30,000 at a time took 0.55 s.
_IDS_AT_ONCE = 30_000


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
