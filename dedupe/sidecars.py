"""A photo's sidecar files (.xmp, .aae): which belong to it, where they go, and carrying them along.

A sidecar goes wherever its photo goes (the trash, a move's destination), each journaled as an act of its own;
a sidecar that other files in the folder share stays where it is.
"""
# ruff: noqa: PTH108, PTH118, PTH119, PTH120, PTH122, PTH208

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence

from dedupe.content_hash import hash_file
from dedupe.files import Refused, error_text, free_names, place
from dedupe.models import Action, JournalState, Step
from dedupe.store import Store
from dedupe.trash import trash_file

SIDECAR_EXTENSIONS = (".xmp", ".aae")
# Links leave the photo's path in place, so its sidecars stay valid where they are.
CARRIES_SIDECARS = (Action.TRASH, Action.DELETE, Action.MOVE)


def _is_sidecar_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in SIDECAR_EXTENSIONS


def find_sidecars(path: str, names: Iterable[str] | None = None) -> tuple[str, ...]:
    """The sidecar files of a photo, which go wherever it goes.

    NAME.EXT.xmp (darktable, digiKam) belongs to NAME.EXT alone. NAME.xmp (Lightroom, Capture One) and NAME.aae
    (Apple Photos edits) belong to it only when no other file in the folder is called NAME.something: beside
    IMG_1.CR2 and IMG_1.JPG, IMG_1.xmp belongs to both and stays where it is. The extension is matched in any
    case. names: the folder's entries, when already listed.
    """
    folder, name = os.path.split(path)
    if names is None:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            return ()
    entries = list(names)
    stem = os.path.splitext(name)[0]
    # NAME.xmp is shared with IMG_1.CR2 beside IMG_1.JPG, and is the NAME.EXT.xmp of a file called NAME (a.jpg.xmp
    # belongs to a.jpg, not to a copy called a.jpg.jpg).
    shared = any(
        n != name and not _is_sidecar_name(n) and (n == stem or os.path.splitext(n)[0] == stem) for n in entries
    )
    # a.jpg.xmp beside a.jpg and a.jpg.jpg may be the NAME.xmp of a.jpg.jpg: then it stays too.
    own_shared = any(n != name and not _is_sidecar_name(n) and os.path.splitext(n)[0] == name for n in entries)
    found: list[str] = []
    for n in sorted(entries):
        if n == name or not _is_sidecar_name(n):
            continue
        base = os.path.splitext(n)[0]
        if (base == name and name != stem and not own_shared) or (base == stem and not shared):
            full = os.path.join(folder, n)
            try:
                if stat.S_ISREG(os.lstat(full).st_mode):
                    found.append(full)
            except OSError:
                continue
    return tuple(found)


def sidecar_target(sidecar: str, photo: str, photo_target: str) -> str:
    """Where a sidecar goes when its photo goes to photo_target: beside it, named after the photo's new name
    ("IMG_1 (1).jpg" takes "IMG_1 (1).jpg.xmp" or "IMG_1 (1).xmp")."""
    name, ext = os.path.splitext(os.path.basename(sidecar))
    folder, new_name = os.path.split(photo_target)
    if name == os.path.basename(photo):
        return os.path.join(folder, new_name + ext)
    return os.path.join(folder, os.path.splitext(new_name)[0] + ext)


class SidecarFinder:
    """find_sidecars with each folder listed once: a plan asks for the sidecars of many copies in few folders."""

    def __init__(self) -> None:
        self._names: dict[str, list[str]] = {}

    def __call__(self, path: str) -> tuple[str, ...]:
        folder = os.path.dirname(path) or "."
        if folder not in self._names:
            try:
                self._names[folder] = os.listdir(folder)
            except OSError:
                self._names[folder] = []
        return find_sidecars(path, self._names[folder])


def free_for_all(target: str, photo: str, sidecars: Sequence[str]) -> str:
    """The first free name for a moved photo at which each of its sidecars' names is free too, so that a moved
    photo and its sidecars keep one name ("a (1).jpg" and "a (1).xmp")."""
    for candidate in free_names(target):
        if not any(os.path.lexists(sidecar_target(s, photo, candidate)) for s in sidecars):
            return candidate
    raise AssertionError("unreachable: free_names raises Refused when no name is left")


def carry_sidecars(
    step: Step, found: Sequence[str], where: str | None, store: Store, run_id: int, named: set[str]
) -> tuple[tuple[str, ...], list[str]]:
    """Send the photo's sidecars where the photo went; returns those carried and why any others stayed."""
    carried: list[str] = []
    problems: list[str] = []
    for sidecar in found:
        label = os.path.basename(sidecar)
        if sidecar in named:
            continue
        try:
            st = os.lstat(sidecar)
            if not stat.S_ISREG(st.st_mode):
                continue
            digest = hash_file(sidecar)
            target = None
            if step.action is Action.MOVE:
                assert where is not None
                target = next(free_names(sidecar_target(sidecar, step.file.path, where)))
        except (Refused, OSError) as e:
            problems.append(f"its sidecar {label} stayed: {error_text(e)}")
            continue
        entry = store.journal_planned(
            run_id, step.action, sidecar, step.keeper.path, digest, st, target, sidecar_of=step.file.path
        )
        try:
            if step.action is Action.DELETE:
                os.unlink(sidecar)
                went = None
            elif step.action is Action.TRASH:
                went = trash_file(sidecar)
            else:
                assert target is not None
                went = place(sidecar, [target], digest)
        except (Refused, OSError) as e:
            why = error_text(e)
            store.journal_update(entry, JournalState.FAILED, reason=why)
            problems.append(f"its sidecar {label} stayed: {why}")
            continue
        store.journal_update(entry, JournalState.DONE, destination=went, reason=f"sidecar of {step.file.path}")
        carried.append(sidecar)
    return tuple(carried), problems


__all__ = [
    "CARRIES_SIDECARS",
    "SIDECAR_EXTENSIONS",
    "SidecarFinder",
    "carry_sidecars",
    "find_sidecars",
    "free_for_all",
    "sidecar_target",
]
