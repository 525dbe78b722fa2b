"""The desktop trash: sending a file there, and finding it again for undo.

The trash never falls back to a permanent delete: where there is no usable trash, the file is left alone.

On macOS and Windows the file goes through send2trash's public function. On freedesktop systems (Linux, BSD)
this module follows the trash specification itself, in about a hundred lines, because send2trash's public
function cannot do what undo and the safety rules need: it reads $XDG_DATA_HOME once, at import; it does not say
where the file went; it copies a file into the home trash when a drive's own trash cannot take it; and it prefers
GIO when PyGObject is installed. No library offers finding a trashed file again (send2trash has no such API,
trash-cli is a command without a library API), so the .trashinfo lookup is ours too.
"""
# ruff: noqa: PTH100, PTH103, PTH104, PTH110, PTH111, PTH113, PTH117, PTH118, PTH119, PTH120, PTH122, PTH208

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

from dedupe.content_hash import hash_file
from dedupe.files import Refused, error_text, fitted, name_max, open_new, removed_on_failure


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
    another drive goes to that drive's .Trash/UID or .Trash-UID. Where no trash can be used, Refused is raised
    and the file stays: there is never a permanent delete instead, nor a copy across drives into the home trash.
    """
    if not freedesktop():
        from send2trash import send2trash

        try:
            send2trash(path)
        except OSError as e:
            raise Refused(f"the trash is not available here: {error_text(e)}; not deleted") from None
        return None

    st = os.lstat(path)
    home = data_home()
    if st.st_dev == _device(home):
        topdir, trash = home, os.path.join(home, "Trash")
    else:
        topdir = _mount_point(path)
        try:
            trash = _volume_trash(topdir)
        except OSError as e:
            raise Refused(f"no usable trash on the drive at {topdir} ({error_text(e)}); not deleted") from None
    try:
        return _move_to_trash(path, trash, topdir)
    except OSError as e:
        raise Refused(f"cannot move it to the trash at {trash} ({error_text(e)}); not deleted") from None


def _mount_point(path: str) -> str:
    """The top folder of the drive holding path (symbolic links resolved), where its trash lives."""
    top = os.path.realpath(path)
    while not os.path.ismount(top):
        top = os.path.dirname(top)
    return top


def _volume_trash(topdir: str) -> str:
    """The trash folder of a drive other than the home one: the shared .Trash/UID when the drive has a sticky,
    real .Trash folder, else .Trash-UID (created, private to the user)."""
    uid = str(os.getuid())
    shared = os.path.join(topdir, ".Trash")
    try:
        mode = os.lstat(shared).st_mode
    except OSError:
        mode = 0
    if stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
        mine = os.path.join(shared, uid)
        try:
            if not os.path.exists(mine):
                os.makedirs(mine, 0o700)
            return mine
        except OSError:
            pass  # the spec says: then use .Trash-UID
    own = os.path.join(topdir, f".Trash-{uid}")
    if not os.path.exists(own):
        os.makedirs(own, 0o700)
    return own


def _move_to_trash(path: str, trash: str, topdir: str) -> str:
    """Move path into trash/files under a free name ("name.ext", then "name N.ext"), with its .trashinfo.

    The .trashinfo is created first with O_EXCL, as the spec asks: that claims the name against another program
    trashing a file of the same name at the same moment. When the move fails it is removed again.
    """
    files, infos = os.path.join(trash, "files"), os.path.join(trash, "info")
    for folder in (files, infos):
        if not os.path.exists(folder):
            os.makedirs(folder, 0o700)
    base, ext = os.path.splitext(os.path.basename(path))
    # A name near the limit (255 bytes) leaves no room for ".trashinfo": the name in the trash is shortened
    # (the .trashinfo keeps the original path, which undo restores).
    room = name_max(infos) - len(".trashinfo")
    for n in range(1_000_000):
        candidate = fitted(base, f" {n}{ext}" if n else ext, room)
        target = os.path.join(files, candidate)
        if os.path.lexists(target):
            continue
        info = os.path.join(infos, candidate + ".trashinfo")
        try:
            fd = open_new(info)
        except FileExistsError:
            continue
        with removed_on_failure(info):
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(_trash_info(path, topdir))
            os.rename(path, target)
        return target
    raise Refused(f"no free name in the trash at {trash}; not deleted")


def _trash_info(path: str, topdir: str) -> str:
    """The .trashinfo text: the original path (relative to topdir when it lies below it, percent-encoded bytes)
    and the local time of deletion."""
    top = os.path.realpath(topdir).rstrip(os.sep) + os.sep
    under = os.path.realpath(path).startswith(top)
    original = os.path.relpath(path, topdir) if under else os.path.abspath(path)
    when = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    return f"[Trash Info]\nPath={quote_from_bytes(os.fsencode(original))}\nDeletionDate={when}\n"


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


def _trash_dirs_for(path: str) -> list[tuple[str, str]]:
    """(trash folder, top folder) pairs where a file trashed from path may be."""
    home = data_home()
    found = [(os.path.join(home, "Trash"), home)]
    if freedesktop():
        parent = os.path.dirname(path)
        while parent and not os.path.exists(parent) and parent != os.path.dirname(parent):
            parent = os.path.dirname(parent)
        top = _mount_point(parent or os.sep)
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
                if hash_file(entry.file) == content_hash:
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
