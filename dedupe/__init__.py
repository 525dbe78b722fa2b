"""dedupe: find exact and near-duplicate photos, and remove the redundant copies safely.

The command line is a thin layer over this library::

    from dedupe import Store, scan, stored_groups

    with Store.open("photos.sqlite") as store:
        report = scan(["/media/backup"], store)
        groups, skipped, images = stored_groups(store, ["/media/backup"])
        result = apply(plan(groups, parse_rules("resolution,oldest"), Action.TRASH), store)
        undo(store)  # puts the files back
        report = groups_json(groups, skipped, summarize(groups, images, len(skipped)))  # as `--format json`

Checking uploads against a blocklist, from a web application's threads::

    from dedupe import SearchIndex, Store, check

    store = Store.open("blocklist.sqlite", readonly=True)
    index = SearchIndex.load(store)  # once; then shared by every thread
    result = check(upload_bytes, index)  # bytes, a path or a Fingerprint
    if result.matched:
        refuse(result.hit.reason)

    # Follow folders live until stop is set, reporting each incoming duplicate once:
    from dedupe import WatchOptions, watch
    watch(["/home/me/Downloads"], store, WatchOptions(settle=2.0), on_event=print, stop=stop_event)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dedupe.actions import apply, undo
    from dedupe.calibrate import Calibration, calibrate
    from dedupe.errors import DedupeError, FileSkipped, StoreError
    from dedupe.exchange import export_fingerprints, import_fingerprints
    from dedupe.fingerprint import fingerprint_file
    from dedupe.formats import (
        GROUP_CSV_FIELDS,
        applied_json,
        calibration_json,
        check_json,
        copy_labels,
        display_path,
        group_csv_rows,
        groups_csv,
        groups_json,
        groups_paths,
        hit_json,
        plan_json,
        result_json,
        run_json,
        search_json,
        watch_event_json,
    )
    from dedupe.group import Grouping, find_groups, find_groups_in, stored_groups, summarize
    from dedupe.library import Library
    from dedupe.match import DEFAULT_THRESHOLD, MatchRule, match
    from dedupe.models import (
        Action,
        ApplyResult,
        CheckResult,
        DuplicateGroup,
        FileRecord,
        Fingerprint,
        GroupMember,
        GroupPlan,
        HitSource,
        ImportReport,
        IngestReport,
        JournalEntry,
        KeeperChoice,
        KeeperRule,
        ListedFingerprint,
        MatchKind,
        Plan,
        ProgressEvent,
        RunInfo,
        ScanOptions,
        ScanReport,
        SearchHit,
        SearchResult,
        Skipped,
        Step,
        StepResult,
        StepState,
        Summary,
        UndoResult,
        WatchEvent,
        WatchEventKind,
        WatchOptions,
    )
    from dedupe.plan import DEFAULT_RULES, choose_keeper, keepers_chosen, parse_rules, plan, suggest_keeper
    from dedupe.report import render_html, write_html_report
    from dedupe.review import Review
    from dedupe.scan import fingerprint_files, scan, scan_changes
    from dedupe.script import plan_script
    from dedupe.search import SearchIndex, check, find_similar, fingerprint_query
    from dedupe.store import Store, default_store_path
    from dedupe.watch import Watcher, stop_on_signals, watch

__version__ = "0.1.0"

# Each public name and the module it lives in, imported on first use (PEP 562): `dedupe --version` and the shell
# completion must not pay for numpy and Pillow. The TYPE_CHECKING imports above say the same to type checkers;
# tests/test_cli.py checks that the two lists and __all__ agree.
_MODULES: dict[str, tuple[str, ...]] = {
    "actions": ("apply", "undo"),
    "calibrate": ("Calibration", "calibrate"),
    "errors": ("DedupeError", "FileSkipped", "StoreError"),
    "exchange": ("export_fingerprints", "import_fingerprints"),
    "fingerprint": ("fingerprint_file",),
    "formats": (
        "GROUP_CSV_FIELDS",
        "applied_json",
        "calibration_json",
        "check_json",
        "copy_labels",
        "display_path",
        "group_csv_rows",
        "groups_csv",
        "groups_json",
        "groups_paths",
        "hit_json",
        "plan_json",
        "result_json",
        "run_json",
        "search_json",
        "watch_event_json",
    ),
    "group": ("Grouping", "find_groups", "find_groups_in", "stored_groups", "summarize"),
    "library": ("Library",),
    "match": ("DEFAULT_THRESHOLD", "MatchRule", "match"),
    "models": (
        "Action",
        "ApplyResult",
        "CheckResult",
        "DuplicateGroup",
        "FileRecord",
        "Fingerprint",
        "GroupMember",
        "GroupPlan",
        "HitSource",
        "ImportReport",
        "IngestReport",
        "JournalEntry",
        "KeeperChoice",
        "KeeperRule",
        "ListedFingerprint",
        "MatchKind",
        "Plan",
        "ProgressEvent",
        "RunInfo",
        "ScanOptions",
        "ScanReport",
        "SearchHit",
        "SearchResult",
        "Skipped",
        "Step",
        "StepResult",
        "StepState",
        "Summary",
        "UndoResult",
        "WatchEvent",
        "WatchEventKind",
        "WatchOptions",
    ),
    "plan": ("DEFAULT_RULES", "choose_keeper", "keepers_chosen", "parse_rules", "plan", "suggest_keeper"),
    "report": ("render_html", "write_html_report"),
    "review": ("Review",),
    "scan": ("fingerprint_files", "scan", "scan_changes"),
    "script": ("plan_script",),
    "search": ("SearchIndex", "check", "find_similar", "fingerprint_query"),
    "store": ("Store", "default_store_path"),
    "watch": ("Watcher", "stop_on_signals", "watch"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

# The names that are also the name of their module (dedupe.scan holds scan()): see _Package.
_SHADOWED = frozenset(name for name, module in _HOME.items() if name == module)


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package's module type: importing a submodule binds it on the package, which would hide the function of
    the same name (`from dedupe import scan` must give scan(), whichever module imported dedupe.scan first)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_THRESHOLD",
    "GROUP_CSV_FIELDS",
    "Action",
    "ApplyResult",
    "Calibration",
    "CheckResult",
    "DedupeError",
    "DuplicateGroup",
    "FileRecord",
    "FileSkipped",
    "Fingerprint",
    "GroupMember",
    "GroupPlan",
    "Grouping",
    "HitSource",
    "ImportReport",
    "IngestReport",
    "JournalEntry",
    "KeeperChoice",
    "KeeperRule",
    "Library",
    "ListedFingerprint",
    "MatchKind",
    "MatchRule",
    "Plan",
    "ProgressEvent",
    "Review",
    "RunInfo",
    "ScanOptions",
    "ScanReport",
    "SearchHit",
    "SearchIndex",
    "SearchResult",
    "Skipped",
    "Step",
    "StepResult",
    "StepState",
    "Store",
    "StoreError",
    "Summary",
    "UndoResult",
    "WatchEvent",
    "WatchEventKind",
    "WatchOptions",
    "Watcher",
    "applied_json",
    "apply",
    "calibrate",
    "calibration_json",
    "check",
    "check_json",
    "choose_keeper",
    "copy_labels",
    "default_store_path",
    "display_path",
    "export_fingerprints",
    "find_groups",
    "find_groups_in",
    "find_similar",
    "fingerprint_file",
    "fingerprint_files",
    "fingerprint_query",
    "group_csv_rows",
    "groups_csv",
    "groups_json",
    "groups_paths",
    "hit_json",
    "import_fingerprints",
    "keepers_chosen",
    "match",
    "parse_rules",
    "plan",
    "plan_json",
    "plan_script",
    "render_html",
    "result_json",
    "run_json",
    "scan",
    "scan_changes",
    "search_json",
    "stop_on_signals",
    "stored_groups",
    "suggest_keeper",
    "summarize",
    "undo",
    "watch",
    "watch_event_json",
    "write_html_report",
]
