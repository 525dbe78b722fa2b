"""What the watcher does with new files: find the stored image each duplicates, run the command, quarantine it.

A new file is compared with the store by the same rule that groups files (`MatchRule`), so watch reports what scan
would group: its candidates are the stored pictures close to it by pHash in some turn or reading, and those whose
whole picture is close to one of its crop windows or the other way round; the rule confirms each.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dedupe import actions, fingerprint
from dedupe.match import CANDIDATE_PHASH, CROP_PHASH, KIND_RANK, MatchRule, match, readings, unpack_crops
from dedupe.models import CROP_BYTES, Fingerprint, MatchKind, StepState, WatchEvent, WatchEventKind
from dedupe.store import Store, StoredFile
from dedupe.watch_settle import regular, signature

COMMAND_TIMEOUT = 120.0
NEAR_CANDIDATES = 64  # contents compared per new file: the closest ones



def run_command(command: Sequence[str], event: WatchEvent) -> str | None:
    """Run the user's command for a duplicate, the new and the existing path appended; the reason it failed."""
    assert event.path is not None and event.other is not None
    argv = [*command, event.path, event.other]
    env = {
        **os.environ,
        "DEDUPE_MATCH": event.match.value if event.match else "",
        "DEDUPE_DISTANCE": str(event.distance),
    }
    try:
        # Its output goes to stderr, so that stdout stays one JSON object per line with --format jsonl.
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=2, env=env, timeout=COMMAND_TIMEOUT, check=False)
    except FileNotFoundError:
        return f"command not found: {command[0]}"
    except PermissionError:
        return f"cannot run {command[0]}: permission denied"
    except subprocess.TimeoutExpired:
        return f"{command[0]} did not finish within {COMMAND_TIMEOUT:.0f} s and was stopped"
    except OSError as e:
        return f"cannot run {command[0]}: {e.strerror or e}"
    if done.returncode < 0:
        return f"{command[0]} was killed by signal {-done.returncode}"
    if done.returncode != 0:
        return f"{command[0]} exited with status {done.returncode}"
    return None


@dataclass
class _Index:
    """The store's fingerprints, arranged for finding what a new image duplicates."""

    by_content: dict[str, Fingerprint]
    by_image: dict[str, list[str]]
    near_hashes: npt.NDArray[np.uint64]
    near_content: list[str]
    rule: MatchRule  # the rule in force for this many pictures (crops decided by their number, as in a scan)
    # The pictures with crop windows, when the rule looks for crops: their content hashes, the pHash of each one's
    # whole picture as its windows were measured, and of its other windows.
    crop_content: list[str]
    crop_wholes: npt.NDArray[np.uint64]
    crop_windows: npt.NDArray[np.uint64]


class DuplicateReporter:
    """Reports, once, each new file that duplicates an image already in the store, and acts on it as asked."""

    def __init__(
        self,
        store: Store,
        rule: MatchRule,
        emit: Callable[[WatchEvent], None],
        *,
        command: Sequence[str] = (),
        quarantine: str | None = None,
        roots: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._rule = rule
        self._emit = emit
        self._command = tuple(command)
        self._quarantine_folder = quarantine
        self._roots = list(roots)

    def report(self, added: Sequence[str]) -> list[str]:
        """Report the files just read that hold content new at their path; returns those that changed meanwhile.

        A file that changed while it was read is not reported now: the caller reads it again once it settles.
        """
        fresh: list[StoredFile] = []
        changed: list[str] = []
        for path in sorted(added):
            row = self._store.get_file(path)
            if row is None or row.content_hash is None:
                continue
            st = regular(path)
            if st is None:
                continue  # gone already
            if (row.size, row.mtime_ns, row.ino) != signature(st):
                changed.append(path)
            else:
                fresh.append(row)
        if fresh:
            self._report_fresh(fresh)
        return changed

    def _report_fresh(self, fresh: Sequence[StoredFile]) -> None:
        """fresh: the new files in the order they arrived, each read and unchanged since."""
        index = self._load_index()
        later = {row.path: i for i, row in enumerate(fresh)}
        for i, row in enumerate(fresh):
            found = self._existing_copy(row, index, later, i)
            if found is None:
                continue
            existing, kind, distance = found
            event = WatchEvent(WatchEventKind.DUPLICATE, path=row.path, other=existing, match=kind, distance=distance)
            self._emit(event)
            if self._command:
                reason = run_command(self._command, event)
                if reason is not None:
                    self._emit(
                        WatchEvent(
                            WatchEventKind.COMMAND_FAILED, path=row.path, other=existing, match=kind, message=reason
                        )
                    )
            if self._quarantine_folder:
                self._quarantine(row.path, existing, self._quarantine_folder)

    def _quarantine(self, path: str, existing: str, folder: str) -> None:
        """Move the incoming duplicate (never the older copy) aside, checked and journaled like a review."""
        copy = self._store.records_under([path], fingerprint.VERSION)
        keeper = self._store.records_under([existing], fingerprint.VERSION)
        if not copy or not keeper:
            self._emit(WatchEvent(WatchEventKind.QUARANTINE_FAILED, path=path, message="no longer in the store"))
            return
        result = actions.quarantine(copy[0], keeper[0], folder, self._roots, self._store)
        if result.state is StepState.DONE:
            self._emit(WatchEvent(WatchEventKind.QUARANTINED, path=path, other=result.destination))
        else:
            self._emit(WatchEvent(WatchEventKind.QUARANTINE_FAILED, path=path, message=result.reason))

    def _load_index(self) -> _Index:
        fps = self._store.fingerprints(fingerprint.VERSION)
        by_image: dict[str, list[str]] = {}
        for fp in fps:
            by_image.setdefault(fp.image_hash, []).append(fp.content_hash)
        # Each picture by every reading (match.readings): a transparent picture's colours alone are what its copies
        # show when a tool dropped the alpha channel, so a plain new file must find it by those too.
        near = [(r.phash, fp.content_hash) for fp in fps if not fp.low_info for r in readings(fp)]
        # As a scan decides for the pictures it groups: at threshold 0 only identical pictures match, and crops are
        # looked for by default up to match.CROP_SEARCH_LIMIT pictures.
        rule = self._rule.for_count(len(fps))
        cropped = [fp for fp in fps if rule.crops and len(fp.crops) == CROP_BYTES]
        raw = np.frombuffer(b"".join(fp.crops for fp in cropped), dtype=np.uint8).reshape(len(cropped), CROP_BYTES)
        windows = unpack_crops(raw)[0]
        return _Index(
            by_content={fp.content_hash: fp for fp in fps},
            by_image=by_image,
            near_hashes=np.fromiter((h for h, _ in near), dtype=np.uint64, count=len(near)),
            near_content=[c for _, c in near],
            rule=rule,
            crop_content=[fp.content_hash for fp in cropped],
            crop_wholes=windows[:, 0].copy(),
            crop_windows=windows[:, 1:],
        )

    def _existing_copy(
        self, row: StoredFile, index: _Index, arrival: Mapping[str, int], position: int
    ) -> tuple[str, MatchKind, int] | None:
        """The stored file that a new file duplicates most closely: same bytes, same image data, or near.

        Files that arrived in the same round after this one (arrival order beyond position) do not count.
        """
        assert row.content_hash is not None
        fp = index.by_content.get(row.content_hash)
        if fp is None:
            return None
        relation: dict[str, tuple[MatchKind, int]] = {fp.content_hash: (MatchKind.EXACT, 0)}
        for h in index.by_image.get(fp.image_hash, ()):
            relation.setdefault(h, (MatchKind.IMAGE, 0))
        rule = index.rule
        if not fp.low_info and len(index.near_hashes):
            # Candidates by any turn of the new picture the rule accepts, loose enough for its two-stage part;
            # then each is confirmed by the very rule that groups files, so watch reports what scan would group.
            turns = [(r.phash, *r.variants) if rule.rotations else (r.phash,) for r in readings(fp)]
            queries = np.array([h for hashes in turns for h in hashes], dtype=np.uint64)
            distances = np.bitwise_count(index.near_hashes[None, :] ^ queries[:, None]).min(axis=0)
            loosest = max(rule.threshold, CANDIDATE_PHASH) if rule.two_stage else rule.threshold
            close = np.flatnonzero(distances <= loosest)
            for j in close[np.argsort(distances[close], kind="stable")][:NEAR_CANDIDATES].tolist():
                found = match(fp, index.by_content[index.near_content[j]], rule)
                if found is not None:
                    relation.setdefault(index.near_content[j], (MatchKind.NEAR, found.distance))
        for content in _crop_candidates(fp, index):
            found = match(fp, index.by_content[content], rule)
            if found is not None:
                relation.setdefault(content, (MatchKind.NEAR, found.distance))
        candidates: list[tuple[int, int, int, str, MatchKind]] = []
        for other in self._store.files_with_content(relation):
            if (
                other.path == row.path
                or (other.dev, other.ino) == (row.dev, row.ino)
                or arrival.get(other.path, -1) > position
            ):
                continue  # itself, a hardlink of it, or a file that arrived after it
            assert other.content_hash is not None
            kind, distance = relation[other.content_hash]
            # The closest match first; among equals the oldest file, which is likely the original.
            candidates.append((KIND_RANK[kind], distance, other.mtime_ns, other.path, kind))
        for _, distance, _, path, kind in sorted(candidates):
            if os.path.lexists(path):  # the store may still list a copy deleted while nobody watched
                return path, kind, distance
        return None


def _crop_candidates(fp: Fingerprint, index: _Index) -> list[str]:
    """The stored pictures that may be a crop of the new one, or it of them: one's whole picture within CROP_PHASH
    bits of pHash of one of the other's windows (the closest first, at most NEAR_CANDIDATES). The crop rule
    (match.crop_match) confirms them."""
    if len(fp.crops) != CROP_BYTES or not len(index.crop_content):
        return []
    mine = unpack_crops(np.frombuffer(fp.crops, dtype=np.uint8).reshape(1, CROP_BYTES))[0][0]
    narrower = np.bitwise_count(index.crop_windows ^ mine[0]).min(axis=1)  # the new picture a crop of a stored one
    wider = np.bitwise_count(index.crop_wholes[:, None] ^ mine[None, 1:]).min(axis=1)  # a stored one a crop of it
    distances = np.minimum(narrower, wider)
    close = np.flatnonzero(distances <= CROP_PHASH)
    return [index.crop_content[j] for j in close[np.argsort(distances[close], kind="stable")][:NEAR_CANDIDATES]]
