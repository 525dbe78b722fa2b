"""Recommend a near-duplicate threshold from the user's own photos: true copies against unrelated photos."""

from __future__ import annotations

import os
import random
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from dedupe.errors import DedupeError, FileSkipped
from dedupe.match import MAX_THRESHOLD, MatchRule, match, match_distance
from dedupe.models import Fingerprint, ProgressEvent, ScanOptions
from dedupe.scan import resolve_roots, walk

DEFAULT_SAMPLE = 40
# Bits kept below the nearest pair of different photos in the sample. pHash distances move in steps of 2, and a
# sample misses some look-alikes: on the benchmark (originals + look-alikes, 40 sampled) the nearest sampled pair was
# at 8 while unsampled look-alikes sat at 6, so a 2-bit margin would have recommended a threshold with false pairs.
MARGIN = 4
# A random sample never shows designed look-alikes (light/dark variants, one scene shot twice): on the benchmark they
# came 6 bits close while random photos stayed >= 20 apart, so no recommendation goes above this.
MAX_RECOMMENDED = 8
TOLERATED_FALSE_PAIRS = 0.1  # expected false pairs in the whole library at the recommended threshold


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    threshold: int
    copies_found: int  # edited copies within the threshold of their photo (turns and mirrors included)
    unrelated_pairs: int  # pairs of different sample photos within the threshold


@dataclass(frozen=True, slots=True)
class Calibration:
    photos: int  # sampled photos that could be used
    copies: int  # edited copies measured
    unrelated: int  # pairs of different photos measured
    by_edit: dict[str, tuple[int, int]]  # edit -> (median, max) distance of copies to their photo
    table: tuple[ThresholdRow, ...]
    nearest_unrelated: tuple[tuple[int, str, str], ...]  # the closest pairs of different photos: worth a look
    recommended: int
    recall: float  # share of the edited copies found at the recommended threshold
    false_pair_rate: float  # observed unrelated pairs within it / pairs measured
    false_pair_bound: float  # 95% upper bound of that rate (rule of three when none was seen)
    library: int  # image files below the folders
    expected_false_pairs: float  # in the whole library at the recommended threshold, from a normal fit
    skipped: tuple[str, ...]
    # Pairs of sampled photos that the default rule already groups (real duplicates in the library, such as an
    # original and its upscale): set aside, since they are no evidence of look-alikes. (distance, path, path)
    set_aside: tuple[tuple[int, str, str], ...] = ()


def calibrate(
    roots: Sequence[str | os.PathLike[str]],
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> Calibration:
    """Sample photos below the roots, make edited copies in a temporary folder, and measure distances."""
    if sample < 2:
        raise DedupeError("calibrate needs a sample of at least 2 photos")
    from dedupe import fingerprint  # Pillow: loaded when calibrate runs, not with the scan command

    found = walk(resolve_roots(roots), ScanOptions())
    candidates = sorted(p for p, _ in found.files if Path(p).suffix.lower() in fingerprint.IMAGE_EXTENSIONS)
    rng = random.Random(seed)
    rng.shuffle(candidates)
    photos: list[tuple[str, Fingerprint, bytes]] = []
    skipped: list[str] = []
    for path in candidates:
        if len(photos) >= sample:
            break
        try:
            data = fingerprint.read_image_bytes(path)
            fp = fingerprint.fingerprint_bytes(data, fingerprint.hash_bytes(data))
        except FileSkipped as e:
            skipped.append(f"{path}: {e.reason}")
            continue
        if fp.low_info or any(fp.image_hash == other.image_hash for _, other, _ in photos):
            continue  # blank pictures and exact repeats say nothing about thresholds
        photos.append((path, fp, data))
    if len(photos) < 2:
        raise DedupeError(f"found {len(photos)} usable photo(s) below {', '.join(map(str, roots))}: need at least 2")

    distances: dict[str, list[int]] = {name: [] for name in fingerprint.CALIBRATION_EDITS}
    with tempfile.TemporaryDirectory(prefix="dedupe-calibrate-") as tmp:
        for n, (path, fp, data) in enumerate(photos, start=1):
            try:
                copies = fingerprint.edited_copies(data)
            except Exception as e:  # one odd photo never stops the run
                skipped.append(f"{path}: cannot edit: {type(e).__name__}")
                continue
            for name, (suffix, encoded) in copies.items():
                copy_path = Path(tmp) / f"{n:04d}_{name}{suffix}"
                copy_path.write_bytes(encoded)
                try:
                    copy_fp = fingerprint.fingerprint_file(copy_path)
                except FileSkipped as e:
                    skipped.append(f"{path} ({name}): {e.reason}")
                    continue
                distances[name].append(match_distance(copy_fp, fp)[0])
                copy_path.unlink()
            if on_progress:
                on_progress(ProgressEvent("calibrate", n, len(photos), path))

    unrelated: list[tuple[int, str, str]] = []
    set_aside: list[tuple[int, str, str]] = []
    for a, b in combinations(photos, 2):
        pair = (match_distance(a[1], b[1])[0], a[0], b[0])
        (set_aside if match(a[1], b[1], MatchRule()) is not None else unrelated).append(pair)
    unrelated.sort()
    if not unrelated:
        raise DedupeError(
            f"the {len(photos)} sampled photos are all duplicates of each other: there is no pair of different photos"
            " to measure against (sample more photos, or a folder with other pictures)"
        )
    copy_distances = [d for ds in distances.values() for d in ds]
    table = tuple(
        ThresholdRow(t, sum(d <= t for d in copy_distances), sum(u[0] <= t for u in unrelated)) for t in range(0, 17)
    )
    nearest = unrelated[0][0]
    library = len(candidates)
    spread = [u[0] for u in unrelated]
    mean = statistics.fmean(spread)
    sigma = max(1.0, statistics.pstdev(spread))
    library_pairs = library * (library - 1) / 2

    def expected(t: int) -> float:
        # Share of unrelated pairs within t bits, from a normal fit of the measured distances (continuity +0.5).
        return library_pairs * statistics.NormalDist(mean, sigma).cdf(t + 0.5)

    recommended = 0
    for t in range(0, min(MAX_THRESHOLD, MAX_RECOMMENDED, nearest - MARGIN) + 1):
        if expected(t) < TOLERATED_FALSE_PAIRS:
            recommended = t
    false_rate = sum(u[0] <= recommended for u in unrelated) / len(unrelated)
    bound = false_rate if false_rate > 0 else min(1.0, 3 / len(unrelated))
    return Calibration(
        photos=len(photos),
        copies=len(copy_distances),
        unrelated=len(unrelated),
        by_edit={k: (_median(v), max(v)) for k, v in distances.items() if v},
        table=table,
        nearest_unrelated=tuple(unrelated[:5]),
        recommended=recommended,
        recall=(sum(d <= recommended for d in copy_distances) / len(copy_distances)) if copy_distances else 0.0,
        false_pair_rate=false_rate,
        false_pair_bound=bound,
        library=library,
        expected_false_pairs=expected(recommended),
        skipped=tuple(skipped),
        set_aside=tuple(sorted(set_aside)),
    )


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
