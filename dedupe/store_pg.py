"""The PostgreSQL store: fingerprint lists shared by several machines (the only user of psycopg).

It holds what a ban list needs, the imported fingerprints and PDQ hashes, with the methods of Store that search,
exchange and serve use, so those work on either backend. Scanned files stay in SQLite: a scan is about one
machine's folders. Every change to the lists bumps a counter (a trigger, so any writer does), which a running
`dedupe serve` polls to load its index again.

    store = PostgresStore.open("postgresql://dedupe@db.example/bans")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from dedupe.errors import StoreError
from dedupe.models import ListedFingerprint, PdqEntry
from dedupe.store import Store
from dedupe.store_search import FingerprintColumns

if TYPE_CHECKING:
    import psycopg

SCHEMES = ("postgresql://", "postgres://")
_SCHEMA_VERSION = 1
_LOCK_KEY = 0x6465647570650016  # pg_advisory_xact_lock: two processes creating one schema take turns
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dedupe_meta (
        id integer PRIMARY KEY CHECK (id = 1),
        schema_version integer NOT NULL,
        changes bigint NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS imported (
        id bigserial PRIMARY KEY,
        version text NOT NULL,
        content_hash text NOT NULL UNIQUE,
        image_hash text NOT NULL,
        phash bigint NOT NULL,
        dhash bigint NOT NULL,
        width integer NOT NULL,
        height integer NOT NULL,
        low_info boolean NOT NULL,
        label text NOT NULL,
        source text NOT NULL,
        imported_at double precision NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS imported_image_hash ON imported (image_hash)",
    "CREATE INDEX IF NOT EXISTS imported_label ON imported (label)",
    """CREATE TABLE IF NOT EXISTS imported_lists (
        id bigserial PRIMARY KEY,
        source text NOT NULL,
        version text NOT NULL,
        listed integer NOT NULL,
        added integer NOT NULL,
        imported_at double precision NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS pdq (
        id bigserial PRIMARY KEY,
        hash text NOT NULL UNIQUE,
        label text NOT NULL,
        quality integer,
        source text NOT NULL,
        imported_at double precision NOT NULL
    )""",
    """CREATE OR REPLACE FUNCTION dedupe_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE dedupe_meta SET changes = changes + 1 WHERE id = 1;
        RETURN NULL;
    END $$""",
    "CREATE OR REPLACE TRIGGER imported_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON imported"
    " FOR EACH STATEMENT EXECUTE FUNCTION dedupe_changed()",
    "CREATE OR REPLACE TRIGGER pdq_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pdq"
    " FOR EACH STATEMENT EXECUTE FUNCTION dedupe_changed()",
    f"INSERT INTO dedupe_meta (id, schema_version, changes) VALUES (1, {_SCHEMA_VERSION}, 0) ON CONFLICT DO NOTHING",
)
_COLUMNS = "content_hash, image_hash, phash, dhash, width, height, low_info, label"
_HASH_CHARS = 32


def is_postgres(db: str | None) -> bool:
    return db is not None and db.startswith(SCHEMES)


def open_any(db: str | None, *, readonly: bool = False) -> Store | PostgresStore:
    """A PostgreSQL store for a postgresql:// address, else the SQLite store at that path."""
    if db is not None and is_postgres(db):
        return PostgresStore.open(db, readonly=readonly)
    return Store.open(db, readonly=readonly)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _unsigned(v: int) -> int:
    return v + (1 << 64) if v < 0 else v


def _display(url: str) -> str:
    """The address without its password, for messages."""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        who, _, where = rest.rpartition("@")
        rest = f"{who.partition(':')[0]}@{where}"
    return f"{scheme}://{rest}"


class PostgresStore:
    """Imported fingerprints and PDQ hashes in PostgreSQL. Safe to share between threads; a context manager.

    One class of somewhat over 300 lines, on purpose: it answers every method of Store's SearchSQL and PdqSQL parts
    (store_search.py) that search, exchange and serve call, so that either backend can be handed to them."""

    def __init__(self, conn: psycopg.Connection[Any], url: str, readonly: bool) -> None:
        self._conn = conn
        self.url = url
        self.path = Path(_display(url))  # what messages name, as Store.path
        self.readonly = readonly
        self._lock = threading.RLock()
        self._depth = 0

    @classmethod
    def open(cls, url: str, *, readonly: bool = False) -> PostgresStore:
        try:
            import psycopg
        except ImportError:
            raise StoreError("a postgresql:// store needs psycopg: pip install 'photo-dedupe[postgres]'") from None
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise StoreError(f"cannot open the store at {_display(url)}: {_first_line(e)}") from None
        store = cls(conn, url, readonly)
        try:
            store._prepare()
        except psycopg.Error as e:
            conn.close()
            raise StoreError(f"cannot open the store at {_display(url)}: {_first_line(e)}") from None
        except BaseException:
            conn.close()  # a store refused (newer, or none there to read): no connection is left behind
            raise
        return store

    def _prepare(self) -> None:
        row = self._conn.execute("SELECT to_regclass('dedupe_meta') IS NOT NULL").fetchone()
        exists = bool(row and row[0])
        if exists:
            version = self._conn.execute("SELECT schema_version FROM dedupe_meta WHERE id = 1").fetchone()
            if version and int(version[0]) > _SCHEMA_VERSION:
                raise StoreError(f"the store at {self.path} was written by a newer dedupe; upgrade dedupe")
            return
        if self.readonly:
            raise StoreError(f"no dedupe store at {self.path}: import a list into it first")
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            for statement in _SCHEMA:
                self._conn.execute(statement)

    # --- life cycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction: committed on success, rolled back on error."""
        import psycopg

        if self.readonly:
            raise StoreError(f"the store at {self.path} was opened read-only")
        with self._lock:
            if not self._depth:
                self._revive()
            try:
                with self._conn.transaction():
                    self._depth += 1
                    try:
                        yield
                    finally:
                        self._depth -= 1
            except psycopg.Error as e:
                raise StoreError(f"cannot write to the store at {self.path}: {_first_line(e)}") from None

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent view of the store for several reads; errors become a readable StoreError."""
        import psycopg

        with self._lock:
            if self._depth:
                yield
                return
            self._revive()
            try:
                with self._conn.transaction():
                    self._depth += 1
                    try:
                        self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        yield
                    finally:
                        self._depth -= 1
            except psycopg.Error as e:
                raise StoreError(f"cannot read the store at {self.path}: {_first_line(e)}") from None

    def _revive(self) -> None:
        """Connect again when the connection broke (the database restarted, or dropped an idle client): the
        request that found it broken failed with a StoreError, the next one is served."""
        import psycopg

        if not self._conn.broken:
            return
        try:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise StoreError(f"cannot reach the store at {self.path}: {_first_line(e)}") from None

    def own_files(self) -> tuple[Path, ...]:
        return ()

    # --- searching --------------------------------------------------------------------------------------------

    def data_version(self) -> int:
        """The change counter: it grows with every write to the lists, by any process."""
        with self.reading():
            row = self._conn.execute("SELECT changes FROM dedupe_meta WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def fingerprint_columns(self, version: str) -> FingerprintColumns:
        """Every imported fingerprint of this algorithm version, handed over as a few long strings."""
        with self.reading():
            row = self._conn.execute(
                # The aggregates of one query see the rows in one order, whatever it is; no ORDER BY (a sort
                # per column took most of the time): searches rank their hits in an order of their own.
                "SELECT count(*), string_agg(id::text, ','), string_agg(content_hash, ''), string_agg(image_hash, ''),"
                " string_agg(phash::text, ','), string_agg(dhash::text, ','),"
                " string_agg(CASE WHEN low_info THEN '1' ELSE '0' END, '') FROM imported WHERE version = %s",
                (version,),
            ).fetchone()
            assert row is not None
            count, ids, content, image, phash, dhash, low_info = row
            if count == 0:
                return _columns([])
            if len(content) != count * _HASH_CHARS or len(image) != count * _HASH_CHARS:
                rows = self._conn.execute(
                    "SELECT true, id, content_hash, image_hash, phash, dhash, low_info FROM imported"
                    " WHERE version = %s ORDER BY id",
                    (version,),
                ).fetchall()
                return _columns(rows)
        return FingerprintColumns(
            imported=np.ones(count, dtype=np.bool_),
            ident=_ints(ids, count),
            content_hash=np.frombuffer(content.encode("ascii"), dtype=f"S{_HASH_CHARS}"),
            image_hash=np.frombuffer(image.encode("ascii"), dtype=f"S{_HASH_CHARS}"),
            phash=_ints(phash, count).view(np.uint64),
            dhash=_ints(dhash, count).view(np.uint64),
            low_info=np.frombuffer(low_info.encode("ascii"), dtype="S1") == b"1",
        )

    def matching_fingerprints(
        self,
        version: str,
        content_hash: str,
        image_hash: str,
        phash_blocks: Sequence[Sequence[int]] = (),
        phash: int = 0,
        threshold: int = 0,
    ) -> FingerprintColumns:
        """The fingerprints with this content or image hash, and (when phash_blocks is not empty: the query has
        enough detail) those with enough detail whose pHash is within the threshold; measured inside PostgreSQL."""
        sql = (
            "SELECT true, id, content_hash, image_hash, phash, dhash, low_info FROM imported WHERE version = %s"
            " AND (content_hash = %s OR image_hash = %s"
        )
        params: list[object] = [version, content_hash, image_hash]
        if phash_blocks:
            sql += " OR (NOT low_info AND bit_count((phash # %s)::bit(64)) <= %s)"
            params += [_signed(phash), threshold]
        with self.reading():
            rows = self._conn.execute(sql + ") ORDER BY id", params).fetchall()
        return _columns(rows)

    # Second readings (SearchSQL's, of pictures with transparency) belong to scanned images, which PostgreSQL does not
    # hold; an imported fingerprint carries none.

    def second_reading_columns(self, version: str) -> FingerprintColumns:
        return _columns([])

    def matching_second_readings(
        self, version: str, phash_blocks: Sequence[Sequence[int]], phash: int, threshold: int
    ) -> FingerprintColumns:
        return _columns([])

    def describe_images(self, content_hashes: Sequence[str]) -> dict[str, tuple[int, int, list[str]]]:
        return {}  # no scanned files in PostgreSQL

    def describe_imported(self, ids: Sequence[int]) -> dict[int, tuple[int, int, str]]:
        if not ids:
            return {}
        with self.reading():
            rows = self._conn.execute(
                "SELECT id, width, height, label FROM imported WHERE id = ANY(%s)", (list(ids),)
            ).fetchall()
        return {int(r[0]): (int(r[1]), int(r[2]), str(r[3])) for r in rows}

    # --- imported fingerprints --------------------------------------------------------------------------------

    def add_imported(self, items: Sequence[ListedFingerprint], version: str, source: str) -> int:
        """Add fingerprints from a shared list; one already imported (same content hash) is kept as it was."""
        now = time.time()
        rows = (
            (
                version,
                f.content_hash,
                f.image_hash,
                _signed(f.phash),
                _signed(f.dhash),
                f.width,
                f.height,
                f.low_info,
                f.label,
                source,
                now,
            )
            for f in items
        )
        with self.transaction():
            added = self._insert_many(
                "imported",
                "version text, content_hash text, image_hash text, phash bigint, dhash bigint, width integer,"
                " height integer, low_info boolean, label text, source text, imported_at double precision",
                rows,
                "content_hash",
            )
            self._conn.execute(
                "INSERT INTO imported_lists (source, version, listed, added, imported_at) VALUES (%s, %s, %s, %s, %s)",
                (source, version, len(items), added, now),
            )
        return added

    def _insert_many(self, table: str, columns: str, rows: Iterable[tuple[Any, ...]], key: str) -> int:
        """Insert rows in their order, keeping a row already there (same key) as it was; how many were new.

        The rows are streamed with COPY into a temporary table first, which takes seconds for a million where
        one INSERT a row took many minutes; COPY itself cannot skip the rows already there.
        """
        names = ", ".join(c.split()[0] for c in columns.split(", "))
        self._conn.execute(f"CREATE TEMPORARY TABLE incoming ({columns}, ord bigserial) ON COMMIT DROP")
        with self._conn.cursor() as cur:
            with cur.copy(f"COPY incoming ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming ORDER BY ord"
                f" ON CONFLICT ({key}) DO NOTHING"
            )
            return cur.rowcount

    def add_one_imported(self, item: ListedFingerprint, version: str, source: str) -> tuple[int, bool]:
        added = self.add_imported([item], version, source)
        with self.reading():
            row = self._conn.execute("SELECT id FROM imported WHERE content_hash = %s", (item.content_hash,)).fetchone()
        assert row is not None
        return int(row[0]), added > 0

    def forget_imported(self) -> int:
        with self.transaction():
            self._conn.execute("DELETE FROM imported_lists")
            cur = self._conn.execute("DELETE FROM imported")
            return cur.rowcount

    def forget_imported_ids(self, ids: Sequence[int]) -> int:
        with self.transaction():
            return self._conn.execute("DELETE FROM imported WHERE id = ANY(%s)", (list(ids),)).rowcount

    def stale_imported(self, version: str) -> int:
        with self.reading():
            row = self._conn.execute(
                "SELECT coalesce(sum(added), 0) FROM imported_lists WHERE version != %s", (version,)
            ).fetchone()
        return int(row[0]) if row else 0

    def imported(self, version: str | None = None) -> list[ListedFingerprint]:
        return [entry for _, entry, _, _ in self.imported_entries(version)]

    def imported_entries(
        self, version: str | None = None, label: str | None = None
    ) -> list[tuple[int, ListedFingerprint, str, float]]:
        clauses, params = ["true"], []
        if version is not None:
            clauses.append("version = %s")
            params.append(version)
        if label is not None:
            clauses.append("label = %s")
            params.append(label)
        with self.reading():
            rows = self._conn.execute(
                f"SELECT {_COLUMNS}, id, source, imported_at FROM imported WHERE {' AND '.join(clauses)} ORDER BY id",
                params,
            ).fetchall()
        return [(int(r[8]), _listed(r), str(r[9]), float(r[10])) for r in rows]

    def count_imported(self, version: str | None = None, *, other_versions: bool = False) -> int:
        sql, params = "SELECT count(*) FROM imported", []
        if version is not None:
            sql += f" WHERE version {'!=' if other_versions else '='} %s"
            params.append(version)
        with self.reading():
            row = self._conn.execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def listed_under(self, roots: Sequence[str], version: str) -> list[ListedFingerprint]:
        return []  # no scanned files in PostgreSQL

    # --- PDQ --------------------------------------------------------------------------------------------------

    def add_pdq(self, items: Sequence[PdqEntry], source: str) -> int:
        now = time.time()
        with self.transaction():
            return self._insert_many(
                "pdq",
                "hash text, label text, quality integer, source text, imported_at double precision",
                ((e.hash, e.label, e.quality, source, now) for e in items),
                "hash",
            )

    def forget_pdq(self) -> int:
        with self.transaction():
            return self._conn.execute("DELETE FROM pdq").rowcount

    def pdq_entries(self) -> list[tuple[int, PdqEntry]]:
        with self.reading():
            rows = self._conn.execute("SELECT id, hash, label, quality FROM pdq ORDER BY id").fetchall()
        return [(int(r[0]), PdqEntry(str(r[1]), str(r[2]), None if r[3] is None else int(r[3]))) for r in rows]

    def count_pdq(self) -> int:
        return self._count("pdq")

    def _count(self, table: str) -> int:
        with self.reading():
            row = self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _ints(text: str, count: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    try:
        values = np.array(text.split(","), dtype=np.int64) if text else np.zeros(0, np.int64)
    except ValueError:
        raise StoreError("the store returned a damaged column of fingerprints") from None
    if len(values) != count:
        raise StoreError("the store returned a damaged column of fingerprints")
    return values


def _columns(rows: Sequence[Sequence[Any]]) -> FingerprintColumns:
    width = max([_HASH_CHARS, *(len(str(r[k])) for r in rows for k in (2, 3))])
    return FingerprintColumns(
        imported=np.ones(len(rows), dtype=np.bool_),
        ident=np.array([int(r[1]) for r in rows], dtype=np.int64),
        content_hash=np.array([str(r[2]).encode("ascii", "replace") for r in rows], dtype=f"S{width}"),
        image_hash=np.array([str(r[3]).encode("ascii", "replace") for r in rows], dtype=f"S{width}"),
        phash=np.array([int(r[4]) for r in rows], dtype=np.int64).view(np.uint64),
        dhash=np.array([int(r[5]) for r in rows], dtype=np.int64).view(np.uint64),
        low_info=np.array([bool(r[6]) for r in rows], dtype=np.bool_),
    )


def _listed(row: Sequence[Any]) -> ListedFingerprint:
    return ListedFingerprint(
        content_hash=str(row[0]),
        image_hash=str(row[1]),
        phash=_unsigned(int(row[2])),
        dhash=_unsigned(int(row[3])),
        width=int(row[4]),
        height=int(row[5]),
        low_info=bool(row[6]),
        label=str(row[7]),
    )


__all__ = ["SCHEMES", "PostgresStore", "is_postgres", "open_any"]
