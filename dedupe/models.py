"""Frozen values that flow between the parts of dedupe."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path


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
    # Hashes of the whole picture and of windows inside it, for finding cropped copies (fingerprint.crop_signature);
    # b"" when not computed
    crops: bytes = b""


@dataclass(frozen=True, slots=True)
class SamePixels:
    """A file with the image data of another that is being decoded (the same picture, other metadata): its
    fingerprint is that file's, but for what its own bytes and metadata say (fingerprint_unless_claimed)."""

    key: str  # names what decides the decoded pixels: the claim of the file decoded for both
    content_hash: str
    taken: str | None
    camera: str | None

    def of(self, twin: Fingerprint) -> Fingerprint:
        """This file's fingerprint, from the one of the file whose decoding it waited for."""
        return replace(twin, content_hash=self.content_hash, taken=self.taken, camera=self.camera)


# The 7 turns and mirror images of a picture besides itself (Pillow's Image.Transpose names, lower case);
# "rot90" turns counter-clockwise.
TRANSFORMS = ("rot90", "rot180", "rot270", "mirror", "flip", "transpose", "transverse")
INVERSE = {"rot90": "rot270", "rot270": "rot90"}
# A picture with transparent pixels is read two ways: flattened onto grey (its pHash, dHash, turns and windows), and
# as its colour channels alone, which is what its copies show when a tool drops the alpha channel. The second
# reading's pHash, dHash and 7 turned pHashes follow the 7 turns in Fingerprint.variants, which then holds
# ALPHA_VARIANTS values (match.readings splits them).
ALPHA_VARIANTS = 2 * len(TRANSFORMS) + 2
RAW_PREFIX = "RAW:"  # Fingerprint.format of a RAW file is "RAW:<ext>", e.g. "RAW:nef"

HASH_SIZE = 8  # 64-bit perceptual hashes
WORK_SIZE = 256  # perceptual hashes are taken from a copy this small (long side)
# Windows for finding cropped copies, as (left, top, width, height) fractions of the picture: the whole picture
# first; square grids of windows of one fraction of each side, evenly spread from one edge to the other (_CROP_GRID:
# the fraction and the positions across and down); and the common changes of shape: the full width at 75% of the
# height (4:3 to 16:9), the full height at 75% of the width (4:3 to square), each at the top, middle and bottom
# (left, middle, right). A copy with up to about 25% cut off its edges, split in any way between opposite borders,
# or cut to another shape, looks like one of its original's windows: a window fits when its edges are within about
# 1% of the picture's of the cut (docs/matching.md). 95% windows take 5% cuts, 87.5% windows 10-15% cuts, 80% and
# 77% windows 20-25% cuts; the positions are as sparse as measured recall allows.
_CROP_GRID = ((0.95, 3), (0.875, 5), (0.8, 5), (0.77, 6))
CROP_WINDOWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 1.0, 1.0),
    *(
        ((1 - side) * i / (n - 1), (1 - side) * j / (n - 1), side, side)
        for side, n in _CROP_GRID
        for j in range(n)
        for i in range(n)
    ),
    *((0.0, 0.25 * j / 2, 1.0, 0.75) for j in range(3)),
    *((0.25 * i / 2, 0.0, 0.75, 1.0) for i in range(3)),
)
CROP_SIDE = 128  # windows are measured on a grey copy this small (long side)
# A crop signature: a pHash and a dHash (8 bytes each) and a colour (3 bytes) for each window.
CROP_BYTES = 19 * len(CROP_WINDOWS)


def installed_version(distribution: str, module: str) -> str:
    """The version of an installed distribution, as importlib.metadata.version(distribution) says.

    Read from the one .dist-info folder beside the distribution's module when there is one: importing
    importlib.metadata costs 20-40 ms (email, zipfile, csv, ...) in every process that names VERSION, several
    percent of the scan of a small folder. Anything else (no such folder, several, an egg, a zip) is left to
    importlib.metadata.
    """
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.origin:
        wanted = _normalised(distribution)
        folder = Path(spec.origin).parent  # where a module's .dist-info lies; a package's is one folder up
        if spec.submodule_search_locations is not None:
            folder = folder.parent
        try:
            infos = [
                info
                for info in folder.glob("*.dist-info")
                if _normalised(info.name.removesuffix(".dist-info").rpartition("-")[0]) == wanted
            ]
            if len(infos) == 1:
                with (infos[0] / "METADATA").open(encoding="utf-8") as f:
                    for line in f:
                        if not line.strip():
                            break  # the end of the headers
                        if line.startswith("Version:"):
                            return line.removeprefix("Version:").strip()
        except OSError:
            pass
    from importlib.metadata import version

    return version(distribution)


def _normalised(name: str) -> str:
    """A distribution name as packaging compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# Stored beside every fingerprint: a store made with another version is fingerprinted again. Here rather than in
# fingerprint.py so that the store and the grouping can name it without loading Pillow; the ImageHash version is
# read from its installed metadata, the same as imagehash.__version__ (a test checks).
VERSION = (
    f"10;alpha-colour-reading;multi-frame-by-bytes;raw-preview;webp-scaled-decode;dihedral-from-one-resize;gradients;crops={len(CROP_WINDOWS)}x{CROP_SIDE}-area-means;exif-subsec;chunk-essence;numpy-dct;work={WORK_SIZE};phash={HASH_SIZE};dhash={HASH_SIZE};"
    f"imagehash={installed_version('ImageHash', 'imagehash')}"
)

_BITS_64 = (1 << 64) - 1


def hamming(a: int, b: int) -> int:
    """The bits in which two 64-bit hashes differ, whether they are held signed (as SQLite keeps them) or not."""
    return ((a ^ b) & _BITS_64).bit_count()


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
    # "crop" when this file is a crop of the reference, "wider" when the reference is a crop of this file (it shows
    # more); the distances are then to the window of the wider one that matched. None otherwise.
    crop: str | None = None

    @property
    def cropped(self) -> bool:
        """One of this file and the reference is a crop of the other."""
        return self.crop is not None

    @property
    def why(self) -> str:
        """Why this file matched its reference, e.g. "phash 2, rot90", "phash 10, dhash 1" or
        "phash 4, dhash 6, a crop of the reference"."""
        if self.match is not MatchKind.NEAR:
            return {MatchKind.EXACT: "same bytes", MatchKind.IMAGE: "same pixels"}[self.match]
        parts = [f"phash {self.distance}"]
        if self.transform:
            parts.append(self.transform)
        if self.dhash is not None:
            parts.append(f"dhash {self.dhash}")
        if self.crop == "crop":
            parts.append("a crop of the reference")
        elif self.crop == "wider":
            parts.append("the reference is a crop of it")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Files that hold the same picture; the reference comes first."""

    kind: MatchKind  # the weakest relation of any member to the reference
    members: tuple[GroupMember, ...]
    # Paths the grouping linked by a crop, kept when the group is shown from another member (plan.keeper_first):
    # two crops of one picture are linked only through the wider one, which a keeper's view no longer shows.
    crop_linked: frozenset[str] = frozenset()

    @property
    def reference(self) -> GroupMember:
        return self.members[0]

    @property
    def cropped_paths(self) -> frozenset[str]:
        """The members that are a crop of another member or show more than one: the crop-keep rules apply."""
        return self.crop_linked | {m.file.path for m in self.members if m.crop is not None}

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
    # With a path: the file is an image (or named like one and broken), not one of the other files a scan ignores.
    image: bool = False
    extra: dict[str, int] = field(default_factory=dict)


# --- review: keeper rules, action plans and their results --------------------------------------------------------


class Action(StrEnum):
    """What happens to a redundant copy."""

    TRASH = "trash"  # the desktop trash: restorable
    DELETE = "delete"  # permanent
    MOVE = "move"  # to a folder, keeping the relative path
    HARDLINK = "hardlink"  # replaced by a hard link to the keeper
    SYMLINK = "symlink"  # replaced by a symbolic link to the keeper


@dataclass(frozen=True, slots=True)
class KeeperRule:
    """One rule of an ordered keeper rule list: resolution, size, oldest, newest, shortest or path:PREFIX."""

    name: str
    arg: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:{self.arg}" if self.arg is not None else self.name


@dataclass(frozen=True, slots=True)
class KeeperChoice:
    """The member a group keeps, and why."""

    keeper: FileRecord
    reason: str
    tied: tuple[str, ...] = ()  # paths the rules could not separate (keeper included); empty when decided

    @property
    def is_tie(self) -> bool:
        return len(self.tied) > 1


@dataclass(frozen=True, slots=True)
class Step:
    """One redundant copy and what will be done to it."""

    file: FileRecord
    keeper: FileRecord
    action: Action
    match: MatchKind  # relation of the copy to the keeper
    destination: str | None = None  # where a move puts it (a free name is chosen when acting)
    sidecars: tuple[str, ...] = ()  # its .xmp/.aae files seen when planning; they go wherever it goes


@dataclass(frozen=True, slots=True)
class GroupPlan:
    group: DuplicateGroup
    choice: KeeperChoice
    steps: tuple[Step, ...]
    left: tuple[Skipped, ...]  # members not acted on (besides the keeper), with the reason
    skipped: str | None = None  # why the whole group is left alone, e.g. an unbroken tie


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run would do. Pure data: making a plan never touches a file."""

    action: Action
    destination: str | None  # the --to folder of a move
    groups: tuple[GroupPlan, ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for g in self.groups for s in g.steps)

    @property
    def reclaimable_bytes(self) -> int:
        return sum(s.file.size for s in self.steps)


class StepState(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # left alone on purpose: it or its keeper changed, or it is the keeper's own file
    FAILED = "failed"  # the act was tried and the system refused (permission, full disk, no trash)


@dataclass(frozen=True, slots=True)
class StepResult:
    path: str
    action: Action
    state: StepState
    reason: str = ""
    keeper: str = ""
    destination: str | None = None  # where the file went: the move target or its place in the trash
    size: int = 0
    sidecars: tuple[str, ...] = ()  # its sidecar files (.xmp, .aae) that went along with it


@dataclass(frozen=True, slots=True)
class ApplyResult:
    run_id: int
    action: Action
    results: tuple[StepResult, ...]

    def count(self, state: StepState) -> int:
        return sum(1 for r in self.results if r.state == state)

    @property
    def freed_bytes(self) -> int:
        return sum(r.size for r in self.results if r.state == StepState.DONE)


class JournalState(StrEnum):
    PLANNED = "planned"  # written just before the act: after a crash, undo finds out whether it happened
    DONE = "done"
    FAILED = "failed"
    UNDONE = "undone"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    run_id: int
    action: Action
    path: str
    keeper: str
    destination: str | None
    content_hash: str
    size: int
    mtime_ns: int
    mode: int
    state: JournalState
    reason: str | None
    at: float  # when the entry was written
    sidecar_of: str | None = None  # set for a sidecar file (.xmp, .aae) that went along with this photo


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: int
    action: Action
    started: float
    finished: float | None  # None: interrupted (a crash), or still running
    undone: float | None
    counts: dict[str, int] = field(default_factory=dict)  # journal states


@dataclass(frozen=True, slots=True)
class UndoResult:
    run_id: int
    action: Action
    results: tuple[StepResult, ...]  # state DONE: restored (or found never to have happened)
    complete: bool  # every entry of the run is reversed


@dataclass(frozen=True, slots=True)
class ListedFingerprint:
    """A fingerprint as a shared list holds it: no file behind it, a label saying what it was."""

    content_hash: str
    image_hash: str
    phash: int  # unsigned 64-bit
    dhash: int  # unsigned 64-bit
    width: int
    height: int
    low_info: bool
    label: str  # the file's path when exported from a store, or whatever the list's author wrote


class HitSource(StrEnum):
    FILE = "file"  # a file fingerprinted by a scan
    IMPORTED = "imported"  # a fingerprint imported from a shared list


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A stored image or imported fingerprint that matches a query, and why."""

    name: str  # the stored file's path, or the imported fingerprint's label
    source: HitSource
    match: MatchKind  # EXACT: the same bytes; IMAGE: the same image data; NEAR: pHash within the threshold
    distance: int  # pHash distance in bits (of 64)
    dhash_distance: int  # dHash distance in bits: a second opinion, not used to decide
    content_hash: str  # "" for a PDQ hit: a PDQ list holds no content hash
    width: int
    height: int
    # The hash that matched: "phash" (distance of 64 bits), or "pdq" (distance of 256 bits; dhash_distance is 0)
    hash: str = "phash"

    @property
    def reason(self) -> str:
        if self.hash == "pdq":
            return f"PDQ distance {self.distance}"
        if self.match is MatchKind.EXACT:
            return "same bytes"
        if self.match is MatchKind.IMAGE:
            return "same image data"
        return f"pHash distance {self.distance}, dHash distance {self.dhash_distance}"


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str  # the query image's path, or a short description of the bytes or fingerprint given
    fingerprint: Fingerprint
    hits: tuple[SearchHit, ...]  # closest first


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer for an upload hook: does the image match anything, and how closely."""

    query: str
    matched: bool
    hit: SearchHit | None  # the closest match

    @property
    def distance(self) -> int | None:
        return None if self.hit is None else self.hit.distance


@dataclass(frozen=True, slots=True)
class PdqEntry:
    """A PDQ hash (256 bits as 64 hex digits) as an industry hash list holds it."""

    hash: str
    label: str
    quality: int | None = None  # PDQ's quality score (0-100), when the list gives it


@dataclass(frozen=True, slots=True)
class ImportReport:
    source: str
    listed: int  # fingerprints in the list
    added: int  # new to the store (the others were imported before)
    replaced: int  # imported fingerprints dropped first (with replace=True)


# @@THEIRS@@
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
    poll: float | None = None  # seconds between polls; None: the operating system's change notifications
    settle: float = 2.0  # a file is read once its size and mtime have not changed for this long
    hidden: bool = False
    command: tuple[str, ...] = ()  # run for each duplicate, with the new and the existing path appended
    workers: int | None = None  # None: one per core
    quarantine: str | None = None  # move each incoming duplicate (never the older copy) into this folder


class WatchEventKind(StrEnum):
    READY = "ready"  # the catch-up scan is done; following changes now
    DUPLICATE = "duplicate"  # path duplicates other, an image already in the store
    FINGERPRINTED = "fingerprinted"  # path was read (and decoded if its content was new)
    MOVED = "moved"  # the store followed a rename from path to other, without reading the file
    FORGOTTEN = "forgotten"  # path was deleted or moved out; its entry is gone
    SKIPPED = "skipped"  # path could not be fingerprinted; message says why
    WARNING = "warning"  # message: something the user should know (a folder gone, a fallback to polling)
    COMMAND_FAILED = "command_failed"  # the --exec command failed for the duplicate path/other
    QUARANTINED = "quarantined"  # the duplicate path was moved to other (--quarantine); 'dedupe undo' reverses it
    QUARANTINE_FAILED = "quarantine_failed"  # the duplicate path was left in place; message says why
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
