"""dedupe watch: a real observer on real folders, real photos, a real store, and a real subprocess."""

from __future__ import annotations

import errno
import importlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from dedupe import fingerprint
from dedupe.cli import cli
from dedupe.match import MatchRule
from dedupe.models import MatchKind, WatchEvent, WatchEventKind, WatchOptions
from dedupe.store import Store
from dedupe.watch import Change, QueueingHandler, default_observer, is_temporary, unwatched_folders, watch
from tests.conftest import REPO, draw_photo, run_dedupe, save, transparent_logo
from tests.test_crops import CROP15, crop

K = WatchEventKind
# The module itself: `dedupe.watch` is also the name of the function exported by the package.
watch_module = importlib.import_module("dedupe.watch")
SETTLE = 0.3


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until condition() is true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Recorder:
    """Collects, from the watcher's thread, its events, the changes it handled, and when it was last idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[WatchEvent] = []
        self.changes: list[Change] = []
        self.idle_after = 0  # how many changes the watcher had handled when it last said it was idle
        self.markers = itertools.count()

    def __call__(self, event: WatchEvent) -> None:
        with self._lock:
            self.events.append(event)

    def change(self, change: Change) -> None:
        with self._lock:
            self.changes.append(change)

    def idle(self) -> None:
        with self._lock:
            self.idle_after = len(self.changes)

    def of(self, kind: WatchEventKind, path: Path | str | None = None) -> list[WatchEvent]:
        with self._lock:
            return [e for e in self.events if e.kind == kind and (path is None or e.path == str(path))]

    def idle_since(self, path: Path) -> bool:
        """The watcher handled a change of path, and has been idle since."""
        with self._lock:
            seen = [i for i, c in enumerate(self.changes) if c.path == str(path)]
            return bool(seen) and self.idle_after > seen[0]


def settled(rec: Recorder, root: Path) -> None:
    """Wait until the watcher has done all that the changes made so far below root call for.

    A marker with a temporary name (never read, stored or reported) is created after those changes. Observers
    report the changes of a folder in the order they happened, so once the watcher has handled the marker and
    then been idle (nothing queued, settling or being read), every earlier change is done with, and an event that
    has not come by now will not come.
    """
    marker = root / f"settled-{next(rec.markers)}.tmp"
    marker.touch()
    wait_for(lambda: rec.idle_since(marker), what=f"the watcher to handle {marker.name} and be idle")


@contextmanager
def watching(
    roots: list[Path],
    db: Path,
    options: WatchOptions | None = None,
    factory: Callable[[bool, float], BaseObserver] | None = None,
    rule: MatchRule | None = None,
) -> Iterator[tuple[Recorder, Store]]:
    """Run the watcher on a thread until the block ends; yields once it has caught up."""
    store = Store.open(db)
    rec = Recorder()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watch(
                roots,
                store,
                options or WatchOptions(settle=SETTLE),
                rec,
                stop,
                factory,
                rule=rule or MatchRule(),
                on_change=rec.change,
                on_idle=rec.idle,
            )
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, name="test-watcher")
    thread.start()
    try:
        wait_for(lambda: rec.of(K.READY) or errors, what="the catch-up scan")
        yield rec, store
    finally:
        stop.set()
        thread.join(30)
        store.close()
    assert not thread.is_alive()
    if errors:
        raise errors[0]


def photo(path: Path, seed: int, size: tuple[int, int] = (320, 240)) -> Path:
    return save(draw_photo(seed, size), path, format="JPEG", quality=90)


def stored_paths(store: Store, root: Path) -> set[str]:
    return {r.path for r in store.files_under([str(root)])}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "watched"
    folder.mkdir()
    return folder


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite"


# --- files arriving ---------------------------------------------------------------------------------------------


def test_created_file_is_fingerprinted_once(root: Path, db: Path) -> None:
    with watching([root], db) as (rec, store):
        new = photo(root / "new.jpg", 1)
        wait_for(lambda: store.get_file(str(new)) is not None, what="the new file in the store")
        row = store.get_file(str(new))
        assert row is not None and row.content_hash == fingerprint.hash_bytes(new.read_bytes())
        settled(rec, root)  # a late second read would have happened by now
        assert len(rec.of(K.FINGERPRINTED, new)) == 1
        assert not rec.of(K.DUPLICATE)


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_slow_chunked_copy_is_fingerprinted_once_when_complete(root: Path, db: Path, polling: bool) -> None:
    data = (photo(root.parent / "source.jpg", 2, (800, 600))).read_bytes()
    options = WatchOptions(settle=0.5, poll=0.1 if polling else None)
    with watching([root], db, options) as (rec, store):
        dest = root / "copied.jpg"
        with dest.open("wb") as f:  # one writer, pausing between chunks like a slow drive
            for i in range(0, len(data), len(data) // 6 + 1):
                f.write(data[i : i + len(data) // 6 + 1])
                f.flush()
                time.sleep(0.15)
        wait_for(lambda: store.get_file(str(dest)) is not None, what="the copied file in the store")
        settled(rec, root)
        assert len(rec.of(K.FINGERPRINTED, dest)) == 1
        assert not rec.of(K.SKIPPED)
        row = store.get_file(str(dest))
        assert row is not None and row.content_hash == fingerprint.hash_bytes(data) and row.error is None


def test_temp_file_and_rename_is_fingerprinted_once(root: Path, db: Path) -> None:
    edited = draw_photo(3, (400, 300))
    with watching([root], db) as (rec, store):
        final = root / "photo.jpg"
        for temp_name in (".goutputstream-AB12", "photo.jpg.part", "photo.jpg.tmp", "photo.jpg~"):
            assert is_temporary(temp_name)
        # A download: written slowly under a temporary name, then renamed into place.
        temp = root / "photo.jpg.part"
        data = (photo(root.parent / "src.jpg", 4)).read_bytes()
        with temp.open("wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(SETTLE * 1.5)
            f.write(data[len(data) // 2 :])
        temp.replace(final)
        wait_for(lambda: store.get_file(str(final)) is not None, what="the renamed file")
        first = store.get_file(str(final))
        # An editor saving over it: new bytes in a hidden temporary file, renamed over the original.
        gtemp = root / ".goutputstream-XY12"
        save(edited, gtemp, format="JPEG", quality=80)
        gtemp.replace(final)
        wait_for(lambda: len(rec.of(K.FINGERPRINTED, final)) == 2, what="the edited file read again")
        settled(rec, root)
        assert len(rec.of(K.FINGERPRINTED, final)) == 2  # once per version of the file, never per chunk
        assert not any("part" in (e.path or "") or "goutput" in (e.path or "") for e in rec.events)
        second = store.get_file(str(final))
        assert first is not None and second is not None and first.content_hash != second.content_hash
        assert stored_paths(store, root) == {str(final)}


def test_broken_incoming_file_is_reported_as_skipped_and_not_retried(root: Path, db: Path) -> None:
    with watching([root], db) as (rec, store):
        broken = root / "broken.jpg"
        broken.write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))  # a JPEG header and nothing after it
        wait_for(lambda: rec.of(K.SKIPPED, broken), what="the skipped report")
        row = store.get_file(str(broken))
        assert row is not None and row.content_hash is None and row.error
        broken.chmod(0o600)  # an attribute change, same bytes and mtime: the known failure is not read again
        settled(rec, root)
        assert len(rec.of(K.FINGERPRINTED, broken)) == 1 and len(rec.of(K.SKIPPED, broken)) == 1
        broken.write_bytes(photo(root.parent / "fixed.jpg", 34).read_bytes())  # repaired: read again
        wait_for(lambda: (r := store.get_file(str(broken))) is not None and r.content_hash, what="the repaired file")
        assert len(rec.of(K.SKIPPED, broken)) == 1


def test_ignored_names_and_the_store_itself_are_never_read(root: Path) -> None:
    db = root / "store.sqlite"  # the store inside the watched folder: its -wal and -shm change all the time
    with watching([root], db) as (rec, store):
        photo(root / "download.jpg.crdownload", 5)
        photo(root / "backup.jpg~", 6)
        photo(root / ".hidden.jpg", 7)
        photo(root / ".cache" / "thumb.jpg", 8)
        photo(root / "store.sqlite-thumbs" / "ab" / "ab12-480.jpg", 10)  # the review page's thumbnails
        marker = photo(root / "visible.jpg", 9)
        wait_for(lambda: store.get_file(str(marker)) is not None, what="the visible file")
        settled(rec, root)
        assert {e.path for e in rec.of(K.FINGERPRINTED)} == {str(marker)}
        assert stored_paths(store, root) == {str(marker)}


def test_a_tree_of_folders_moved_in_at_once_is_read_whole(root: Path, db: Path, tmp_path: Path) -> None:
    """Folders that arrive inside a new folder (a tree moved in) are each met twice by watchdog, in the walk of the
    new folder and in their own creation event: every photo in the tree is read, and watchdog's warning about it
    (an error under this test suite's warning filter, which stopped its observer) is not raised."""
    trees = tmp_path / "outside"
    expected = set()
    for t in range(6):
        for depth in range(1, 5):
            folder = trees.joinpath(f"tree{t}", *[f"level{d}" for d in range(depth)])
            expected.add(str(root / photo(folder / f"p{depth}.jpg", 40 + 5 * t + depth).relative_to(trees)))
    with watching([root], db) as (rec, store):
        for t in range(6):
            (trees / f"tree{t}").rename(root / f"tree{t}")
            for depth in range(1, 4):  # and trees made in place, a folder at a time
                folder = root.joinpath(f"made{t}", *[f"level{d}" for d in range(depth)])
                folder.mkdir(parents=True)
                expected.add(str(photo(folder / "q.jpg", 80 + 5 * t + depth)))
        wait_for(lambda: stored_paths(store, root) >= expected, what="every photo of the trees")
        settled(rec, root)
        assert stored_paths(store, root) == expected


def test_only_images_are_reported_fingerprinted_at_each_start(root: Path, db: Path) -> None:
    """Files that are not images (notes, desktop.ini, a video) are read at each start but never reported as
    fingerprinted; the images are, at the start that first reads them."""
    (root / "notes.txt").write_text("shopping list\n")
    (root / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (root / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    picture = photo(root / "a.jpg", 3)
    with watching([root], db) as (rec, _):
        assert {e.path for e in rec.of(K.FINGERPRINTED)} == {str(picture)}
    with watching([root], db) as (rec, _):
        assert rec.of(K.FINGERPRINTED) == []


def test_hidden_files_are_read_with_hidden(root: Path, db: Path) -> None:
    with watching([root], db, WatchOptions(settle=SETTLE, hidden=True)) as (_, store):
        hidden = photo(root / ".hidden.jpg", 7)
        wait_for(lambda: store.get_file(str(hidden)) is not None, what="the hidden file")


# --- moves and deletions -----------------------------------------------------------------------------------------


def test_moved_file_follows_in_the_store_without_reading_it(root: Path, db: Path) -> None:
    src = photo(root / "a.jpg", 10)
    (root / "sub").mkdir()
    with watching([root], db) as (rec, store):
        images_before = store.fingerprints(fingerprint.VERSION)
        before = store.get_file(str(src))
        assert before is not None and len(rec.of(K.FINGERPRINTED)) == 1
        dest = root / "sub" / "renamed.jpg"
        src.rename(dest)
        wait_for(lambda: store.get_file(str(dest)) is not None, what="the move in the store")
        settled(rec, root)
        after = store.get_file(str(dest))
        assert after is not None and after.content_hash == before.content_hash
        assert store.get_file(str(src)) is None
        assert store.fingerprints(fingerprint.VERSION) == images_before
        assert len(rec.of(K.FINGERPRINTED)) == 1  # only the catch-up scan's read: the move read nothing
        assert [(e.path, e.other) for e in rec.of(K.MOVED)] == [(str(src), str(dest))]


def test_deleted_file_is_forgotten(root: Path, db: Path) -> None:
    gone = photo(root / "gone.jpg", 11)
    kept = photo(root / "kept.jpg", 12)
    with watching([root], db) as (rec, store):
        gone.unlink()
        wait_for(lambda: store.get_file(str(gone)) is None, what="the deletion")
        assert rec.of(K.FORGOTTEN, gone)
        assert stored_paths(store, root) == {str(kept)}
    with Store.open(db) as store:  # the fingerprint nobody refers to is dropped too
        assert len(store.fingerprints(fingerprint.VERSION)) == 1


def test_folders_moved_in_around_and_out(root: Path, db: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    for i in range(3):
        photo(outside / "album" / f"p{i}.jpg", 20 + i)
    photo(outside / "album" / "deeper" / "p3.jpg", 23)
    with watching([root], db) as (rec, store):
        (outside / "album").rename(root / "album")
        expected = {str(root / "album" / f"p{i}.jpg") for i in range(3)} | {str(root / "album" / "deeper" / "p3.jpg")}
        wait_for(lambda: stored_paths(store, root) == expected, what="the moved-in folder in the store")
        reads = len(rec.of(K.FINGERPRINTED))
        assert reads == 4

        (root / "album").rename(root / "renamed")
        moved = {p.replace(str(root / "album"), str(root / "renamed")) for p in expected}
        wait_for(lambda: stored_paths(store, root) == moved, what="the renamed folder in the store")
        settled(rec, root)
        assert len(rec.of(K.FINGERPRINTED)) == reads  # renaming a folder reads nothing

        (root / "renamed").rename(outside / "back")
        wait_for(lambda: not stored_paths(store, root), what="the moved-out folder forgotten")


def test_a_thousand_files_dropped_at_once(root: Path, db: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    rng = random.Random(7)
    names = [f"img{i:04}.png" for i in range(1000)]
    for name in names:
        Image.frombytes("L", (24, 24), rng.randbytes(24 * 24)).save(staging / name)
    with watching([root], db, WatchOptions(settle=SETTLE, workers=2)) as (rec, store):
        for name in names:
            (staging / name).rename(root / name)
        wait_for(lambda: len(stored_paths(store, root)) == 1000, timeout=90, what="all 1000 files in the store")
        settled(rec, root)
        reads = [str(e.path) for e in rec.of(K.FINGERPRINTED)]
        assert sorted(reads) == sorted(str(root / n) for n in names)  # every one, each exactly once
        assert len(store.fingerprints(fingerprint.VERSION)) == 1000
        assert not rec.of(K.WARNING)


def test_a_burst_of_photos_is_read_by_parallel_workers(
    root: Path, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "INLINE_BYTES", 0)  # these test photos are small: use the pool anyway
    staging = tmp_path / "staging"
    names = [f"p{i}.jpg" for i in range(24)]
    for i, name in enumerate(names):
        photo(staging / name, 100 + i, (640, 480))
    with watching([root], db, WatchOptions(settle=SETTLE, workers=2)) as (rec, store):
        for name in names:
            (staging / name).rename(root / name)
        wait_for(lambda: len(stored_paths(store, root)) == 24, timeout=60, what="the burst in the store")
        assert sorted(str(e.path) for e in rec.of(K.FINGERPRINTED)) == sorted(str(root / n) for n in names)


def test_more_changes_than_the_queue_holds_are_caught_by_a_rescan(
    root: Path, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "MAX_QUEUED", 40)
    staging = tmp_path / "staging"
    staging.mkdir()
    rng = random.Random(8)
    for i in range(150):
        Image.frombytes("L", (16, 16), rng.randbytes(256)).save(staging / f"{i}.png")
    with watching([root], db, WatchOptions(settle=SETTLE, workers=1)) as (rec, store):
        for i in range(150):
            (staging / f"{i}.png").rename(root / f"{i}.png")
        wait_for(lambda: len(stored_paths(store, root)) == 150, timeout=60, what="all 150 files in the store")
        assert any("scanning" in e.message for e in rec.of(K.WARNING))


def test_queueing_handler_is_bounded() -> None:
    from watchdog.events import FileCreatedEvent, FileModifiedEvent

    handler = QueueingHandler(limit=10)
    for _ in range(100):
        handler.dispatch(FileModifiedEvent("/x/a.jpg"))  # a burst of writes to one file is one record
    for i in range(5):
        handler.dispatch(FileCreatedEvent(f"/x/{i}.jpg"))
    changes, overflowed = handler.take()
    assert len(changes) == 6 and not overflowed
    for i in range(25):
        handler.dispatch(FileCreatedEvent(f"/x/{i}.jpg"))
    changes, overflowed = handler.take()
    assert overflowed and len(changes) < 10
    assert handler.take() == ([], False)


def test_settling_waits_for_size_and_mtime_to_hold_still(tmp_path: Path) -> None:
    from dedupe.watch_settle import CLOSE_GRACE, Settling

    waiting = Settling(settle=2.0, limit=3)
    growing = tmp_path / "growing.jpg"
    growing.write_bytes(b"x" * 10)
    closed = tmp_path / "closed.jpg"
    closed.write_bytes(b"y" * 10)
    assert waiting.queue(str(growing), 100.0, closed=False)
    assert waiting.queue(str(closed), 100.0, closed=True)  # its writer closed it: a short wait is enough
    waiting.settle(100.0 + CLOSE_GRACE)
    assert [p for p, _ in waiting.take(10)] == [str(closed)]
    growing.write_bytes(b"x" * 20)  # still being written when its time comes: it waits once more
    waiting.settle(102.0)
    assert not waiting.ready and len(waiting) == 1
    waiting.settle(104.0)
    assert [(p, st.st_size) for p, st in waiting.take(10)] == [(str(growing), 20)]
    for i in range(3):
        assert waiting.queue(str(tmp_path / f"{i}.jpg"), 0.0, closed=None)
    assert not waiting.queue(str(tmp_path / "one-more.jpg"), 0.0, closed=None)  # full: the caller rescans
    waiting.unqueue(str(tmp_path), folder=True)
    assert len(waiting) == 0


# --- duplicates ------------------------------------------------------------------------------------------------


def test_duplicate_reported_once(root: Path, db: Path, tmp_path: Path) -> None:
    library = tmp_path / "library"
    original = photo(library / "original.jpg", 30, (640, 480))
    with Store.open(db) as store:
        from dedupe import scan

        scan([library], store)
    marker = tmp_path / "exec.log"
    script = f"import sys; open({str(marker)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"
    options = WatchOptions(settle=SETTLE, command=(sys.executable, "-c", script))
    with watching([root], db, options) as (rec, store):
        copy = root / "copy.jpg"
        shutil.copyfile(original, copy)
        wait_for(lambda: rec.of(K.DUPLICATE), what="the duplicate report")
        near = save(draw_photo(30, (640, 480)).resize((400, 300)), root / "smaller.png")
        wait_for(lambda: len(rec.of(K.DUPLICATE)) == 2, what="the near duplicate report")
        os.utime(copy)  # touched: read again, but the same content is not news
        unrelated = photo(root / "unrelated.jpg", 31)
        wait_for(lambda: store.get_file(str(unrelated)) is not None, what="the unrelated photo")
        settled(rec, root)
        assert len(rec.of(K.FINGERPRINTED, copy)) == 2
        dups = rec.of(K.DUPLICATE)
        assert [(e.path, e.other, e.match) for e in dups] == [
            (str(copy), str(original), MatchKind.EXACT),
            (str(near), str(original), MatchKind.NEAR),
        ]
        assert 0 < dups[1].distance <= 8
        wait_for(lambda: marker.exists() and len(marker.read_text().splitlines()) == 2, what="--exec runs")
        assert marker.read_text().splitlines() == [f"{copy} {original}", f"{near} {original}"]


def test_failing_command_is_reported_not_fatal(root: Path, db: Path) -> None:
    first = photo(root / "first.jpg", 32)
    options = WatchOptions(settle=SETTLE, command=(sys.executable, "-c", "raise SystemExit(3)"))
    with watching([root], db, options) as (rec, _):
        shutil.copyfile(first, root / "second.jpg")
        wait_for(lambda: rec.of(K.COMMAND_FAILED), what="the failed command report")
        assert "exited with status 3" in rec.of(K.COMMAND_FAILED)[0].message
        shutil.copyfile(first, root / "third.jpg")  # still watching
        wait_for(lambda: len(rec.of(K.DUPLICATE)) == 2, what="the next duplicate")


def test_duplicates_in_one_burst_are_reported_against_the_earlier_path(root: Path, db: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    a = photo(staging / "a.jpg", 33)
    shutil.copyfile(a, staging / "b.jpg")
    with watching([root], db) as (rec, _):
        for name in ("a.jpg", "b.jpg"):
            (staging / name).rename(root / name)
        wait_for(lambda: rec.of(K.DUPLICATE), what="the duplicate report")
        settled(rec, root)
        assert [(e.path, e.other) for e in rec.of(K.DUPLICATE)] == [(str(root / "b.jpg"), str(root / "a.jpg"))]


def test_duplicates_are_found_against_the_store_as_it_is_now(root: Path, db: Path, tmp_path: Path) -> None:
    """Round after round, a new file is compared with the store as the watcher's own changes left it: a picture
    replaced at its path is found by its new content only, and a deleted original's content by its copy."""
    first = photo(root / "first.jpg", 90, (640, 480))
    second = photo(root / "second.jpg", 91, (640, 480))
    staging = tmp_path / "staging"
    staging.mkdir()
    with watching([root], db) as (rec, _):
        copy = root / "copy.jpg"
        shutil.copyfile(first, copy)
        wait_for(lambda: rec.of(K.DUPLICATE), what="the copy's report")
        replacement = save(draw_photo(92, (640, 480)), staging / "second.jpg", quality=90)
        replacement.replace(second)  # another picture at the stored path
        first.unlink()
        settled(rec, root)
        old_second = save(draw_photo(91, (640, 480)).resize((400, 300)), root / "old-second.png")
        new_second = save(draw_photo(92, (640, 480)).resize((400, 300)), root / "new-second.png")
        again = root / "again.jpg"
        shutil.copyfile(copy, again)
        wait_for(lambda: len(rec.of(K.DUPLICATE)) >= 3, what="the reports of the later arrivals")
        settled(rec, root)
        assert sorted((e.path, e.other, e.match) for e in rec.of(K.DUPLICATE)) == [
            (str(again), str(copy), MatchKind.EXACT),
            (str(copy), str(first), MatchKind.EXACT),
            (str(new_second), str(second), MatchKind.NEAR),
        ]
        assert rec.of(K.DUPLICATE, old_second) == []


def test_the_rule_decides_what_counts_as_a_duplicate(root: Path, db: Path, tmp_path: Path) -> None:
    library = tmp_path / "library"
    original = photo(library / "original.jpg", 30, (640, 480))
    with Store.open(db) as store:
        from dedupe import scan

        scan([library], store)
    identical_only = MatchRule(threshold=0, two_stage=False)
    with watching([root, library], db, rule=identical_only) as (rec, store):
        copy = root / "copy.jpg"
        shutil.copyfile(original, copy)
        # Reported as near (distance 1 to 8) with the default rule: see test_duplicate_reported_once.
        near = save(draw_photo(30, (640, 480)).resize((400, 300)), root / "smaller.png")
        wait_for(lambda: store.get_file(str(near)) is not None, what="the resized copy in the store")
        settled(rec, root)
        assert [(e.path, e.match) for e in rec.of(K.DUPLICATE)] == [(str(copy), MatchKind.EXACT)]


def test_a_copy_that_dropped_the_alpha_channel_is_a_duplicate_of_the_stored_transparent_picture(
    root: Path, db: Path, tmp_path: Path
) -> None:
    """A semi-transparent PNG in the store (a disc of a photo on an almost clear background) is found by a JPEG copy
    that dropped its alpha channel, through its second reading: the copy shows the whole photo, 22 bits of pHash
    from the stored flattened disc. With rotations on or off."""
    library = tmp_path / "library"
    library.mkdir()
    picture = transparent_logo(7, ring=True, background=10)
    original = library / "overlay.png"
    picture.save(original)
    with Store.open(db) as store:
        from dedupe import scan

        scan([library], store)
    for rule in (MatchRule(), MatchRule(rotations=False)):
        copy = root / f"copy-{rule.rotations}.jpg"
        with watching([root], db, rule=rule) as (rec, store):
            picture.convert("RGB").save(copy, quality=90 if rule.rotations else 80)  # not byte copies
            wait_for(lambda: rec.of(K.DUPLICATE), what="the duplicate report")
            settled(rec, root)
            assert [(e.path, e.other, e.match) for e in rec.of(K.DUPLICATE)] == [
                (str(copy), str(original), MatchKind.NEAR)
            ]


def test_a_cropped_copy_and_a_wider_picture_are_duplicates_of_what_the_store_holds(
    root: Path, db: Path, tmp_path: Path
) -> None:
    """A copy cut unevenly at its edges (15% of each side in all) is reported as a near duplicate of the stored
    whole picture, and a whole picture arriving after its stored crop is reported too, as a scan would group them;
    without the crop search (--threshold 0 leaves it out, as in a scan) neither is."""
    library = tmp_path / "library"
    whole, other = draw_photo(40, (640, 480)), draw_photo(41, (640, 480))
    original = save(whole, library / "original.jpg", quality=90)
    stored_crop = save(crop(other, CROP15), library / "cut.jpg", quality=90)
    with Store.open(db) as store:
        from dedupe import scan

        scan([library], store)
    with watching([root], db) as (rec, store):
        cut = save(crop(whole, CROP15).resize((500, 375)), root / "cut.png")
        wait_for(lambda: rec.of(K.DUPLICATE), what="the cropped copy's report")
        wider = save(other.resize((600, 450)), root / "wider.webp", quality=90)
        wait_for(lambda: len(rec.of(K.DUPLICATE)) == 2, what="the wider picture's report")
        settled(rec, root)
        assert [(e.path, e.other, e.match) for e in rec.of(K.DUPLICATE)] == [
            (str(cut), str(original), MatchKind.NEAR),
            (str(wider), str(stored_crop), MatchKind.NEAR),
        ]
    (root / "cut.png").unlink()
    (root / "wider.webp").unlink()
    with watching([root], db, rule=MatchRule(threshold=0, two_stage=False)) as (rec, store):
        again = save(crop(whole, CROP15).resize((520, 390)), root / "cut-again.png")
        wait_for(lambda: store.get_file(str(again)) is not None, what="the second cut in the store")
        settled(rec, root)
        assert rec.of(K.DUPLICATE) == []


# --- supervision -----------------------------------------------------------------------------------------------


def test_folder_that_disappears_and_comes_back(tmp_path: Path, db: Path) -> None:
    share = tmp_path / "share"
    other = tmp_path / "other"
    original = photo(share / "original.jpg", 40)
    other.mkdir()
    with watching([share, other], db) as (rec, store):
        share.rename(tmp_path / "offline")
        wait_for(lambda: any("is gone" in e.message for e in rec.of(K.WARNING)), what="the gone warning")
        assert store.get_file(str(original)) is not None  # an offline share keeps its entries
        still = photo(other / "still.jpg", 41)
        wait_for(lambda: store.get_file(str(still)) is not None, what="the other folder still watched")
        shutil.copyfile(tmp_path / "offline" / "original.jpg", tmp_path / "offline" / "while-away.jpg")
        (tmp_path / "offline").rename(share)
        wait_for(lambda: any("again" in e.message for e in rec.of(K.WARNING)), what="the back warning")
        wait_for(lambda: rec.of(K.DUPLICATE), what="the reconciliation scan's report")
        assert [(e.path, e.other) for e in rec.of(K.DUPLICATE)] == [(str(share / "while-away.jpg"), str(original))]
        live = photo(share / "live-again.jpg", 42)
        wait_for(lambda: store.get_file(str(live)) is not None, what="live events again")


def test_dead_observer_is_restarted_and_catches_up(root: Path, db: Path) -> None:
    created: list[BaseObserver] = []

    def factory(polling: bool, interval: float) -> BaseObserver:
        observer = default_observer(polling, interval)
        created.append(observer)
        return observer

    with watching([root], db, factory=factory) as (rec, store):
        created[0].stop()  # the observer thread ends behind the watcher's back
        missed = photo(root / "missed.jpg", 43)
        wait_for(lambda: any("restarting" in e.message for e in rec.of(K.WARNING)), what="the restart warning")
        wait_for(lambda: store.get_file(str(missed)) is not None, what="the file made while it was down")
        assert len(created) == 2
        after = photo(root / "after.jpg", 44)
        wait_for(lambda: store.get_file(str(after)) is not None, what="live events again")


def test_inotify_watch_limit_falls_back_to_polling(root: Path, db: Path) -> None:
    """An inotify limit makes the folder polled, and the ready line says polling."""

    # The kernel limit itself cannot be lowered here without changing the whole machine; this observer refuses
    # to start the way watchdog's inotify observer does when inotify_add_watch fails with ENOSPC.
    class FullObserver(PollingObserver):
        def start(self) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    def factory(polling: bool, interval: float) -> BaseObserver:
        return PollingObserver(timeout=0.1) if polling else FullObserver()

    with watching([root], db, factory=factory) as (rec, store):
        [warning] = rec.of(K.WARNING)
        assert "/proc/sys/fs/inotify/max_user_watches" in warning.message and "polling" in warning.message
        [ready] = rec.of(K.READY)
        assert ready.message.endswith("; polling every 5 s"), ready.message  # not "live events"
        new = photo(root / "polled.jpg", 45)
        wait_for(lambda: store.get_file(str(new)) is not None, what="the file seen by polling")


def test_inotify_observer_watches_every_subfolder(root: Path) -> None:
    for sub in ("a", "a/b", "c"):
        (root / sub).mkdir()
    observer = default_observer(False, 1.0)
    observer.schedule(QueueingHandler(), str(root), recursive=True)
    with observer:
        assert unwatched_folders(str(root)) == 0
    shallow = default_observer(False, 1.0)
    shallow.schedule(QueueingHandler(), str(root), recursive=False)  # the root alone: its three folders are not
    with shallow:
        assert unwatched_folders(str(root)) == 3


class ShallowObserver(InotifyObserver):
    """A real inotify observer that watches the root only, as watchdog does past max_user_watches (it skips the
    subfolders whose watch cannot be added and says nothing)."""

    def schedule(
        self,
        event_handler: FileSystemEventHandler,
        path: str | Path,
        *,
        recursive: bool = False,
        event_filter: list[type[FileSystemEvent]] | None = None,
        follow_symlink: bool = False,
    ) -> ObservedWatch:
        return super().schedule(event_handler, path, recursive=False, event_filter=event_filter)


def test_subfolders_inotify_cannot_watch_are_polled(root: Path, db: Path) -> None:
    (root / "sub").mkdir()

    def factory(polling: bool, interval: float) -> BaseObserver:
        return PollingObserver(timeout=0.1) if polling else ShallowObserver()

    with watching([root], db, factory=factory) as (rec, store):
        [warning] = rec.of(K.WARNING)
        assert "/proc/sys/fs/inotify/max_user_watches" in warning.message and "polling" in warning.message
        deep = photo(root / "sub" / "deep.jpg", 46)
        wait_for(lambda: store.get_file(str(deep)) is not None, what="the file in the unwatched subfolder")


# --- the command line and other processes ----------------------------------------------------------------------


def start_dedupe(*args: str, out: Path, err: Path) -> subprocess.Popen[bytes]:
    """`python -m dedupe` in a real subprocess, importing this checkout (as conftest.run_dedupe does)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "dedupe", *args], stdout=stdout, stderr=stderr, env=env)


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_restart_after_sigterm_does_not_report_again(root: Path, db: Path, tmp_path: Path) -> None:
    original = photo(root / "original.jpg", 50)
    args = ("watch", str(root), "--db", str(db), "--settle", str(SETTLE), "--format", "jsonl")
    out1, out2, err = tmp_path / "out1", tmp_path / "out2", tmp_path / "err"
    proc = start_dedupe(*args, out=out1, err=err)
    try:
        wait_for(lambda: any(e["event"] == "ready" for e in json_lines(out1)), timeout=30, what="the first start")
        shutil.copyfile(original, root / "copy1.jpg")
        wait_for(lambda: any(e["event"] == "duplicate" for e in json_lines(out1)), what="the first report")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, err.read_text()
    finally:
        proc.kill()
        proc.wait()
    shutil.copyfile(original, root / "copy2.jpg")  # arrives while nobody watches
    proc = start_dedupe(*args, out=out2, err=err)
    try:
        wait_for(lambda: any(e["event"] == "ready" for e in json_lines(out2)), timeout=30, what="the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, err.read_text()
    finally:
        proc.kill()
        proc.wait()
    first = [(e["path"], e["existing"], e["match"]) for e in json_lines(out1) if e["event"] == "duplicate"]
    second = [(e["path"], e["existing"], e["match"]) for e in json_lines(out2) if e["event"] == "duplicate"]
    assert first == [(str(root / "copy1.jpg"), str(original), "exact")]
    assert second == [(str(root / "copy2.jpg"), str(original), "exact")]


def test_concurrent_scan_on_the_same_store(root: Path, db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    for i in range(12):
        photo(other / f"o{i}.jpg", 60 + i, (480, 360))
    with watching([root], db, WatchOptions(settle=SETTLE, workers=1)) as (rec, store):
        for i in range(12):
            photo(root / f"w{i}.jpg", 80 + i, (480, 360))  # watch is busy writing while the scan runs
        result = run_dedupe("scan", str(other), "--db", str(db), "--format", "json", "-q")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["summary"]["images"] == 12
        wait_for(lambda: len(stored_paths(store, root)) == 12, timeout=30, what="watch's files in the store")
        shutil.copyfile(other / "o3.jpg", root / "from-other.jpg")
        wait_for(lambda: rec.of(K.DUPLICATE), what="a duplicate of a file the scan added")
        assert rec.of(K.DUPLICATE)[0].other == str(other / "o3.jpg")
        assert not rec.of(K.WARNING)


def test_cli_watch_reports_in_text_and_stops_on_sigterm(root: Path, db: Path) -> None:
    original = photo(root / "original.jpg", 70)
    copy = root / "copy.jpg"

    def installed() -> bool:
        return signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)

    def drive() -> None:
        try:
            wait_for(installed, what="the signal handler")
            with Store.open(db, readonly=True) as reader:
                wait_for(lambda: reader.get_file(str(original)) is not None, what="the catch-up scan")
                shutil.copyfile(original, copy)
                # The report follows the store's commit on the watcher's thread, before it looks at stop again.
                wait_for(lambda: reader.get_file(str(copy)) is not None, what="the copy in the store")
        finally:
            if installed():  # stop the command however this went; never signal pytest itself
                os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        result = CliRunner().invoke(cli, ["watch", str(root), "--db", str(db), "--settle", str(SETTLE)])
    finally:
        driver.join(30)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"duplicate: {copy} is the same bytes as {original}\n"
    assert "Watching 1 folder(s)" in result.stderr and "Stopped." in result.stderr
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_cli_usage_errors(root: Path, db: Path) -> None:
    runner = CliRunner()
    bad_quote = runner.invoke(cli, ["watch", str(root), "--db", str(db), "--exec", "notify-send 'unclosed"])
    assert bad_quote.exit_code == 2 and "--exec" in bad_quote.output
    a_file = photo(root / "f.jpg", 71)
    not_a_folder = runner.invoke(cli, ["watch", str(a_file), "--db", str(db)])
    assert not_a_folder.exit_code == 2
    bad_poll = runner.invoke(cli, ["watch", str(root), "--db", str(db), "--poll", "0"])
    assert bad_poll.exit_code == 2
    help_text = runner.invoke(cli, ["watch", "--help"])
    assert help_text.exit_code == 0 and "Example:" in help_text.output


# --- the store and scan pieces that watch relies on ------------------------------------------------------------


def test_store_renames_and_forgets_folders_exactly(tmp_path: Path, store: Store) -> None:
    odd = os.fsdecode(b"caf\xe9.jpg")  # a name that is not valid UTF-8
    st = photo(tmp_path / "x.jpg", 90).stat()
    for path in ("/p/a/1.jpg", f"/p/a/sub/{odd}", "/p/ab/2.jpg", "/p/a.jpg", "/p/b/old.jpg"):
        store.put_file(path, st, "h")
    assert store.rename_folder("/p/a", "/p/b") == 2
    assert {r.path for r in store.files_under(["/p"])} == {"/p/b/1.jpg", f"/p/b/sub/{odd}", "/p/ab/2.jpg", "/p/a.jpg"}
    assert store.rename_file("/p/a.jpg", "/p/ab/2.jpg") and not store.rename_file("/p/none.jpg", "/p/x.jpg")
    assert {r.path for r in store.files_under(["/p"])} == {"/p/b/1.jpg", f"/p/b/sub/{odd}", "/p/ab/2.jpg"}
    assert store.forget_folder("/p/b") == 2
    assert [r.path for r in store.files_under(["/p"])] == ["/p/ab/2.jpg"]
    assert [f.path for f in store.files_with_content(["h", "other"])] == ["/p/ab/2.jpg"]


def test_fingerprint_files_says_what_is_new(tmp_path: Path, store: Store) -> None:
    from dedupe.scan import fingerprint_files

    a = photo(tmp_path / "a.jpg", 91)
    first = fingerprint_files([(str(a), a.stat())], store)
    assert first.added == (str(a),) and first.fingerprinted == 1
    assert fingerprint_files([(str(a), a.stat())], store).added == ()  # unchanged: nothing new
    b = tmp_path / "b.jpg"
    a.rename(b)
    moved = fingerprint_files([(str(b), b.stat())], store)
    assert moved.added == () and moved.reused == 1  # a rename is recognised by its inode, not read
    c = tmp_path / "c.jpg"
    shutil.copyfile(b, c)
    copied = fingerprint_files([(str(c), c.stat())], store)
    assert copied.added == (str(c),) and copied.fingerprinted == 0  # a copy is new at its path, not a new image


def test_quarantine_moves_the_incoming_duplicate_and_undo_puts_it_back(root: Path, db: Path, tmp_path: Path) -> None:
    from dedupe import scan, undo

    library = tmp_path / "library"
    original = photo(library / "original.jpg", 40, (640, 480))
    original_bytes = original.read_bytes()
    with Store.open(db) as store:
        scan([library], store)
    quarantine = tmp_path / "quarantine"
    with watching([root, library], db, WatchOptions(settle=SETTLE, quarantine=str(quarantine))) as (rec, store):
        copy = root / "sub" / "copy.jpg"
        copy.parent.mkdir()
        sidecar = root / "sub" / "copy.xmp"
        sidecar.write_text("<x:xmpmeta/>")  # its sidecar goes along
        shutil.copyfile(original, copy)
        wait_for(lambda: rec.of(K.QUARANTINED), timeout=10, what="the quarantine")
        (moved,) = rec.of(K.QUARANTINED)
        assert moved.path == str(copy) and moved.other == str(quarantine / "watched" / "sub" / "copy.jpg")
        unrelated = photo(root / "unrelated.jpg", 41)
        wait_for(lambda: store.get_file(str(unrelated)) is not None, what="the unrelated photo")
    assert not copy.exists()
    assert (quarantine / "watched" / "sub" / "copy.jpg").read_bytes() == original_bytes
    assert (quarantine / "watched" / "sub" / "copy.xmp").read_text() == "<x:xmpmeta/>" and not sidecar.exists()
    assert original.read_bytes() == original_bytes and unrelated.exists()  # the older copy is never touched
    with Store.open(db) as store:
        result = undo(store)
    assert result.complete and copy.read_bytes() == original_bytes and sidecar.read_text() == "<x:xmpmeta/>"
    assert not (quarantine / "watched" / "sub" / "copy.jpg").exists()


def test_quarantine_leaves_a_picture_whose_stored_copy_is_a_crop_of_it(root: Path, db: Path, tmp_path: Path) -> None:
    """An incoming picture of which the store holds a crop is reported but not moved aside (it shows more, which a
    review keeps); an incoming crop of a stored picture is."""
    from dedupe import scan

    library = tmp_path / "library"
    whole, other = draw_photo(40, (640, 480)), draw_photo(41, (640, 480))
    save(whole, library / "original.jpg", quality=90)
    stored_crop = save(crop(other, CROP15), library / "cut.jpg", quality=90)
    with Store.open(db) as store:
        scan([library], store)
    quarantine = tmp_path / "quarantine"
    with watching([root, library], db, WatchOptions(settle=SETTLE, quarantine=str(quarantine))) as (rec, store):
        wider = save(other, root / "wider.jpg", quality=95)
        wait_for(lambda: rec.of(K.QUARANTINE_FAILED), what="the wider picture's verdict")
        cut = save(crop(whole, CROP15), root / "cut.jpg", quality=95)
        wait_for(lambda: rec.of(K.QUARANTINED), what="the cut's quarantine")
        settled(rec, root)
        assert [(e.path, e.message) for e in rec.of(K.QUARANTINE_FAILED)] == [
            (str(wider), "shows more than the stored copy (which is a crop of it): kept")
        ]
        assert [e.path for e in rec.of(K.QUARANTINED)] == [str(cut)]
    assert wider.exists() and stored_crop.exists() and not cut.exists()


def test_quarantine_inside_a_watched_folder_is_refused(root: Path, db: Path) -> None:
    result = CliRunner().invoke(cli, ["watch", str(root), "--db", str(db), "--quarantine", str(root / "q")])
    assert result.exit_code == 1 and "must be outside the watched folder" in result.output


def test_cli_watch_names_a_character_an_ascii_stderr_cannot_hold_by_its_unicode_name(
    root: Path, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an ASCII stderr, a skipped file named with an accent is said as caf\\N{...}.jpg, never as caf\\xe9.jpg,
    which is how a name holding the byte 0xE9 (not UTF-8) is shown."""
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")
    out, err = tmp_path / "out", tmp_path / "err"
    proc = start_dedupe("watch", str(root), "--db", str(db), "--settle", str(SETTLE), out=out, err=err)
    try:
        wait_for(lambda: b"Press Ctrl-C" in err.read_bytes(), timeout=30, what="the ready line")
        (root / "caf\u00e9.jpg").write_bytes(b"not a picture")
        (root / os.fsdecode(b"caf\xe9.jpg")).write_bytes(b"not a picture either")
        wait_for(lambda: err.read_bytes().count(b"skipped ") == 2, what="both skipped lines")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, err.read_text()
    finally:
        proc.kill()
        proc.wait()
    said = err.read_bytes().decode("ascii")
    assert f"skipped {root}/caf\\N{{LATIN SMALL LETTER E WITH ACUTE}}.jpg: " in said
    assert f"skipped {root}/caf\\xe9.jpg: " in said
