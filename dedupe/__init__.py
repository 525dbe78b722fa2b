"""dedupe: find exact and near-duplicate photos, and remove the redundant copies safely.

The command line is a thin layer over this library::

    from dedupe import Store, scan, stored_groups

    with Store.open("photos.sqlite") as store:
        report = scan(["/media/backup"], store)
        groups, skipped, images = stored_groups(store, ["/media/backup"])
        result = apply(plan(groups, parse_rules("resolution,oldest"), Action.TRASH), store)
        undo(store)  # puts the files back
"""

from dedupe.actions import (
    DEFAULT_RULES,
    apply,
    choose_keeper,
    parse_rules,
    plan,
    plan_script,
    undo,
)
from dedupe.errors import DedupeError, FileSkipped, StoreError
from dedupe.fingerprint import fingerprint_file
from dedupe.group import DEFAULT_THRESHOLD, find_groups, summarize
from dedupe.models import (
    Action,
    ApplyResult,
    DuplicateGroup,
    FileRecord,
    Fingerprint,
    GroupMember,
    GroupPlan,
    JournalEntry,
    KeeperChoice,
    KeeperRule,
    MatchKind,
    Plan,
    ProgressEvent,
    RunInfo,
    ScanOptions,
    ScanReport,
    Skipped,
    Step,
    StepResult,
    StepState,
    Summary,
    UndoResult,
)
from dedupe.report import render_html, write_html_report
from dedupe.scan import scan, stored_groups
from dedupe.store import Store, default_store_path

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_THRESHOLD",
    "Action",
    "ApplyResult",
    "DedupeError",
    "DuplicateGroup",
    "FileRecord",
    "FileSkipped",
    "Fingerprint",
    "GroupMember",
    "GroupPlan",
    "JournalEntry",
    "KeeperChoice",
    "KeeperRule",
    "MatchKind",
    "Plan",
    "ProgressEvent",
    "RunInfo",
    "ScanOptions",
    "ScanReport",
    "Skipped",
    "Step",
    "StepResult",
    "StepState",
    "Store",
    "StoreError",
    "Summary",
    "UndoResult",
    "apply",
    "choose_keeper",
    "default_store_path",
    "find_groups",
    "fingerprint_file",
    "parse_rules",
    "plan",
    "plan_script",
    "render_html",
    "scan",
    "stored_groups",
    "summarize",
    "undo",
    "write_html_report",
]
