"""The journal of review runs and what the user said are not duplicates: the SQL of both."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from dedupe.library import decode_path, encode_path
from dedupe.models import Action, JournalEntry, JournalState, RunInfo
from dedupe.store_base import StoreBase, _text


class JournalSQL(StoreBase):
    """Runs and their journal entries. Each write outside a transaction commits at once: an entry is on disk
    before the act it announces."""

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

    def in_flight(self) -> list[tuple[str, str | None]]:
        """(path, destination) of every act written down as planned and never marked, in runs not undone: where a
        killed run may have left a temporary file."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT j.path, j.destination FROM journal j JOIN runs r ON r.id = j.run_id"
                " WHERE j.state = 'planned' AND r.undone IS NULL ORDER BY j.id"
            ).fetchall()
        return [(decode_path(p), None if d is None else decode_path(d)) for p, d in rows]

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

    # --- what the user said are not duplicates ---------------------------------------------------------------

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

    def not_duplicate_sets(self) -> list[tuple[float, tuple[str, ...]]]:
        """What was said not to be duplicates, one entry per group kept whole: (when, its content hashes), oldest
        first. The pairs of one answer share their time; the groups of one review are told apart by which hashes
        are linked."""
        with self._lock:
            rows = self._conn.execute("SELECT decided_at, hash_a, hash_b FROM not_duplicates").fetchall()
        linked: dict[float, dict[str, set[str]]] = {}
        for at, a, b in rows:
            edges = linked.setdefault(at, {})
            edges.setdefault(a, set()).add(b)
            edges.setdefault(b, set()).add(a)
        sets: list[tuple[float, tuple[str, ...]]] = []
        for at, edges in linked.items():
            seen: set[str] = set()
            for start in sorted(edges):
                if start in seen:
                    continue
                part, todo = set(), [start]
                while todo:
                    h = todo.pop()
                    if h not in part:
                        part.add(h)
                        todo += edges[h] - part
                seen |= part
                sets.append((at, tuple(sorted(part))))
        return sorted(sets)

    def forget_not_duplicates(self, decided_at: float, hashes: Iterable[str]) -> int:
        """Forget the pairs among these content hashes said at that time; how many pairs were forgotten."""
        wanted = sorted(set(hashes))
        pairs = [(a, b) for i, a in enumerate(wanted) for b in wanted[i:]]
        with self._lock:
            before = self._conn.total_changes
            self._conn.executemany(
                "DELETE FROM not_duplicates WHERE decided_at = ? AND hash_a = ? AND hash_b = ?",
                ((decided_at, a, b) for a, b in pairs),
            )
            return self._conn.total_changes - before

    def paths_of_contents(self, hashes: Iterable[str]) -> dict[str, list[str]]:
        """The stored paths of each content hash, sorted (a hash with no file left has none)."""
        found: dict[str, list[str]] = {h: [] for h in hashes}
        with self._lock:
            for h in found:
                rows = self._conn.execute("SELECT path FROM files WHERE content_hash = ? ORDER BY path", (h,))
                found[h] = [decode_path(r[0]) for r in rows]
        return found
