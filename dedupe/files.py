"""Moving files without ever overwriting one: the primitives that applying, the trash and undo share.

Paths are plain strings (undecodable bytes kept as surrogate escapes, as in the store) handed to the os-level
calls whose exact semantics matter here (link without following, O_EXCL), so pathlib is not used.
"""
# ruff: noqa: PTH101, PTH104, PTH108, PTH118, PTH120, PTH122, PTH208

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dedupe.content_hash import hash_file


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
    """The target, then "name (1).ext", "name (2).ext", ... whichever are not taken (name shortened when the
    number would pass the file system's limit on a name)."""
    folder, name = os.path.split(target)
    base, ext = os.path.splitext(name)
    room = name_max(folder)
    for n in range(100_000):
        candidate = target if n == 0 else os.path.join(folder, fitted(base, f" ({n}){ext}", room))
        if not os.path.lexists(candidate):
            yield candidate
    raise Refused(f"no free name for {target}")


def temp_name(path: str) -> str:
    """A free hidden name beside path, for a link or a copy that then takes path's name: .NAME.dedupe-PID-N.tmp.

    The name says whose it is, so that a later run can find and remove what a killed one left (leftovers)."""
    folder, name = os.path.split(path)
    stem = _temp_stem(folder, name)
    for n in range(1000):
        candidate = os.path.join(folder, f".{stem}.dedupe-{os.getpid()}-{n}.tmp")
        if not os.path.lexists(candidate):
            return candidate
    raise Refused("no free temporary name in its folder")


# What temp_name adds to a name: ".", ".dedupe-", a pid (at most 10 digits), "-", a number below 1000, ".tmp".
_TEMP_EXTRA = 1 + 8 + 10 + 1 + 3 + 4


def name_max(folder: str) -> int:
    """The longest file name (in bytes) the file system holding folder takes: 255 on all common ones."""
    try:
        return os.pathconf(folder or ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def fitted(base: str, tail: str, room: int) -> str:
    """base + tail in at most room bytes, base shortened at a whole character as needed (then tail)."""
    while base and len(os.fsencode(base + tail)) > room:
        base = base[:-1]
    name = base + tail
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return name


def _temp_stem(folder: str, name: str) -> str:
    """name, shortened when a temporary name made of it would pass the file system's limit: a file named
    near 255 bytes could otherwise never be linked or copied into place."""
    return fitted(name, "", name_max(folder) - _TEMP_EXTRA)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it now: whoever named it with our pid is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def leftovers(path: str) -> list[str]:
    """The temporary files beside path (temp_name's) whose process is gone: a copy or link a killed run left."""
    folder, name = os.path.split(path)
    # ASCII digits, no more than a pid has, as temp_name writes them: a 20-digit "pid" made os.kill raise
    # OverflowError (undo ended in an internal error), and a name in other digits is nothing of ours to remove.
    pattern = re.compile(rf"\.{re.escape(_temp_stem(folder, name))}\.dedupe-([0-9]{{1,9}})-[0-9]+\.tmp")
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    found = []
    for candidate in sorted(names):
        m = pattern.fullmatch(candidate)
        if m and not _alive(int(m.group(1))):
            found.append(os.path.join(folder, candidate))
    return found


def remove_leftovers(*paths: str | None) -> list[str]:
    """Remove the leftovers beside each path (see leftovers); returns what was removed."""
    removed = []
    for path in paths:
        if not path:
            continue
        for left in leftovers(path):
            with quietly():
                os.unlink(left)
                removed.append(left)
    return removed


def fault(point: str) -> None:
    """Die at once (SIGKILL, no clean-up) when $DEDUPE_FAULT names this point: how the tests and
    bench/faults.py interrupt a run at an exact place instead of at a random moment."""
    if os.environ.get("DEDUPE_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def is_prefix_of(partial: str, full: str) -> bool:
    """Whether partial is a regular file holding a strict beginning of full's bytes: an interrupted copy."""
    try:
        pst, fst = os.lstat(partial), os.lstat(full)
        if not (stat.S_ISREG(pst.st_mode) and stat.S_ISREG(fst.st_mode)) or pst.st_size >= fst.st_size:
            return False
        with Path(partial).open("rb") as a, Path(full).open("rb") as b:
            while block := a.read(1 << 20):
                if b.read(len(block)) != block:
                    return False
        return True
    except OSError:
        return False


def same_bytes(path: str, content_hash: str) -> bool:
    """Whether path is a regular file holding exactly those bytes."""
    try:
        st = os.lstat(path)
        return stat.S_ISREG(st.st_mode) and hash_file(path) == content_hash
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
    """The copy is written under a temporary name beside its target, synced, read back, and only then given the
    target's name (by a link, which never replaces a file): a kill leaves at most a temporary file that
    remove_leftovers recognises, never a partial file under a real name."""
    for candidate in candidates:
        if os.path.lexists(candidate):
            continue
        tmp = temp_name(candidate)
        try:
            fd = open_new(tmp)
            with removed_on_failure(tmp):
                digest = copy_into(src, fd)
                if digest != expected_hash:
                    raise Refused("the copy does not match the expected bytes; removed the copy, kept the original")
                st = os.lstat(src)
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                if hash_file(tmp) != expected_hash:
                    raise Refused("the copy reads back different bytes; removed the copy, kept the original")
                fault("copied")
                if not _name(tmp, candidate):
                    os.unlink(tmp)
                    continue
            fault("named")
            with quietly():
                os.unlink(tmp)
            _sync_folder(candidate)
            os.unlink(src)
        except OSError as e:
            raise Refused(f"copying to {candidate} failed: {error_text(e)}; the original is kept") from None
        return candidate
    raise Refused(f"{candidates[-1]} already exists: not overwritten")


def _name(tmp: str, target: str) -> bool:
    """Give the finished file at tmp the name target, never replacing a file there; False when target is taken.
    A link keeps tmp too (removed after); where the file system has no links, a rename after a last check."""
    try:
        os.link(tmp, target, follow_symlinks=False)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
    if os.path.lexists(target):
        return False
    os.rename(tmp, target)
    return True


def _sync_folder(path: str) -> None:
    """Make a new name durable: fsync of the folder holding it (where the platform allows)."""
    with quietly():
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def copy_into(src: str, fd: int) -> str:
    """Copy src into the open file fd (closed after), synced to disk; returns the hash of the bytes copied."""
    digest = hashlib.blake2b(digest_size=16)
    with Path(src).open("rb") as inp, os.fdopen(fd, "wb") as out:
        while block := inp.read(1 << 20):
            digest.update(block)
            out.write(block)
            if os.environ.get("DEDUPE_FAULT") == "copying":  # a half-written copy on disk, then killed
                out.flush()
                fault("copying")
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


__all__ = [
    "Refused",
    "copy_into",
    "error_text",
    "fault",
    "fitted",
    "free_names",
    "is_prefix_of",
    "leftovers",
    "name_max",
    "open_new",
    "place",
    "quietly",
    "remove_leftovers",
    "removed_on_failure",
    "same_bytes",
    "temp_name",
]
