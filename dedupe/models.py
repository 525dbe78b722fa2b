"""Frozen values that flow between the parts of dedupe."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class MatchKind(StrEnum):
    """How a file relates to the reference of its group, from strongest to weakest."""

    EXACT = "exact"  # the same bytes
    IMAGE = "image"  # the same image data, different metadata
    NEAR = "near"  # perceptual hashes within the threshold


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What is known of an image's content; files with the same bytes share one."""

    content_hash: str
    image_hash: str
    format: str
    width: int
    height: int
    phash: int  # unsigned 64-bit
    dhash: int  # unsigned 64-bit
    taken: str | None  # EXIF DateTimeOriginal as ISO 8601, when present
    low_info: bool  # blank or nearly uniform: perceptual hashes say nothing useful


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One image file as stored: where it is, its stat and its fingerprint."""

    path: str  # absolute; undecodable bytes kept as surrogate escapes (os.fsdecode)
    size: int
    mtime_ns: int
    dev: int
    ino: int
    fingerprint: Fingerprint

    @property
    def content_hash(self) -> str:
        return self.fingerprint.content_hash


@dataclass(frozen=True, slots=True)
class GroupMember:
    file: FileRecord
    match: MatchKind  # relation to the group's reference (the reference itself is EXACT)
    distance: int  # perceptual distance to the reference


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Files that hold the same picture; the reference comes first."""

    kind: MatchKind  # the weakest relation of any member to the reference
    members: tuple[GroupMember, ...]

    @property
    def reference(self) -> GroupMember:
        return self.members[0]

    @property
    def reclaimable_bytes(self) -> int:
        return sum(m.file.size for m in self.members[1:])


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ScanOptions:
    exclude: tuple[str, ...] = ()
    hidden: bool = False
    follow_symlinks: bool = False
    min_size: int = 0
    workers: int | None = None  # None: one per core


@dataclass(frozen=True, slots=True)
class ScanReport:
    roots: tuple[str, ...]
    images: int  # images under the roots now in the store
    fingerprinted: int  # decoded in this run
    reused: int  # unchanged, moved or copied files whose fingerprint was already known
    skipped: tuple[Skipped, ...]
    ignored: int  # files that are plainly not images
    pruned: int  # entries removed because their file is gone
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Summary:
    images: int
    groups: int
    duplicate_files: int
    reclaimable_bytes: int
    skipped: int


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Progress of long work: only the CLI turns these into a bar."""

    phase: str  # "walk" or "fingerprint"
    done: int
    total: int | None = None
    path: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What fingerprinting a list of files into the store did."""

    fingerprinted: int  # new fingerprints decoded
    reused: int  # unchanged, moved or copied files whose fingerprint was already known
    ignored: int  # files that are plainly not images
    skipped: tuple[Skipped, ...]
    added: tuple[str, ...]  # paths now holding content they did not hold before: new or changed files, not moves
    stopped: bool = False  # interrupted: some files were left for next time


@dataclass(frozen=True, slots=True)
class WatchOptions:
    threshold: int | None = None  # None: dedupe.group.DEFAULT_THRESHOLD
    poll: float | None = None  # seconds between polls; None: the operating system's change notifications
    settle: float = 2.0  # a file is read once its size and mtime have not changed for this long
    hidden: bool = False
    command: tuple[str, ...] = ()  # run for each duplicate, with the new and the existing path appended
    workers: int | None = None  # None: one per core


class WatchEventKind(StrEnum):
    READY = "ready"  # the catch-up scan is done; following changes now
    DUPLICATE = "duplicate"  # path duplicates other, an image already in the store
    FINGERPRINTED = "fingerprinted"  # path was read (and decoded if its content was new)
    MOVED = "moved"  # the store followed a rename from path to other, without reading the file
    FORGOTTEN = "forgotten"  # path was deleted or moved out; its entry is gone
    SKIPPED = "skipped"  # path could not be fingerprinted; message says why
    WARNING = "warning"  # message: something the user should know (a folder gone, a fallback to polling)
    COMMAND_FAILED = "command_failed"  # the --exec command failed for the duplicate path/other
    STATUS = "status"  # queued files waiting, in_progress being read


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: WatchEventKind
    path: str | None = None
    other: str | None = None
    match: MatchKind | None = None
    distance: int = 0
    message: str = ""
    queued: int = 0
    in_progress: int = 0
