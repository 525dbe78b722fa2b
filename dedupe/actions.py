"""Choosing the keeper, planning (pure) and applying (checked, journaled) trash, delete, move and link actions.

Safety rules that every path through this module keeps:

- A plan never touches a group's keeper, a file in a reference folder, or the keeper's own file reached by another
  path (a hard link, a bind mount, a symlinked folder): a group always keeps at least one copy.
- Right before a copy is touched, the copy and its keeper are checked again against what the scan saw (file type,
  device, inode, size, mtime, and the content hash read from the bytes). Anything that changed is skipped.
- Every act is written to the store's journal before it happens and marked done after, so `undo` can reverse a
  run, including one that was interrupted half-way.
- Nothing is ever overwritten: moves and restores take a free name, links go through a temporary name in the same
  folder and replace the copy atomically, and a failed cross-device copy removes what it wrote.
- The trash never falls back to a permanent delete: where there is no usable trash, the file is left alone.
- A RAW file is an original, not a copy of its developed JPEG or HEIC twin: without include_raw, a plan removes a
  RAW only in favour of a RAW with the same bytes, and never removes a JPEG/HEIC in favour of a RAW.
- A photo's sidecar files (.xmp, .aae) go wherever it goes (the trash, a move's destination), each journaled as an
  act of its own; a sidecar that other files in the folder share stays where it is.

Paths are plain strings (undecodable bytes kept as surrogate escapes, as in the store) handed to the os-level
calls whose exact semantics matter here (link without following, O_EXCL, atomic replace), so pathlib is not used.
"""
# ruff: noqa: PTH100, PTH101, PTH105, PTH108, PTH110, PTH111, PTH113, PTH115, PTH117, PTH118, PTH119, PTH120, PTH121, PTH122, PTH208, PTH211

from __future__ import annotations

import errno
import os
import shlex
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote_to_bytes

from dedupe import fingerprint
from dedupe.errors import DedupeError
from dedupe.match import CROP, WIDER, MatchRule, crop_match, hamming, match, shows_more
from dedupe.models import (
    Action,
    ApplyResult,
    DuplicateGroup,
    FileRecord,
    GroupMember,
    GroupPlan,
    JournalEntry,
    JournalState,
    KeeperChoice,
    KeeperRule,
    MatchKind,
    Plan,
    ProgressEvent,
    RunInfo,
    Skipped,
    Step,
    StepResult,
    StepState,
    UndoResult,
)
from dedupe.store import Store

ProgressCallback = Callable[[ProgressEvent], None]

RULE_NAMES = ("resolution", "size", "oldest", "newest", "shortest", "path")
DEFAULT_RULES_TEXT = "resolution,size,oldest,shortest"


class Refused(Exception):
    """An act that did not happen, with the reason shown to the user; the file is as it was."""


# --- keeper rules -----------------------------------------------------------------------------------------------


def parse_rules(text: str) -> tuple[KeeperRule, ...]:
    """An ordered rule list such as "resolution,size,oldest,path:/mnt/photos"."""
    rules: list[KeeperRule] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, arg = part.partition(":")
        name = name.strip().lower()
        if name not in RULE_NAMES:
            raise DedupeError(f"unknown keeper rule {part!r}: use {', '.join(RULE_NAMES[:-1])} or path:FOLDER")
        if name == "path":
            if not sep or not arg.strip():
                raise DedupeError("the path rule needs a folder, e.g. path:/mnt/photos")
            rules.append(KeeperRule("path", os.path.abspath(os.path.expanduser(arg.strip()))))
        elif sep:
            raise DedupeError(f"the keeper rule {name!r} takes no argument")
        else:
            rules.append(KeeperRule(name))
    if not rules:
        raise DedupeError("no keeper rules given")
    return tuple(rules)


DEFAULT_RULES = parse_rules(DEFAULT_RULES_TEXT)


def in_folder(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep) or os.sep
    return path == folder or path.startswith(folder if folder.endswith(os.sep) else folder + os.sep)


def _date_value(taken: str | None) -> int | None:
    if not taken:
        return None
    try:
        d = datetime.fromisoformat(taken)
    except ValueError:
        return None
    return d.toordinal() * 86400 + d.hour * 3600 + d.minute * 60 + d.second


def _rule_key(rule: KeeperRule) -> Callable[[FileRecord], tuple[int, ...]]:
    """Smaller is better."""
    if rule.name == "resolution":
        return lambda f: (-(f.fingerprint.width * f.fingerprint.height),)
    if rule.name == "size":
        return lambda f: (-f.size,)
    if rule.name == "shortest":
        return lambda f: (len(f.path),)
    if rule.name == "path":
        folder = rule.arg or os.sep
        return lambda f: (0 if in_folder(f.path, folder) else 1,)

    sign = 1 if rule.name == "oldest" else -1

    def by_date(f: FileRecord) -> tuple[int, ...]:
        taken = _date_value(f.fingerprint.taken)
        # A known date taken wins over none; then the date taken, then the file's mtime.
        return (0, sign * taken, sign * f.mtime_ns) if taken is not None else (1, 0, sign * f.mtime_ns)

    return by_date


def _describe(rule: KeeperRule, f: FileRecord) -> str:
    fp = f.fingerprint
    if rule.name == "resolution":
        return f"largest resolution ({fp.width}x{fp.height})"
    if rule.name == "size":
        return f"largest file ({f.size} bytes)"
    if rule.name == "shortest":
        return "shortest path"
    if rule.name == "path":
        return f"in preferred folder {rule.arg}"
    when = f"taken {fp.taken.replace('T', ' ')}" if fp.taken else f"modified {_mtime_text(f.mtime_ns)}"
    return f"{rule.name} ({when})"


def _mtime_text(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def choose_keeper(
    group: DuplicateGroup, rules: Sequence[KeeperRule] = DEFAULT_RULES, references: Sequence[str] = ()
) -> KeeperChoice:
    """The member to keep. Files in reference folders always win; a tie the rules cannot break is flagged."""
    candidates = sorted((m.file for m in group.members), key=lambda f: f.path)
    reasons: list[str] = []
    in_refs = [f for f in candidates if any(in_folder(f.path, r) for r in references)]
    if in_refs:
        candidates = in_refs
        reasons.append("in a reference folder")
    for rule in rules:
        if len(candidates) == 1:
            break
        key = _rule_key(rule)
        best = min(key(f) for f in candidates)
        narrowed = [f for f in candidates if key(f) == best]
        if len(narrowed) < len(candidates):
            reasons.append(_describe(rule, narrowed[0]))
            candidates = narrowed
    keeper = candidates[0]
    if len(candidates) > 1 and in_refs:
        # Every file in a reference folder is kept anyway: which of them is called the keeper changes nothing.
        return KeeperChoice(keeper, "; ".join(reasons))
    if len(candidates) > 1:
        names = ", ".join(f.path for f in candidates)
        why = f" after {'; '.join(reasons)}" if reasons else ""
        reason = f"tie{why}: the rules cannot choose between {names}"
        return KeeperChoice(keeper, reason, tuple(c.path for c in candidates))
    return KeeperChoice(keeper, "; ".join(reasons) or "the only candidate")


def relation(f: FileRecord, keeper: FileRecord) -> MatchKind:
    if f.content_hash == keeper.content_hash:
        return MatchKind.EXACT
    if f.fingerprint.image_hash == keeper.fingerprint.image_hash:
        return MatchKind.IMAGE
    return MatchKind.NEAR


# --- planning (pure) ---------------------------------------------------------------------------------------------


def plan(
    groups: Sequence[DuplicateGroup],
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    action: Action = Action.TRASH,
    *,
    references: Sequence[str] = (),
    destination: str | None = None,
    roots: Sequence[str] = (),
    include_near: bool = True,
    keepers: Mapping[int, str] | None = None,
    include_raw: bool = False,
) -> Plan:
    """What to do with each group's redundant copies. Reads no file (it lists the folders of the copies, to show
    their sidecars) and changes nothing.

    references: absolute real folders whose files always win and are never touched. destination: the folder of
    a move. roots: the scanned folders, so that a move keeps paths relative to them. include_near: act on copies
    that are only similar to their keeper. keepers: keeper paths picked by the user, by index into groups.
    include_raw: treat RAW files like any other photo. Without it, a group of a RAW and its developed JPEG(s)
    keeps the best JPEG as its keeper and every RAW beside it ("RAW original kept"); only exact copies of a RAW
    (the same bytes) are removed, in favour of the best RAW.
    """
    if action is Action.MOVE and not destination:
        raise DedupeError("a move needs a destination folder (--to DIR)")
    dest = os.path.abspath(destination) if destination else None
    refs = tuple(os.path.abspath(r) for r in references)
    folders = _Listings()
    planned: list[GroupPlan] = []
    for i, group in enumerate(groups):
        choice = suggest_keeper(group, rules, refs, include_raw=include_raw)
        picked = (keepers or {}).get(i)
        if picked is not None:
            chosen = next((m.file for m in group.members if m.file.path == picked), None)
            if chosen is None:
                raise DedupeError(f"{picked} is not a member of group {i + 1}")
            if chosen.path != choice.keeper.path or choice.is_tie:
                choice = KeeperChoice(chosen, "chosen by you")
        elif choice.is_tie:
            planned.append(
                GroupPlan(group, choice, (), (), f"{choice.reason}; pick the keeper in 'dedupe review' or add a rule")
            )
            continue
        planned.append(_plan_group(group, choice, action, refs, dest, roots, include_near, include_raw, rules, folders))
    return Plan(action, dest, tuple(planned))


RAW_KEPT = "RAW original kept: a RAW is removed only as an exact copy of another RAW (or with --include-raw)"
TWIN_KEPT = "developed twin of the RAW keeper kept: acted on only with --include-raw"


def _is_raw(f: FileRecord) -> bool:
    return fingerprint.is_raw(f.fingerprint)


def suggest_keeper(
    group: DuplicateGroup,
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    references: Sequence[str] = (),
    *,
    include_raw: bool = False,
) -> KeeperChoice:
    """The keeper a plan would choose: without include_raw, a JPEG/HEIC twin rather than the RAW beside it."""
    return choose_keeper(group if include_raw else _developed(group), rules, references)


def _developed(group: DuplicateGroup) -> DuplicateGroup:
    """The group's non-RAW members, when it has both kinds: the keeper is chosen among them."""
    developed = tuple(m for m in group.members if not _is_raw(m.file))
    if not developed or len(developed) == len(group.members):
        return group
    return DuplicateGroup(group.kind, developed)


def _plan_group(
    group: DuplicateGroup,
    choice: KeeperChoice,
    action: Action,
    refs: Sequence[str],
    dest: str | None,
    roots: Sequence[str],
    include_near: bool,
    include_raw: bool,
    rules: Sequence[KeeperRule],
    folders: _Listings,
) -> GroupPlan:
    keeper = choice.keeper
    steps: list[Step] = []
    left: list[Skipped] = []
    raw_keeper = keeper
    if not include_raw and not _is_raw(keeper):
        raws = tuple(m for m in group.members if _is_raw(m.file))
        if raws:
            # Exact copies of a RAW are still redundant: they go in favour of the best RAW, which itself stays.
            raw_keeper = choose_keeper(DuplicateGroup(group.kind, raws), rules, refs).keeper
    cropped = {m.file.path for m in group.members if m.crop is not None}
    for m in group.members:
        f = m.file
        if f.path == keeper.path:
            continue
        k = keeper
        reason = None
        if not include_raw:
            if _is_raw(f):
                k = raw_keeper
                if f.path == k.path or f.content_hash != k.content_hash:
                    left.append(Skipped(f.path, RAW_KEPT))
                    continue
            elif _is_raw(keeper):
                left.append(Skipped(f.path, TWIN_KEPT))
                continue
        match = relation(f, k)
        if any(in_folder(f.path, r) for r in refs):
            reason = "in a reference folder: never touched"
        elif (f.dev, f.ino) == (k.dev, k.ino):
            reason = "the keeper's own file (a hard link or another path to it)"
        elif _looks_like_a_view(f.dev, f.ino, f.size, f.mtime_ns, k.dev, k.ino, k.size, k.mtime_ns):
            reason = VIEW_REASON
        elif match is MatchKind.NEAR and not include_near:
            reason = f"similar, not identical (distance {m.distance}): acted on only with --include-near or in review"
        elif match is MatchKind.NEAR and (why := _crop_keeps(f, k, bool(cropped & {f.path, k.path}))):
            reason = why
        elif action in (Action.HARDLINK, Action.SYMLINK) and match is not MatchKind.EXACT:
            reason = "not the same bytes as the keeper: a link would lose what differs"
        elif action is Action.HARDLINK and f.dev != k.dev:
            reason = "on another file system than the keeper: a hard link is impossible"
        elif dest is not None and in_folder(f.path, dest):
            reason = "already in the destination folder"
        if reason:
            left.append(Skipped(f.path, reason))
            continue
        target = move_target(f.path, dest, roots) if action is Action.MOVE and dest else None
        sidecars = find_sidecars(f.path, folders.names(f.path)) if action in CARRIES_SIDECARS else ()
        steps.append(Step(f, k, action, match, target, sidecars))
    # The heart of the matter: the keeper stays, so a group never loses its last copy.
    assert all(s.file.path not in (keeper.path, raw_keeper.path) for s in steps) and len(steps) < len(group.members)
    return GroupPlan(group, choice, tuple(steps), tuple(left))


def _crop_keeps(f: FileRecord, keeper: FileRecord, flagged: bool) -> str | None:
    """Why a near copy must stay because the keeper may not show all of it, or None when it may go.

    A copy of which the keeper is a crop shows more than the keeper, also when the crop is small enough to match
    as a plain near copy. When the copy or the keeper is in the group as a crop (flagged), the copy may only go
    when it is a crop of the keeper or a plain near copy of it: two crops of one picture, both in the group
    through its reference, may show different parts of it.
    """
    crop = crop_match(f.fingerprint, keeper.fingerprint)
    direction = None if crop is None else crop[2]
    # Unflagged, only a window that fits strictly better one way tells a small crop from a resized copy.
    if direction == WIDER and (flagged or shows_more(f.fingerprint, keeper.fingerprint)):
        return "shows more than its keeper (the keeper is a crop of it): kept"
    if not flagged or direction == CROP:
        return None
    if match(f.fingerprint, keeper.fingerprint, MatchRule(crops=False)) is not None:
        return None
    return "neither a crop nor a copy of its keeper (two crops may show different parts of one picture): kept"


VIEW_REASON = (
    "looks like the keeper's own file seen through another mount (same inode number, size and time on another"
    " device: an overlay, NFS or SMB view): left alone"
)


def _looks_like_a_view(
    dev: int, ino: int, size: int, mtime_ns: int, kdev: int, kino: int, ksize: int, kmtime: int
) -> bool:
    """Overlay, NFS and SMB show a file under another device number but its own inode number: acting on one
    path would remove the other. A real copy on another drive almost never has the same inode number and time."""
    return dev != kdev and (ino, size, mtime_ns) == (kino, ksize, kmtime)


def move_target(path: str, dest: str, roots: Sequence[str]) -> str:
    """Where a move puts a file: its path relative to the folder holding its scanned root, under dest."""
    for root in sorted(roots, key=len, reverse=True):
        if in_folder(path, root):
            base = os.path.dirname(root.rstrip(os.sep)) or os.sep
            return os.path.join(dest, os.path.relpath(path, base))
    drive, rest = os.path.splitdrive(path)
    return os.path.join(dest, drive.replace(":", ""), rest.lstrip(os.sep))


# --- checks right before acting ------------------------------------------------------------------------------


def check_file(f: FileRecord, role: str = "") -> str | None:
    """Why a file is no longer what the scan saw, or None when it is the same file with the same bytes."""
    who = f"{role} " if role else ""
    try:
        st = os.lstat(f.path)
    except FileNotFoundError:
        return f"{who}vanished since the scan".strip()
    except OSError as e:
        return f"{who}cannot be checked: {_reason(e)}"
    if stat.S_ISLNK(st.st_mode):
        return f"{who}is now a symbolic link".strip()
    if not stat.S_ISREG(st.st_mode):
        return f"{who}is no longer a regular file".strip()
    if (st.st_dev, st.st_ino) != (f.dev, f.ino):
        return f"{who}was replaced by another file since the scan".strip()
    if st.st_size != f.size:
        return f"{who}changed size since the scan".strip()
    if st.st_mtime_ns != f.mtime_ns:
        return f"{who}was modified since the scan".strip()
    try:
        digest = fingerprint.hash_file(f.path)
    except OSError as e:
        return f"{who}cannot be read: {_reason(e)}"
    if digest != f.content_hash:
        return f"{who}has different bytes than at the scan".strip()
    return None


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[0].lower() + e.strerror[1:]
    return str(e) or type(e).__name__


# --- applying --------------------------------------------------------------------------------------------------


def apply(plan: Plan, store: Store, *, on_progress: ProgressCallback | None = None) -> ApplyResult:
    """Carry out a plan, checking every copy and its keeper right before touching it, and journaling each act."""
    run_id = store.start_run(plan.action)
    keepers = {g.choice.keeper.path for g in plan.groups} | {s.keeper.path for s in plan.steps}
    # Files the plan itself names are never carried along as somebody's sidecar.
    named = keepers | {s.file.path for s in plan.steps}
    touched: set[str] = set()
    results: list[StepResult] = []
    steps = plan.steps
    for n, step in enumerate(steps, start=1):
        results.append(_apply_step(step, store, run_id, keepers, touched, named))
        touched.add(step.file.path)
        if on_progress:
            on_progress(ProgressEvent("apply", n, len(steps), step.file.path))
    store.finish_run(run_id)
    return ApplyResult(run_id, plan.action, tuple(results))


def quarantine(copy: FileRecord, keeper: FileRecord, folder: str, roots: Sequence[str], store: Store) -> StepResult:
    """Move one incoming duplicate into folder (keeping its path relative to its watched root), leaving the
    older copy alone: the same checks and journal as a review run, so 'dedupe undo' puts it back."""
    if _is_raw(copy) != _is_raw(keeper) or (_is_raw(copy) and copy.content_hash != keeper.content_hash):
        reason = RAW_KEPT if _is_raw(copy) else TWIN_KEPT
        return StepResult(copy.path, Action.MOVE, StepState.SKIPPED, reason, keeper.path, None, 0)
    kind = relation(copy, keeper)
    distance = 0 if kind is not MatchKind.NEAR else hamming(copy.fingerprint.phash, keeper.fingerprint.phash)
    group = DuplicateGroup(kind, (GroupMember(keeper, MatchKind.EXACT, 0), GroupMember(copy, kind, distance)))
    step = Step(copy, keeper, Action.MOVE, kind, move_target(copy.path, folder, roots), find_sidecars(copy.path))
    choice = KeeperChoice(keeper, "already in the store")
    the_plan = Plan(Action.MOVE, folder, (GroupPlan(group, choice, (step,), ()),))
    return apply(the_plan, store).results[0]


def _apply_step(
    step: Step, store: Store, run_id: int, keepers: set[str], touched: set[str], named: set[str]
) -> StepResult:
    f, k = step.file, step.keeper

    def result(
        state: StepState, reason: str = "", destination: str | None = None, sidecars: tuple[str, ...] = ()
    ) -> StepResult:
        size = f.size if state is StepState.DONE else 0
        return StepResult(f.path, step.action, state, reason, k.path, destination, size, sidecars)

    if f.path in keepers or f.path == k.path:
        return result(StepState.SKIPPED, "it is a keeper")
    if f.path in touched:
        return result(StepState.SKIPPED, "already handled in this run")
    reason = check_file(f) or check_file(k, "its keeper")
    if reason:
        return result(StepState.SKIPPED, reason)
    try:
        st = os.lstat(f.path)
        kst = os.lstat(k.path)
    except OSError as e:
        return result(StepState.SKIPPED, f"vanished: {_reason(e)}")
    if (st.st_dev, st.st_ino) == (kst.st_dev, kst.st_ino):
        return result(StepState.SKIPPED, "the keeper's own file (a hard link or another path to it)")
    if _looks_like_a_view(
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, kst.st_dev, kst.st_ino, kst.st_size, kst.st_mtime_ns
    ):
        return result(StepState.SKIPPED, VIEW_REASON)

    # Only the sidecars the plan showed go along (an earlier step may have made a shared one look like its own).
    found = step.sidecars if step.action in CARRIES_SIDECARS else ()
    destination: str | None = None
    try:
        if step.action is Action.MOVE:
            assert step.destination is not None
            destination = _free_for_all(step.destination, f.path, found)
        elif step.action in (Action.HARDLINK, Action.SYMLINK):
            destination = _temp_name(f.path)
    except Refused as e:
        return result(StepState.FAILED, str(e))
    entry = store.journal_planned(run_id, step.action, f.path, k.path, f.content_hash, st, destination)
    try:
        where = _act(step, destination)
    except (Refused, OSError) as e:
        why = str(e) if isinstance(e, Refused) else _reason(e)
        store.journal_update(entry, JournalState.FAILED, reason=why)
        return result(StepState.FAILED, why)
    store.journal_update(entry, JournalState.DONE, destination=where)
    _record_after(store, step, f)
    carried, problems = _carry_sidecars(step, found, where, store, run_id, named)
    return result(StepState.DONE, "; ".join(problems), where, carried)


def _free_for_all(target: str, photo: str, sidecars: Sequence[str]) -> str:
    """The first free name for a moved photo at which each of its sidecars' names is free too, so that a moved
    photo and its sidecars keep one name ("a (1).jpg" and "a (1).xmp")."""
    for candidate in _free_names(target):
        if not any(os.path.lexists(sidecar_target(s, photo, candidate)) for s in sidecars):
            return candidate
    raise AssertionError("unreachable: _free_names raises Refused when no name is left")


def _carry_sidecars(
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
            digest = fingerprint.hash_file(sidecar)
            target = None
            if step.action is Action.MOVE:
                assert where is not None
                target = next(_free_names(sidecar_target(sidecar, step.file.path, where)))
        except (Refused, OSError) as e:
            problems.append(f"its sidecar {label} stayed: {e if isinstance(e, Refused) else _reason(e)}")
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
            why = str(e) if isinstance(e, Refused) else _reason(e)
            store.journal_update(entry, JournalState.FAILED, reason=why)
            problems.append(f"its sidecar {label} stayed: {why}")
            continue
        store.journal_update(entry, JournalState.DONE, destination=went, reason=f"sidecar of {step.file.path}")
        carried.append(sidecar)
    return tuple(carried), problems


# --- sidecars --------------------------------------------------------------------------------------------------

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


class _Listings:
    """Folder listings, read once per plan."""

    def __init__(self) -> None:
        self._names: dict[str, list[str]] = {}

    def names(self, path: str) -> list[str]:
        folder = os.path.dirname(path) or "."
        if folder not in self._names:
            try:
                self._names[folder] = os.listdir(folder)
            except OSError:
                self._names[folder] = []
        return self._names[folder]


def _act(step: Step, destination: str | None) -> str | None:
    f, k = step.file, step.keeper
    if step.action is Action.DELETE:
        os.unlink(f.path)
        return None
    if step.action is Action.TRASH:
        return trash_file(f.path)
    if step.action is Action.MOVE:
        assert destination is not None
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        return place(f.path, [destination], f.content_hash)
    assert destination is not None
    if step.action is Action.HARDLINK:
        os.link(k.path, destination, follow_symlinks=False)
        linked = os.lstat(destination)
        if (linked.st_dev, linked.st_ino) != (k.dev, k.ino):  # the keeper was swapped under us
            os.unlink(destination)
            raise Refused("the keeper changed while linking")
    else:
        os.symlink(k.path, destination)
    try:
        os.replace(destination, f.path)  # atomic: the path always holds either the copy or the link
    except BaseException:
        with _quietly():
            os.unlink(destination)
        raise
    return None


def _record_after(store: Store, step: Step, f: FileRecord) -> None:
    """Keep the store true to the disk, so that the groups no longer list what was removed."""
    with store.transaction():
        if step.action is Action.HARDLINK:
            store.put_file(f.path, os.lstat(f.path), f.content_hash)
        else:
            store.forget_files([f.path])


class _quietly:
    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, ev: object, tb: object) -> bool:
        return isinstance(ev, OSError)


def _free_names(target: str) -> Iterator[str]:
    """The target, then "name (1).ext", "name (2).ext", ... whichever are not taken."""
    base, ext = os.path.splitext(target)
    for n in range(100_000):
        candidate = target if n == 0 else f"{base} ({n}){ext}"
        if not os.path.lexists(candidate):
            yield candidate
    raise Refused(f"no free name for {target}")


def _temp_name(path: str) -> str:
    folder, name = os.path.split(path)
    for n in range(1000):
        candidate = os.path.join(folder, f".{name}.dedupe-{os.getpid()}-{n}.tmp")
        if not os.path.lexists(candidate):
            return candidate
    raise Refused("no free temporary name in its folder")


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
            with _quietly():
                os.unlink(candidate)
            raise
        return candidate
    raise Refused(f"{names[-1]} already exists: not overwritten")


def _copy_then_remove(src: str, candidates: Sequence[str], expected_hash: str) -> str:
    for candidate in candidates:
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            digest = _copy_into(src, fd)
            if digest != expected_hash:
                raise Refused("the copy does not match the expected bytes; removed the copy, kept the original")
            os.chmod(candidate, stat.S_IMODE(os.lstat(src).st_mode))
            st = os.lstat(src)
            os.utime(candidate, ns=(st.st_atime_ns, st.st_mtime_ns))
            if fingerprint.hash_file(candidate) != expected_hash:
                raise Refused("the copy reads back different bytes; removed the copy, kept the original")
            os.unlink(src)
        except BaseException as e:
            with _quietly():
                os.unlink(candidate)
            if isinstance(e, OSError):
                why = f"copying to {candidate} failed: {_reason(e)}; the original is kept"
                raise Refused(why) from None
            raise
        return candidate
    raise Refused(f"{candidates[-1]} already exists: not overwritten")


def _copy_into(src: str, fd: int) -> str:
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    with Path(src).open("rb") as inp, os.fdopen(fd, "wb") as out:
        while block := inp.read(1 << 20):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


# --- the desktop trash -----------------------------------------------------------------------------------------


def _freedesktop() -> bool:
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
    if not _freedesktop():
        from send2trash import send2trash

        try:
            send2trash(path)
        except OSError as e:
            raise Refused(f"the trash is not available here: {_reason(e)}; not deleted") from None
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
            raise Refused(f"no usable trash on the drive at {topdir} ({_reason(e)}); not deleted") from None
    try:
        plat_other.trash_move(os.fsencode(path), os.fsencode(trash), os.fsencode(topdir))
    except OSError as e:
        _drop_dangling_info(trash, topdir, path)
        raise Refused(f"cannot move it to the trash at {trash} ({_reason(e)}); not deleted") from None
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
            with _quietly():
                os.unlink(entry.info)


def _trash_dirs_for(path: str) -> list[tuple[str, str]]:
    """(trash folder, top folder) pairs where a file trashed from path may be."""
    home = data_home()
    found = [(os.path.join(home, "Trash"), home)]
    if _freedesktop():
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


# --- undo ------------------------------------------------------------------------------------------------------


def runs(store: Store) -> list[RunInfo]:
    return store.runs()


def undo(store: Store, run_id: int | None = None, *, on_progress: ProgressCallback | None = None) -> UndoResult:
    """Reverse a run (by default the last one not yet undone), newest act first.

    Works from the journal alone, so an interrupted run is understood: an act written down as planned is
    looked for on disk, and reversed only if it happened. Nothing is overwritten; what cannot be restored is
    reported with the reason, and the run stays undoable so that a later undo can try again.
    """
    all_runs = store.runs()
    if run_id is None:
        live = (r for r in all_runs if r.undone is None and (r.counts.get("done") or r.counts.get("planned")))
        run = next(live, None)
        if run is None:
            raise DedupeError("nothing to undo")
    else:
        run = next((r for r in all_runs if r.id == run_id), None)
        if run is None:
            raise DedupeError(f"no run {run_id}: see 'dedupe undo --list'")
        if run.undone is not None:
            raise DedupeError(f"run {run_id} was already undone")
    entries = [e for e in reversed(store.journal(run.id)) if e.state in (JournalState.PLANNED, JournalState.DONE)]
    results: list[StepResult] = []
    for n, e in enumerate(entries, start=1):
        try:
            state, reason = _undo_entry(e)
        except (Refused, OSError) as err:
            state, reason = StepState.FAILED, str(err) if isinstance(err, Refused) else _reason(err)
        if state is StepState.DONE:
            store.journal_update(e.id, JournalState.UNDONE, reason=reason)
            if e.sidecar_of is None:  # a sidecar is no image: the store never held it
                with _quietly(), store.transaction():
                    store.put_file(e.path, os.lstat(e.path), e.content_hash)
        elif state is StepState.SKIPPED:  # planned, and it never happened
            store.journal_update(e.id, JournalState.FAILED, reason=reason)
        results.append(StepResult(e.path, e.action, state, reason, e.keeper, e.destination, e.size))
        if on_progress:
            on_progress(ProgressEvent("undo", n, len(entries), e.path))
    complete = all(r.state is not StepState.FAILED for r in results)
    if complete:
        store.mark_run_undone(run.id)
    return UndoResult(run.id, run.action, tuple(results), complete)


def _same_bytes(path: str, content_hash: str) -> bool:
    try:
        st = os.lstat(path)
        return stat.S_ISREG(st.st_mode) and fingerprint.hash_file(path) == content_hash
    except OSError:
        return False


def _undo_entry(e: JournalEntry) -> tuple[StepState, str]:
    planned = e.state is JournalState.PLANNED
    never = (StepState.SKIPPED, "interrupted before it happened: nothing to undo")
    if e.action is Action.DELETE:
        if planned and _same_bytes(e.path, e.content_hash):
            return never
        return StepState.FAILED, "deleted permanently: cannot be restored"

    if e.action is Action.TRASH:
        if os.path.lexists(e.path):
            if _same_bytes(e.path, e.content_hash):
                return never if planned else (StepState.DONE, "already back in place")
            return StepState.FAILED, "another file is at its path now; the trashed copy was left in the trash"
        found: tuple[str, str | None] | None = None
        if e.destination and _same_bytes(e.destination, e.content_hash):
            found = (e.destination, _info_for(e.destination))
        else:
            found = find_in_trash(e.path, e.at, e.content_hash)
        if found is None:
            if not _freedesktop():
                return StepState.FAILED, "restore it from the system trash (this platform does not say where it is)"
            return StepState.FAILED, "not found in the trash (was the trash emptied?)"
        trashed, info = found
        Path(e.path).parent.mkdir(parents=True, exist_ok=True)
        place(trashed, [e.path], e.content_hash)
        if info:
            with _quietly():
                os.unlink(info)
        return StepState.DONE, f"restored from the trash ({trashed})"

    if e.action is Action.MOVE:
        dest = e.destination
        if dest is None:
            return never if planned else (StepState.FAILED, "the journal does not say where it was moved")
        if os.path.lexists(e.path):
            if not _same_bytes(e.path, e.content_hash):
                return StepState.FAILED, f"another file is at its path now; the moved copy is still at {dest}"
            if (
                planned
                and os.path.lexists(dest)
                and not os.path.samefile(dest, e.path)
                and _same_bytes(dest, e.content_hash)
            ):
                # Interrupted between copying and removing the original: drop the copy, the original is here.
                os.unlink(dest)
                return StepState.DONE, f"interrupted move: removed the copy at {dest}"
            return never if planned else (StepState.DONE, "already back in place")
        if not _same_bytes(dest, e.content_hash):
            return StepState.FAILED, f"the moved file is missing or changed at {dest}"
        Path(e.path).parent.mkdir(parents=True, exist_ok=True)
        place(dest, [e.path], e.content_hash)
        return StepState.DONE, f"moved back from {dest}"

    # Links: the copy had the keeper's exact bytes (a link is only planned for identical copies), so the
    # original bytes are the keeper's; they are copied back into a separate file with the old mode and mtime.
    tmp = e.destination
    if tmp and os.path.lexists(tmp) and _is_link_to(tmp, e.keeper):
        os.unlink(tmp)  # left by an interrupted run
    if not os.path.lexists(e.path):
        return StepState.FAILED, "its path is empty now: nothing to restore over"
    if not _is_link_to(e.path, e.keeper):
        if planned and _same_bytes(e.path, e.content_hash):
            return never
        return StepState.FAILED, "no longer the link to the keeper: left alone"
    if not _same_bytes(e.keeper, e.content_hash):
        return StepState.FAILED, f"the keeper {e.keeper} changed: the original bytes are not available"
    restore = _temp_name(e.path)
    fd = os.open(restore, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if _copy_into(e.keeper, fd) != e.content_hash:
            raise Refused("the keeper changed while copying it back")
        os.chmod(restore, stat.S_IMODE(e.mode))
        os.utime(restore, ns=(e.mtime_ns, e.mtime_ns))
        os.replace(restore, e.path)
    except BaseException:
        with _quietly():
            os.unlink(restore)
        raise
    return StepState.DONE, "replaced the link by a copy of the original bytes"


def _is_link_to(path: str, keeper: str) -> bool:
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(path) == keeper
        kst = os.lstat(keeper)
        return stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (kst.st_dev, kst.st_ino)
    except OSError:
        return False


def _info_for(trashed: str) -> str | None:
    files_dir, name = os.path.split(trashed)
    info = os.path.join(os.path.dirname(files_dir), "info", name + ".trashinfo")
    return info if os.path.exists(info) else None


# --- a reviewable shell script ---------------------------------------------------------------------------------

_SCRIPT_HEAD = """#!/bin/sh
# Written by dedupe on {when}: {summary}.
# Read it first, then run it with: sh {name}
# Each step first checks that the keeper is still a regular file of its recorded size, and that the copy still
# has its recorded size; otherwise the step is skipped with a message. Nothing is overwritten.
set -u
skipped=0
has_size() {{ [ -f "$1" ] && [ ! -L "$1" ] && [ "$(($(wc -c < "$1")))" -eq "$2" ]; }}
skip() {{ echo "skipped $1" >&2; skipped=$((skipped + 1)); return 1; }}
check() {{ # keeper keeper_size copy copy_size
  has_size "$1" "$2" || skip "$3: its keeper $1 is missing or changed" || return 1
  has_size "$3" "$4" || skip "$3: it is missing or changed"
}}
free() {{ # destination
  if [ -e "$1" ] || [ -L "$1" ]; then skip "$1: already exists, not overwritten"; fi
}}
to_trash() {{
  if command -v gio >/dev/null 2>&1; then gio trash -- "$1"
  elif command -v trash-put >/dev/null 2>&1; then trash-put -- "$1"
  else skip "$1: no trash command (gio or trash-put) here; not deleted"
  fi
}}
"""


def plan_script(plan: Plan, name: str = "dedupe-plan.sh") -> str:
    """A POSIX shell script that carries out the plan, every path quoted for the shell."""
    q = shlex.quote
    steps = plan.steps
    lines = [
        _SCRIPT_HEAD.format(
            when=time.strftime("%Y-%m-%d %H:%M"),
            summary=f"{plan.action.value} {len(steps)} redundant copies ({plan.reclaimable_bytes} bytes)",
            name=name,
        )
    ]
    for n, g in enumerate(plan.groups, start=1):
        if not g.steps:
            continue
        k = g.choice.keeper
        lines.append(f"# group {n}: keep {_comment(k.path)} ({_comment(g.choice.reason)})")
        for s in g.steps:
            check = f"check {q(k.path)} {k.size} {q(s.file.path)} {s.file.size}"
            c = q(s.file.path)
            if s.action is Action.TRASH:
                act = f"to_trash {c}"
            elif s.action is Action.DELETE:
                act = f"rm -f -- {c}"
            elif s.action is Action.MOVE:
                assert s.destination is not None
                d = q(s.destination)
                act = f"free {d} && mkdir -p -- {q(os.path.dirname(s.destination))} && mv -- {c} {d}"
            else:
                tmp = q(os.path.join(os.path.dirname(s.file.path), f".{os.path.basename(s.file.path)}.dedupe.tmp"))
                flag = "" if s.action is Action.HARDLINK else "-s "
                act = f"free {tmp} && ln {flag}-- {q(k.path)} {tmp} && mv -f -- {tmp} {c}"
            if not s.sidecars:
                lines.append(f"{check} && {act}")
                continue
            lines.append(f"if {check} && {act}; then")
            for sidecar in s.sidecars:
                sc = q(sidecar)
                if s.action is Action.TRASH:
                    lines.append(f"  [ -f {sc} ] && to_trash {sc}")
                elif s.action is Action.DELETE:
                    lines.append(f"  [ -f {sc} ] && [ ! -L {sc} ] && rm -f -- {sc}")
                else:
                    assert s.destination is not None
                    sd = q(sidecar_target(sidecar, s.file.path, s.destination))
                    lines.append(f"  [ -f {sc} ] && free {sd} && mv -- {sc} {sd}")
            lines.append("fi")
        lines.append("")
    lines.append('echo "dedupe script finished; $skipped step(s) skipped" >&2')
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_RULES_TEXT",
    "RAW_KEPT",
    "TWIN_KEPT",
    "Refused",
    "apply",
    "check_file",
    "choose_keeper",
    "find_in_trash",
    "find_sidecars",
    "move_target",
    "parse_rules",
    "place",
    "plan",
    "plan_script",
    "relation",
    "runs",
    "sidecar_target",
    "suggest_keeper",
    "trash_file",
    "undo",
]
