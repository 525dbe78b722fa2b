"""Applying plans (checked, journaled): trash, delete, move and link; quarantine; undo.

Safety rules that every path through this module keeps:

- Right before a copy is touched, the copy and its keeper are checked again against what the scan saw (file type,
  device, inode, size, mtime, and the content hash read from the bytes). Anything that changed is skipped.
- Every act is written to the store's journal before it happens and marked done after, so `undo` can reverse a
  run, including one that was interrupted half-way.
- Nothing is ever overwritten: moves and restores take a free name, links go through a temporary name in the same
  folder and replace the copy atomically, and a failed cross-device copy removes what it wrote (files.py).
- The trash never falls back to a permanent delete (trash.py).
- A photo's sidecar files go wherever it goes (sidecars.py).

What a plan holds, and why it never touches a group's last copy, is plan.py's business.

Paths are plain strings (undecodable bytes kept as surrogate escapes, as in the store) handed to the os-level
calls whose exact semantics matter here (link without following, O_EXCL, atomic replace), so pathlib is not used.
"""
# ruff: noqa: PTH101, PTH105, PTH108, PTH115, PTH121, PTH211

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from dedupe import fingerprint
from dedupe.errors import DedupeError, StoreError
from dedupe.files import (
    Refused,
    copy_into,
    error_text,
    fault,
    is_prefix_of,
    open_new,
    place,
    quietly,
    remove_leftovers,
    removed_on_failure,
    same_bytes,
    temp_name,
)
from dedupe.match import hamming, shows_more
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
    MatchKind,
    Plan,
    ProgressEvent,
    RunInfo,
    Step,
    StepResult,
    StepState,
    UndoResult,
)
from dedupe.plan import RAW_KEPT, TWIN_KEPT, VIEW_REASON, is_raw, looks_like_a_view, move_target, relation
from dedupe.sidecars import CARRIES_SIDECARS, carry_sidecars, find_sidecars, free_for_all
from dedupe.store import Store
from dedupe.trash import find_in_trash, freedesktop, info_for, trash_file

ProgressCallback = Callable[[ProgressEvent], None]

# --- checks right before acting ------------------------------------------------------------------------------


def check_file(f: FileRecord, role: str = "") -> str | None:
    """Why a file is no longer what the scan saw, or None when it is the same file with the same bytes."""
    who = f"{role} " if role else ""
    try:
        st = os.lstat(f.path)
    except FileNotFoundError:
        return f"{who}vanished since the scan".strip()
    except OSError as e:
        return f"{who}cannot be checked: {error_text(e)}"
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
        return f"{who}cannot be read: {error_text(e)}"
    if digest != f.content_hash:
        return f"{who}has different bytes than at the scan".strip()
    return None


# --- applying --------------------------------------------------------------------------------------------------


def apply(plan: Plan, store: Store, *, on_progress: ProgressCallback | None = None) -> ApplyResult:
    """Carry out a plan, checking every copy and its keeper right before touching it, and journaling each act."""
    keepers = {g.choice.keeper.path for g in plan.groups} | {s.keeper.path for s in plan.steps}
    # Files the plan itself names are never carried along as somebody's sidecar.
    named = keepers | {s.file.path for s in plan.steps}
    touched: set[str] = set()
    results: list[StepResult] = []
    steps = plan.steps
    try:
        _clear_in_flight(store)
        run_id = store.start_run(plan.action)
        for n, step in enumerate(steps, start=1):
            results.append(_apply_step(step, store, run_id, keepers, touched, named))
            touched.add(step.file.path)
            if on_progress:
                on_progress(ProgressEvent("apply", n, len(steps), step.file.path))
        store.finish_run(run_id)
    except Exception as e:
        if isinstance(e, _StoppedAfterAct):
            results.append(e.result)
            e = e.cause
        failed = store.failure(e)
        if failed is None:
            raise
        raise StoreError(_stopped(failed, plan.action, results, len(steps))) from None
    return ApplyResult(run_id, plan.action, tuple(results))


class _StoppedAfterAct(Exception):
    """The store failed right after an act: the act's result, and the store's failure."""

    def __init__(self, result: StepResult, cause: Exception) -> None:
        super().__init__(str(cause))
        self.result, self.cause = result, cause


def _stopped(failed: StoreError, action: Action, results: Sequence[StepResult], planned: int) -> str:
    """What a run that the store stopped did and did not do, and how to reverse it."""
    done = sum(r.state is StepState.DONE for r in results)
    untouched = planned - len(results)
    if not done:
        return f"{failed}. Nothing was changed: the run stopped before its first act"
    if action is Action.DELETE:
        reverse = "permanent deletes cannot be undone"
    else:
        reverse = "'dedupe undo' reverses them once the store can be written"
    return (
        f"{failed}. The run stopped after {done} of {planned} file(s) were done ({reverse});"
        f" {untouched} were not touched"
    )


def _clear_in_flight(store: Store) -> None:
    """Remove the temporary files that killed runs left beside the paths their journal shows in flight."""
    for path, destination in store.in_flight():
        remove_leftovers(path, destination)


SHOWS_MORE_KEPT = "shows more than the stored copy (which is a crop of it): kept"


def quarantine(copy: FileRecord, keeper: FileRecord, folder: str, roots: Sequence[str], store: Store) -> StepResult:
    """Move one incoming duplicate into folder (keeping its path relative to its watched root), leaving the
    older copy alone: the same checks and journal as a review run, so 'dedupe undo' puts it back."""
    if is_raw(copy) != is_raw(keeper) or (is_raw(copy) and copy.content_hash != keeper.content_hash):
        reason = RAW_KEPT if is_raw(copy) else TWIN_KEPT
        return StepResult(copy.path, Action.MOVE, StepState.SKIPPED, reason, keeper.path, None, 0)
    kind = relation(copy, keeper)
    if kind is MatchKind.NEAR and shows_more(copy.fingerprint, keeper.fingerprint):
        # The stored copy is a crop of the incoming picture: a review keeps the picture that shows more.
        return StepResult(copy.path, Action.MOVE, StepState.SKIPPED, SHOWS_MORE_KEPT, keeper.path, None, 0)
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
        return result(StepState.SKIPPED, f"vanished: {error_text(e)}")
    if (st.st_dev, st.st_ino) == (kst.st_dev, kst.st_ino):
        return result(StepState.SKIPPED, "the keeper's own file (a hard link or another path to it)")
    if looks_like_a_view(
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, kst.st_dev, kst.st_ino, kst.st_size, kst.st_mtime_ns
    ):
        return result(StepState.SKIPPED, VIEW_REASON)

    # Only the sidecars the plan showed go along (an earlier step may have made a shared one look like its own).
    found = step.sidecars if step.action in CARRIES_SIDECARS else ()
    destination: str | None = None
    try:
        if step.action is Action.MOVE:
            assert step.destination is not None
            destination = free_for_all(step.destination, f.path, found)
        elif step.action in (Action.HARDLINK, Action.SYMLINK):
            destination = temp_name(f.path)
    except Refused as e:
        return result(StepState.FAILED, str(e))
    entry = store.journal_planned(run_id, step.action, f.path, k.path, f.content_hash, st, destination)
    fault("planned")
    try:
        where = _act(step, destination)
    except (Refused, OSError) as e:
        why = error_text(e)
        store.journal_update(entry, JournalState.FAILED, reason=why)
        return result(StepState.FAILED, why)
    fault("acted")
    try:
        store.journal_update(entry, JournalState.DONE, destination=where)
        _record_after(store, step, f)
    except Exception as e:
        if store.failure(e) is None:
            raise
        # The act happened (undo finds it on disk from the planned entry): it counts as done.
        raise _StoppedAfterAct(result(StepState.DONE, "", where), e) from None
    carried, problems = carry_sidecars(step, found, where, store, run_id, named)
    return result(StepState.DONE, "; ".join(problems), where, carried)


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
    with removed_on_failure(destination):
        os.replace(destination, f.path)  # atomic: the path always holds either the copy or the link
    return None


def _record_after(store: Store, step: Step, f: FileRecord) -> None:
    """Keep the store true to the disk, so that the groups no longer list what was removed."""
    with store.transaction():
        if step.action is Action.HARDLINK:
            store.put_file(f.path, os.lstat(f.path), f.content_hash)
        else:
            store.forget_files([f.path])


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
        # A run of permanent deletes has nothing to reverse: it never stands in the way of the runs before it.
        live = (
            r
            for r in all_runs
            if r.undone is None and r.action is not Action.DELETE and (r.counts.get("done") or r.counts.get("planned"))
        )
        run = next(live, None)
        if run is None:
            raise DedupeError("nothing to undo")
    else:
        run = next((r for r in all_runs if r.id == run_id), None)
        if run is None:
            raise DedupeError(f"no run {run_id}: see 'dedupe undo --list'")
        if run.undone is not None:
            raise DedupeError(f"run {run_id} was already undone")
        if run.action is Action.DELETE:
            raise DedupeError(f"run {run_id} deleted files permanently: a delete cannot be undone")
    entries = [e for e in reversed(store.journal(run.id)) if e.state in (JournalState.PLANNED, JournalState.DONE)]
    results: list[StepResult] = []
    for n, e in enumerate(entries, start=1):
        try:
            # What a killed run or undo left in flight: temporary copies and links beside the path and the target.
            remove_leftovers(e.path, e.destination)
            state, reason = _undo_entry(e)
        except (Refused, OSError) as err:
            state, reason = StepState.FAILED, error_text(err)
        if state is StepState.DONE:
            store.journal_update(e.id, JournalState.UNDONE, reason=reason)
            if e.sidecar_of is None:  # a sidecar is no image: the store never held it
                with quietly(), store.transaction():
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


def _undo_entry(e: JournalEntry) -> tuple[StepState, str]:
    planned = e.state is JournalState.PLANNED
    never = (StepState.SKIPPED, "interrupted before it happened: nothing to undo")
    if e.action is Action.DELETE:
        if planned and same_bytes(e.path, e.content_hash):
            return never
        return StepState.FAILED, "deleted permanently: cannot be restored"

    if e.action is Action.TRASH:
        found: tuple[str, str | None] | None = None
        if e.destination and same_bytes(e.destination, e.content_hash):
            found = (e.destination, info_for(e.destination))
        elif not same_bytes(e.path, e.content_hash):
            found = find_in_trash(e.path, e.at, e.content_hash)
        if os.path.lexists(e.path):
            if same_bytes(e.path, e.content_hash):
                return never if planned else (StepState.DONE, "already back in place")
            if found is None or not is_prefix_of(e.path, found[0]):
                return StepState.FAILED, "another file is at its path now; the trashed copy was left in the trash"
            os.unlink(e.path)  # the beginning of the trashed file: a restore killed half-way (older dedupe)
        if found is None:
            if not freedesktop():
                return StepState.FAILED, "restore it from the system trash (this platform does not say where it is)"
            return StepState.FAILED, "not found in the trash (was the trash emptied?)"
        trashed, info = found
        Path(e.path).parent.mkdir(parents=True, exist_ok=True)
        place(trashed, [e.path], e.content_hash)
        if info:
            with quietly():
                os.unlink(info)
        return StepState.DONE, f"restored from the trash ({trashed})"

    if e.action is Action.MOVE:
        dest = e.destination
        if dest is None:
            return never if planned else (StepState.FAILED, "the journal does not say where it was moved")
        if os.path.lexists(e.path) and is_prefix_of(e.path, dest) and same_bytes(dest, e.content_hash):
            os.unlink(e.path)  # the beginning of the moved file: a move back killed half-way (older dedupe)
        if os.path.lexists(e.path):
            if not same_bytes(e.path, e.content_hash):
                return StepState.FAILED, f"another file is at its path now; the moved copy is still at {dest}"
            if os.path.lexists(dest) and os.path.samefile(dest, e.path):
                os.unlink(dest)  # killed between linking the new name and removing the old: one file, two names
                return StepState.DONE, "already back in place"
            if os.path.lexists(dest) and same_bytes(dest, e.content_hash):
                # Interrupted between copying and removing the source (the move, or an earlier undo's move
                # back): the same bytes are at the original path, so the copy at the destination goes.
                os.unlink(dest)
                if planned:
                    return StepState.DONE, f"interrupted move: removed the copy at {dest}"
                return StepState.DONE, f"already back in place; removed the moved copy at {dest}"
            if planned and os.path.lexists(dest) and is_prefix_of(dest, e.path):
                os.unlink(dest)  # a move killed half-way by an older dedupe: its partial copy
                return StepState.DONE, f"interrupted move: removed the partial copy at {dest}"
            return never if planned else (StepState.DONE, "already back in place")
        if not same_bytes(dest, e.content_hash):
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
        if planned and same_bytes(e.path, e.content_hash):
            return never
        return StepState.FAILED, "no longer the link to the keeper: left alone"
    if not same_bytes(e.keeper, e.content_hash):
        return StepState.FAILED, f"the keeper {e.keeper} changed: the original bytes are not available"
    restore = temp_name(e.path)
    fd = open_new(restore)
    with removed_on_failure(restore):
        if copy_into(e.keeper, fd) != e.content_hash:
            raise Refused("the keeper changed while copying it back")
        os.chmod(restore, stat.S_IMODE(e.mode))
        os.utime(restore, ns=(e.mtime_ns, e.mtime_ns))
        fault("restored")
        os.replace(restore, e.path)
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


__all__ = ["ProgressCallback", "apply", "check_file", "quarantine", "runs", "undo"]
