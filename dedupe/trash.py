"""The desktop trash: sending a file there, and finding it again for undo.

The trash never falls back to a permanent delete: where there is no usable trash, the file is left alone.
"""
# ruff: noqa: PTH108, PTH110, PTH111, PTH113, PTH117, PTH118, PTH119, PTH120, PTH122, PTH208

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote_to_bytes

from dedupe import fingerprint
from dedupe.files import Refused, error_text, quietly


def freedesktop() -> bool:
    return sys.platform not in ("darwin", "win32")


def data_home() -> str:
    """$XDG_DATA_HOME, read when called (send2trash reads it once, at import)."""
    return os.path.expanduser(os.environ.get("XDG_DATA_HOME") or "~/.local/share")


def _device(path: str) -> int:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p.stat().st_dev


def trash_file(path: str) -> str | None:
    """Send a file to the desktop trash. Returns where it is in the trash, when the platform lets us know.

    On freedesktop systems (Linux, BSD) the home trash is the one in $XDG_DATA_HOME as set now, and a file on
    another drive goes to that drive's .Trash/UID or .Trash-UID, as send2trash does. Where no trash can be used,
    Refused is raised and the file stays: there is never a permanent delete instead.
    """
    if not freedesktop():
        from send2trash import send2trash

        try:
            send2trash(path)
        except OSError as e:
            raise Refused(f"the trash is not available here: {error_text(e)}; not deleted") from None
        return None

    from send2trash import plat_other

    st = os.lstat(path)
    home = data_home()
    if st.st_dev == _device(home):
        topdir, trash = home, os.path.join(home, "Trash")
    else:
        topdir = os.fsdecode(plat_other.find_mount_point(os.fsencode(path)))
        try:
            trash = os.fsdecode(plat_other.find_ext_volume_trash(os.fsencode(topdir)))
        except OSError as e:
            raise Refused(f"no usable trash on the drive at {topdir} ({error_text(e)}); not deleted") from None
    try:
        plat_other.trash_move(os.fsencode(path), os.fsencode(trash), os.fsencode(topdir))
    except OSError as e:
        _drop_dangling_info(trash, topdir, path)
        raise Refused(f"cannot move it to the trash at {trash} ({error_text(e)}); not deleted") from None
    # send2trash names it like the original, or "name N.ext" when taken: follow its choices to our inode
    # (rename keeps it) instead of reading every .trashinfo of a large trash.
    base, ext = os.path.splitext(os.path.basename(path))
    for n in range(1_000_000):
        name = os.path.basename(path) if n == 0 else f"{base} {n}{ext}"
        candidate = os.path.join(trash, "files", name)
        info = os.path.join(trash, "info", name + ".trashinfo")
        try:
            tst = os.lstat(candidate)
        except OSError:
            if not os.path.lexists(info):
                break
            continue
        if (tst.st_dev, tst.st_ino) == (st.st_dev, st.st_ino) and os.path.exists(info):
            return candidate
    return None


class _TrashEntry:
    __slots__ = ("deleted", "file", "info", "original")

    def __init__(self, info: str, file: str, original: str, deleted: float) -> None:
        self.info, self.file, self.original, self.deleted = info, file, original, deleted


def _trash_entries(trash: str, topdir: str) -> Iterator[_TrashEntry]:
    info_dir = os.path.join(trash, "info")
    try:
        names = os.listdir(info_dir)
    except OSError:
        return
    for name in names:
        if not name.endswith(".trashinfo"):
            continue
        info = os.path.join(info_dir, name)
        original, deleted = None, 0.0
        try:
            text = Path(info).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key == "Path":
                raw = os.fsdecode(unquote_to_bytes(value.strip()))
                original = raw if os.path.isabs(raw) else os.path.join(topdir, raw)
            elif key == "DeletionDate":
                try:
                    deleted = datetime.strptime(value.strip(), "%Y-%m-%dT%H:%M:%S").timestamp()
                except ValueError:
                    deleted = 0.0
        if original is not None:
            yield _TrashEntry(info, os.path.join(trash, "files", name[: -len(".trashinfo")]), original, deleted)


def _drop_dangling_info(trash: str, topdir: str, path: str) -> None:
    """send2trash writes the .trashinfo before moving the file: remove it when the move failed."""
    for entry in _trash_entries(trash, topdir):
        if entry.original == path and not os.path.lexists(entry.file):
            with quietly():
                os.unlink(entry.info)


def _trash_dirs_for(path: str) -> list[tuple[str, str]]:
    """(trash folder, top folder) pairs where a file trashed from path may be."""
    home = data_home()
    found = [(os.path.join(home, "Trash"), home)]
    if freedesktop():
        from send2trash import plat_other

        parent = os.path.dirname(path)
        while parent and not os.path.exists(parent) and parent != os.path.dirname(parent):
            parent = os.path.dirname(parent)
        top = os.fsdecode(plat_other.find_mount_point(os.fsencode(parent or os.sep)))
        uid = str(os.getuid())
        found += [(os.path.join(top, ".Trash", uid), top), (os.path.join(top, f".Trash-{uid}"), top)]
    return found


def find_in_trash(path: str, since: float, content_hash: str) -> tuple[str, str] | None:
    """(trashed file, its .trashinfo) of the newest trashing of path since the given time, with those bytes."""
    best: _TrashEntry | None = None
    for trash, top in _trash_dirs_for(path):
        for entry in _trash_entries(trash, top):
            if entry.original != path or entry.deleted < since - 2 or not os.path.isfile(entry.file):
                continue
            if best is not None and entry.deleted <= best.deleted:
                continue
            try:
                if fingerprint.hash_file(entry.file) == content_hash:
                    best = entry
            except OSError:
                continue
    return (best.file, best.info) if best else None


def info_for(trashed: str) -> str | None:
    """The .trashinfo beside a file in a trash's files folder, when there is one."""
    files_dir, name = os.path.split(trashed)
    info = os.path.join(os.path.dirname(files_dir), "info", name + ".trashinfo")
    return info if os.path.exists(info) else None


__all__ = ["data_home", "find_in_trash", "freedesktop", "info_for", "trash_file"]
