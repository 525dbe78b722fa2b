"""Searching the store: the pHash block indexes, fingerprints as searchable columns, imported lists, and PDQ lists."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dedupe.library import decode_path, parse_ints
from dedupe.models import ListedFingerprint, PdqEntry
from dedupe.store_base import StoreBase, _chunks, _signed, _unsigned

# pHash split into blocks of this many bits, each indexed (migration 2), for searching by the pigeonhole principle.
# Each index also holds the whole pHash, so that SQLite measures a candidate's distance without reading its row.
PHASH_BLOCK_BITS = 16


PHASH_BLOCKS = 4


def _block_expr(block: int) -> str:
    """The SQL of one pHash block: the very text of the index expression, so that SQLite uses the index."""
    return f"((phash >> {block * PHASH_BLOCK_BITS}) & 65535)"


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
    def empty() -> FingerprintColumns:
        return _columns_from_rows([])

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


# The same of a second reading (its image's low_info; no image hash, see second_reading_columns)
_READING_COLUMNS = "0, 0, r.content_hash, '', r.phash, r.dhash, i.low_info"


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


class SearchSQL(StoreBase):
    """Reads for searching by fingerprint, and the imported fingerprint lists (exchange.py)."""

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
            ident=parse_ints(ids, count) if table == "imported" else np.zeros(count, dtype=np.int64),
            content_hash=np.frombuffer(content.encode("ascii"), dtype=f"S{_HASH_CHARS}"),
            image_hash=np.frombuffer(image.encode("ascii"), dtype=f"S{_HASH_CHARS}"),
            phash=parse_ints(phash, count).view(np.uint64),
            dhash=parse_ints(dhash, count).view(np.uint64),
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

    # --- second readings (migration 11) ------------------------------------------------------------------------
    # A stored picture with transparency is also read by its colours alone (match.readings). Its second reading is
    # handed over as the columns of its image with that reading's pHash and dHash, and no image hash: the image hash
    # belongs to the picture, which its flattened row already matches.

    def second_reading_columns(self, version: str) -> FingerprintColumns:
        """The second reading of every stored picture of this algorithm version that has one."""
        with self.reading():
            count, content, phash, dhash, low_info = self._conn.execute(
                "SELECT count(*), group_concat(r.content_hash, ''), group_concat(r.phash), group_concat(r.dhash),"
                " group_concat(i.low_info != 0, '') FROM second_readings r"
                " JOIN images i ON i.content_hash = r.content_hash WHERE i.version = ?",
                (version,),
            ).fetchone()
            if count == 0:
                return _columns_from_rows([])
            if len(content) != count * _HASH_CHARS:
                # A hash of another length (never written by this dedupe): take the slow, general path.
                return _columns_from_rows(
                    self._conn.execute(
                        f"SELECT {_READING_COLUMNS} FROM second_readings r"
                        " JOIN images i ON i.content_hash = r.content_hash WHERE i.version = ?",
                        (version,),
                    ).fetchall()
                )
        return FingerprintColumns(
            imported=np.zeros(count, dtype=np.bool_),
            ident=np.zeros(count, dtype=np.int64),
            content_hash=np.frombuffer(content.encode("ascii"), dtype=f"S{_HASH_CHARS}"),
            image_hash=np.zeros(count, dtype=f"S{_HASH_CHARS}"),
            phash=parse_ints(phash, count).view(np.uint64),
            dhash=parse_ints(dhash, count).view(np.uint64),
            low_info=np.frombuffer(low_info.encode("ascii"), dtype="S1") == b"1",
        )

    def matching_second_readings(
        self, version: str, phash_blocks: Sequence[Sequence[int]], phash: int, threshold: int
    ) -> FingerprintColumns:
        """The second readings whose pHash is within the threshold of phash and whose pHash block k is one of
        phash_blocks[k], read through their block indexes as matching_fingerprints reads images."""
        rows: dict[str, Sequence[Any]] = {}
        with self.reading():
            for block, values in enumerate(phash_blocks):
                if not values:
                    continue
                marks = ",".join("?" * len(values))
                # The blocks are chosen in a query of second_readings alone, so that the expression is the very
                # text of its index.
                sql = (
                    f"SELECT {_READING_COLUMNS} FROM (SELECT content_hash, phash, dhash FROM second_readings"
                    f" WHERE {_block_expr(block)} IN ({marks}) AND dedupe_hamming(phash, ?) <= ?) r"
                    " JOIN images i ON i.content_hash = r.content_hash WHERE i.version = ?"
                )
                for row in self._conn.execute(sql, [*values, _signed(phash), threshold, version]):
                    rows[row[2]] = row
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

    # --- imported fingerprint lists ---------------------------------------------------------------------------

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

    # --- the check service (issue 16) ---------------------------------------------------------------------------

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


class PdqSQL(StoreBase):
    """PDQ hashes from industry lists (pdq.py). Their table is made on first use, so that a store without PDQ
    lists keeps the schema every dedupe version knows."""

    def add_pdq(self, items: Sequence[PdqEntry], source: str) -> int:
        """Add PDQ hashes from an industry list; one already there (same hash) is kept as it was.

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
