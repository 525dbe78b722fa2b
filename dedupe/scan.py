"""Walking folders and (re)fingerprinting what changed, in parallel."""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import importlib
import multiprocessing
import operator
import os
import re
import signal
import stat
import struct
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from dedupe import stat_cache
from dedupe.content_hash import hash_file
from dedupe.errors import DedupeError, FileSkipped
from dedupe.library import gc_paused
from dedupe.models import (
    VERSION,
    Fingerprint,
    IngestReport,
    ProgressEvent,
    SamePixels,
    ScanOptions,
    ScanReport,
    Skipped,
)
from dedupe.store import Store, StoredFile

ProgressCallback = Callable[[ProgressEvent], None]

_COMMIT_EVERY = 2.0  # seconds between commits: a killed scan loses at most this much work
_INLINE_BELOW = 8  # so few files are done in this process rather than starting workers
JOBS_PER_CORE = 4  # more workers than this per core only compete for the cores and memory


def max_jobs() -> int:
    """The most worker processes a scan starts, whatever is asked: JOBS_PER_CORE per core."""
    return JOBS_PER_CORE * (os.cpu_count() or 1)


def workers_for(requested: int | None, files: int) -> int:
    """How many workers to start for this many files to read: as asked (one per core by default), but never
    more than the files nor max_jobs() (-j 100000 on 200 files once forked thousands and ran out of memory)."""
    wanted = requested or os.cpu_count() or 1
    return max(1, min(wanted, files, max_jobs()))


@dataclass
class _Walk:
    files: list[tuple[str, os.stat_result]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # files found as walk's `current` wants them: nothing to do
    skipped: list[Skipped] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # folders whose stored entries must be kept
    ignored: int = 0


def resolve_roots(roots: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Absolute, real, distinct roots, none inside another: the same folder twice is scanned once."""
    resolved: list[str] = []
    for root in roots:
        raw = os.fspath(root)
        if not os.path.lexists(raw):
            raise DedupeError(f"no such file or folder: {raw}")
        real = os.path.realpath(raw)
        if not Path(real).exists():
            raise DedupeError(f"cannot scan {raw}: it is a broken link")
        resolved.append(real)
    resolved.sort()
    distinct: list[str] = []
    for r in resolved:
        if not any(r == d or r.startswith(d.rstrip(os.sep) + os.sep) for d in distinct):
            distinct.append(r)
    return distinct


def walk(
    roots: Sequence[str],
    options: ScanOptions,
    never: frozenset[str] = frozenset(),
    current: Mapping[str, bytes] | None = None,
) -> _Walk:
    """Every regular file below the roots, in a stable order, with the reasons for what was passed over.

    current: what the store holds of these files (stat_cache.StoredStats.current); a file whose stat_key is the
    one there, unchanged and with a current fingerprint, is listed by path in .unchanged instead of .files."""
    result = _Walk()
    current = current or {}
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        try:
            st = Path(root).stat()
        except OSError as e:
            raise DedupeError(f"cannot scan {root}: {e.strerror}") from None
        if stat.S_ISREG(st.st_mode):
            if current.get(root, b"") == stat_cache.stat_key(st) != b"":
                result.unchanged.append(root)
            else:
                result.files.append((root, st))
            continue
        _walk_dir(root, root, options, never, current, seen_dirs, result)
    return result


def _walk_dir(
    root: str,
    top: str,
    options: ScanOptions,
    never: frozenset[str],
    current: Mapping[str, bytes],
    seen: set[tuple[int, int]],
    out: _Walk,
) -> None:
    # The loop body runs for every file of the tree: what it reads of the options is read once, here, and an
    # unchanged file is told apart at once (stat_cache.stat_key, written out), so that its stat is not kept.
    hidden, exclude, follow, min_size = options.hidden, options.exclude, options.follow_symlinks, options.min_size
    files, unchanged, stored, pack = out.files, out.unchanged, current.get, stat_cache.KEY.pack
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            fst = Path(folder).stat()
            if (fst.st_dev, fst.st_ino) in seen:
                continue  # a symlink loop, or a folder reached twice
            seen.add((fst.st_dev, fst.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=_name)
        except FileNotFoundError:
            continue  # vanished while we walked
        except OSError as e:
            out.skipped.append(Skipped(folder, f"cannot read folder: {e.strerror or e}"))
            out.unreadable.append(folder)
            continue
        subfolders: list[str] = []
        for entry in entries:
            if not hidden and entry.name.startswith("."):
                continue
            path = entry.path
            if exclude and _excluded(path, root, exclude):
                continue
            try:
                if not follow and entry.is_symlink():
                    out.ignored += 1
                    continue
                st = entry.stat(follow_symlinks=follow)
            except FileNotFoundError:
                if entry.is_symlink():
                    out.skipped.append(Skipped(path, "broken symbolic link"))
                continue
            except OSError as e:
                out.skipped.append(Skipped(path, f"cannot read: {e.strerror or e}"))
                continue
            mode = st.st_mode
            if stat.S_ISREG(mode):
                if st.st_size < min_size or path in never:
                    continue
                try:
                    same = stored(path) == pack(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_ctime_ns)
                except struct.error:
                    same = False  # out of the store's range: never stored
                if same:
                    unchanged.append(path)
                else:
                    files.append((path, st))
            elif stat.S_ISDIR(mode):
                if path not in never:  # the store's thumbnails: small copies of the photos, never photos
                    subfolders.append(path)
            else:
                out.skipped.append(Skipped(path, f"not a regular file ({_kind(mode)}), not opened"))
        stack.extend(reversed(subfolders))


_name = operator.attrgetter("name")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _excluded(path: str, root: str, patterns: Sequence[str]) -> bool:
    if not patterns:
        return False
    name = Path(path).name
    rel = os.path.relpath(path, root)
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(path, p) for p in patterns)


def scan(
    roots: Sequence[str | os.PathLike[str]],
    store: Store,
    options: ScanOptions | None = None,
    on_progress: ProgressCallback | None = None,
) -> ScanReport:
    """Fingerprint every image below the roots into the store; unchanged files are not read again."""
    return scan_changes(roots, store, options, on_progress)[0]


def scan_changes(
    roots: Sequence[str | os.PathLike[str]],
    store: Store,
    options: ScanOptions | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[ScanReport, IngestReport]:
    """A scan that also says which paths now hold content they did not hold before (what a watcher reports)."""
    options = options or ScanOptions()
    real_roots = resolve_roots(roots)
    never = frozenset(os.path.realpath(p) for p in store.own_files())
    if on_progress:
        on_progress(ProgressEvent("walk", 0))
    version = VERSION
    with gc_paused():  # a key per stored file, alive until the end and with no cycles among them
        seen = stat_cache.stats_under(store, real_roots, version)
        found = walk(real_roots, options, never, seen.current)
    # Only the files that changed need their whole stored row (a StoredFile costs ten times a stat key to make).
    stored = {path: row for path, _ in found.files if path in seen.current and (row := store.get_file(path))}
    ingest = fingerprint_files(
        found.files, store, workers=options.workers, stored=stored, on_progress=on_progress, should_stop=should_stop
    )
    pruned, warnings = _prune(store, real_roots, found, seen.current)
    if stat_cache.unchanged_since(store, seen):  # nothing written (a failed file found as it was, say)
        images = seen.images  # the stored files just read tell it
        if not seen.cached:
            stat_cache.save(store, seen)  # still the store as it is: the next scan reads them in a moment
    else:
        images = store.count_records_under(real_roots, version)
    skipped = sorted([*found.skipped, *ingest.skipped], key=lambda s: s.path)
    report = ScanReport(
        roots=tuple(real_roots),
        images=images,
        fingerprinted=ingest.fingerprinted,
        reused=ingest.reused + len(found.unchanged),
        skipped=tuple(skipped),
        ignored=found.ignored + ingest.ignored,
        pruned=pruned,
        warnings=tuple(warnings),
    )
    return report, replace(ingest, reused=report.reused)


def fingerprint_files(
    files: Sequence[tuple[str, os.stat_result]],
    store: Store,
    *,
    workers: int | None = None,
    stored: Mapping[str, StoredFile] | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> IngestReport:
    """Fingerprint these files (path and the stat taken before reading) into the store, in parallel.

    Unchanged files and renames (same inode, size and mtime) are not read. `stored` is what the store holds at
    these paths, when the caller already has it. When should_stop() turns true, the files being read are
    finished and committed, and the rest is left for next time.
    """
    if not files:
        return IngestReport(fingerprinted=0, reused=0, ignored=0, skipped=(), added=())  # and no write lock taken
    if stored is None:
        stored = {path: row for path, _ in files if (row := store.get_file(path)) is not None}
    version = VERSION
    # A few files (what dedupe watch reads at a time) are looked up one by one: reading every stored hash took
    # 0.3 s at 200,000 pictures. More files go to the workers, which each need the whole set.
    known: KnownHashes = _StoredHashes(store, version) if len(files) < _INLINE_BELOW else store.known_hashes(version)

    skipped: list[Skipped] = []
    todo: list[tuple[str, os.stat_result]] = []
    reused = 0
    with store.transaction():
        for path, st in files:
            if not stat_cache.storable(st):
                skipped.append(Skipped(path, stat_cache.OUT_OF_RANGE))
                continue
            row = stored.get(path)
            if row is not None and _only_ctime_moved(row, st, version):
                # A known failure whose ctime moved (chmod, a new hard link): the same bytes fail the same way.
                store.set_ctime(path, st.st_ctime_ns)
                assert row.error is not None
                skipped.append(Skipped(path, row.error))
                continue
            if row is not None and _unchanged(row, st):
                if row.ctime_ns is None:
                    store.set_ctime(path, st.st_ctime_ns)
                if row.error is not None and row.error_version == version:
                    # The same bytes failed with this version of dedupe: no need to try them again.
                    skipped.append(Skipped(path, row.error))
                    continue
                if row.content_hash in known:
                    reused += 1
                    continue
            # The same inode at the same path with another ctime was rewritten in place, not renamed.
            rewritten = row is not None and (row.dev, row.ino) == (st.st_dev, st.st_ino)
            moved = None if rewritten else store.content_hash_by_inode(st)
            if moved is not None and moved in known:
                # A rename, a move within the drive or a hardlink: same inode, size and mtime.
                store.put_file(path, st, moved)
                reused += 1
                continue
            todo.append((path, st))

    batch = _Batch(store, version, known)
    total = len(todo)
    added: list[str] = []
    ignored = 0
    stopped = False
    results = _fingerprint_all(todo, known, workers)
    try:
        for done, (path, st, result) in enumerate(results, start=1):
            content: str | None = None
            if isinstance(result, FileSkipped):
                if result.ignorable:
                    ignored += 1
                    batch.forget(path)
                else:
                    skipped.append(Skipped(path, result.reason))
                    if not result.transient:
                        batch.put(path, st, None, result.reason, result.content_hash)
            elif isinstance(result, str):
                batch.put(path, st, result, None)
                reused += 1
                content = result
            else:
                batch.put(path, st, result, None)
                content = result.content_hash
            if content is not None and (path not in stored or stored[path].content_hash != content):
                added.append(path)
            if on_progress:
                image = not (isinstance(result, FileSkipped) and result.ignorable)
                on_progress(ProgressEvent("fingerprint", done, total, path, image=image))
            if should_stop is not None and done < total and should_stop():
                stopped = True
                break
    finally:
        results.close()  # stops the workers: what they were reading is finished, the rest is not started
        batch.commit()
    return IngestReport(
        fingerprinted=batch.fingerprinted,
        reused=reused,
        ignored=ignored,
        skipped=tuple(skipped),
        added=tuple(added),
        stopped=stopped,
    )


def _only_ctime_moved(row: StoredFile, st: os.stat_result, version: str) -> bool:
    """Whether a file that failed with this version has another ctime but the same stat otherwise and, read
    again (only hashed), the same bytes."""
    if row.error is None or row.error_version != version or row.undecoded_hash is None:
        return False
    if (row.size, row.mtime_ns, row.dev, row.ino) != (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino):
        return False
    if row.ctime_ns == st.st_ctime_ns:
        return False  # wholly unchanged: the usual path
    try:
        return hash_file(row.path) == row.undecoded_hash
    except OSError:
        return False


def _unchanged(row: StoredFile, st: os.stat_result) -> bool:
    """Size, mtime, inode and ctime as stored: a rewrite that puts the mtime back still changes the ctime (as
    fdupes and jdupes see it). A row from before ctimes were kept is judged without it."""
    same = (row.size, row.mtime_ns, row.dev, row.ino) == (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
    return same and row.ctime_ns in (None, st.st_ctime_ns)


class KnownHashes(Protocol):
    """The content hashes the store holds fingerprints of, with those added since."""

    def __contains__(self, content_hash: object, /) -> bool: ...

    def add(self, content_hash: str, /) -> None: ...


class _StoredHashes:
    """KnownHashes asked of the store one at a time."""

    def __init__(self, store: Store, version: str) -> None:
        self._store = store
        self._version = version
        self._added: set[str] = set()

    def __contains__(self, content_hash: object, /) -> bool:
        if not isinstance(content_hash, str):
            return False
        return content_hash in self._added or self._store.has_fingerprint(content_hash, self._version)

    def add(self, content_hash: str, /) -> None:
        self._added.add(content_hash)


class _Batch:
    """Writes results, committing every few seconds so that a killed scan keeps what it finished."""

    def __init__(self, store: Store, version: str, known: KnownHashes) -> None:
        self._store = store
        self._version = version
        self._known = known
        self._pending: list[tuple[str, os.stat_result | None, Fingerprint | str | None, str | None, str | None]] = []
        self._last = time.monotonic()
        self.fingerprinted = 0

    def put(
        self,
        path: str,
        st: os.stat_result,
        result: Fingerprint | str | None,
        error: str | None,
        undecoded_hash: str | None = None,
    ) -> None:
        self._pending.append((path, st, result, error, undecoded_hash))
        if time.monotonic() - self._last >= _COMMIT_EVERY:
            self.commit()

    def forget(self, path: str) -> None:
        self._pending.append((path, None, None, None, None))

    def commit(self) -> None:
        if not self._pending:
            return
        with self._store.transaction():
            for path, st, result, error, undecoded in self._pending:
                if st is None:
                    self._store.forget_files([path])
                    continue
                if isinstance(result, Fingerprint):
                    if result.content_hash not in self._known:
                        self._store.put_fingerprint(result, self._version)
                        self._known.add(result.content_hash)
                        self.fingerprinted += 1
                    self._store.put_file(path, st, result.content_hash)
                else:
                    self._store.put_file(path, st, result, error, self._version if error else None, undecoded)
        self._pending.clear()
        self._last = time.monotonic()


_Result = Fingerprint | str | FileSkipped  # a new fingerprint, the hash of known content, or the reason


class _PoolCrashed(Exception):
    def __init__(self, lost: list[tuple[str, os.stat_result]]) -> None:
        super().__init__("a worker died")
        self.lost = lost


def _fingerprint_all(
    todo: list[tuple[str, os.stat_result]], known: KnownHashes, workers: int | None
) -> Generator[tuple[str, os.stat_result, _Result], None, None]:
    """Fingerprint files on all cores, yielding results as they finish."""
    if not todo:
        return
    # Pillow and the hashes are loaded here, once there is a file to read, and before the workers fork: each
    # finds them loaded. A scan that finds nothing new never loads them. No collection walks the objects the
    # import piles up (several full ones would, each walking them all).
    with gc_paused():
        importlib.import_module("dedupe.fingerprint")
    workers = workers_for(workers, len(todo))
    if workers <= 1 or len(todo) < _INLINE_BELOW:
        fingerprinted: set[str] = set()
        decoded: dict[str, Fingerprint] = {}  # claim key -> the fingerprint decoded for it
        for path, st in todo:
            result, key = _work(path, known, fingerprinted, lambda k: k not in decoded)
            if isinstance(result, SamePixels):
                result = result.of(decoded[result.key])
            if isinstance(result, Fingerprint):
                fingerprinted.add(result.content_hash)
                if key is not None:
                    decoded[key] = result
            yield path, st, result
        return
    # Workers inherit the whole set: so many files always come with it (see fingerprint_files).
    assert isinstance(known, set)
    # Largest first (taken from the end): the small files that are left at the end keep every core busy.
    pending = sorted(reversed(todo), key=lambda item: item[1].st_size)
    suspects: list[tuple[str, os.stat_result]] = []
    while pending or suspects:
        if pending:
            try:
                yield from _run_pool(pending, known, workers, workers * 16)
            except _PoolCrashed as e:
                suspects.extend(e.lost)
            continue
        # A worker died (a decoder crash, the kernel's OOM killer): the files it may have been working on
        # are retried one at a time, so only the culprit is reported.
        suspect = suspects.pop()
        try:
            yield from _run_pool([suspect], known, 1, 1)
        except _PoolCrashed:
            yield suspect[0], suspect[1], FileSkipped("the decoder crashed on this file")


_Done = tuple[str, os.stat_result, _Result]


def _run_pool(pending: list[tuple[str, os.stat_result]], known: set[str], workers: int, window: int) -> Iterator[_Done]:
    """Fingerprint the pending files (taken from the end) on a pool of workers.

    Only files of one size can be byte copies of each other, so of each size one file is read first and the
    others wait for it: a copy of it is then only hashed, not decoded (a backup holds many). They all go at
    once when it is done, so a folder of same-size files different in content still runs on every core.

    A picture whose image data another worker is decoding (the same picture with other metadata) is not decoded
    again: its worker moves on, and its fingerprint is made from the other's once that is done (or it is decoded
    after all, if the other failed)."""
    in_flight: dict[Future[tuple[_Result | SamePixels, str | None]], tuple[str, os.stat_result]] = {}
    sizes = Counter(st.st_size for _, st in pending)
    first: dict[int, str] = {}  # size -> the file of that size being read first
    copies: dict[int, frozenset[str]] = {}  # size -> the content its first file turned out to have
    held: dict[int, list[tuple[str, os.stat_result]]] = defaultdict(list)  # files waiting for their size's first
    decoded: dict[str, Fingerprint | None] = {}  # claim key -> the fingerprint decoded for it (None: it failed)
    twins: dict[str, list[tuple[str, os.stat_result, SamePixels]]] = defaultdict(list)  # waiting for a claim
    context = _context()
    # A forked worker's parent is this process; one from a fork server is the server's, known only to itself.
    parent = os.getpid() if context.get_start_method() == "fork" else None
    with (
        _claims_folder() as claims,
        ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(known, claims, parent)
        ) as pool,
    ):
        try:
            while pending or in_flight:
                while pending and len(in_flight) < window:
                    path, st = pending.pop()
                    size = st.st_size
                    if size in first:
                        held[size].append((path, st))
                        continue
                    if sizes[size] > 1 and size not in copies:
                        first[size] = path
                    in_flight[pool.submit(_pool_work, path, copies.get(size, frozenset()), True)] = (path, st)
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                lost: list[tuple[str, os.stat_result]] = []
                finished: list[_Done] = []
                for fut in sorted(done, key=lambda f: in_flight[f][0]):
                    path, st = in_flight.pop(fut)
                    if fut.exception() is not None:
                        lost.append((path, st))
                        continue
                    result, key = fut.result()
                    alone: list[tuple[str, os.stat_result]] = []  # to decode after all: their twin failed
                    if isinstance(result, SamePixels):
                        if result.key not in decoded:
                            twins[result.key].append((path, st, result))
                            continue
                        twin = decoded[result.key]
                        if twin is None:
                            alone.append((path, st))
                        else:
                            finished.append((path, st, result.of(twin)))
                    else:
                        finished.append((path, st, result))
                    if key is not None:
                        fp = decoded[key] = result if isinstance(result, Fingerprint) else None
                        for twin_path, twin_st, same in twins.pop(key, []):
                            if fp is None:
                                alone.append((twin_path, twin_st))
                            else:
                                finished.append((twin_path, twin_st, same.of(fp)))
                    for path, st in alone:
                        in_flight[pool.submit(_pool_work, path, copies.get(st.st_size, frozenset()), False)] = (
                            path,
                            st,
                        )
                for path, st, result in finished:
                    size = st.st_size
                    if first.get(size) == path:
                        del first[size]
                        content = result.content_hash if isinstance(result, Fingerprint) else result
                        copies[size] = frozenset((content,)) if isinstance(content, str) else frozenset()
                        pending.extend(reversed(held.pop(size, [])))
                    yield path, st, result
                if lost:
                    lost.extend(in_flight.values())
                    in_flight.clear()
                    for waiting in held.values():
                        pending.extend(reversed(waiting))
                    for waiting_twins in twins.values():
                        pending.extend((path, st) for path, st, _ in waiting_twins)
                    raise _PoolCrashed(lost)
        except BaseException:
            # Queued files are dropped and the ones being read finished, so that no worker or thread of the pool
            # outlives it (a retry after a crash would otherwise see threads and use the fork server).
            pool.shutdown(wait=True, cancel_futures=True)
            raise


@contextlib.contextmanager
def _claims_folder() -> Iterator[str]:
    """A new folder for the pool's claims (_claim), removed after; "" when no temporary folder can be made
    (TMPDIR and the usual places read-only or full): the workers then decode every picture, as without claims,
    rather than the scan failing.

    Its name says which process made it (_claims_owner), so that the folders of scans killed before they could
    remove theirs (SIGKILL, SIGTERM, a crash) are removed here, by the next pool (_remove_stale_claims)."""
    try:
        parent = tempfile.gettempdir()
        owner = _claims_owner()
        if owner is not None:
            _remove_stale_claims(parent, owner)
        folder = tempfile.TemporaryDirectory(prefix=_CLAIMS + (f"{owner}-" if owner else ""), dir=parent)
    except OSError:
        yield ""
        return
    with folder as name:
        yield name


_CLAIMS = "dedupe-claims-"
# boot-namespaces-pid-starttime-random, the namespaces as PID.TIME (tempfile's random part holds no "-"): see
# _claims_owner
_CLAIMS_NAME = re.compile(r"dedupe-claims-([0-9a-f]{32})-(\d+\.\d+)-(\d+)-(\d+)-[a-z0-9_]+")


def _claims_owner() -> str | None:
    """This process as a claims folder's name gives it: the boot, the pid and time namespaces, the pid and the
    pid's start time. The start time tells a reused pid from the process that made the folder, and the boot and
    pid namespace that the pid is one this process can look up (a container sharing the temporary folder numbers
    its own); /proc gives start times shifted by the reader's time namespace's boot-time offset, so only a
    process of the same time namespace reads the start time the folder's name holds.
    None where /proc does not tell them (not Linux, or a /proc of another pid namespace): the folder is then named
    as before and never judged stale."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        namespace = str(Path("/proc/self/ns/pid").readlink())
        try:
            clock = str(Path("/proc/self/ns/time").readlink())
        except FileNotFoundError:  # a kernel without time namespaces (before Linux 5.6): one clock for all
            clock = "time:[0]"
        # A pid namespace without a /proc of its own (unshare --pid without --mount-proc) sees another
        # namespace's processes there: /proc/PID is then not this namespace's pid PID.
        seen = Path("/proc/self").readlink()
    except OSError:
        return None
    pid = os.getpid()
    if str(seen) != str(pid):
        return None
    start = _start_time(pid)
    found = re.fullmatch(r"pid:\[(\d+)\]", namespace)
    timed = re.fullmatch(r"time:\[(\d+)\]", clock)
    if start is None or found is None or timed is None or re.fullmatch(r"[0-9a-f]{32}", boot) is None:
        return None
    return f"{boot}-{found[1]}.{timed[1]}-{pid}-{start}"


def _start_time(pid: int) -> int | None:
    """When the process pid started (clock ticks after boot, /proc/PID/stat's 22nd field); None when there is
    no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _remove_stale_claims(parent: str, owner: str) -> None:
    """Remove the claims folders in parent whose process is gone: only folders named by _claims_owner for this
    boot and these pid and time namespaces, that are folders of this user (not links), whose pid no longer runs,
    or runs another program started since, and that hold nothing but empty regular files (all a claims folder
    holds: a folder with anything else is left whole). What cannot be judged or removed is left as it is."""
    boot, namespace, _, _ = owner.split("-")
    try:
        names = [e.name for e in os.scandir(parent) if e.name.startswith(_CLAIMS)]
    except OSError:
        return
    stale = []
    for name in names:
        found = _CLAIMS_NAME.fullmatch(name)
        if found is None or (found[1], found[2]) != (boot, namespace):
            continue
        if _start_time(int(found[3])) != int(found[4]):  # gone, or its pid taken by a newer process
            stale.append(name)
    if not stale:
        return
    with contextlib.suppress(OSError):
        top = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in stale:
                with contextlib.suppress(OSError):
                    _remove_claims(top, name)
        finally:
            os.close(top)


def _remove_claims(parent: int, name: str) -> None:
    """Empty and remove the claims folder name in the folder open as parent, unless it is a link, another user's,
    or holds anything but empty regular files."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            return
        with os.scandir(fd) as entries:
            inside = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
        # Judged whole before anything goes: a folder holding anything else is not a claims folder.
        if not all(stat.S_ISREG(st.st_mode) and st.st_size == 0 for _, st in inside):
            return
        for entry, _ in inside:
            os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _context() -> multiprocessing.context.BaseContext:
    """How workers start. Forked from this process when it runs no thread started since dedupe was imported
    (on Linux), they start at once with every module loaded, where a fresh interpreter would import them again
    (about 0.3 s). A thread could hold a lock at the moment of the fork and leave the child stuck, so with one
    (watch's observer, a library caller's own) workers come from a fork server. The threads that exist at import
    are numpy's OpenBLAS pool, which parks itself around a fork (pthread_atfork), and the caller's own."""
    if sys.platform == "linux" and threading.active_count() == 1 and _os_threads() <= _THREADS_AT_IMPORT:
        return multiprocessing.get_context("fork")
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _os_threads() -> int:
    """The threads of this process as the system sees them (native ones too); a large number elsewhere."""
    try:
        return sum(1 for _ in Path("/proc/self/task").iterdir())
    except OSError:
        return 1 << 30


_THREADS_AT_IMPORT = _os_threads()  # after numpy's import (through fingerprint): its thread pool counts


_worker_known: set[str] = set()
_worker_claims = ""  # the pool's folder of claims (_claim)


def _die_with_parent(parent: int | None) -> None:
    """Have the kernel kill this worker when the process that started it (parent: its pid as the pool knew it, or
    None where the pool cannot know it) dies: kill -9 of a scan would otherwise leave its workers sleeping with the
    store open. Linux only; elsewhere the pool's own pipes end idle workers."""
    if sys.platform != "linux":
        return
    if parent is None:
        parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    # The parent may have died before the request was made, even before this worker could ask who its parent
    # is (a worker asking then got the pid that adopted it, and slept for ever): compare with the pool's pid.
    if os.getppid() != parent:
        os._exit(1)


def _init_worker(known: set[str], claims: str, parent: int | None) -> None:
    _die_with_parent(parent)
    # What the worker inherits (modules, the known hashes, the parent's lists) is never garbage here: frozen, no
    # collection walks it (a full one walked every inherited object) nor writes to its pages, which stay shared.
    gc.freeze()
    # Ctrl-C goes to the whole process group; the parent alone decides what happens then.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the parent's output as the progress bar redirected it: a warning printed here
    # would redraw a copy of the bar as it was at the fork.
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    global _worker_known, _worker_claims
    _worker_known, _worker_claims = known, claims


def _claim(key: str) -> bool:
    """Whether this worker is the first of its pool to decode the picture that key names: the one that creates
    the file of that name in the pool's folder (exclusive creation: one succeeds). When the folder cannot be
    written, every worker decodes what it reads, as without claims."""
    try:
        os.close(os.open(Path(_worker_claims, key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def _pool_work(path: str, copies: frozenset[str], claim: bool) -> tuple[_Result | SamePixels, str | None]:
    """_work in a worker; copies: content just fingerprinted by this scan that this file may repeat; claim:
    whether a picture another worker decodes is left to it."""
    return _work(path, _worker_known, copies, _claim if claim and _worker_claims else None)


def _work(
    path: str,
    known: KnownHashes,
    copies: AbstractSet[str] = frozenset(),
    claim: Callable[[str], bool] | None = None,
) -> tuple[_Result | SamePixels, str | None]:
    """Fingerprint one file, or only hash its bytes when that content was fingerprinted before; with claim, a
    picture whose claim fails is not decoded (fingerprint.fingerprint_unless_claimed). Also the key it claimed."""
    from dedupe import fingerprint  # loaded once there is a file to read: forked workers find it loaded

    claimed: str | None = None

    def claim_and_note(key: str) -> bool:
        nonlocal claimed
        won = claim is None or claim(key)
        if won:
            claimed = key
        return won

    try:
        data = fingerprint.read_image_bytes(path)
        content_hash = fingerprint.hash_bytes(data)
        if content_hash in known or content_hash in copies:
            return content_hash, None
        try:
            result = fingerprint.fingerprint_unless_claimed(data, content_hash, name=path, claim=claim_and_note)
        except FileSkipped as e:
            e.content_hash = content_hash  # read but not decoded: its byte copies are still exact duplicates
            raise
    except FileSkipped as e:
        return e, claimed
    except MemoryError:
        return FileSkipped("too large to read into memory"), claimed
    return result, claimed


def _unmounted(root: str, devices: Iterable[int]) -> bool:
    try:
        dev = Path(root).stat().st_dev
    except OSError:
        return True
    return all(d != dev for d in devices)


def _prune(store: Store, roots: Sequence[str], found: _Walk, seen: Collection[str]) -> tuple[int, list[str]]:
    """Forget stored files below the roots that are gone; keep what an unreadable or empty folder hides."""
    if len(found.unchanged) == len(seen):
        return 0, []  # every stored file was found as it was
    absent = set(seen) - {p for p, _ in found.files} - set(found.unchanged)
    if not absent:
        return 0, []
    warnings: list[str] = []
    gone: list[str] = []
    hidden = tuple(d.rstrip(os.sep) + os.sep for d in found.unreadable)
    for root in roots:
        prefix = root.rstrip(os.sep) + os.sep
        below = [p for p in seen if p == root or p.startswith(prefix)]
        missing = [p for p in below if p in absent]
        if missing and len(missing) == len(below) and _unmounted(root, (row.dev for row in store.files_under([root]))):
            # An empty mount point looks like a drive whose files were all deleted: keep its entries.
            warnings.append(
                f"{root} is empty and on another device than its {len(missing)} stored files;"
                " kept them (is the drive mounted?)"
            )
            continue
        gone.extend(p for p in missing if not p.startswith(hidden))
    if gone:
        with store.transaction():
            store.forget_files(gone)
            store.forget_orphan_images()
    return len(gone), warnings
