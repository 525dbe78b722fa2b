"""Output schemas: the JSON dictionaries, CSV rows and JSON lines that dedupe prints, as library functions.

A Python caller gets the same dictionaries as `dedupe ... --format json`. Paths stay as they are (a path that
is not valid UTF-8 keeps its bytes as surrogate escapes, which json.dumps writes losslessly); only display_path
makes a path printable, for text and CSV, which are read by people and spreadsheets.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dedupe.exchange import printable, spreadsheet_safe
from dedupe.models import (
    Action,
    ApplyResult,
    CheckResult,
    DuplicateGroup,
    Plan,
    RunInfo,
    SearchHit,
    SearchResult,
    Skipped,
    StepState,
    Summary,
    WatchEvent,
    WatchEventKind,
)

if TYPE_CHECKING:
    from dedupe.calibrate import Calibration


def display_path(path: str) -> str:
    """A path as it can be printed: bytes that are not UTF-8 and control characters (which would drive the
    terminal or split a row) shown as \\xNN escapes, and a backslash of the name as two."""
    if os.sep != "\\":  # a backslash in a POSIX name is doubled, so that "\\x0a" never looks like an escape
        path = path.replace("\\", "\\\\")
    return printable(path)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


# --- groups (scan, groups) ------------------------------------------------------------------------------------


def copy_labels(group: DuplicateGroup) -> list[str | None]:
    """Per member, a label ("A", "B", ...) shared by the members with the same bytes, None for a file with no
    byte copy in the group: which files are copies of each other, whatever their relation to the reference."""
    counts: dict[str, int] = {}
    for m in group.members:
        counts[m.file.content_hash] = counts.get(m.file.content_hash, 0) + 1
    names: dict[str, str] = {}
    for m in group.members:
        h = m.file.content_hash
        if counts[h] > 1 and h not in names:
            names[h] = _letters(len(names))
    return [names.get(m.file.content_hash) for m in group.members]


def _letters(n: int) -> str:
    """A, B, ..., Z, AA, AB, ...: as spreadsheet columns."""
    text = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        text = chr(ord("A") + r) + text
    return text


def groups_json(
    groups: Sequence[DuplicateGroup],
    skipped: Sequence[Skipped],
    summary: Summary,
    extra: dict[str, int] | None = None,
    keeper_reasons: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The groups report; extra adds counts of the scan (fingerprinted, reused, ...) to the summary;
    keeper_reasons: per group, which keeper rules chose its reference (KeeperChoice.reason)."""
    reasons = list(keeper_reasons) if keeper_reasons is not None else [None] * len(groups)
    return {
        "groups": [
            {
                "kind": g.kind.value,
                "keeper_reason": reason,
                "files": [
                    {
                        "path": m.file.path,
                        "reference": i == 0,
                        "copies": label,
                        "match": m.match.value,
                        "distance": m.distance,
                        "transform": m.transform,
                        "dhash": m.dhash,
                        "cropped": m.cropped,
                        "crop": m.crop,
                        "why": m.why,
                        "size": m.file.size,
                        "width": m.file.fingerprint.width,
                        "height": m.file.fingerprint.height,
                        "format": m.file.fingerprint.format,
                        "taken": m.file.fingerprint.taken,
                        "mtime": m.file.mtime_ns / 1e9,
                        "content_hash": m.file.content_hash,
                    }
                    for i, (m, label) in enumerate(zip(g.members, copy_labels(g), strict=True))
                ],
            }
            for g, reason in zip(groups, reasons, strict=True)
        ],
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "summary": {**dataclasses.asdict(summary), **(extra or {})},
    }


GROUP_CSV_FIELDS = (
    "group",
    "kind",
    "reference",
    "copies",
    "match",
    "distance",
    "transform",
    "why",
    "path",
    "size",
    "width",
    "height",
    "format",
    "taken",
)


def group_csv_rows(groups: Sequence[DuplicateGroup]) -> list[dict[str, str | int]]:
    """A row per file, keyed by GROUP_CSV_FIELDS; groups are numbered from 1 as in the table."""
    rows: list[dict[str, str | int]] = []
    for n, g in enumerate(groups, start=1):
        for i, (m, label) in enumerate(zip(g.members, copy_labels(g), strict=True)):
            fp = m.file.fingerprint
            rows.append(
                {
                    "group": n,
                    "kind": g.kind.value,
                    "reference": int(i == 0),
                    "copies": label or "",
                    "match": m.match.value,
                    "distance": m.distance,
                    "transform": m.transform or "",
                    "why": m.why,
                    "path": spreadsheet_safe(display_path(m.file.path)),
                    "size": m.file.size,
                    "width": fp.width,
                    "height": fp.height,
                    "format": fp.format,
                    "taken": fp.taken or "",
                }
            )
    return rows


def groups_csv(groups: Sequence[DuplicateGroup]) -> str:
    """The groups as CSV text: a header, then group_csv_rows."""
    out = io.StringIO()
    writer = csv.DictWriter(out, GROUP_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(group_csv_rows(groups))
    return out.getvalue()


def groups_paths(groups: Sequence[DuplicateGroup]) -> bytes:
    """One path per line, the reference (the file review keeps) first, a blank line after each group, as fdupes
    prints them; paths keep their exact bytes, for xargs and grep, except a path holding a newline: no line can
    hold it, so it is written as display_path shows it (one line, naming no file) rather than as two lines that
    could each name another file."""
    return b"".join(b"".join(_path_line(m.file.path) for m in g.members) + b"\n" for g in groups)


def _path_line(path: str) -> bytes:
    return (display_path(path).encode() if "\n" in path else os.fsencode(path)) + b"\n"


# --- review: plans and what applying them did ----------------------------------------------------------------


def plan_json(the_plan: Plan, *, dry_run: bool) -> dict[str, Any]:
    return {
        "action": the_plan.action.value,
        "dry_run": dry_run,
        "destination": the_plan.destination,
        "groups": [
            {
                "keeper": g.choice.keeper.path,
                "reason": g.choice.reason,
                "tie": list(g.choice.tied),
                "skipped": g.skipped,
                "steps": [
                    {
                        "path": s.file.path,
                        "action": s.action.value,
                        "match": s.match.value,
                        "keeper": s.keeper.path,
                        "size": s.file.size,
                        "destination": s.destination,
                        "sidecars": list(s.sidecars),
                    }
                    for s in g.steps
                ],
                "left": [{"path": s.path, "reason": s.reason} for s in g.left],
            }
            for g in the_plan.groups
        ],
        "summary": {"files": len(the_plan.steps), "bytes": the_plan.reclaimable_bytes},
    }


def result_json(result: ApplyResult) -> dict[str, Any]:
    return {
        "run": result.run_id,
        "results": [
            {
                "path": r.path,
                "state": r.state.value,
                "reason": r.reason,
                "keeper": r.keeper,
                "destination": r.destination,
                "size": r.size,
                "sidecars": list(r.sidecars),
            }
            for r in result.results
        ],
        "summary": {
            "done": result.count(StepState.DONE),
            "skipped": result.count(StepState.SKIPPED),
            "failed": result.count(StepState.FAILED),
            "freed_bytes": result.freed_bytes,
        },
    }


def applied_json(the_plan: Plan, result: ApplyResult | None) -> dict[str, Any]:
    """A plan that was acted on and what came of it (result None: the plan had no step, so no run)."""
    if result is None:
        return {**plan_json(the_plan, dry_run=False), "run": None, "results": []}
    return {**plan_json(the_plan, dry_run=False), **result_json(result)}


def no_groups_json(action: Action, *, dry_run: bool) -> dict[str, Any]:
    """The review's answer when there is no group to plan for."""
    return {"action": action.value, "dry_run": dry_run, "groups": [], "results": []}


# --- undo -----------------------------------------------------------------------------------------------------


def run_state(run: RunInfo) -> str:
    """undone, finished, interrupted (acts were journaled but the run never finished) or unfinished."""
    if run.undone is not None:
        return "undone"
    if run.finished is None:
        return "interrupted" if run.counts.get("planned") or run.counts.get("done") else "unfinished"
    return "finished"


def run_json(run: RunInfo) -> dict[str, Any]:
    """One past run as `dedupe undo --list` shows it."""
    return {
        "run": run.id,
        "started": run.started,
        "action": run.action.value,
        "done": run.counts.get("done", 0),
        "failed": run.counts.get("failed", 0),
        "undone": run.counts.get("undone", 0),
        "state": run_state(run),
    }


# --- search and check -----------------------------------------------------------------------------------------


def hit_json(hit: SearchHit) -> dict[str, Any]:
    """A match of search or check (and of `dedupe serve`), with the hash that matched: "phash" or "pdq"."""
    return {
        "name": hit.name,
        "source": hit.source.value,
        "match": hit.match.value,
        "reason": hit.reason,
        "distance": hit.distance,
        "dhash_distance": hit.dhash_distance,
        "width": hit.width,
        "height": hit.height,
        "content_hash": hit.content_hash,
        "hash": hit.hash,
    }


def search_json(image: str, result: SearchResult | None, error: str | None) -> dict[str, Any]:
    """The matches of one searched image, or the error that kept it from being searched."""
    return {"image": image, "error": error, "matches": [hit_json(h) for h in result.hits] if result else []}


def check_json(image: str, result: CheckResult | None, error: str | None = None) -> dict[str, Any]:
    """Whether one checked image matched, and its closest match; result None: it could not be checked."""
    if result is None:
        return {"image": image, "match": None, "distance": None, "error": error, "closest": None}
    return {
        "image": image,
        "match": result.matched,
        "distance": result.distance,
        "error": None,
        "closest": None if result.hit is None else hit_json(result.hit),
    }


# --- watch and calibrate --------------------------------------------------------------------------------------


def watch_event_json(event: WatchEvent) -> dict[str, Any]:
    """One watch event as a JSON line's object, stamped with the time it is written."""
    out: dict[str, Any] = {"event": event.kind.value, "time": datetime.now(UTC).isoformat(timespec="milliseconds")}
    if event.path is not None:
        out["path"] = event.path
    if event.kind in (WatchEventKind.DUPLICATE, WatchEventKind.COMMAND_FAILED):
        out["existing"] = event.other
        if event.match is not None:
            out["match"] = event.match.value
            out["distance"] = event.distance
    elif event.other is not None:
        out["dest"] = event.other
    if event.kind in (WatchEventKind.SKIPPED, WatchEventKind.COMMAND_FAILED, WatchEventKind.QUARANTINE_FAILED):
        out["reason"] = event.message
    elif event.message:
        out["message"] = event.message
    return out


def calibration_json(result: Calibration) -> dict[str, Any]:
    """The calibration; set_aside: the sampled pairs that look like real duplicates (the default rule groups
    them), left out of the different photos, each as {"distance", "paths"}."""
    out = dataclasses.asdict(result)
    out["set_aside"] = [{"distance": d, "paths": [a, b]} for d, a, b in result.set_aside]
    return out
