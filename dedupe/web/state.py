"""What the review page knows and decides: the groups, the decisions made on the page, and the plans made from them.

No HTTP here (app.py turns requests into calls on ReviewState), and no keeper logic either: every keeper, act and
reason shown comes from the Plan that the planner given by the command line makes, the same plan `dedupe review`
applies. The page only picks which groups go into it, which keeper the user chose, and which members the user
keeps besides the keeper (their steps are taken out of the plan).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePath
from typing import Any

from dedupe import DedupeError, Store, apply, undo
from dedupe.formats import copy_labels, display_path
from dedupe.models import (
    Action,
    ApplyResult,
    DuplicateGroup,
    FileRecord,
    GroupPlan,
    MatchKind,
    Plan,
    ProgressEvent,
    RunInfo,
    Skipped,
    StepState,
    UndoResult,
)
from dedupe.plan import not_duplicate_pairs

GroupLoader = Callable[[], Sequence[DuplicateGroup]]
# The plan for some groups, with the keepers the user picked by index into those groups.
Planner = Callable[[Sequence[DuplicateGroup], Mapping[int, str]], Plan]


class Decision(StrEnum):
    UNDECIDED = "undecided"
    ACCEPTED = "accepted"  # goes into the plan: the suggested keeper or the one chosen
    NOT_DUPLICATES = "not_duplicates"  # remembered in the store when the plan is applied
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class GroupDecision:
    state: Decision = Decision.UNDECIDED
    keeper: str | None = None  # a member's path chosen by the user; None: the plan's suggestion
    keep_too: frozenset[str] = frozenset()  # members kept besides the keeper


# Groups of these kinds are "exact": every member has the same bytes or the same pixels as the reference.
KIND_CLASSES: dict[str, frozenset[MatchKind]] = {
    "exact": frozenset((MatchKind.EXACT, MatchKind.IMAGE)),
    "near": frozenset((MatchKind.NEAR,)),
}
KEPT_BY_YOU = "kept: you marked it to keep too"
MATCH_TEXT = {MatchKind.EXACT: "same bytes", MatchKind.IMAGE: "same pixels", MatchKind.NEAR: "similar"}
VERBS = {
    Action.TRASH: ("trash", "trashed"),
    Action.DELETE: ("delete permanently", "deleted"),
    Action.MOVE: ("move", "moved"),
    Action.HARDLINK: ("hard-link", "hard-linked"),
    Action.SYMLINK: ("symlink", "symlinked"),
}
ATTRIBUTES = ("resolution", "size", "format", "taken", "camera", "folder")


class StalePlan(DedupeError):
    """The plan shown is no longer the plan the decisions make: the page must show it again."""


class StaleGrouping(DedupeError):
    """The page shows groups of an earlier grouping (an apply or undo, maybe in another tab, made them again):
    its group and member numbers now name other files, so it must load them again."""

    reload = "the groups were made again since this page showed them: reload the page"


def keeping_too(gp: GroupPlan, paths: Iterable[str]) -> GroupPlan:
    """The group's plan without the steps of the members the user keeps as well."""
    kept = set(paths) & {s.file.path for s in gp.steps}
    if not kept:
        return gp
    steps = tuple(s for s in gp.steps if s.file.path not in kept)
    left = gp.left + tuple(Skipped(p, KEPT_BY_YOU) for p in sorted(kept))
    return dataclasses.replace(gp, steps=steps, left=left)


def plan_id(the_plan: Plan, not_duplicates: Iterable[int]) -> str:
    """A short digest of what applying would do, so that what is applied is what was shown."""
    h = hashlib.sha256(the_plan.action.value.encode())
    for s in the_plan.steps:
        for part in (s.file.path, s.keeper.path, s.destination or "", *s.sidecars):
            h.update(part.encode("utf-8", "surrogateescape") + b"\0")
        h.update(b"\1")
    h.update(repr(sorted(not_duplicates)).encode())
    return h.hexdigest()[:20]


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def text(s: str) -> str:
    """A path for display, as the terminal shows it (display_path): undecodable bytes and control characters as
    \\xNN, a backslash as two. A page would show a newline or a tab as a space, as if the name held one."""
    return display_path(s)


class ReviewState:
    """The groups under review and the decisions made on the page. Thread-safe: one lock guards everything but
    the progress of a running apply, which the page polls while the apply holds the lock.

    Over 300 lines on purpose: every method reads or changes the same groups, decisions and plans under that one
    lock; the JSON views (overview, summaries, describe, plan_view) would otherwise reach into another class's
    state and lock."""

    def __init__(self, store: Store, load: GroupLoader, planner: Planner, action: Action = Action.TRASH) -> None:
        self.store = store
        self.action = action
        self._load = load
        self._planner = planner
        self._lock = threading.RLock()
        self.generation = 0
        self.groups: list[DuplicateGroup] = []
        self.suggested: list[GroupPlan] = []
        self.decisions: dict[int, GroupDecision] = {}
        self.progress: tuple[int, int] = (0, 0)
        self.last_result: ApplyResult | None = None
        self.reload()

    # --- loading --------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Group again from the store (after an apply or an undo the groups change), forgetting the decisions."""
        with self._lock:
            groups = list(self._load())
            suggested = list(self._planner(groups, {}).groups) if groups else []
            if len(suggested) != len(groups):
                raise DedupeError("the planner returned a plan for other groups than it was given")
            self.groups, self.suggested = groups, suggested
            self.decisions = {}
            self.generation += 1

    def member(self, generation: int, group: int, member: int) -> FileRecord | None:
        """The file a page URL names, or None for anything outside the current grouping."""
        with self._lock:
            if generation != self.generation or not 0 <= group < len(self.groups):
                return None
            members = self.groups[group].members
            return members[member].file if 0 <= member < len(members) else None

    # --- plans ----------------------------------------------------------------------------------------------

    def group_plan(self, i: int) -> GroupPlan:
        """What the plan does to group i with the decision made for it (the suggestion when undecided)."""
        with self._lock:
            d = self.decisions.get(i, GroupDecision())
            gp = self.suggested[i]
            if d.keeper is not None:
                gp = self._planner([self.groups[i]], {0: d.keeper}).groups[0]
            return keeping_too(gp, d.keep_too)

    def plan(self) -> tuple[Plan, list[int], list[int]]:
        """The plan of the accepted groups, their indexes, and the indexes of the groups marked not duplicates."""
        with self._lock:
            accepted = sorted(i for i, d in self.decisions.items() if d.state is Decision.ACCEPTED)
            apart = sorted(i for i, d in self.decisions.items() if d.state is Decision.NOT_DUPLICATES)
            keepers = {n: k for n, i in enumerate(accepted) if (k := self.decisions[i].keeper) is not None}
            if not accepted:
                return Plan(self.action, None, ()), accepted, apart
            made = self._planner([self.groups[i] for i in accepted], keepers)
            gps = tuple(
                keeping_too(gp, self.decisions[i].keep_too) for gp, i in zip(made.groups, accepted, strict=True)
            )
            return dataclasses.replace(made, groups=gps), accepted, apart

    # --- decisions ------------------------------------------------------------------------------------------

    def decide(
        self,
        i: int,
        state: Decision,
        keeper: int | None = None,
        keep_too: Iterable[int] = (),
        generation: int | None = None,
    ) -> None:
        """Record the decision for group i; keeper and keep_too are member indexes (never paths from a request).
        generation: the grouping the page showed, refused with StaleGrouping when the groups were made again."""
        with self._lock:
            if generation is not None and generation != self.generation:
                raise StaleGrouping(StaleGrouping.reload)
            if not 0 <= i < len(self.groups):
                raise DedupeError("no such group in the current grouping")
            members = self.groups[i].members
            picks = [keeper] if keeper is not None else []
            if any(not 0 <= m < len(members) for m in [*picks, *keep_too]):
                raise IndexError("no such member")
            path = members[keeper].file.path if keeper is not None else None
            too = frozenset(members[m].file.path for m in keep_too) - {path or ""}
            self.decisions[i] = GroupDecision(state, path, too)

    def accept_all(self, kind: str) -> int:
        """Accept the suggestion of every undecided group of a kind class ("exact" or "near"); returns how many."""
        with self._lock:
            chosen = self._acceptable(kind)
            for i in chosen:
                self.decisions[i] = GroupDecision(Decision.ACCEPTED)
            return len(chosen)

    def _acceptable(self, kind: str) -> list[int]:
        kinds = KIND_CLASSES[kind]
        return [
            i
            for i, g in enumerate(self.groups)
            if g.kind in kinds and i not in self.decisions and self.suggested[i].skipped is None
        ]

    # --- acting ---------------------------------------------------------------------------------------------

    def apply(self, shown: str) -> ApplyResult:
        """Apply the plan the page showed (by its id), remember the groups marked not duplicates, group again."""
        with self._lock:
            the_plan, _, apart = self.plan()
            if plan_id(the_plan, apart) != shown:
                raise StalePlan("the decisions changed since the plan was shown: look at it again")
            pairs = not_duplicate_pairs(self.groups[j] for j in apart)
            if pairs:
                self.store.add_not_duplicates(pairs)
            self.progress = (0, len(the_plan.steps))
            result = apply(the_plan, self.store, on_progress=self._on_progress)
            self.last_result = result
            self.reload()
            return result

    def _on_progress(self, event: ProgressEvent) -> None:
        self.progress = (event.done, event.total or 0)

    def last_run(self) -> RunInfo | None:
        """The run 'dedupe undo' would reverse, or None: a run of permanent deletes has nothing to reverse, and a
        button naming it would only be refused."""
        with self._lock:
            runs = self.store.runs()
        live = (
            r
            for r in runs
            if r.undone is None and r.action is not Action.DELETE and (r.counts.get("done") or r.counts.get("planned"))
        )
        return next(live, None)

    def undo(self, run_id: int | None = None) -> UndoResult:
        """Undo the last run, or the run the page named (its button says which: another may have come since)."""
        with self._lock:
            result = undo(self.store, run_id=run_id)
            self.reload()
            return result

    # --- what the page shows ----------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        with self._lock:
            kinds: dict[str, dict[str, Any]] = {
                k.value: {"groups": 0, "files": 0, "steps": 0, "bytes": 0} for k in MatchKind
            }
            for g, gp in zip(self.groups, self.suggested, strict=True):
                row = kinds[g.kind.value]
                row["groups"] += 1
                row["files"] += len(g.members)
                row["steps"] += len(gp.steps)
                row["bytes"] += sum(s.file.size for s in gp.steps)
            for row in kinds.values():
                row["bytes_text"] = human_size(row["bytes"])
            freed = sum(s.file.size for gp in self.suggested for s in gp.steps)
            decided = {d.value: 0 for d in Decision}
            for d in self.decisions.values():
                decided[d.state.value] += 1
            decided[Decision.UNDECIDED.value] = len(self.groups) - len(self.decisions)
            run = self.last_run()
            return {
                "generation": self.generation,
                "groups": len(self.groups),
                "files": sum(len(g.members) for g in self.groups),
                "action": self.action.value,
                "verb": VERBS[self.action][0],
                "kinds": kinds,
                "steps": sum(len(gp.steps) for gp in self.suggested),
                "bytes_text": human_size(freed),
                "decided": decided,
                "accept": {k: self._accept_totals(k) for k in KIND_CLASSES},
                "last_run": None
                if run is None
                else {"id": run.id, "action": run.action.value, "done": run.counts.get("done", 0)},
            }

    def _accept_totals(self, kind: str) -> dict[str, Any]:
        chosen = self._acceptable(kind)
        steps = [s for i in chosen for s in self.suggested[i].steps]
        return {
            "groups": len(chosen),
            "steps": len(steps),
            "bytes": sum(s.file.size for s in steps),
            "bytes_text": human_size(sum(s.file.size for s in steps)),
        }

    def accept_preview(self, kind: str, limit: int = 200) -> dict[str, Any]:
        """What accepting a kind class would add to the plan: the first steps, and the totals."""
        with self._lock:
            chosen = self._acceptable(kind)
            steps = [(i, s) for i in chosen for s in self.suggested[i].steps]
            return {
                **self._accept_totals(kind),
                "verb": VERBS[self.action][0],
                "items": [
                    {"group": i, "path": text(s.file.path), "keeper": text(s.keeper.path), "size": s.file.size}
                    for i, s in steps[:limit]
                ],
            }

    def summaries(self, offset: int, limit: int) -> dict[str, Any]:
        """One line per group, a page at a time: 10,000 groups never go to the page at once."""
        with self._lock:
            rows = []
            for i in range(max(0, offset), min(len(self.groups), offset + limit)):
                g, gp = self.groups[i], self.group_plan(i)
                d = self.decisions.get(i, GroupDecision())
                rows.append(
                    {
                        "index": i,
                        "kind": g.kind.value,
                        "match": MATCH_TEXT[g.kind],
                        "members": len(g.members),
                        "keeper": text(_name(gp.choice.keeper.path)),
                        "tie": gp.choice.is_tie,
                        "steps": len(gp.steps),
                        "bytes_text": human_size(sum(s.file.size for s in gp.steps)),
                        "decision": d.state.value,
                    }
                )
            return {"total": len(self.groups), "offset": offset, "groups": rows}

    def describe(self, i: int) -> dict[str, Any]:
        """Group i for the page: each member's facts, which of them differ, and what the plan does to it; IndexError
        for a number outside the current grouping."""
        with self._lock:
            if not 0 <= i < len(self.groups):
                raise IndexError("no such group in the current grouping")
            g, gp = self.groups[i], self.group_plan(i)
            d = self.decisions.get(i, GroupDecision())
            steps = {s.file.path: s for s in gp.steps}
            left = {s.path: s.reason for s in gp.left}
            facts = [_facts(m.file) for m in g.members]
            differs = [a for a in ATTRIBUTES if len({f[a] for f in facts}) > 1]
            members = []
            labels = copy_labels(g)
            for n, (m, f) in enumerate(zip(g.members, facts, strict=True)):
                path = m.file.path
                entry: dict[str, Any] = {
                    "index": n,
                    "path": text(path),
                    "name": text(_name(path)),
                    **{k: text(v) if isinstance(v, str) else v for k, v in f.items()},
                    "bytes": m.file.size,
                    "modified": datetime.fromtimestamp(m.file.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M"),
                    "why": "the group's reference" if n == 0 else MATCH_TEXT[m.match] + _detail(m.why, m.match),
                    "copies": labels[n],  # one letter on the files with the same bytes, None for a unique file
                    "thumb": f"/thumb/{self.generation}/{i}/{n}",
                    "full": f"/full/{self.generation}/{i}/{n}",
                }
                if path == gp.choice.keeper.path and not gp.choice.is_tie:
                    entry["role"], entry["note"] = "keep", gp.choice.reason
                elif path in steps:
                    s = steps[path]
                    entry["role"] = "act"
                    entry["note"] = VERBS[s.action][0] + (f" to {text(s.destination)}" if s.destination else "")
                    if s.keeper.path != gp.choice.keeper.path:
                        entry["note"] += f" (in favour of {text(_name(s.keeper.path))})"
                    entry["sidecars"] = [text(_name(c)) for c in s.sidecars]
                elif gp.choice.is_tie and path in gp.choice.tied:
                    entry["role"], entry["note"] = "tie", "the rules cannot choose: pick the keeper"
                elif path in left:
                    entry["role"] = "keep-too" if left[path] == KEPT_BY_YOU else "leave"
                    entry["note"] = text(left[path])
                else:
                    entry["role"], entry["note"] = "leave", "left alone"
                members.append(entry)
            return {
                "index": i,
                "total": len(self.groups),
                "generation": self.generation,
                "kind": g.kind.value,
                "match": MATCH_TEXT[g.kind],
                "decision": d.state.value,
                "chosen": d.keeper is not None,
                "keeper": text(gp.choice.keeper.path),
                "reason": text(gp.choice.reason),
                "tie": gp.choice.is_tie,
                "skipped": text(gp.skipped) if gp.skipped else None,
                "verb": VERBS[self.action][0],
                "steps": len(gp.steps),
                "bytes_text": human_size(sum(s.file.size for s in gp.steps)),
                "differs": differs,
                "members": members,
            }

    def plan_view(self) -> dict[str, Any]:
        """The plan Apply would carry out, as the page shows it before asking."""
        with self._lock:
            the_plan, accepted, apart = self.plan()
            groups = []
            for i, gp in zip(accepted, the_plan.groups, strict=True):
                groups.append(
                    {
                        "index": i,
                        "keeper": text(gp.choice.keeper.path),
                        "reason": text(gp.choice.reason),
                        "skipped": text(gp.skipped) if gp.skipped else None,
                        "steps": [
                            {
                                "path": text(s.file.path),
                                "match": MATCH_TEXT[s.match],
                                "destination": text(s.destination) if s.destination else None,
                                "sidecars": [text(c) for c in s.sidecars],
                                "size": s.file.size,
                            }
                            for s in gp.steps
                        ],
                        "left": [{"path": text(s.path), "reason": text(s.reason)} for s in gp.left],
                    }
                )
            return {
                "id": plan_id(the_plan, apart),
                "action": the_plan.action.value,
                "verb": VERBS[the_plan.action][0],
                "files": len(the_plan.steps),
                "bytes_text": human_size(the_plan.reclaimable_bytes),
                "not_duplicates": apart,
                "groups": groups,
            }


def _facts(f: FileRecord) -> dict[str, str]:
    fp = f.fingerprint
    return {
        "resolution": f"{fp.width}x{fp.height}",
        "size": human_size(f.size),
        "format": fp.format,
        "taken": fp.taken.replace("T", " ") if fp.taken else "unknown",
        "camera": fp.camera or "unknown",
        "folder": str(PurePath(f.path).parent),
    }


def _name(path: str) -> str:
    return PurePath(path).name


def _detail(why: str, kind: MatchKind) -> str:
    return f" ({why})" if kind is MatchKind.NEAR else ""


def result_view(result: ApplyResult | UndoResult, *, undoing: bool = False) -> dict[str, Any]:
    """The outcome per file, for the page."""
    verb = "restored" if undoing else VERBS[result.action][1]
    rows = [
        {
            "path": text(r.path),
            "state": r.state.value,
            "said": verb if r.state is StepState.DONE else r.state.value,
            "reason": text(r.reason),
            "destination": text(r.destination) if r.destination else None,
            "sidecars": [text(_name(c)) for c in r.sidecars],
        }
        for r in result.results
    ]
    counts = {s.value: sum(r.state is s for r in result.results) for s in StepState}
    out: dict[str, Any] = {"run": result.run_id, "action": result.action.value, "results": rows, "counts": counts}
    if isinstance(result, ApplyResult):
        out["freed_text"] = human_size(result.freed_bytes)
    else:
        out["complete"] = result.complete
    return out
