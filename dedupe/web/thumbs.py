"""Thumbnails for the review page: made on demand in parallel, upright by EXIF, cached on disk beside the store.

A file is read only through a descriptor opened without following a final symbolic link and checked against what
the scan recorded (device, inode, size, mtime): a file replaced, or a symlink swapped in, after the scan is never
read, so the page cannot be made to show anything but the photos of the grouping. The cache is keyed by content
hash (the checked file still holds those bytes) and kept under a size limit, oldest used first out.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

from dedupe import fingerprint
from dedupe.errors import FileSkipped
from dedupe.models import FileRecord

THUMB_SIDE = 480  # long side: two or three side by side at 1280 px, sharp enough on a phone
VIEW_SIDE = 2560  # the full-size view of a format the browser cannot show (HEIC, TIFF, RAW previews)
CACHE_LIMIT = 256 << 20
# Shown by every browser as they are: sent unchanged for the full-size view (EXIF orientation applied by the browser).
BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_BACKGROUND = (128, 128, 128)


def open_checked(f: FileRecord) -> int | None:
    """A read descriptor of the file the scan saw at f.path, or None when it is no longer that regular file."""
    try:
        return open_or_say(f)
    except FileSkipped:
        return None


def open_or_say(f: FileRecord) -> int:
    """open_checked, raising FileSkipped with the reason when the file is gone or not the one the scan saw."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(f.path, flags)
    except FileNotFoundError:
        raise FileSkipped("vanished since the scan") from None
    except OSError as e:
        raise FileSkipped(f"cannot be read: {e.strerror or e}") from None
    st = os.fstat(fd)
    same = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (f.dev, f.ino, f.size, f.mtime_ns)
    if not stat.S_ISREG(st.st_mode) or not same:
        os.close(fd)
        raise FileSkipped("changed since the scan")
    return fd


def thumbnail_folder(store_path: str | os.PathLike[str]) -> Path:
    """Where the thumbnails of a store are cached: beside it, named after it (the page and the report share it)."""
    return Path(f"{os.fspath(store_path)}-thumbs")


def read_checked(f: FileRecord) -> bytes | None:
    """The bytes of the file the scan saw, or None (see open_checked)."""
    fd = open_checked(f)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as stream:
        return stream.read()


def render(data: bytes, name: str, side: int, quality: int = 82) -> bytes:
    """A JPEG of the picture in data, upright, its long side at most side pixels; raises FileSkipped."""
    try:
        preview = fingerprint.raw_preview(data) if fingerprint.raw_extension(name, data[:64]) else None
        im = preview or fingerprint.open_image(data)
        if preview is None and im.format in ("JPEG", "MPO"):
            im.draft("RGB", (side, side))  # decode at a fraction of the size: several times faster
        im.load()  # first: Pillow's PNG getexif decodes the picture, and a failure there is the picture's
        # A damaged EXIF block costs the orientation, not the thumbnail: a scan reads it as no EXIF, as here
        # (Pillow warns of some damage and raises on the rest, a TIFF header that is not one).
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore")
            im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            im = im.convert("RGBA")
            flat = Image.new("RGBA", im.size, (*_BACKGROUND, 255))
            flat.alpha_composite(im)
            im = flat
        im = im.convert("RGB")
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=quality)
        return out.getvalue()
    except FileSkipped:
        raise
    except Exception as e:  # Pillow's parsers raise many types on hostile input
        raise FileSkipped(f"cannot be decoded: {type(e).__name__}") from None


class Thumbnails:
    """Thumbnails and full-size views of checked files, made by a pool of threads and cached in folder."""

    def __init__(self, folder: Path, limit: int = CACHE_LIMIT, workers: int | None = None) -> None:
        self.folder = folder
        self.limit = limit
        self._pool = ThreadPoolExecutor(workers or os.cpu_count() or 2, thread_name_prefix="dedupe-thumb")
        self._lock = threading.Lock()
        self._running: dict[str, Future[bytes]] = {}
        self._used = -1  # bytes in the cache; counted on first write

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _path(self, f: FileRecord, side: int) -> Path:
        h = f.content_hash
        return self.folder / h[:2] / f"{h}-{side}.jpg"

    def submit(self, f: FileRecord, side: int = THUMB_SIDE) -> Future[bytes]:
        """The thumbnail of f (FileSkipped with the reason when there is none), made once however many ask for it
        at the same time."""
        key = f"{f.path}\0{side}"
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                return running
            job = self._pool.submit(self.make, f, side)
            self._running[key] = job
        job.add_done_callback(lambda _: self._forget(key))
        return job

    def _forget(self, key: str) -> None:
        with self._lock:
            self._running.pop(key, None)

    async def get(self, f: FileRecord, side: int = THUMB_SIDE) -> bytes | None:
        """The thumbnail, or None when the file changed since the scan or cannot be decoded."""
        try:
            data = await asyncio.wrap_future(self.submit(f, side))
        except FileSkipped:
            return None
        # A job already running (a prefetch) may have read the file before it was replaced: check it again.
        fd = open_checked(f)
        if fd is None:
            return None
        os.close(fd)
        return data

    def prefetch(self, files: Iterable[FileRecord]) -> None:
        for f in files:
            self.submit(f)

    def make(self, f: FileRecord, side: int = THUMB_SIDE) -> bytes:
        """The thumbnail from the cache, or made from the checked file; FileSkipped says why there is none."""
        cached = self._path(f, side)
        fd = open_or_say(f)  # also for a cached one: a file gone or replaced since the scan is not shown
        try:
            with contextlib.suppress(OSError):
                data = cached.read_bytes()
                os.utime(cached)  # the cache drops the least recently used first
                return data
            larger = self._path(f, THUMB_SIDE)
            source, name = None, f.path
            if side < THUMB_SIDE:  # the report's small ones come from the page's, upright already: no photo decode
                with contextlib.suppress(OSError):
                    source, name = larger.read_bytes(), "thumbnail.jpg"
            if source is None:
                with os.fdopen(os.dup(fd), "rb") as stream:
                    source = stream.read()
        finally:
            os.close(fd)
        data = render(source, name, side)
        self._store(cached, data)
        return data

    def _store(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError:
            return  # a read-only or full disk costs the cache, not the page
        with self._lock:
            if self._used < 0:
                self._used = sum(size for _, size, _ in self._entries())
            else:
                self._used += len(data)
            if self._used <= self.limit:
                return
            self._used = self._prune()

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for sub in self.folder.iterdir() if self.folder.is_dir() else ():
            for p in sub.iterdir() if sub.is_dir() else ():
                with contextlib.suppress(OSError):
                    st = p.stat()
                    out.append((st.st_mtime, st.st_size, p))
        return out

    def _prune(self) -> int:
        """Drop the least recently used thumbnails until the cache is at most three quarters of its limit."""
        entries = sorted(self._entries(), key=lambda e: e[0])
        used = sum(size for _, size, _ in entries)
        for _, size, p in entries:
            if used <= self.limit * 3 // 4:
                break
            with contextlib.suppress(OSError):
                p.unlink()
                used -= size
        return used
