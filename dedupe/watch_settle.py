"""Files that changed, waiting until they stop changing: a file is read once its size and mtime held still.

A copy, a download or an editor's save arrives in many events; reading the file at the first would read it half
written. The watcher's loop puts every changed file here and reads the ones that come out ready. Only the loop's
own thread uses it.
"""

from __future__ import annotations

import heapq
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dedupe.watch_events import below

CLOSE_GRACE = 0.25  # a file its writer closed, or renamed into place, is read once stable this long

Sig = tuple[int, int, int]  # size, mtime_ns, inode: what "has not changed" means


def signature(st: os.stat_result) -> Sig:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def regular(path: str) -> os.stat_result | None:
    """The stat of a plain file at path (a link is not followed), or None."""
    try:
        st = Path(path).stat(follow_symlinks=False)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


@dataclass
class _Pending:
    sig: Sig | None  # as last seen
    check_at: float  # when to look again
    closed: bool  # its writer closed it or renamed it into place: a short wait is enough
    heap_at: float = field(default=0.0)  # the time of this entry's live record in the heap


class Settling:
    """Changed files waiting to settle (pending), and those that did and wait to be read (ready)."""

    def __init__(self, settle: float, limit: int) -> None:
        self._settle = settle
        self._limit = limit
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._ready: dict[str, os.stat_result] = {}

    def __len__(self) -> int:
        return len(self._pending) + len(self._ready)

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    def queue(self, path: str, now: float, *, closed: bool | None, st: os.stat_result | None = None) -> bool:
        """Note that a file changed: it is ready once its size and mtime stop changing. False when full."""
        self._ready.pop(path, None)  # changing again: wait for it once more
        entry = self._pending.get(path)
        if entry is None:
            if len(self) >= self._limit:
                return False
            st = st or regular(path)
            entry = _Pending(signature(st) if st else None, 0.0, bool(closed))
            self._pending[path] = entry
        elif closed is not None:
            entry.closed = closed
        entry.check_at = now + self._wait_for(entry)
        if entry.heap_at == 0.0 or entry.check_at < entry.heap_at:
            self._push(path, entry)
        return True

    def unqueue(self, path: str, *, folder: bool = False) -> None:
        """Forget a file, or with folder everything below path."""
        if folder:
            for p in [p for p in self._pending if below(p, path)]:
                del self._pending[p]
            for p in [p for p in self._ready if below(p, path)]:
                del self._ready[p]
        else:
            self._pending.pop(path, None)
            self._ready.pop(path, None)

    def _wait_for(self, entry: _Pending) -> float:
        return min(CLOSE_GRACE, self._settle) if entry.closed else self._settle

    def _push(self, path: str, entry: _Pending) -> None:
        entry.heap_at = entry.check_at
        self._seq += 1
        heapq.heappush(self._heap, (entry.check_at, self._seq, path))

    def settle(self, now: float) -> None:
        """Move the files whose size and mtime held still long enough to the ready list."""
        while self._heap and self._heap[0][0] <= now:
            at, _, path = heapq.heappop(self._heap)
            entry = self._pending.get(path)
            if entry is None or at != entry.heap_at:
                continue  # done already, or rescheduled
            if entry.check_at > now:
                self._push(path, entry)
                continue
            st = regular(path)
            if st is None:
                del self._pending[path]  # gone (its deletion is an event of its own) or not a plain file
                continue
            if signature(st) != entry.sig:
                entry.sig = signature(st)
                entry.check_at = now + self._wait_for(entry)
                self._push(path, entry)
                continue
            del self._pending[path]
            self._ready[path] = st
        if not self._heap:
            self._seq = 0

    def take(self, count: int) -> list[tuple[str, os.stat_result]]:
        """Up to count ready files, in the order they became ready."""
        paths = list(self._ready)[:count]
        return [(p, self._ready.pop(p)) for p in paths]

    def clear(self) -> None:
        self._pending.clear()
        self._ready.clear()
        self._heap.clear()
        self._seq = 0
