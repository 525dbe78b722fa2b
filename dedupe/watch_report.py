"""What the watcher does with new files: find the stored image each duplicates, run the command, quarantine it.

A new file is compared with the store by the same rule that groups files (`MatchRule`), so watch reports what scan
would group: its candidates are the stored pictures close to it by pHash in some turn or reading, and those whose
whole picture is close to one of its crop windows or the other way round; the rule confirms each.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dedupe import actions, fingerprint
from dedupe.match import CANDIDATE_PHASH, CROP_PHASH, KIND_RANK, MatchRule, match, readings
from dedupe.models import CROP_BYTES, CROP_WINDOWS, Fingerprint, MatchKind, StepState, WatchEvent, WatchEventKind
from dedupe.store import SearchHashes, Store, StoredFile
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


class _Index:
    """What the store holds for finding the stored pictures close to a new one, kept between rounds: read once,
    then brought up to date with the rows that changed since (sync), whoever changed them. Arranged as a fresh
    read of the store arranges it (in the order of the rows), so that it answers exactly as a fresh one would."""

    def __init__(self, store: Store, rule: MatchRule) -> None:
        self._store = store
        self._base_rule = rule
        self._forget()

    def _forget(self) -> None:
        """Empty, as before the first sync: the next one reads the store whole."""
        rule = self._base_rule
        self.token: int | None = None  # the store's change token when last brought up to date
        self.listing = ""  # Store.fingerprint_keys as it was then
        self.pairs: set[str] = set()  # its items (Store.fingerprint_keys)
        self.keys: dict[int, str] = {}  # rowid -> content hash of every stored fingerprint, of any version
        self.ours: set[int] = set()  # the rowids of those of this version: the ones indexed
        self.others: set[int] = set()  # and of the others (of another version)
        # The rule in force for this many pictures, as a scan decides for the pictures it groups: at threshold 0
        # only identical pictures match, and crops are looked for by default up to match.CROP_SEARCH_LIMIT.
        self.rule = rule.for_count(0)
        # Each picture by every reading (match.readings): a transparent picture's colours alone are what its copies
        # show when a tool dropped the alpha channel, so a plain new file must find it by those too.
        self.near_rows = np.zeros(0, dtype=np.int64)
        self.near_hashes = np.zeros(0, dtype=np.uint64)
        # The pictures with crop windows, when the rule looks for crops: the pHash of each one's whole picture as
        # its windows were measured, and of its other windows.
        self.crop_rows = np.zeros(0, dtype=np.int64)
        self.crop_wholes = np.zeros(0, dtype=np.uint64)
        self.crop_windows = np.zeros((0, len(CROP_WINDOWS) - 1), dtype=np.uint64)

    def sync(self) -> None:
        """Bring the index up to date with the store: nothing to read when its change token is the one seen last
        or no fingerprint changed (a file renamed, say) and none of another version is stored; else the rows that
        came or were written again since, and those of other versions. An update that fails part way (the store
        unreadable for a moment, memory) leaves an empty index, read whole at the next sync, not a half-made one."""
        try:
            self._sync()
        except BaseException:
            self._forget()
            raise

    def _sync(self) -> None:
        with self._store.reading():
            token = self._store.change_token()
            if token == self.token:
                return
            listing = self._store.fingerprint_keys()
            # Unchanged keys hold unchanged fingerprints, but for a row of another version: one deleted and written
            # again as this version takes its rowid back when it was the last (an older dedupe's fingerprint of a
            # file that went and came back), and its key reads as before.
            if self.token is not None and listing == self.listing and not self.others:
                self.token = token
                return
            pairs = set(listing.split(",")) if listing else set()
            came_keys, went_keys = _keys(pairs - self.pairs), _keys(self.pairs - pairs)
            keys = self.keys.copy()
            for r in went_keys:
                del keys[r]
            keys.update(came_keys)
            if self.token is None:
                self._replace(keys, self._store.search_hashes(fingerprint.VERSION))
            else:
                # A row written again at its rowid with its content hash holds the same fingerprint (a function
                # of the bytes and the version), unless its version changed: the rows of other versions are
                # read again at every change (there are seldom any). A fingerprint rewritten by another dedupe
                # version at a rowid just freed with the same content hash, or an UPDATE of a version in place
                # (no dedupe makes one), would escape this.
                changed = set(came_keys) | {r for r in self.others if r in keys}
                gone = self.ours.intersection(went_keys)
                self._update(keys, gone, changed, self._store.search_hashes(fingerprint.VERSION, sorted(changed)))
            self.token, self.listing, self.pairs = token, listing, pairs

    def _replace(self, keys: dict[int, str], rows: Sequence[SearchHashes]) -> None:
        self.keys = keys
        self.ours = {r.rowid for r in rows}
        self.others = keys.keys() - self.ours
        self.rule = self._base_rule.for_count(len(self.ours))
        self.near_rows, self.near_hashes = _near(rows)
        self.crop_rows, self.crop_wholes, self.crop_windows = _crops(rows if self.rule.crops else ())

    def _update(self, keys: dict[int, str], gone: set[int], changed: set[int], rows: Sequence[SearchHashes]) -> None:
        """gone: the indexed rows that went or were written again; changed: the rowids read again, of which rows
        holds those of this version."""
        fetched = {r.rowid for r in rows}
        ours = (self.ours - gone) | fetched
        rule = self._base_rule.for_count(len(ours))
        if rule.crops and not self.rule.crops:
            # The crop windows were not kept while the rule left crops out: all are read again.
            self._replace(keys, self._store.search_hashes(fingerprint.VERSION))
            return
        self.keys, self.ours, self.rule = keys, ours, rule
        self.others = {r for r in self.others | changed if r in keys and r not in fetched}
        removed = np.fromiter(gone, dtype=np.int64, count=len(gone))
        near_rows, near_hashes = _near(rows)
        self.near_rows, (self.near_hashes,) = _merged(
            self.near_rows, removed, near_rows, (self.near_hashes,), (near_hashes,)
        )
        if not rule.crops:
            self.crop_rows, self.crop_wholes, self.crop_windows = _crops(())
            return
        crop_rows, wholes, windows = _crops(rows)
        self.crop_rows, (self.crop_wholes, self.crop_windows) = _merged(
            self.crop_rows, removed, crop_rows, (self.crop_wholes, self.crop_windows), (wholes, windows)
        )


def _keys(items: set[str]) -> dict[int, str]:
    """Store.fingerprint_keys items as rowid -> content hash."""
    out: dict[int, str] = {}
    for item in items:
        rowid, content = item.split(" ", 1)
        out[int(rowid)] = content
    return out


def _near(rows: Sequence[SearchHashes]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
    """The pHash of each reading of the pictures with enough detail, and the rowid of each."""
    near = [(r.rowid, h) for r in rows if not r.low_info for h in (r.phash, r.second) if h is not None]
    return (
        np.fromiter((r for r, _ in near), dtype=np.int64, count=len(near)),
        np.fromiter((h for _, h in near), dtype=np.uint64, count=len(near)),
    )


def _crops(
    rows: Sequence[SearchHashes],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """The rowids of the pictures with crop windows, the pHash of each one's whole picture, and of its others."""
    cropped = [r for r in rows if r.crops is not None]
    windows = len(CROP_WINDOWS)
    raw = b"".join(r.crops for r in cropped if r.crops is not None)
    phashes = np.frombuffer(raw, dtype=">u8").reshape(len(cropped), windows).astype(np.uint64)
    return (
        np.fromiter((r.rowid for r in cropped), dtype=np.int64, count=len(cropped)),
        phashes[:, 0].copy(),
        phashes[:, 1:].copy(),
    )


def _merged(
    rows: npt.NDArray[np.int64],
    removed: npt.NDArray[np.int64],
    new_rows: npt.NDArray[np.int64],
    columns: tuple[npt.NDArray[Any], ...],
    new_columns: tuple[npt.NDArray[Any], ...],
) -> tuple[npt.NDArray[np.int64], tuple[npt.NDArray[Any], ...]]:
    """Columns in rowid order, without the removed rows' entries and with the new rows' (a row may have several
    entries: they keep their order)."""
    keep = ~np.isin(rows, removed) if len(removed) else np.ones(len(rows), dtype=bool)
    merged_rows = np.concatenate([rows[keep], new_rows])
    merged = tuple(np.concatenate([c[keep], n]) for c, n in zip(columns, new_columns, strict=True))
    if len(new_rows) and len(merged_rows) > len(new_rows) and new_rows[0] < merged_rows[-len(new_rows) - 1]:
        order = np.argsort(merged_rows, kind="stable")  # a rowid used again: not all new rows come last
        return merged_rows[order], tuple(c[order] for c in merged)
    return merged_rows, merged


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
        self._index = _Index(store, rule)

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
        self._index.sync()
        later = {row.path: i for i, row in enumerate(fresh)}
        stored: dict[str, Fingerprint | None] = {}  # the fingerprints read this round, by content hash
        for i, row in enumerate(fresh):
            found = self._existing_copy(row, stored, later, i)
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

    def _existing_copy(
        self, row: StoredFile, stored: dict[str, Fingerprint | None], arrival: Mapping[str, int], position: int
    ) -> tuple[str, MatchKind, int] | None:
        """The stored file that a new file duplicates most closely: same bytes, same image data, or near.

        Files that arrived in the same round after this one (arrival order beyond position) do not count.
        stored: the fingerprints read so far this round (each stored picture is read when it is a candidate).
        """
        assert row.content_hash is not None
        index = self._index

        def fingerprint_of(content: str) -> Fingerprint | None:
            if content not in stored:
                stored[content] = self._store.get_fingerprint(content, fingerprint.VERSION)
            return stored[content]

        fp = fingerprint_of(row.content_hash)
        if fp is None:
            return None
        relation: dict[str, tuple[MatchKind, int]] = {fp.content_hash: (MatchKind.EXACT, 0)}
        for h in self._store.contents_of_image(fp.image_hash, fingerprint.VERSION):
            relation.setdefault(h, (MatchKind.IMAGE, 0))
        rule = index.rule
        close_contents: list[str] = []
        if not fp.low_info and len(index.near_hashes):
            # Candidates by any turn of the new picture the rule accepts, loose enough for its two-stage part;
            # then each is confirmed by the very rule that groups files, so watch reports what scan would group.
            turns = [(r.phash, *r.variants) if rule.rotations else (r.phash,) for r in readings(fp)]
            queries = np.array([h for hashes in turns for h in hashes], dtype=np.uint64)
            distances = np.bitwise_count(index.near_hashes[None, :] ^ queries[:, None]).min(axis=0)
            loosest = max(rule.threshold, CANDIDATE_PHASH) if rule.two_stage else rule.threshold
            close = np.flatnonzero(distances <= loosest)
            nearest = close[np.argsort(distances[close], kind="stable")][:NEAR_CANDIDATES]
            close_contents.extend(index.keys[r] for r in index.near_rows[nearest].tolist())
        close_contents.extend(_crop_candidates(fp, index))
        for content in close_contents:
            candidate = fingerprint_of(content)
            found = None if candidate is None else match(fp, candidate, rule)
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
    if len(fp.crops) != CROP_BYTES or not len(index.crop_rows):
        return []
    mine = np.frombuffer(fp.crops, dtype=">u8", count=len(CROP_WINDOWS)).astype(np.uint64)
    narrower = np.bitwise_count(index.crop_windows ^ mine[0]).min(axis=1)  # the new picture a crop of a stored one
    wider = np.bitwise_count(index.crop_wholes[:, None] ^ mine[None, 1:]).min(axis=1)  # a stored one a crop of it
    distances = np.minimum(narrower, wider)
    close = np.flatnonzero(distances <= CROP_PHASH)
    nearest = close[np.argsort(distances[close], kind="stable")][:NEAR_CANDIDATES]
    return [index.keys[r] for r in index.crop_rows[nearest].tolist()]
