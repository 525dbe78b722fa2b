"""Moving files without ever overwriting one: the primitives that applying, the trash and undo share.

Paths are plain strings (undecodable bytes kept as surrogate escapes, as in the store) handed to the os-level
calls whose exact semantics matter here (link without following, O_EXCL), so pathlib is not used.
"""
# ruff: noqa: PTH101, PTH108, PTH118, PTH122

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dedupe import fingerprint


class Refused(Exception):
    """An act that did not happen, with the reason shown to the user; the file is as it was."""


def error_text(e: BaseException) -> str:
    """An OS error as a person reads it ("no space left on device"), without errno numbers."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[0].lower() + e.strerror[1:]
    return str(e) or type(e).__name__


class quietly:
    """Ignore an OSError: for clean-up after a failure, which must not hide the failure itself."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, ev: object, tb: object) -> bool:
        return isinstance(ev, OSError)


@contextmanager
def removed_on_failure(path: str) -> Iterator[None]:
    """Remove path when the block fails, then let the failure through: a half-made file never stays."""
    try:
        yield
    except BaseException:
        with quietly():
            os.unlink(path)
        raise


def open_new(path: str) -> int:
    """A file descriptor of a new file at path, private to the user; FileExistsError rather than overwriting."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def free_names(target: str) -> Iterator[str]:
    """The target, then "name (1).ext", "name (2).ext", ... whichever are not taken."""
    base, ext = os.path.splitext(target)
    for n in range(100_000):
        candidate = target if n == 0 else f"{base} ({n}){ext}"
        if not os.path.lexists(candidate):
            yield candidate
    raise Refused(f"no free name for {target}")


def temp_name(path: str) -> str:
    """A free hidden name beside path, for a link or a restored copy that then replaces path atomically."""
    folder, name = os.path.split(path)
    for n in range(1000):
        candidate = os.path.join(folder, f".{name}.dedupe-{os.getpid()}-{n}.tmp")
        if not os.path.lexists(candidate):
            return candidate
    raise Refused("no free temporary name in its folder")


def same_bytes(path: str, content_hash: str) -> bool:
    """Whether path is a regular file holding exactly those bytes."""
    try:
        st = os.lstat(path)
        return stat.S_ISREG(st.st_mode) and fingerprint.hash_file(path) == content_hash
    except OSError:
        return False


def place(src: str, candidates: Iterable[str], expected_hash: str) -> str:
    """Move src to the first free candidate, never overwriting; returns where it went.

    Within a file system the file is hard-linked to its new name and then unlinked (no rename: a rename would
    replace a file that appeared meanwhile). Across file systems it is copied, the copy is read back and
    compared by hash, and only then is the source removed; a copy that fails half-way is removed.
    """
    names = list(candidates)
    for candidate in names:
        try:
            os.link(src, candidate, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                return _copy_then_remove(src, names, expected_hash)
            raise
        try:
            os.unlink(src)
        except OSError:
            with quietly():
                os.unlink(candidate)
            raise
        return candidate
    raise Refused(f"{names[-1]} already exists: not overwritten")


def _copy_then_remove(src: str, candidates: Sequence[str], expected_hash: str) -> str:
    for candidate in candidates:
        try:
            fd = open_new(candidate)
        except FileExistsError:
            continue
        try:
            with removed_on_failure(candidate):
                digest = copy_into(src, fd)
                if digest != expected_hash:
                    raise Refused("the copy does not match the expected bytes; removed the copy, kept the original")
                os.chmod(candidate, stat.S_IMODE(os.lstat(src).st_mode))
                st = os.lstat(src)
                os.utime(candidate, ns=(st.st_atime_ns, st.st_mtime_ns))
                if fingerprint.hash_file(candidate) != expected_hash:
                    raise Refused("the copy reads back different bytes; removed the copy, kept the original")
                os.unlink(src)
        except OSError as e:
            raise Refused(f"copying to {candidate} failed: {error_text(e)}; the original is kept") from None
        return candidate
    raise Refused(f"{candidates[-1]} already exists: not overwritten")


def copy_into(src: str, fd: int) -> str:
    """Copy src into the open file fd (closed after), synced to disk; returns the hash of the bytes copied."""
    digest = hashlib.blake2b(digest_size=16)
    with Path(src).open("rb") as inp, os.fdopen(fd, "wb") as out:
        while block := inp.read(1 << 20):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


__all__ = [
    "Refused",
    "copy_into",
    "error_text",
    "free_names",
    "open_new",
    "place",
    "quietly",
    "removed_on_failure",
    "same_bytes",
    "temp_name",
]
