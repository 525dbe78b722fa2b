"""dedupe: find exact and near-duplicate photos, and remove the redundant copies safely.

The command line is a thin layer over this library::

    from dedupe import Store, scan, stored_groups

    with Store.open("photos.sqlite") as store:
        report = scan(["/media/backup"], store)
        groups, skipped, images = stored_groups(store, ["/media/backup"])
"""

from dedupe.calibrate import Calibration, calibrate
from dedupe.errors import DedupeError, FileSkipped, StoreError
from dedupe.fingerprint import fingerprint_file
from dedupe.group import DEFAULT_THRESHOLD, MatchRule, find_groups, match, summarize
from dedupe.models import (
    DuplicateGroup,
    FileRecord,
    Fingerprint,
    GroupMember,
    MatchKind,
    ProgressEvent,
    ScanOptions,
    ScanReport,
    Skipped,
    Summary,
)
from dedupe.scan import scan, stored_groups
from dedupe.store import Store, default_store_path

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_THRESHOLD",
    "Calibration",
    "DedupeError",
    "DuplicateGroup",
    "FileRecord",
    "FileSkipped",
    "Fingerprint",
    "GroupMember",
    "MatchKind",
    "MatchRule",
    "ProgressEvent",
    "ScanOptions",
    "ScanReport",
    "Skipped",
    "Store",
    "StoreError",
    "Summary",
    "calibrate",
    "default_store_path",
    "find_groups",
    "fingerprint_file",
    "match",
    "scan",
    "stored_groups",
    "summarize",
]
