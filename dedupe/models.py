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
    # pHash of the picture turned by each of TRANSFORMS (rot90 ... transverse), in that order; () when not computed
    variants: tuple[int, ...] = ()
    camera: str | None = None  # EXIF Make and Model, to tell a burst of shots from copies of one shot


# The 7 turns and mirror images of a picture besides itself (Pillow's Image.Transpose names, lower case);
# "rot90" turns counter-clockwise.
TRANSFORMS = ("rot90", "rot180", "rot270", "mirror", "flip", "transpose", "transverse")
INVERSE = {"rot90": "rot270", "rot270": "rot90"}


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
    # How this file must be turned to look like the reference ("rot90", "mirror", ...), or None when upright
    transform: str | None = None
    # dHash distance to the reference when the match needed that second opinion (pHash alone was too far)
    dhash: int | None = None

    @property
    def why(self) -> str:
        """Why this file matched its reference, e.g. "phash 2, rot90" or "phash 10, dhash 1"."""
        if self.match is not MatchKind.NEAR:
            return {MatchKind.EXACT: "same bytes", MatchKind.IMAGE: "same pixels"}[self.match]
        parts = [f"phash {self.distance}"]
        if self.transform:
            parts.append(self.transform)
        if self.dhash is not None:
            parts.append(f"dhash {self.dhash}")
        return ", ".join(parts)


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

    phase: str  # "walk", "fingerprint" or "calibrate"
    done: int
    total: int | None = None
    path: str | None = None
    extra: dict[str, int] = field(default_factory=dict)
