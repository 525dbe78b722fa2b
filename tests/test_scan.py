from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dedupe import stat_cache
from dedupe.errors import DedupeError, FileSkipped
from dedupe.group import stored_groups
from dedupe.match import MatchRule
from dedupe.models import VERSION, MatchKind, ScanOptions
from dedupe.scan import JOBS_PER_CORE, _context, fingerprint_files, max_jobs, scan, workers_for
from dedupe.store import Store
from tests.conftest import REPO, draw_photo, save


def group_paths(store: Store, roots: list[Path], threshold: int = 8) -> list[list[str]]:
    groups, _, _ = stored_groups(store, [str(r) for r in roots], MatchRule(threshold))
    return [sorted(Path(m.file.path).name for m in g.members) for g in groups]


def test_scan_finds_exact_and_near_groups_and_skips_bad_files(photo_dir: Path, store: Store) -> None:
    report = scan([photo_dir], store)
    assert report.images == 7
    assert [s.path for s in report.skipped] == [str(photo_dir / "notes.jpg")]
    assert "not an image" in report.skipped[0].reason
    groups, _, _ = stored_groups(store, [str(photo_dir)])
    kinds = {Path(g.reference.file.path).name: g.kind for g in groups}
    assert kinds == {"original0.jpg": MatchKind.EXACT, "original1.jpg": MatchKind.NEAR, "original2.jpg": MatchKind.NEAR}
    assert group_paths(store, [photo_dir]) == [
        ["original0.jpg", "original0.jpg"],
        ["original1.jpg", "small1.png"],
        ["original2.jpg", "recompressed2.jpg"],
    ]


def test_rescan_does_not_read_unchanged_files(photo_dir: Path, store: Store) -> None:
    scan([photo_dir], store)
    report = scan([photo_dir], store)
    assert report.fingerprinted == 0
    assert report.reused == 7
    assert report.skipped[0].path.endswith("notes.jpg")  # bad files are reported again, without reading


def test_a_same_size_rewrite_with_its_mtime_put_back_is_read_again(photo_dir: Path, store: Store) -> None:
    """A file rewritten in place with the same size and its mtime put back is a changed file: its ctime moved,
    so the re-scan reads it and no stale "same bytes" group is left."""
    scan([photo_dir], store)
    target = photo_dir / "backup" / "original0.jpg"  # an exact copy of original0.jpg
    before = target.stat()
    data = target.read_bytes()
    other_bytes = save(draw_photo(99, (1200, 900)), photo_dir.parent / "other.jpg", quality=92).read_bytes()
    target.write_bytes((other_bytes + data)[: len(data)])
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    report = scan([photo_dir], store)
    assert report.reused == 6
    stored = store.get_file(str(target))
    original = store.get_file(str(photo_dir / "original0.jpg"))
    assert stored is not None and original is not None and stored.content_hash != original.content_hash
    assert ["original0.jpg", "original0.jpg"] not in group_paths(store, [photo_dir], threshold=0)


def test_a_no_change_rescan_writes_nothing_to_the_store(photo_dir: Path, store: Store) -> None:
    """A re-scan that finds every file as it was writes no row (a write would also replace the change tokens, and
    with them the copies beside the store); it keeps the stored stat keys beside the store for the next one."""
    scan([photo_dir], store)
    second = scan([photo_dir], store)  # the stored stat keys read from the store
    assert stat_cache.cache_path(store).exists()
    tokens, writes = store.stat_token(), store._conn.total_changes
    assert scan([photo_dir], store) == second  # from the copy: the same report
    assert (second.fingerprinted, second.reused, second.pruned, second.images) == (0, 7, 0, 7)
    assert store._conn.total_changes == writes and store.stat_token() == tokens


def test_a_few_new_files_are_looked_up_among_the_stored_fingerprints(photo_dir: Path, store: Store) -> None:
    """A few files (what dedupe watch reads at a time) are checked against the stored fingerprints one hash at a
    time, with the same outcome as against the whole set: a byte copy of a stored photo and the second of two new
    byte copies are only hashed, a new photo is fingerprinted once."""
    scan([photo_dir], store)
    images = len(store.known_hashes(VERSION))
    incoming = photo_dir.parent / "incoming"
    incoming.mkdir()
    shutil.copy(photo_dir / "original1.jpg", incoming / "again.jpg")
    fresh = save(draw_photo(77, (900, 700)), incoming / "fresh.jpg", quality=90)
    shutil.copy(fresh, incoming / "fresh copy.jpg")
    files = [(str(p), p.stat()) for p in sorted(incoming.iterdir())]
    report = fingerprint_files(files, store, workers=1)
    assert (report.fingerprinted, report.reused, report.skipped) == (1, 2, ())
    assert len(store.known_hashes(VERSION)) == images + 1
    hashes = {Path(p).name: row.content_hash for p, _ in files if (row := store.get_file(p)) is not None}
    assert len(hashes) == 3 and hashes["fresh.jpg"] == hashes["fresh copy.jpg"]


def test_a_rewrite_after_a_no_change_rescan_is_read_again(photo_dir: Path, store: Store) -> None:
    """With the stored stat keys kept beside the store, a same-size rewrite with its mtime put back is still read
    again: its new ctime is compared with the stored one."""
    scan([photo_dir], store)
    scan([photo_dir], store)
    target = photo_dir / "backup" / "original0.jpg"
    before = target.stat()
    data = target.read_bytes()
    other_bytes = save(draw_photo(98, (1200, 900)), photo_dir.parent / "other.jpg", quality=92).read_bytes()
    target.write_bytes((other_bytes + data)[: len(data)])
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = scan([photo_dir], store)
    assert report.reused == 6
    stored, original = store.get_file(str(target)), store.get_file(str(photo_dir / "original0.jpg"))
    assert stored is not None and original is not None and stored.content_hash != original.content_hash


def test_a_store_from_before_ctimes_fills_them_in_without_reading(photo_dir: Path, store: Store) -> None:
    """Rows stored before ctimes were kept (NULL) are judged without one and get theirs on the next scan."""
    scan([photo_dir], store)
    with store.transaction():
        store._conn.execute("UPDATE files SET ctime_ns = NULL")
    assert scan([photo_dir], store).fingerprinted == 0
    row = store.get_file(str(photo_dir / "original0.jpg"))
    assert row is not None and row.ctime_ns == (photo_dir / "original0.jpg").stat().st_ctime_ns


def test_moved_and_copied_files_are_not_decoded_again(photo_dir: Path, store: Store) -> None:
    scan([photo_dir], store)
    (photo_dir / "moved").mkdir()
    (photo_dir / "original3.jpg").rename(photo_dir / "moved" / "renamed3.jpg")
    shutil.copyfile(photo_dir / "original2.jpg", photo_dir / "moved" / "copy2.jpg")
    report = scan([photo_dir], store)
    assert report.fingerprinted == 0
    assert report.pruned == 1
    paths = {Path(r.path).name for r in store.records_under([str(photo_dir)])}
    assert "renamed3.jpg" in paths and "copy2.jpg" in paths and "original3.jpg" not in paths


def test_vanished_files_are_pruned_only_below_the_scanned_roots(tmp_path: Path, store: Store) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    save(draw_photo(1), a / "1.jpg")
    save(draw_photo(2), b / "2.jpg")
    scan([a, b], store)
    (a / "1.jpg").unlink()
    shutil.rmtree(b)
    b.mkdir()  # b still exists, a is scanned: only a's entries may go
    report = scan([a], store)
    assert report.pruned == 1
    assert [Path(r.path).name for r in store.records_under([str(b)])] == ["2.jpg"]


def test_same_folder_twice_or_nested_never_makes_a_file_its_own_duplicate(photo_dir: Path, store: Store) -> None:
    report = scan([photo_dir, photo_dir, photo_dir / "backup", Path(str(photo_dir) + "/.")], store)
    assert report.roots == (str(photo_dir),)
    for g in stored_groups(store, [str(photo_dir)])[0]:
        assert len({m.file.path for m in g.members}) == len(g.members)
        assert len({(m.file.dev, m.file.ino) for m in g.members}) == len(g.members)


def test_hardlinks_and_symlinks_are_not_duplicates(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "r"
    save(draw_photo(1), root / "a.jpg")
    os.link(root / "a.jpg", root / "hard.jpg")
    (root / "link.jpg").symlink_to(root / "a.jpg")
    (root / "loop").symlink_to(root)
    report = scan([root], store)
    assert stored_groups(store, [str(root)])[0] == []
    assert report.images == 2  # the hardlink's two names, one file; the symlink not followed
    report = scan([root], store, ScanOptions(follow_symlinks=True))
    assert stored_groups(store, [str(root)])[0] == []  # symlink and loop: still one file


def test_options_hidden_exclude_min_size(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "r"
    save(draw_photo(1), root / "a.jpg")
    save(draw_photo(1), root / ".hidden" / "a.jpg")
    save(draw_photo(1), root / ".b.jpg")
    save(draw_photo(1), root / "skip" / "a.jpg")
    save(draw_photo(1, (40, 30)), root / "tiny.jpg")

    def names() -> list[str]:
        return sorted(os.path.relpath(r.path, root) for r in store.records_under([str(root)]))

    scan([root], store, ScanOptions(exclude=("skip",), min_size=2000))
    assert names() == ["a.jpg"]
    scan([root], store, ScanOptions(hidden=True, exclude=("skip/*", ".hidden")))
    assert names() == [".b.jpg", "a.jpg", "tiny.jpg"]


def test_store_files_inside_the_scanned_folder_are_never_fingerprinted(tmp_path: Path) -> None:
    root = tmp_path / "r"
    save(draw_photo(1), root / "a.jpg")
    with Store.open(root / "store.jpg") as store:  # named like a photo on purpose
        for _ in range(3):  # the second leaves the stored stat keys beside the store
            report = scan([root], store)
            assert report.images == 1 and report.skipped == () and report.ignored == 0


def test_the_thumbnails_of_a_store_inside_the_scanned_folder_are_not_scanned(tmp_path: Path) -> None:
    """The review page's thumbnail folder beside a store (STORE-thumbs) holds small copies of the photos: a scan
    of a folder that holds the store does not enter it, so the thumbnails never group with their photos."""
    root = tmp_path / "r"
    photo = save(draw_photo(1), root / "a.jpg")
    with Store.open(root / "store.sqlite") as store:
        thumb = root / "store.sqlite-thumbs" / "ab" / "ab12-480.jpg"
        thumb.parent.mkdir(parents=True)
        Image.open(photo).resize((240, 180)).save(thumb)
        report = scan([root], store)
        assert report.images == 1 and report.ignored == 0
        assert [f.path for f in store.files_under([str(root)])] == [str(photo)]


def test_undecodable_names_special_files_and_bombs(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "r"
    root.mkdir()
    raw = os.fsencode(str(root)) + b"/caf\xe9-\xff.jpg"
    save(draw_photo(3), Path(os.fsdecode(raw)))
    os.mkfifo(root / "pipe.jpg")  # opening it would block forever
    from tests.test_fingerprint import _png_with_size

    (root / "bomb.png").write_bytes(_png_with_size(30000, 30000))
    (root / "empty.jpg").write_bytes(b"")
    report = scan([root], store)
    (rec,) = store.records_under([str(root)])
    assert os.fsencode(rec.path) == raw
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert "not a regular file" in reasons["pipe.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert reasons["empty.jpg"] == "empty file"


def test_a_file_dated_beyond_the_stores_range_is_skipped_and_the_scan_goes_on(tmp_path: Path) -> None:
    """A file whose time stamp lies after 2262 (past SQLite's 64-bit integers) is skipped with one line, and the
    rest of the folder is scanned, through the library and the command line."""
    root = tmp_path / "r"
    save(draw_photo(1), root / "a.jpg")
    shutil.copyfile(root / "a.jpg", root / "b.jpg")
    far = save(draw_photo(2), root / "far.jpg")
    os.utime(far, ns=(1 << 63, 1 << 63))  # about the year 2262
    with Store.open(tmp_path / "s.sqlite") as store:
        report = scan([root], store)
        assert [(Path(s.path).name, s.reason) for s in report.skipped] == [("far.jpg", stat_cache.OUT_OF_RANGE)]
        assert sorted(Path(r.path).name for r in store.records_under([str(root)])) == ["a.jpg", "b.jpg"]
        groups, _, _ = stored_groups(store, [str(root)])
        assert [sorted(Path(m.file.path).name for m in g.members) for g in groups] == [["a.jpg", "b.jpg"]]
    done = subprocess.run(
        [sys.executable, "-m", "dedupe", "scan", str(root), "--db", str(tmp_path / "cli.sqlite"), "-q"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{far}: {stat_cache.OUT_OF_RANGE}" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def test_parallel_and_serial_scans_agree(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for i in range(12):
        save(draw_photo(i % 6, (600, 450)), root / f"{i}.jpg", quality=70 + i)
    answers = []
    for workers in (1, 2):
        with Store.open(tmp_path / f"{workers}.sqlite") as store:
            report = scan([root], store, ScanOptions(workers=workers))
            assert report.fingerprinted == 12
            answers.append(group_paths(store, [root]))
    assert answers[0] == answers[1]
    assert len(answers[0]) == 6


def test_byte_copies_in_one_scan_are_decoded_once_on_every_start_method(tmp_path: Path) -> None:
    import threading

    from PIL import Image

    root = tmp_path / "r"
    for i in range(4):
        save(draw_photo(i, (600, 450)), root / "a" / f"{i}.jpg", quality=80)
        for copy in ("b", "c"):
            (root / copy).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / "a" / f"{i}.jpg", root / copy / f"{i}.jpg")
    # Pictures of one size in bytes but different in content: every one of them is fingerprinted.
    for i in range(6):
        Image.new("RGB", (64, 48), (40 * i, 255 - 40 * i, 90)).save(root / f"flat{i}.bmp")
    answers = []
    release = threading.Event()
    other = threading.Thread(target=release.wait, args=(30,), daemon=True)
    for name, thread in (("fork", None), ("server", other)):
        if thread is not None:  # another thread alive: workers must not be forked from this process
            thread.start()
        forked = _context().get_start_method() == "fork"
        assert forked == (thread is None and sys.platform == "linux")
        with Store.open(tmp_path / f"{name}.sqlite") as store:
            report = scan([root], store, ScanOptions(workers=2))
            assert report.fingerprinted == 4 + 6 and report.reused == 8, name
            assert {len(g.members) for g in stored_groups(store, [root])[0]} >= {3}
            answers.append(group_paths(store, [root]))
            assert len(store.records_under([str(root)])) == 18
    release.set()
    other.join()
    assert answers[0] == answers[1]


def _retagged_copies(root: Path, count: int, formats: tuple[str, ...] = ("jpg",)) -> None:
    """count photos in each format, each saved twice with the same image data and other dates (a and b)."""
    from PIL import Image

    for i in range(count):
        for name, date in (("a", "2020:01:01 10:00:00"), ("b", "2023:06:07 08:09:10")):
            exif = Image.Exif()
            exif.get_ifd(0x8769)[36867] = date
            for suffix in formats:
                params = {"quality": 80} if suffix == "jpg" else {}
                save(
                    draw_photo(i + 10 * len(suffix), (600, 450)),
                    root / f"{i}-{name}.{suffix}",
                    exif=exif.tobytes(),
                    **params,
                )


@pytest.mark.skipif(sys.platform != "linux", reason="counts decodings in forked workers")
@pytest.mark.parametrize("workers", [1, 2])
def test_metadata_copies_in_one_scan_are_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """Files with the same image data and other metadata are decoded once per scan, on one worker or several;
    each is stored with the fingerprint that decoding it alone gives (its own date)."""
    from dedupe import fingerprint

    root = tmp_path / "r"
    _retagged_copies(root, 3, ("jpg", "png", "webp"))
    decodings = tmp_path / "decodings"
    perceptual = fingerprint._perceptual

    def counted(work: object) -> fingerprint.Perceptual:
        with decodings.open("a") as f:  # from forked workers too
            f.write("x")
        return perceptual(work)  # type: ignore[arg-type]

    monkeypatch.setattr(fingerprint, "_perceptual", counted)
    with Store.open(tmp_path / "s.sqlite") as store:
        report = scan([root], store, ScanOptions(workers=workers))
        assert report.fingerprinted == 18 and not report.skipped
        assert decodings.read_text() == "x" * 9
        monkeypatch.setattr(fingerprint, "_perceptual", perceptual)
        for path in sorted(root.iterdir()):
            stored = store.get_file(str(path))
            assert stored is not None and stored.content_hash is not None
            assert store.get_fingerprint(stored.content_hash, VERSION) == fingerprint.fingerprint_file(path)


@pytest.mark.skipif(sys.platform != "linux", reason="fails a decoding in forked workers")
def test_a_metadata_copy_is_decoded_after_all_when_its_twins_decoding_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the file decoded for a picture fails after claiming it, its metadata copy, which lost the claim, is
    decoded on its own."""
    from dedupe import fingerprint

    root = tmp_path / "r"
    _retagged_copies(root, 4)  # 8 files: a pool of workers
    claimed, lost = tmp_path / "claimed", tmp_path / "lost"
    unless_claimed = fingerprint.fingerprint_unless_claimed

    def failing_0a(
        data: bytes, content_hash: str, *, name: object = None, claim: Callable[[str], bool] | None = None
    ) -> object:
        def a_claims_first(key: str) -> bool:
            assert claim is not None
            if Path(str(name)).name == "0-a.jpg":
                assert claim(key)
                claimed.touch()
                raise FileSkipped("corrupt image: failed on purpose")
            if Path(str(name)).name == "0-b.jpg":
                for _ in range(1000):  # 0-b claims after 0-a
                    if claimed.exists():
                        break
                    time.sleep(0.01)
                won = claim(key)
                if not won:
                    lost.touch()
                return won
            return claim(key)

        checked = None if claim is None else a_claims_first
        return unless_claimed(data, content_hash, name=name, claim=checked)  # type: ignore[arg-type]

    monkeypatch.setattr(fingerprint, "fingerprint_unless_claimed", failing_0a)
    with Store.open(tmp_path / "s.sqlite") as store:
        report = scan([root], store, ScanOptions(workers=2))
        assert [(Path(s.path).name, s.reason) for s in report.skipped] == [
            ("0-a.jpg", "corrupt image: failed on purpose")
        ]
        assert lost.exists() and report.fingerprinted == 7
        monkeypatch.setattr(fingerprint, "fingerprint_unless_claimed", unless_claimed)
        stored = store.get_file(str(root / "0-b.jpg"))
        assert stored is not None and stored.content_hash is not None
        assert store.get_fingerprint(stored.content_hash, VERSION) == fingerprint.fingerprint_file(root / "0-b.jpg")


def test_a_scan_on_workers_needs_no_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan on several workers fingerprints every file when no temporary folder can be made (TMPDIR and the
    usual places read-only or full): each picture is then decoded on its own."""
    from dedupe import fingerprint

    root = tmp_path / "r"
    _retagged_copies(root, 4)  # 8 files: a pool of workers
    not_a_folder = tmp_path / "tmp"
    not_a_folder.write_bytes(b"")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    with Store.open(tmp_path / "s.sqlite") as store:
        report = scan([root], store, ScanOptions(workers=2))
        assert report.fingerprinted == 8 and not report.skipped
        for path in sorted(root.iterdir()):
            stored = store.get_file(str(path))
            assert stored is not None and stored.content_hash is not None
            assert store.get_fingerprint(stored.content_hash, VERSION) == fingerprint.fingerprint_file(path)


def _claims(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("dedupe-claims-"))


@pytest.mark.skipif(sys.platform != "linux", reason="a claims folder names its process through /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_the_claims_folder_of_a_killed_scan_is_removed_by_the_next_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    """A scan killed while its workers run (no clean-up of its own) leaves its claims folder; the next scan that
    starts workers removes it, and its own."""
    root = tmp_path / "many"
    for i in range(16):
        save(draw_photo(i, (1600, 1200)), root / f"{i:03d}.png")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dedupe", "scan", str(root), "--db", str(tmp_path / "s.sqlite"), "-q", "-j", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _claims(temp) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = _children(proc.pid)
        proc.send_signal(sig)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    left = _claims(temp)
    assert len(left) == 1, "the scan had no pool running when it was killed"
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.02)  # its workers die with it (PR_SET_PDEATHSIG); none may claim a picture any more
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    copies = tmp_path / "copies"
    _retagged_copies(copies, 4)  # 8 files: a pool of workers
    with Store.open(tmp_path / "other.sqlite") as store:
        assert scan([copies], store, ScanOptions(workers=2)).fingerprinted == 8
    assert _claims(temp) == []


@pytest.mark.skipif(sys.platform != "linux", reason="a claims folder names its process through /proc")
def test_a_claims_folder_is_removed_only_when_its_scan_is_provably_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of the folders named like claims folders, a pool removes only those of this user, this boot and these pid
    and time namespaces whose process is gone or whose pid now runs a newer process, and in them only empty
    files: a live scan's folder, another machine's or container's, an older dedupe's, a link and whatever holds
    other files are left as they are."""
    from dedupe.scan import _claims_folder, _claims_owner, _start_time

    owner = _claims_owner()
    assert owner is not None
    boot, namespace, _, _ = owner.split("-")
    pid_namespace, time_namespace = namespace.split(".")
    temp = tmp_path / "tmp"
    temp.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    try:
        started = _start_time(live.pid)
        assert started is not None

        def folder(name: str, *files: str) -> Path:
            made = temp / f"dedupe-claims-{name}"
            made.mkdir()
            for f in files:
                (made / f).touch()
            return made

        folder(f"{boot}-{namespace}-{live.pid}-{started}-live0001", "k1")
        folder(f"{boot}-{namespace}-{live.pid}-{started + 1}-reused01", "k1", "k2")  # its pid, a newer process
        folder(f"{boot}-{namespace}-{ended.pid}-1-ended001", "k1")  # its process is gone
        folder(f"{'0' * 32}-{namespace}-{live.pid}-{started + 1}-boot0001", "k1")
        folder(f"{boot}-1.{time_namespace}-{live.pid}-{started + 1}-ns000001", "k1")
        folder(f"{boot}-{pid_namespace}.1-{live.pid}-{started + 1}-time0001", "k1")  # start times read otherwise
        folder(f"{boot}-{pid_namespace}-{ended.pid}-1-older001", "k1")  # named by a dedupe before the time one
        folder("old00001", "k1")
        kept = folder(f"{boot}-{namespace}-{live.pid}-{started + 1}-full0001", "k1")
        (kept / "k2").write_bytes(b"x")
        target = folder("target", "k1")
        (temp / f"dedupe-claims-{boot}-{namespace}-{live.pid}-{started + 1}-link0001").symlink_to(target)
        (temp / f"dedupe-claims-{boot}-{namespace}-{live.pid}-{started + 1}-file0001").touch()
        monkeypatch.setattr(tempfile, "tempdir", str(temp))
        with _claims_folder() as mine:
            assert Path(mine).is_dir()
            (Path(mine) / "k1").touch()
            with _claims_folder() as second:  # a second pool of this process leaves the first one's claims
                assert (Path(mine) / "k1").exists() and second != mine
        assert _claims(temp) == sorted(
            f"dedupe-claims-{name}"
            for name in (
                f"{boot}-{namespace}-{live.pid}-{started}-live0001",
                f"{'0' * 32}-{namespace}-{live.pid}-{started + 1}-boot0001",
                f"{boot}-1.{time_namespace}-{live.pid}-{started + 1}-ns000001",
                f"{boot}-{pid_namespace}.1-{live.pid}-{started + 1}-time0001",
                f"{boot}-{pid_namespace}-{ended.pid}-1-older001",
                "old00001",
                f"{boot}-{namespace}-{live.pid}-{started + 1}-full0001",
                "target",
                f"{boot}-{namespace}-{live.pid}-{started + 1}-link0001",
                f"{boot}-{namespace}-{live.pid}-{started + 1}-file0001",
            )
        )
        assert sorted(p.name for p in kept.iterdir()) == ["k1", "k2"]
        assert sorted(p.name for p in target.iterdir()) == ["k1"]
    finally:
        live.kill()
        live.communicate()


@pytest.mark.skipif(sys.platform != "linux", reason="a claims folder names its process through /proc")
def test_a_process_whose_proc_shows_another_pid_namespace_names_no_claims_folder() -> None:
    """In a pid namespace without a /proc of its own, /proc/PID is another process than the pid PID of this
    namespace: its start time tells nothing of this process's, so no claims folder is named by it (and none
    judged stale by it, which would remove a running scan's)."""
    code = "import importlib; print(importlib.import_module('dedupe.scan')._claims_owner())"
    command = ["unshare", "--user", "--map-root-user", "--pid", "--fork", sys.executable, "-c", code]
    try:
        inside = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if inside.returncode != 0 and "unshare" in inside.stderr:
        pytest.skip(f"no user and pid namespaces here: {inside.stderr.strip()}")
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() == "None"


@pytest.mark.skipif(sys.platform != "linux", reason="a claims folder names its process through /proc")
def test_the_claims_folder_of_a_scan_in_another_time_namespace_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan running in a time namespace with a boot-time offset (CRIU, some containers) reads every process's
    start time shifted by it, in /proc of the same pid namespace: its claims folder is left while it runs, by a
    scan outside that namespace, and it leaves theirs."""
    from dedupe.scan import _claims_folder

    temp = tmp_path / "tmp"
    temp.mkdir()
    code = (
        "import importlib, sys\n"
        "scan = importlib.import_module('dedupe.scan')\n"
        "with scan._claims_folder() as folder:\n"
        "    print(folder, flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    command = ["unshare", "--user", "--map-root-user", "--time", "--boottime", "1000", "--fork"]
    try:
        inside = subprocess.Popen(
            [*command, sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp)},
        )
    except FileNotFoundError:
        pytest.skip("no unshare here")
    assert inside.stdin is not None and inside.stdout is not None
    try:
        theirs = inside.stdout.readline().strip()
        if not theirs:
            pytest.skip(f"no user and time namespaces here: {inside.communicate()[1].strip()}")
        monkeypatch.setattr(tempfile, "tempdir", str(temp))
        with _claims_folder() as mine:
            assert Path(mine).is_dir()
        assert Path(theirs).is_dir()
    finally:
        inside.communicate("\n")
    assert inside.returncode == 0


def test_a_missing_folder_is_an_error(tmp_path: Path, store: Store) -> None:
    with pytest.raises(DedupeError, match="no such file or folder"):
        scan([tmp_path / "nope"], store)


def test_a_killed_scan_leaves_a_valid_store_and_the_next_scan_continues(tmp_path: Path) -> None:
    """A scan killed after its first commit leaves a sound store, and the next scan reuses what was committed.
    The pictures are noise, whose JPEG decoding is slow, so that the scan lasts well past its first commit
    (scan._COMMIT_EVERY): drawn photos of this size were all read in about a second, before any commit."""
    root = tmp_path / "many"
    root.mkdir()
    rng = np.random.default_rng(7)
    for i in range(160):
        Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(root / f"{i:03d}.jpg", quality=90)
    db = tmp_path / "store.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dedupe", "scan", str(root), "--db", str(db), "-q", "-j", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        committed = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=1) as conn:
                        committed = conn.execute("SELECT count(*) FROM files").fetchone()[0]
                except sqlite3.Error:
                    committed = 0
                if committed:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Store.open(db) as store:
        report = scan([root], store)
    assert report.images == 160
    assert report.reused >= committed > 0
    assert report.fingerprinted == 160 - report.reused


def test_permission_errors_are_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    """Unreadable files and folders. Root reads everything, so as root the scan runs as `nobody`."""
    as_root = os.geteuid() == 0
    if as_root and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
    base = Path(tempfile.mkdtemp(prefix="dedupe-perm-")) if as_root else tmp_path
    try:
        base.chmod(0o777)
        root = base / "r"
        save(draw_photo(1), root / "ok.jpg")
        save(draw_photo(2), root / "secret.jpg").chmod(0o000)
        save(draw_photo(3), root / "locked" / "inside.jpg")
        (root / "locked").chmod(0o000)
        root.chmod(0o777)
        (root / "ok.jpg").chmod(0o644)
        db = base / "store.sqlite"
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_root else []
        env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(base)}
        probe = [*prefix, sys.executable, "-c", "import dedupe"]
        if subprocess.run(probe, env=env, capture_output=True, timeout=60, check=False).returncode != 0:
            pytest.skip("the unprivileged user cannot run this checkout's Python (its folders are private)")
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "dedupe", "scan", str(root), "--db", str(db), "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
        assert reasons["secret.jpg"] == "permission denied"
        assert "cannot read folder" in reasons["locked"]
        assert report["summary"]["images"] == 1
    finally:
        if as_root:
            shutil.rmtree(base, ignore_errors=True)
        else:
            (tmp_path / "r" / "locked").chmod(0o755)


def test_workers_are_capped_by_the_files_to_read_and_the_cores() -> None:
    """A scan never starts more workers than files to read, nor more than JOBS_PER_CORE per core."""
    cores = os.cpu_count() or 1
    assert workers_for(100_000, 200) == min(200, max_jobs()) == min(200, JOBS_PER_CORE * cores)
    assert workers_for(64, 3) == 3
    assert workers_for(None, 1000) == cores
    assert workers_for(5, 0) == 1


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(c) for c in text.split()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_scan_workers_exit_when_the_scan_is_killed(tmp_path: Path) -> None:
    """kill -9 of a scan takes its worker processes with it: none is left holding the store open."""
    root = tmp_path / "many"
    for i in range(40):
        save(draw_photo(i, (1600, 1200)), root / f"{i:03d}.png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    db = tmp_path / "store.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dedupe", "scan", str(root), "--db", str(db), "-q", "-j", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 60
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            workers = _children(proc.pid)
            time.sleep(0.02)
        assert len(workers) >= 2, "the scan started no workers"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_whose_scan_died_before_it_started_exits(tmp_path: Path) -> None:
    """A worker is told its scan's pid: when the scan died before the worker could ask the kernel to kill it with
    its parent (the worker already adopted by another process), it exits at once instead of sleeping for ever with
    the store open; a worker whose scan is alive goes on."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    code = "import os, sys; from dedupe.scan import _die_with_parent; _die_with_parent({}); print('on')"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    orphan = subprocess.run([sys.executable, "-c", code.format(gone.stdout.strip())], env=env, capture_output=True)
    assert (orphan.returncode, orphan.stdout) == (1, b"")
    alive = subprocess.run([sys.executable, "-c", code.format(os.getpid())], env=env, capture_output=True)
    assert (alive.returncode, alive.stdout) == (0, b"on\n")


def test_a_changed_ctime_alone_reads_the_bytes_but_decodes_nothing(photo_dir: Path, store: Store) -> None:
    """A chmod moves the ctime only: the re-scan hashes the file again, finds the bytes it knows, and decodes
    nothing; a known failure stays a failure without being decoded again."""
    scan([photo_dir], store)
    (photo_dir / "original0.jpg").chmod(0o600)
    (photo_dir / "notes.jpg").chmod(0o600)
    report = scan([photo_dir], store)
    assert report.fingerprinted == 0 and report.reused == 7
    assert [Path(s.path).name for s in report.skipped] == ["notes.jpg"]
