"""dedupe: find exact and near-duplicate photos, and remove the redundant copies safely.

The command line is a thin layer over this library::

    from dedupe import Store, scan, stored_groups

    with Store.open("photos.sqlite") as store:
        report = scan(["/media/backup"], store)
        groups, skipped, images = stored_groups(store, ["/media/backup"])

    # Follow folders live until stop is set, reporting each incoming duplicate once:
    from dedupe import WatchOptions, watch
    watch(["/home/me/Downloads"], store, WatchOptions(settle=2.0), on_event=print, stop=stop_event)
"""

from dedupe.errors import DedupeError, FileSkipped, StoreError
from dedupe.fingerprint import fingerprint_file
from dedupe.group import DEFAULT_THRESHOLD, find_groups, summarize
from dedupe.models import (
    DuplicateGroup,
    FileRecord,
    Fingerprint,
    GroupMember,
    IngestReport,
    MatchKind,
    ProgressEvent,
    ScanOptions,
    ScanReport,
    Skipped,
    Summary,
    WatchEvent,
    WatchEventKind,
    WatchOptions,
)
from dedupe.scan import fingerprint_files, scan, scan_changes, stored_groups
from dedupe.store import Store, default_store_path
from dedupe.watch import Watcher, stop_on_signals, watch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_THRESHOLD",
    "DedupeError",
    "DuplicateGroup",
    "FileRecord",
    "FileSkipped",
    "Fingerprint",
    "GroupMember",
    "IngestReport",
    "MatchKind",
    "ProgressEvent",
    "ScanOptions",
    "ScanReport",
    "Skipped",
    "Store",
    "StoreError",
    "Summary",
    "WatchEvent",
    "WatchEventKind",
    "WatchOptions",
    "Watcher",
    "default_store_path",
    "find_groups",
    "fingerprint_file",
    "fingerprint_files",
    "scan",
    "scan_changes",
    "stop_on_signals",
    "stored_groups",
    "summarize",
    "watch",
]
