"""The watchdog side of watching: the handler that queues changes on the observer's thread, and the observers.

Watchdog calls a handler on its observer's thread, so `QueueingHandler` only records what happened in a bounded
queue and returns; the watcher's loop (dedupe.watch) takes the changes from there on its own thread. `WatchedRoot`
starts and stops the observer of one folder and falls back to polling where inotify's limits leave it blind.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

# Names that downloads, copies and editors give a file while they write it; the finished file is renamed later.
TEMP_PATTERNS = ("*.part", "*.partial", "*.crdownload", "*.tmp", "*~", "*.swp", "*.swx", ".goutputstream-*", ".#*")

MAX_QUEUED = 50_000  # paths held at once; past this the folder is scanned again instead, so memory stays flat
FALLBACK_POLL = 5.0  # seconds between polls of a folder whose live events are not available
RETRY_EVERY = 30.0  # a folder that could not be watched is tried again this often

# (polling, poll interval) -> an observer that is not started yet
ObserverFactory = Callable[[bool, float], BaseObserver]


@dataclass(frozen=True, slots=True)
class Change:
    """One change the observer saw, as the watcher's loop takes it from the queue."""

    kind: str  # watchdog's event type: created, modified, closed, attrib, moved, deleted
    path: str
    dest: str = ""  # where a move went
    is_dir: bool = False


def default_observer(polling: bool, interval: float) -> BaseObserver:
    """The operating system's change notifications (inotify on Linux), or polling."""
    if polling:
        return PollingObserver(timeout=interval)
    return Observer()


def is_temporary(name: str) -> bool:
    """A name that a file only has while it is being written."""
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p) for p in TEMP_PATTERNS)


def below(path: str, folder: str) -> bool:
    """path is folder or inside it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class QueueingHandler(FileSystemEventHandler):
    """Runs on the observer's thread: records what happened and returns; never blocks, never reads a file.

    The queue is bounded: when more changes arrive than it holds, the details are dropped and the folder is
    marked for a full re-scan, which catches every change the dropped events described.
    """

    def __init__(self, limit: int | None = None, wakeup: threading.Event | None = None) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._changes: deque[Change] = deque()
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
        change = Change(kind, os.fsdecode(event.src_path), dest, event.is_directory)
        with self._lock:
            if self._changes and self._changes[-1] == change:
                return  # a burst of writes to one file: one record is enough
            if len(self._changes) >= self._limit:
                self._changes.clear()
                self._overflowed = True
            else:
                self._changes.append(change)
        self._wakeup.set()

    def take(self) -> tuple[list[Change], bool]:
        """What happened since the last call, and whether some of it had to be dropped."""
        with self._lock:
            changes = list(self._changes)
            self._changes.clear()
            overflowed, self._overflowed = self._overflowed, False
        return changes, overflowed

    def empty(self) -> bool:
        """Nothing is waiting to be taken."""
        with self._lock:
            return not self._changes and not self._overflowed


def watched_inodes() -> set[int] | None:
    """The inode numbers of everything this process's inotify instances watch, as the kernel lists them.

    proc(5) shows each inotify watch of an instance in /proc/self/fdinfo/FD as a line
    `inotify wd:.. ino:HEX sdev:HEX ...`. None when there is no such list (no /proc, or no inotify instance open).
    """
    fds = Path("/proc/self/fd")
    try:
        entries = list(fds.iterdir())
    except OSError:
        return None
    inodes: set[int] = set()
    found = False
    for entry in entries:
        try:
            if str(entry.readlink()) != "anon_inode:inotify":
                continue
            lines = (fds.parent / "fdinfo" / entry.name).read_text().splitlines()
        except OSError:
            continue  # closed meanwhile (listing /proc/self/fd opens a descriptor of its own)
        found = True
        for line in lines:
            if line.startswith("inotify "):
                fields = dict(f.split(":", 1) for f in line.split()[1:] if ":" in f)
                with contextlib.suppress(KeyError, ValueError):
                    inodes.add(int(fields["ino"], 16))
    return inodes if found else None


def unwatched_folders(root: str) -> int | None:
    """How many folders below root no inotify watch of this process covers, or None when it cannot be told.

    Watchdog's inotify observer skips a subfolder whose watch cannot be added (for instance past
    max_user_watches) without saying so, and it keeps the list of what it watches to itself; the kernel's own
    list of watches says the same without reading watchdog's private state. Folders are compared by inode number
    alone: on btrfs, stat() gives each subvolume a device number of its own that is not the one inotify lists, and
    a coincidence of inode numbers can only make a missing watch go unnoticed, never invent one.
    """
    watched = watched_inodes()
    if watched is None:
        return None
    missing = 0
    for folder, _, _ in os.walk(root):
        try:
            inode = Path(folder).stat().st_ino
        except OSError:
            continue  # gone meanwhile
        if inode not in watched:
            missing += 1
    return missing


def folder_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of a folder, or None when it is not (or no longer) a folder."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def dispose(observer: BaseObserver) -> None:
    """Stop an observer and wait for its threads, whether or not it was started or is still alive."""
    with contextlib.suppress(Exception):
        observer.stop()
    if observer.ident is not None:
        observer.join(timeout=10)


def limit_message(code: int, root: str, interval: float) -> str:
    if code == errno.EMFILE:
        limit = "the inotify instance limit (/proc/sys/fs/inotify/max_user_instances)"
    else:
        limit = "the inotify watch limit (/proc/sys/fs/inotify/max_user_watches)"
    return (
        f"cannot get live events for {root}: {limit} is reached; polling it every {interval:g} s instead"
        " (raise the limit with sysctl for live events)"
    )


@dataclass
class WatchedRoot:
    """One watched folder: the queue its observer fills, the observer, and what the watcher knows of it."""

    path: str
    handler: QueueingHandler
    polling: bool
    observer: BaseObserver | None = None
    identity: tuple[int, int] | None = None
    online: bool = True
    retry_at: float = 0.0
    rescan: bool = False  # more happened than the queue holds: scan it again

    def start(self, factory: ObserverFactory, interval: float, warn: Callable[[str], None]) -> bool:
        """Start watching; on an inotify limit, fall back to polling. False when the folder cannot be watched."""
        identity = folder_identity(self.path)
        if identity is None:
            return False
        observer: BaseObserver | None = None
        try:
            observer = factory(self.polling, interval)
            observer.schedule(self.handler, self.path, recursive=True)
            observer.start()
        except Exception as e:  # an observer that cannot start must not stop the watch of the other folders
            if observer is not None:
                dispose(observer)
            code = e.errno if isinstance(e, OSError) else None
            if not self.polling and code in (errno.ENOSPC, errno.EMFILE):
                assert code is not None
                warn(limit_message(code, self.path, interval))
                self.polling = True
                return self.start(factory, interval, warn)
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            warn(f"cannot watch {self.path}: {reason}; trying again in {RETRY_EVERY:g} s")
            return False
        self.observer = observer
        self.identity = identity
        if not self.polling and self._partly_watched():
            warn(limit_message(errno.ENOSPC, self.path, interval))
            self.halt()
            self.polling = True
            return self.start(factory, interval, warn)
        return True

    def _partly_watched(self) -> bool:
        if not unwatched_folders(self.path):
            return False
        time.sleep(0.5)  # folders created just now get their watch from the observer's own thread
        return bool(unwatched_folders(self.path))

    def wants(self, path: str, *, hidden: bool) -> bool:
        """Inside the root, and not hidden (unless asked) nor temporary."""
        if not below(path, self.path) or path == self.path:
            return False
        parts = Path(os.path.relpath(path, self.path)).parts
        if not hidden and any(p.startswith(".") for p in parts):
            return False
        return not any(is_temporary(p) for p in parts)

    def halt(self) -> None:
        if self.observer is not None:
            dispose(self.observer)
            self.observer = None

    def alive(self) -> bool:
        observer = self.observer
        if observer is None or not observer.is_alive():
            return False
        return all(e.is_alive() for e in list(observer.emitters))
