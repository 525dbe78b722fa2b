"""Watching folders live: a watchdog handler that only queues what happened, and a loop that drains the queue.

The handler runs on the observer's thread, so it records changes in a bounded in-memory queue and returns at once.
The loop (on the caller's thread) owns everything else: it waits for files to settle, reads them in batches
through `dedupe.scan.fingerprint_files`, follows renames in the store without reading files, forgets deleted
ones, reports each new file that duplicates an image already in the store, and supervises the observers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fnmatch
import heapq
import os
import signal
import stat
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import numpy as np
import numpy.typing as npt
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from dedupe import actions, fingerprint
from dedupe.errors import DedupeError
from dedupe.match import CANDIDATE_PHASH, DEFAULT_THRESHOLD, KIND_RANK, MatchRule, match
from dedupe.models import (
    Fingerprint,
    MatchKind,
    ProgressEvent,
    ScanOptions,
    StepState,
    WatchEvent,
    WatchEventKind,
    WatchOptions,
)
from dedupe.scan import fingerprint_files, resolve_roots, scan_changes, walk
from dedupe.store import Store, StoredFile

# Names that downloads, copies and editors give a file while they write it; the finished file is renamed later.
TEMP_PATTERNS = ("*.part", "*.partial", "*.crdownload", "*.tmp", "*~", "*.swp", "*.swx", ".goutputstream-*", ".#*")

MAX_QUEUED = 50_000  # paths held at once; past this the folder is scanned again instead, so memory stays flat
BATCH = 256  # files read per round, so that the loop comes back often to new events and to Ctrl-C
# Starting worker processes costs about a second (2-core VM); a batch smaller than this is read in this process.
INLINE_BYTES = 4_000_000
CLOSE_GRACE = 0.25  # a file its writer closed, or renamed into place, is read once stable this long
FALLBACK_POLL = 5.0  # seconds between polls of a folder whose live events are not available
SUPERVISE_EVERY = 1.0
RETRY_EVERY = 30.0  # a folder that could not be watched is tried again this often
ORPHANS_EVERY = 10.0
TICK = 0.1
COMMAND_TIMEOUT = 120.0
NEAR_CANDIDATES = 64  # contents compared per new file: the closest ones

EventCallback = Callable[[WatchEvent], None]
# (polling, poll interval) -> an observer that is not started yet
ObserverFactory = Callable[[bool, float], BaseObserver]
_Change = tuple[str, str, str, bool]  # event type, path, destination of a move, is a folder
_Sig = tuple[int, int, int]  # size, mtime_ns, inode: what "has not changed" means


def default_observer(polling: bool, interval: float) -> BaseObserver:
    """The operating system's change notifications (inotify on Linux), or polling."""
    if polling:
        return PollingObserver(timeout=interval)
    return Observer()


def is_temporary(name: str) -> bool:
    """A name that a file only has while it is being written."""
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p) for p in TEMP_PATTERNS)


class QueueingHandler(FileSystemEventHandler):
    """Runs on the observer's thread: records what happened and returns; never blocks, never reads a file.

    The queue is bounded: when more changes arrive than it holds, the details are dropped and the folder is
    marked for a full re-scan, which catches every change the dropped events described.
    """

    def __init__(self, limit: int | None = None, wakeup: threading.Event | None = None) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._changes: deque[_Change] = deque()
        self._limit = limit or MAX_QUEUED
        self._overflowed = False
        self._wakeup = wakeup or threading.Event()

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write") or (kind == "modified" and event.is_directory):
            return
        if kind == "moved" and event.is_synthetic:
            return  # the files of a moved folder: the folder's own move covers them
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        change = (kind, os.fsdecode(event.src_path), dest, event.is_directory)
        with self._lock:
            if self._changes and self._changes[-1] == change:
                return  # a burst of writes to one file: one record is enough
            if len(self._changes) >= self._limit:
                self._changes.clear()
                self._overflowed = True
            else:
                self._changes.append(change)
        self._wakeup.set()

    def take(self) -> tuple[list[_Change], bool]:
        """What happened since the last call, and whether some of it had to be dropped."""
        with self._lock:
            changes = list(self._changes)
            self._changes.clear()
            overflowed, self._overflowed = self._overflowed, False
        return changes, overflowed


@dataclass
class _Root:
    path: str
    handler: QueueingHandler
    polling: bool
    observer: BaseObserver | None = None
    identity: tuple[int, int] | None = None
    online: bool = True
    retry_at: float = 0.0
    rescan: bool = False  # more happened than the queue holds: scan it again


@dataclass
class _Pending:
    sig: _Sig | None  # as last seen
    check_at: float  # when to look again
    closed: bool  # its writer closed it or renamed it into place: a short wait is enough
    heap_at: float = field(default=0.0)  # the time of this entry's live record in the heap


@dataclass
class _Index:
    """The store's fingerprints, arranged for finding what a new image duplicates."""

    by_content: dict[str, Fingerprint]
    by_image: dict[str, list[str]]
    near_hashes: npt.NDArray[np.uint64]
    near_content: list[str]


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _regular(path: str) -> os.stat_result | None:
    try:
        st = Path(path).stat(follow_symlinks=False)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _folder_identity(path: str) -> tuple[int, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _below(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _dispose(observer: BaseObserver) -> None:
    """Stop an observer and wait for its threads, whether or not it was started or is still alive."""
    with contextlib.suppress(Exception):
        observer.stop()
    if observer.ident is not None:
        observer.join(timeout=10)


def _limit_message(code: int, root: str, interval: float) -> str:
    if code == errno.EMFILE:
        limit = "the inotify instance limit (/proc/sys/fs/inotify/max_user_instances)"
    else:
        limit = "the inotify watch limit (/proc/sys/fs/inotify/max_user_watches)"
    return (
        f"cannot get live events for {root}: {limit} is reached; polling it every {interval:g} s instead"
        " (raise the limit with sysctl for live events)"
    )


def unwatched_folders(observer: BaseObserver, root: str) -> int | None:
    """How many folders below root an inotify observer is not watching, or None when it cannot be told.

    Watchdog skips a subfolder whose watch cannot be added (for instance past max_user_watches) without saying
    so; this looks at what its inotify emitters hold.
    """
    watched: set[bytes] = set()
    emitters = list(observer.emitters)
    if not emitters:
        return None
    for emitter in emitters:
        group = getattr(emitter, "_inotify", None)
        paths = getattr(group, "_active_callbacks_by_path", None)
        if not isinstance(paths, dict):
            return None
        watched.update(p for p in paths if isinstance(p, bytes))
    missing = 0
    for folder, _, _ in os.walk(root):
        if os.fsencode(folder) not in watched and Path(folder).is_dir():
            missing += 1
    return missing


def run_command(command: Sequence[str], event: WatchEvent) -> str | None:
    """Run the user's command for a duplicate, the new and the existing path appended; the reason it failed."""
    assert event.path is not None and event.other is not None
    argv = [*command, event.path, event.other]
    env = {
        **os.environ,
        "DEDUPE_MATCH": event.match.value if event.match else "",
        "DEDUPE_DISTANCE": str(event.distance),
    }
    try:
        # Its output goes to stderr, so that stdout stays one JSON object per line with --format jsonl.
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=2, env=env, timeout=COMMAND_TIMEOUT, check=False)
    except FileNotFoundError:
        return f"command not found: {command[0]}"
    except PermissionError:
        return f"cannot run {command[0]}: permission denied"
    except subprocess.TimeoutExpired:
        return f"{command[0]} did not finish within {COMMAND_TIMEOUT:.0f} s and was stopped"
    except OSError as e:
        return f"cannot run {command[0]}: {e.strerror or e}"
    if done.returncode < 0:
        return f"{command[0]} was killed by signal {-done.returncode}"
    if done.returncode != 0:
        return f"{command[0]} exited with status {done.returncode}"
    return None


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set `stop` (a second Ctrl-C interrupts at once); the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.getsignal(signal.SIGINT)
    old_term = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


class Watcher:
    """Follows folders and keeps the store in step with them, reporting each incoming duplicate once."""

    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        store: Store,
        options: WatchOptions | None = None,
        on_event: EventCallback | None = None,
        observer_factory: ObserverFactory | None = None,
    ) -> None:
        self._options = options or WatchOptions()
        if self._options.settle < 0 or (self._options.poll is not None and self._options.poll <= 0):
            raise DedupeError("the settle time must not be negative and the poll interval must be positive")
        real = resolve_roots(roots)
        for r in real:
            if not Path(r).is_dir():
                raise DedupeError(f"cannot watch {r}: it is not a folder")
        if self._options.quarantine is not None:
            folder = os.path.realpath(self._options.quarantine)
            inside = [r for r in real if folder == r or _below(folder, r) or _below(r, folder)]
            if inside:
                # Quarantined files would arrive again in a watched folder, or the folder would swallow a root.
                raise DedupeError(f"the quarantine folder {folder} must be outside the watched folder {inside[0]}")
            self._options = dataclasses.replace(self._options, quarantine=folder)
        self._store = store
        self._on_event = on_event
        self._factory = observer_factory or default_observer
        polling = self._options.poll is not None
        self._wakeup = threading.Event()
        self._roots = [_Root(r, QueueingHandler(wakeup=self._wakeup), polling) for r in real]
        self._threshold = DEFAULT_THRESHOLD if self._options.threshold is None else self._options.threshold
        self._never = frozenset(os.path.realpath(p) for p in store.own_files())
        self._scan_options = ScanOptions(
            exclude=TEMP_PATTERNS, hidden=self._options.hidden, workers=self._options.workers
        )
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._ready: dict[str, os.stat_result] = {}
        self._in_progress = 0
        self._read: set[str] = set()  # paths read in the current batch
        self._orphans = False
        self._orphans_at = 0.0
        self._status_at = 0.0
        self._last_status = (0, 0)
        self._stop = threading.Event()

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(r.path for r in self._roots)

    # --- the loop -------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Catch up with what changed while not watching, then follow changes until `stop` is set."""
        self._stop = stop
        try:
            for root in self._roots:
                # Observers first, then the catch-up scan: a change made during the scan is queued, not missed.
                root.online = self._start(root)
                if not root.online:
                    root.retry_at = time.monotonic() + RETRY_EVERY
            present = [r.path for r in self._roots if _folder_identity(r.path) is not None]
            scanned = self._catch_up(present)
            if not stop.is_set():
                self._emit(
                    WatchEventKind.READY,
                    message=(
                        f"watching {len(self._roots)} folder(s) holding {scanned} image(s);"
                        f" {f'polling every {self._options.poll:g} s' if self._options.poll else 'live events'}"
                    ),
                )
            next_supervise = time.monotonic() + SUPERVISE_EVERY
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_supervise:
                    self._supervise()
                    next_supervise = now + SUPERVISE_EVERY
                self._drain()
                self._settle(time.monotonic())
                if self._ready:
                    self._read_batch()
                self._forget_orphans(force=False)
                self._status()
                if not self._ready:
                    self._wait(TICK)
        finally:
            for root in self._roots:
                self._halt(root)
            with contextlib.suppress(DedupeError):
                self._forget_orphans(force=True)
            self._in_progress = 0
            self._pending.clear()
            self._ready.clear()

    def _wait(self, timeout: float) -> None:
        """Sleep until a change arrives or the timeout passes (a signal sets stop; the next tick sees it)."""
        self._wakeup.wait(timeout)
        self._wakeup.clear()

    def _emit(self, kind: WatchEventKind, **fields: object) -> None:
        if self._on_event is not None:
            self._on_event(WatchEvent(kind, **fields))  # type: ignore[arg-type]

    def _warn(self, message: str) -> None:
        self._emit(WatchEventKind.WARNING, message=message)

    def _status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        current = (len(self._pending) + len(self._ready), self._in_progress)
        if current == self._last_status or (not force and current != (0, 0) and now - self._status_at < 0.5):
            return
        self._last_status = current
        self._status_at = now
        self._emit(WatchEventKind.STATUS, queued=current[0], in_progress=current[1])

    # --- catching up ----------------------------------------------------------------------------------------

    def _catch_up(self, roots: Sequence[str]) -> int:
        """An incremental scan of the roots; reports the duplicates among the files it found new."""
        if not roots:
            return 0
        try:
            report, ingest = scan_changes(
                roots, self._store, self._scan_options, self._on_progress, should_stop=self._stop.is_set
            )
        except DedupeError as e:
            self._warn(f"cannot scan {', '.join(roots)}: {e}")
            return 0
        finally:
            self._read.clear()
        for warning in report.warnings:
            self._warn(warning)
        if report.pruned:
            self._orphans = True
        self._report_new(ingest.added)
        return report.images

    def _on_progress(self, event: ProgressEvent) -> None:
        if event.phase == "fingerprint" and event.path is not None:
            self._read.add(event.path)
            self._emit(WatchEventKind.FINGERPRINTED, path=event.path)

    # --- supervision ----------------------------------------------------------------------------------------

    def _start(self, root: _Root) -> bool:
        """Start watching one root; on an inotify limit, fall back to polling it."""
        identity = _folder_identity(root.path)
        if identity is None:
            return False
        interval = self._options.poll or FALLBACK_POLL
        observer: BaseObserver | None = None
        try:
            observer = self._factory(root.polling, interval)
            observer.schedule(root.handler, root.path, recursive=True)
            observer.start()
        except Exception as e:  # an observer that cannot start must not stop the watch of the other folders
            if observer is not None:
                _dispose(observer)
            code = e.errno if isinstance(e, OSError) else None
            if not root.polling and code in (errno.ENOSPC, errno.EMFILE):
                assert code is not None
                self._warn(_limit_message(code, root.path, interval))
                root.polling = True
                return self._start(root)
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            self._warn(f"cannot watch {root.path}: {reason}; trying again in {RETRY_EVERY:g} s")
            return False
        root.observer = observer
        root.identity = identity
        if not root.polling and self._partly_watched(root, observer):
            self._warn(_limit_message(errno.ENOSPC, root.path, interval))
            self._halt(root)
            root.polling = True
            return self._start(root)
        return True

    def _partly_watched(self, root: _Root, observer: BaseObserver) -> bool:
        missing = unwatched_folders(observer, root.path)
        if not missing:
            return False
        time.sleep(0.5)  # folders created just now get their watch from the observer's own thread
        return bool(unwatched_folders(observer, root.path))

    def _halt(self, root: _Root) -> None:
        if root.observer is not None:
            _dispose(root.observer)
            root.observer = None

    @staticmethod
    def _alive(root: _Root) -> bool:
        observer = root.observer
        if observer is None or not observer.is_alive():
            return False
        return all(e.is_alive() for e in list(observer.emitters))

    def _supervise(self) -> None:
        """Notice folders that went away or came back, and observers that died; catch up after each."""
        now = time.monotonic()
        for root in self._roots:
            identity = _folder_identity(root.path)
            if root.online:
                if identity is None:
                    self._halt(root)
                    root.online = False
                    root.retry_at = 0.0  # back as soon as it reappears
                    self._warn(
                        f"{root.path} is gone (deleted, unmounted or offline); still watching the other folders,"
                        " and this one again when it is back"
                    )
                elif identity != root.identity or not self._alive(root):
                    self._warn(f"the watcher of {root.path} stopped; restarting it and catching up")
                    self._halt(root)
                    root.online = self._start(root)
                    if root.online:
                        self._catch_up([root.path])
                    else:
                        root.retry_at = now + RETRY_EVERY
            elif identity is not None and root.retry_at <= now:
                if self._start(root):
                    root.online = True
                    root.rescan = False
                    self._warn(f"watching {root.path} again; catching up with what changed")
                    self._catch_up([root.path])
                else:
                    root.retry_at = now + RETRY_EVERY

    # --- events ---------------------------------------------------------------------------------------------

    def _drain(self) -> None:
        for root in self._roots:
            changes, overflowed = root.handler.take()
            for change in changes:
                self._apply(root, change)
            if overflowed:
                root.rescan = True
        for root in self._roots:
            if root.rescan and root.online:
                root.rescan = False
                self._warn(f"too many changes at once in {root.path}; scanning it again so that none is missed")
                self._catch_up([root.path])

    def _wanted(self, root: _Root, path: str) -> bool:
        """Inside the root and not hidden (unless asked), temporary, nor the store's own file."""
        if path in self._never or not _below(path, root.path) or path == root.path:
            return False
        parts = Path(os.path.relpath(path, root.path)).parts
        if not self._options.hidden and any(p.startswith(".") for p in parts):
            return False
        return not any(is_temporary(p) for p in parts)

    def _apply(self, root: _Root, change: _Change) -> None:
        kind, src, dest, is_dir = change
        if kind == "moved":
            if is_dir:
                self._moved_folder(root, src, dest)
            else:
                self._moved_file(root, src, dest)
        elif kind == "deleted":
            if src != root.path:  # the root itself: supervision decides (it may be a share gone offline)
                self._forget(src)
        elif is_dir:
            if kind == "created" and self._wanted(root, src):
                self._queue_folder(root, src)
        elif self._wanted(root, src):
            self._queue(root, src, closed=True if kind == "closed" else (None if kind == "attrib" else False))

    def _forget(self, path: str) -> None:
        self._unqueue(path)
        if self._store.forget_folder(path):
            self._orphans = True
            self._emit(WatchEventKind.FORGOTTEN, path=path)

    def _moved_file(self, root: _Root, src: str, dest: str) -> None:
        self._unqueue(src)
        if not self._wanted(root, dest):
            self._forget(src)  # moved out, or to a hidden or temporary name
            return
        if self._store.rename_file(src, dest):
            self._emit(WatchEventKind.MOVED, path=src, other=dest)
            row = self._store.get_file(dest)
            st = _regular(dest)
            if row is not None and st is not None and (row.size, row.mtime_ns, row.ino) == _sig(st):
                return  # the same file under a new name: nothing to read
        # A temporary file renamed into place is complete: the rename is its writer's last step.
        self._queue(root, dest, closed=True)

    def _moved_folder(self, root: _Root, src: str, dest: str) -> None:
        self._unqueue(src, folder=True)
        if not self._wanted(root, dest):
            self._forget(src)
            return
        if self._store.rename_folder(src, dest):
            self._emit(WatchEventKind.MOVED, path=src, other=dest)
        # Anything below it the store did not know (or that changed before the move) is read.
        self._queue_folder(root, dest)

    def _queue_folder(self, root: _Root, folder: str) -> None:
        """A folder created or moved in: every file below it is queued, to be read once settled."""
        try:
            found = walk([folder], self._scan_options, self._never)
        except DedupeError:
            return  # gone again
        stored = {row.path: row for row in self._store.files_under([folder])}
        for path, st in found.files:
            row = stored.get(path)
            if row is not None and (row.size, row.mtime_ns, row.ino) == _sig(st) and row.content_hash is not None:
                continue
            self._queue(root, path, closed=None, st=st)

    def _unqueue(self, path: str, *, folder: bool = False) -> None:
        if folder:
            for p in [p for p in self._pending if _below(p, path)]:
                del self._pending[p]
            for p in [p for p in self._ready if _below(p, path)]:
                del self._ready[p]
        else:
            self._pending.pop(path, None)
            self._ready.pop(path, None)

    # --- settling -------------------------------------------------------------------------------------------

    def _queue(self, root: _Root, path: str, *, closed: bool | None, st: os.stat_result | None = None) -> None:
        """Note that a file changed: it is read once its size and mtime stop changing."""
        now = time.monotonic()
        self._ready.pop(path, None)  # changing again: wait for it once more
        entry = self._pending.get(path)
        if entry is None:
            if len(self._pending) + len(self._ready) >= MAX_QUEUED:
                root.rescan = True  # the scan will find this file; memory stays bounded
                return
            st = st or _regular(path)
            entry = _Pending(_sig(st) if st else None, 0.0, bool(closed))
            self._pending[path] = entry
        elif closed is not None:
            entry.closed = closed
        entry.check_at = now + self._wait_for(entry)
        if entry.heap_at == 0.0 or entry.check_at < entry.heap_at:
            self._push(path, entry)

    def _wait_for(self, entry: _Pending) -> float:
        return min(CLOSE_GRACE, self._options.settle) if entry.closed else self._options.settle

    def _push(self, path: str, entry: _Pending) -> None:
        entry.heap_at = entry.check_at
        self._seq += 1
        heapq.heappush(self._heap, (entry.check_at, self._seq, path))

    def _settle(self, now: float) -> None:
        """Move the files whose size and mtime held still long enough to the ready list."""
        while self._heap and self._heap[0][0] <= now:
            at, _, path = heapq.heappop(self._heap)
            entry = self._pending.get(path)
            if entry is None or at != entry.heap_at:
                continue  # done already, or rescheduled
            if entry.check_at > now:
                self._push(path, entry)
                continue
            st = _regular(path)
            if st is None:
                del self._pending[path]  # gone (its deletion is an event of its own) or not a plain file
                continue
            if _sig(st) != entry.sig:
                entry.sig = _sig(st)
                entry.check_at = now + self._wait_for(entry)
                self._push(path, entry)
                continue
            del self._pending[path]
            self._ready[path] = st
        if not self._heap:
            self._seq = 0

    # --- reading --------------------------------------------------------------------------------------------

    def _read_batch(self) -> None:
        paths = list(self._ready)[:BATCH]
        files = [(p, self._ready.pop(p)) for p in paths]
        self._in_progress = len(files)
        self._status(force=True)
        small = sum(st.st_size for _, st in files) < INLINE_BYTES
        report = fingerprint_files(
            files,
            self._store,
            workers=1 if small else self._options.workers,
            on_progress=self._on_progress,
            should_stop=self._stop.is_set,
        )
        self._in_progress = 0
        for skipped in report.skipped:
            # Said once, when it is read and fails; a short-lived file that is gone again is not worth a word.
            if skipped.path in self._read and os.path.lexists(skipped.path):
                self._emit(WatchEventKind.SKIPPED, path=skipped.path, message=skipped.reason)
        self._read.clear()
        self._report_new(report.added)

    def _report_new(self, added: Sequence[str]) -> None:
        """Report, once, each new file that duplicates an image already in the store."""
        fresh: list[StoredFile] = []
        for path in sorted(added):
            row = self._store.get_file(path)
            if row is None or row.content_hash is None:
                continue
            st = _regular(path)
            if st is None:
                continue  # gone already
            if (row.size, row.mtime_ns, row.ino) != _sig(st):
                # It changed while it was read: read it again once it settles, and report then.
                root = next((r for r in self._roots if _below(path, r.path)), None)
                if root is not None:
                    self._queue(root, path, closed=False)
                continue
            fresh.append(row)
        if not fresh:
            return
        index = self._load_index()
        later = {row.path: i for i, row in enumerate(fresh)}
        for i, row in enumerate(fresh):
            found = self._existing_copy(row, index, later, i)
            if found is None:
                continue
            existing, match, distance = found
            event = WatchEvent(WatchEventKind.DUPLICATE, path=row.path, other=existing, match=match, distance=distance)
            if self._on_event is not None:
                self._on_event(event)
            if self._options.command:
                reason = run_command(self._options.command, event)
                if reason is not None:
                    self._emit(
                        WatchEventKind.COMMAND_FAILED, path=row.path, other=existing, match=match, message=reason
                    )
            if self._options.quarantine:
                self._quarantine(row.path, existing)

    def _quarantine(self, path: str, existing: str) -> None:
        """Move the incoming duplicate (never the older copy) aside, checked and journaled like a review."""
        assert self._options.quarantine is not None
        copy = self._store.records_under([path], fingerprint.VERSION)
        keeper = self._store.records_under([existing], fingerprint.VERSION)
        if not copy or not keeper:
            self._emit(WatchEventKind.QUARANTINE_FAILED, path=path, message="no longer in the store")
            return
        roots = [r.path for r in self._roots]
        result = actions.quarantine(copy[0], keeper[0], self._options.quarantine, roots, self._store)
        if result.state is StepState.DONE:
            self._emit(WatchEventKind.QUARANTINED, path=path, other=result.destination)
        else:
            self._emit(WatchEventKind.QUARANTINE_FAILED, path=path, message=result.reason)

    def _load_index(self) -> _Index:
        fps = self._store.fingerprints(fingerprint.VERSION)
        by_image: dict[str, list[str]] = {}
        for fp in fps:
            by_image.setdefault(fp.image_hash, []).append(fp.content_hash)
        near = [fp for fp in fps if not fp.low_info]
        return _Index(
            by_content={fp.content_hash: fp for fp in fps},
            by_image=by_image,
            near_hashes=np.fromiter((fp.phash for fp in near), dtype=np.uint64, count=len(near)),
            near_content=[fp.content_hash for fp in near],
        )

    def _existing_copy(
        self, row: StoredFile, index: _Index, arrival: Mapping[str, int], position: int
    ) -> tuple[str, MatchKind, int] | None:
        """The stored file that a new file duplicates most closely: same bytes, same image data, or near.

        Files that arrived in the same round after this one (arrival order beyond position) do not count.
        """
        assert row.content_hash is not None
        fp = index.by_content.get(row.content_hash)
        if fp is None:
            return None
        relation: dict[str, tuple[MatchKind, int]] = {fp.content_hash: (MatchKind.EXACT, 0)}
        for h in index.by_image.get(fp.image_hash, ()):
            relation.setdefault(h, (MatchKind.IMAGE, 0))
        if not fp.low_info and len(index.near_hashes):
            # Candidates by any turn of the new picture, loose enough for the two-stage rule; then each is
            # confirmed by the very rule that groups files, so watch reports what scan would group.
            queries = np.array([fp.phash, *fp.variants], dtype=np.uint64)
            distances = np.bitwise_count(index.near_hashes[None, :] ^ queries[:, None]).min(axis=0)
            close = np.flatnonzero(distances <= max(self._threshold, CANDIDATE_PHASH))
            # Crops are not looked for live: the index below finds candidates by pHash alone.
            rule = MatchRule(self._threshold, rotations=True, two_stage=True, bursts_apart=True, crops=False)
            for j in close[np.argsort(distances[close], kind="stable")][:NEAR_CANDIDATES].tolist():
                found = match(fp, index.by_content[index.near_content[j]], rule)
                if found is not None:
                    relation.setdefault(index.near_content[j], (MatchKind.NEAR, found.distance))
        candidates: list[tuple[int, int, int, str, MatchKind]] = []
        for other in self._store.files_with_content(relation):
            if (
                other.path == row.path
                or (other.dev, other.ino) == (row.dev, row.ino)
                or arrival.get(other.path, -1) > position
            ):
                continue  # itself, a hardlink of it, or a file that arrived after it
            assert other.content_hash is not None
            kind, distance = relation[other.content_hash]
            # The closest match first; among equals the oldest file, which is likely the original.
            candidates.append((KIND_RANK[kind], distance, other.mtime_ns, other.path, kind))
        for _, distance, _, path, kind in sorted(candidates):
            if os.path.lexists(path):  # the store may still list a copy deleted while nobody watched
                return path, kind, distance
        return None

    def _forget_orphans(self, *, force: bool) -> None:
        now = time.monotonic()
        if not self._orphans or (not force and now - self._orphans_at < ORPHANS_EVERY):
            return
        with self._store.transaction():
            self._store.forget_orphan_images()
        self._orphans = False
        self._orphans_at = now


def watch(
    roots: Sequence[str | os.PathLike[str]],
    store: Store,
    options: WatchOptions | None = None,
    on_event: EventCallback | None = None,
    stop: threading.Event | None = None,
    observer_factory: ObserverFactory | None = None,
) -> None:
    """Catch up with the roots, then follow them until `stop` is set; events go to on_event."""
    Watcher(roots, store, options, on_event, observer_factory).run(stop or threading.Event())
