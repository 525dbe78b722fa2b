"""dedupe: find exact and near-duplicate photos, and remove the redundant copies safely.

The command line is a thin layer over this library::

    from dedupe import Store, scan, stored_groups

    with Store.open("photos.sqlite") as store:
        report = scan(["/media/backup"], store)
        groups, skipped, images = stored_groups(store, ["/media/backup"])

Checking uploads against a blocklist, from a web application's threads::

    from dedupe import SearchIndex, Store, check

    store = Store.open("blocklist.sqlite", readonly=True)
    index = SearchIndex.load(store)  # once; then shared by every thread
    result = check(upload_bytes, index)  # bytes, a path or a Fingerprint
    if result.matched:
        refuse(result.hit.reason)
"""

from dedupe.errors import DedupeError, FileSkipped, StoreError
from dedupe.exchange import export_fingerprints, import_fingerprints
from dedupe.fingerprint import fingerprint_file
from dedupe.group import DEFAULT_THRESHOLD, find_groups, summarize
from dedupe.models import (
    CheckResult,
    DuplicateGroup,
    FileRecord,
    Fingerprint,
    GroupMember,
    HitSource,
    ImportReport,
    ListedFingerprint,
    MatchKind,
    ProgressEvent,
    ScanOptions,
    ScanReport,
    SearchHit,
    SearchResult,
    Skipped,
    Summary,
)
from dedupe.scan import scan, stored_groups
from dedupe.search import SearchIndex, check, find_similar, fingerprint_query
from dedupe.store import Store, default_store_path

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_THRESHOLD",
    "CheckResult",
    "DedupeError",
    "DuplicateGroup",
    "FileRecord",
    "FileSkipped",
    "Fingerprint",
    "GroupMember",
    "HitSource",
    "ImportReport",
    "ListedFingerprint",
    "MatchKind",
    "ProgressEvent",
    "ScanOptions",
    "ScanReport",
    "SearchHit",
    "SearchIndex",
    "SearchResult",
    "Skipped",
    "Store",
    "StoreError",
    "Summary",
    "check",
    "default_store_path",
    "export_fingerprints",
    "find_groups",
    "find_similar",
    "fingerprint_file",
    "fingerprint_query",
    "import_fingerprints",
    "scan",
    "stored_groups",
    "summarize",
]
