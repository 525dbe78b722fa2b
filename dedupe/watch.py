"""Watching folders live: a watchdog handler that only queues what happened, and a loop that drains the queue.

The handler (dedupe.watch_events) runs on the observer's thread, so it records changes in a bounded in-memory queue
and returns at once. The loop here, on the caller's thread, owns everything else: it waits for files to settle
(dedupe.watch_settle), reads them in batches through `dedupe.scan.fingerprint_files`, follows renames in the store
without reading files, forgets deleted ones, reports each new file that duplicates an image already in the store
(dedupe.watch_report), and supervises the observers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from dedupe.errors import DedupeError
from dedupe.match import MatchRule
from dedupe.models import ProgressEvent, ScanOptions, WatchEvent, WatchEventKind, WatchOptions
from dedupe.scan import fingerprint_files, resolve_roots, scan_changes, walk
from dedupe.store import Store
from dedupe.watch_events import (
    FALLBACK_POLL,
    MAX_QUEUED,
    RETRY_EVERY,
    TEMP_PATTERNS,
    Change,
    ObserverFactory,
    QueueingHandler,
    WatchedRoot,
    below,
    default_observer,
    folder_identity,
    is_temporary,
    unwatched_folders,
)
from dedupe.watch_report import DuplicateReporter, run_command
from dedupe.watch_settle import Settling, regular, signature

__all__ = [
    "TEMP_PATTERNS",
    "Change",
    "ChangeCallback",
    "EventCallback",
    "ObserverFactory",
    "QueueingHandler",
    "Watcher",
    "default_observer",
    "is_temporary",
    "run_command",
    "stop_on_signals",
    "unwatched_folders",
    "watch",
]

BATCH = 256  # files read per round, so that the loop comes back often to new events and to Ctrl-C
# Starting worker processes costs about a second (2-core VM); a batch smaller than this is read in this process.
INLINE_BYTES = 4_000_000
SUPERVISE_EVERY = 1.0
ORPHANS_EVERY = 10.0
TICK = 0.1
DEFAULT_RULE = MatchRule()  # frozen: one instance serves as every default

EventCallback = Callable[[WatchEvent], None]
ChangeCallback = Callable[[Change], None]


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


def _checked(roots: Sequence[str | os.PathLike[str]], options: WatchOptions) -> tuple[list[str], WatchOptions]:
    """The real paths of the roots, and the options with the quarantine folder's real path; DedupeError if wrong."""
    if options.settle < 0 or (options.poll is not None and options.poll <= 0):
        raise DedupeError("the settle time must not be negative and the poll interval must be positive")
    real = resolve_roots(roots)
    for r in real:
        if not Path(r).is_dir():
            raise DedupeError(f"cannot watch {r}: it is not a folder")
    if options.quarantine is not None:
        folder = os.path.realpath(options.quarantine)
        inside = [r for r in real if folder == r or below(folder, r) or below(r, folder)]
        if inside:
            # Quarantined files would arrive again in a watched folder, or the folder would swallow a root.
            raise DedupeError(f"the quarantine folder {folder} must be outside the watched folder {inside[0]}")
        options = dataclasses.replace(options, quarantine=folder)
    return real, options


class Watcher:
    """Follows folders and keeps the store in step with them, reporting each incoming duplicate once."""

    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        store: Store,
        options: WatchOptions | None = None,
        on_event: EventCallback | None = None,
        observer_factory: ObserverFactory | None = None,
        *,
        rule: MatchRule = DEFAULT_RULE,
        on_change: ChangeCallback | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        real, self._options = _checked(roots, options or WatchOptions())
        self._store = store
        self._on_event = on_event
        self._on_change = on_change
        self._on_idle = on_idle
        self._busy = True  # something was done since on_idle was last called
        self._factory = observer_factory or default_observer
        polling = self._options.poll is not None
        self._wakeup = threading.Event()
        self._roots = [WatchedRoot(r, QueueingHandler(MAX_QUEUED, self._wakeup), polling) for r in real]
        options = self._options
        self._reporter = DuplicateReporter(
            store, rule, self._report, command=options.command, quarantine=options.quarantine, roots=real
        )
        self._never = frozenset(os.path.realpath(p) for p in store.own_files())
        self._scan_options = ScanOptions(
            exclude=TEMP_PATTERNS, hidden=self._options.hidden, workers=self._options.workers
        )
        self._waiting = Settling(self._options.settle, MAX_QUEUED)
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

    def _how(self) -> str:
        """How the folders are followed, as they are now: a folder may have fallen back to polling."""
        interval = self._options.poll or FALLBACK_POLL
        polled = sum(r.polling for r in self._roots)
        if polled == len(self._roots):
            return f"polling every {interval:g} s"
        if polled:
            return f"live events, polling {polled} of {len(self._roots)} folder(s) every {interval:g} s"
        return "live events"

    def run(self, stop: threading.Event) -> None:
        """Catch up with what changed while not watching, then follow changes until `stop` is set."""
        self._stop = stop
        try:
            for root in self._roots:
                # Observers first, then the catch-up scan: a change made during the scan is queued, not missed.
                root.online = self._start(root)
                if not root.online:
                    root.retry_at = time.monotonic() + RETRY_EVERY
            present = [r.path for r in self._roots if folder_identity(r.path) is not None]
            scanned = self._catch_up(present)
            if not stop.is_set():
                self._emit(
                    WatchEventKind.READY,
                    message=f"watching {len(self._roots)} folder(s) holding {scanned} image(s); {self._how()}",
                )
            next_supervise = time.monotonic() + SUPERVISE_EVERY
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_supervise:
                    self._supervise()
                    next_supervise = now + SUPERVISE_EVERY
                self._drain()
                self._waiting.settle(time.monotonic())
                if self._waiting.ready:
                    self._read_batch()
                self._forget_orphans(force=False)
                self._status()
                self._report_idle()
                if not self._waiting.ready:
                    self._wait(TICK)
        finally:
            for root in self._roots:
                root.halt()
            with contextlib.suppress(DedupeError):
                self._forget_orphans(force=True)
            self._in_progress = 0
            self._waiting.clear()

    def _wait(self, timeout: float) -> None:
        """Sleep until a change arrives or the timeout passes (a signal sets stop; the next tick sees it)."""
        self._wakeup.wait(timeout)
        self._wakeup.clear()

    def _report_idle(self) -> None:
        """Tell on_idle, once per lull, that every change taken so far is done and nothing waits."""
        if not self._busy or len(self._waiting) or any(not r.handler.empty() or r.rescan for r in self._roots):
            return
        self._busy = False
        if self._on_idle is not None:
            self._on_idle()

    def _report(self, event: WatchEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _emit(self, kind: WatchEventKind, **fields: object) -> None:
        self._report(WatchEvent(kind, **fields))  # type: ignore[arg-type]

    def _warn(self, message: str) -> None:
        self._emit(WatchEventKind.WARNING, message=message)

    def _status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        current = (len(self._waiting), self._in_progress)
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
        self._busy = True
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
            if event.image:  # text files, videos and desktop.ini are read on every start, but are not news
                self._emit(WatchEventKind.FINGERPRINTED, path=event.path)

    # --- supervision ----------------------------------------------------------------------------------------

    def _start(self, root: WatchedRoot) -> bool:
        return root.start(self._factory, self._options.poll or FALLBACK_POLL, self._warn)

    def _supervise(self) -> None:
        """Notice folders that went away or came back, and observers that died; catch up after each."""
        now = time.monotonic()
        for root in self._roots:
            identity = folder_identity(root.path)
            if root.online:
                if identity is None:
                    root.halt()
                    root.online = False
                    root.retry_at = 0.0  # back as soon as it reappears
                    self._warn(
                        f"{root.path} is gone (deleted, unmounted or offline); still watching the other folders,"
                        " and this one again when it is back"
                    )
                elif identity != root.identity or not root.alive():
                    self._warn(f"the watcher of {root.path} stopped; restarting it and catching up")
                    root.halt()
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
                self._busy = True
                self._apply(root, change)
                if self._on_change is not None:
                    self._on_change(change)
            if overflowed:
                root.rescan = True
        for root in self._roots:
            if root.rescan and root.online:
                root.rescan = False
                self._warn(f"too many changes at once in {root.path}; scanning it again so that none is missed")
                self._catch_up([root.path])

    def _wanted(self, root: WatchedRoot, path: str) -> bool:
        # Nor anything below the store's own folder (its thumbnails: small copies of the photos, never photos).
        never = self._never
        return (
            path not in never
            and not any(path.startswith(f"{n}{os.sep}") for n in never)
            and root.wants(path, hidden=self._options.hidden)
        )

    def _apply(self, root: WatchedRoot, change: Change) -> None:
        kind, src, dest = change.kind, change.path, change.dest
        if kind == "moved":
            if change.is_dir:
                self._moved_folder(root, src, dest)
            else:
                self._moved_file(root, src, dest)
        elif kind == "deleted":
            if src != root.path:  # the root itself: supervision decides (it may be a share gone offline)
                self._forget(src)
        elif change.is_dir:
            if kind == "created" and self._wanted(root, src):
                self._queue_folder(root, src)
        elif self._wanted(root, src):
            self._queue(root, src, closed=True if kind == "closed" else (None if kind == "attrib" else False))

    def _forget(self, path: str) -> None:
        self._waiting.unqueue(path)
        if self._store.forget_folder(path):
            self._orphans = True
            self._emit(WatchEventKind.FORGOTTEN, path=path)

    def _moved_file(self, root: WatchedRoot, src: str, dest: str) -> None:
        self._waiting.unqueue(src)
        if not self._wanted(root, dest):
            self._forget(src)  # moved out, or to a hidden or temporary name
            return
        if self._store.rename_file(src, dest):
            self._emit(WatchEventKind.MOVED, path=src, other=dest)
            row = self._store.get_file(dest)
            st = regular(dest)
            if row is not None and st is not None and (row.size, row.mtime_ns, row.ino) == signature(st):
                return  # the same file under a new name: nothing to read
        # A temporary file renamed into place is complete: the rename is its writer's last step.
        self._queue(root, dest, closed=True)

    def _moved_folder(self, root: WatchedRoot, src: str, dest: str) -> None:
        self._waiting.unqueue(src, folder=True)
        if not self._wanted(root, dest):
            self._forget(src)
            return
        if self._store.rename_folder(src, dest):
            self._emit(WatchEventKind.MOVED, path=src, other=dest)
        # Anything below it the store did not know (or that changed before the move) is read.
        self._queue_folder(root, dest)

    def _queue_folder(self, root: WatchedRoot, folder: str) -> None:
        """A folder created or moved in: every file below it is queued, to be read once settled."""
        try:
            found = walk([folder], self._scan_options, self._never)
        except DedupeError:
            return  # gone again
        stored = {row.path: row for row in self._store.files_under([folder])}
        for path, st in found.files:
            row = stored.get(path)
            if row is not None and (row.size, row.mtime_ns, row.ino) == signature(st) and row.content_hash is not None:
                continue
            self._queue(root, path, closed=None, st=st)

    def _queue(self, root: WatchedRoot, path: str, *, closed: bool | None, st: os.stat_result | None = None) -> None:
        """Note that a file changed: it is read once its size and mtime stop changing."""
        if not self._waiting.queue(path, time.monotonic(), closed=closed, st=st):
            root.rescan = True  # the scan will find this file; memory stays bounded

    # --- reading --------------------------------------------------------------------------------------------

    def _read_batch(self) -> None:
        self._busy = True
        files = self._waiting.take(BATCH)
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
        for path in self._reporter.report(added):
            # It changed while it was read: read it again once it settles, and report then.
            root = next((r for r in self._roots if below(path, r.path)), None)
            if root is not None:
                self._queue(root, path, closed=False)

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
    *,
    rule: MatchRule = DEFAULT_RULE,
    on_change: ChangeCallback | None = None,
    on_idle: Callable[[], None] | None = None,
) -> None:
    """Catch up with the roots, then follow them until `stop` is set; events go to on_event.

    A new file is a duplicate when it matches a stored picture under rule, the same MatchRule a scan groups with
    (crops decided by the number of stored pictures, as a scan decides them). on_change hears each change the
    observers reported, once the watcher has acted on it, and on_idle when all is done and nothing waits: a caller
    that made a change learns from the two when its effects are complete, without guessing a time.
    """
    watcher = Watcher(
        roots, store, options, on_event, observer_factory, rule=rule, on_change=on_change, on_idle=on_idle
    )
    with warnings.catch_warnings():
        # watchdog (7.1) warns when it meets a folder twice, once in the walk of a new folder above it and once in
        # its own creation event (a tree copied in): it keeps the one callback it had, and nothing is missed, but
        # the warning would reach the user's terminal.
        warnings.filterwarnings("ignore", r"Callback with id .* already exists for watch", RuntimeWarning)
        watcher.run(stop or threading.Event())
