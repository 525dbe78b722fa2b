"""dedupe: find exact and near-duplicate photos, and remove the redundant copies safely.

The command line is a thin layer over this library::

    from dedupe import Store, scan, stored_groups

    with Store.open("photos.sqlite") as store:
        report = scan(["/media/backup"], store)
        groups, skipped, images = stored_groups(store, ["/media/backup"])
        result = apply(plan(groups, parse_rules("resolution,oldest"), Action.TRASH), store)
        undo(store)  # puts the files back

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

from dedupe.actions import (
    DEFAULT_RULES,
    apply,
    choose_keeper,
    parse_rules,
    plan,
    plan_script,
    suggest_keeper,
    undo,
)
from dedupe.calibrate import Calibration, calibrate
from dedupe.errors import DedupeError, FileSkipped, StoreError
from dedupe.exchange import export_fingerprints, import_fingerprints
from dedupe.fingerprint import fingerprint_file
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
from dedupe.report import render_html, write_html_report
from dedupe.scan import fingerprint_files, scan, scan_changes
from dedupe.search import SearchIndex, check, find_similar, fingerprint_query
from dedupe.store import Store, default_store_path
from dedupe.watch import Watcher, stop_on_signals, watch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_THRESHOLD",
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
    "apply",
    "calibrate",
    "check",
    "choose_keeper",
    "default_store_path",
    "export_fingerprints",
    "find_groups",
    "find_groups_in",
    "find_similar",
    "fingerprint_file",
    "fingerprint_files",
    "fingerprint_query",
    "import_fingerprints",
    "match",
    "parse_rules",
    "plan",
    "plan_script",
    "render_html",
    "scan",
    "scan_changes",
    "stop_on_signals",
    "stored_groups",
    "suggest_keeper",
    "summarize",
    "undo",
    "watch",
    "write_html_report",
]
