#!/usr/bin/env python3
"""Scale benchmarks with synthetic fingerprints: grouping 100k and 1M, and a no-change re-scan of 100k files.

Usage:
    python bench/scale.py [--quick] [--out FILE] [--repeat N] [--skip-store]

Grouping: random 64-bit pHashes where one in five is a near copy (0-4 bits flipped) of another, so there are
real groups to find. Each measure runs in a fresh process at the default threshold: `near_pairs` (the pair search
alone); `find_groups_in` (a Library of columns in, as Store.library_under gives it; the time includes making the
records of the grouped files from those columns and the DuplicateGroups); `find_groups` (FileRecords in, groups
out). Peak memory is that process's ru_maxrss (it includes making the input: 1M FileRecords with 9 hashes each take
about 1 GiB by themselves, the columns about 190 MiB), and the next column is that peak less the peak before the
call, what the call itself adds. With crops: `find_groups` of pictures that also have crop signatures, whose
window hashes lie as far from their whole picture's as a photo's do (synthetic_signatures; the crop search left to
decide by the number of pictures), or random ones with the search asked for (`_random_asked`); one such measure
alone: `python bench/scale.py _group find_groups_crops_asked 1000000` (the search asked for at any size), and the
crop search by itself on the same signatures (its wall and CPU seconds): `python bench/scale.py _group crop_pairs
1000000`.

Store: a SQLite store of the same fingerprints (1M files, written once through the Store API and kept in --work),
grouped by `stored_groups` in a fresh process; the time and peak are those of the whole process (start, reading the
columns, grouping, reading the records of the grouped files), peak memory sampled as for the re-scan; the result
column says how much of the best time went to starting Python and loading numpy and dedupe (from /proc, to the clock
tick). Measured twice: with no copy of the columns beside the store (read through SQLite, the copy written), and
from the copy.

Re-scan: a tree of 100k small files (real copies of a few tiny JPEGs, 1000 per folder) whose store rows are
written directly with the Store API (each with its own random fingerprint, as if a first scan had found 100k
different photos), then `dedupe scan --format json` as a whole process, twice; nothing has changed, so no file
is read. The first writes the copies beside the store that the next re-scans read (the columns, column_cache.py,
and the stat keys, stat_cache.py): its time is printed too. Peak memory there is the sampled VmRSS sum of the
process tree, as in bench/run.py. Beside it, its floor: a fresh Python that walks the same tree with os.scandir and
stats every file, run just before each re-scan so that both see the same load, and the ratio of the two best times.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from run import compile_package, machine, measure  # noqa: E402  (bench/ is this script's folder, first on sys.path)

from dedupe.library import Library, gc_paused, release_freed_memory  # noqa: E402
from dedupe.models import CROP_WINDOWS, FileRecord, Fingerprint  # noqa: E402


def synthetic_columns(n: int, seed: int = 1) -> npt.NDArray[np.uint64]:
    """(pHash, dHash, 7 turned pHashes) of n pictures like real photos, as an (n, 9) array: 20% are copies of an
    earlier one (any earlier one alike), each hash 0-4 bits off."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**64, size=(n, 9), dtype=np.uint64, endpoint=False)
    copy = rng.random(n) < 0.2
    copy[:1] = False
    source = (rng.random(n) * np.arange(n)).astype(np.int64)
    flips = np.zeros((n, 9), dtype=np.uint64)
    for start in range(0, n, 100_000):  # a slice at a time: the bit positions take 4 words a hash
        shape = flips[start : start + 100_000].shape
        count = rng.integers(0, 5, size=shape)
        bits = np.uint64(1) << rng.integers(0, 64, size=(*shape, 4)).astype(np.uint64)
        bits[np.arange(4) >= count[..., None]] = 0
        flips[start : start + 100_000] = np.bitwise_or.reduce(bits, axis=-1)
    # A copy is its source a few bits off, and the source may be a copy: follow the chains up to fresh pictures,
    # doubling the steps each round, and gather the flips on the way.
    top = np.where(copy, source, np.arange(n))
    acc = np.where(copy[:, None], flips, np.uint64(0))
    del flips
    while len(pending := np.flatnonzero(copy[top])):
        up = top[pending]
        acc_up, top_up = acc[up], top[up]
        acc[pending] ^= acc_up
        top[pending] = top_up
    out: npt.NDArray[np.uint64] = values[top] ^ acc
    return out


def synthetic_signatures(columns: npt.NDArray[np.uint64], seed: int = 3) -> Iterator[bytes]:
    """Crop signatures (fingerprint.crop_signature) like a photo's, one a row of columns, in order: the whole
    picture's pHash and dHash are the row's (so near copies have near wholes), the nine 95% windows are the whole
    with 4-18 bits flipped and the 25 87.5% windows with 10-36, the rest random: about as far as real photos'
    windows lie from their whole (5th, 50th and 95th percentiles 4, 8 and 18 bits for the 95% windows, 10, 18 and
    28 for the 87.5% ones, on 80 photos; here 4, 9, 15 and 9, 16, 24; within the crop rule's 6 bits 31% and 1.2%,
    here 26% and 0.7%). Colours as a photo's
    (synthetic_colours); each picture has its own (so near copies are seldom found as crops: the colour does not
    follow the copy)."""
    rng = np.random.default_rng(seed)
    colour_rng = np.random.default_rng(seed + 1)
    w = len(CROP_WINDOWS)
    for start in range(0, len(columns), 50_000):
        rows = columns[start : start + 50_000]
        n = len(rows)
        hashes = rng.integers(0, 2**64, size=(2, n, w), dtype=np.uint64)
        for h, column in enumerate((0, 1)):
            hashes[h, :, 0] = rows[:, column]
            hashes[h, :, 1:10] = rows[:, column, None] ^ _flips(rng, (n, 9), 4, 18)
            hashes[h, :, 10:35] = rows[:, column, None] ^ _flips(rng, (n, 25), 10, 36)
        colours = synthetic_colours(colour_rng, n)
        raw = np.concatenate(
            [hashes[0].astype(">u8").view(np.uint8), hashes[1].astype(">u8").view(np.uint8), colours.reshape(n, -1)],
            axis=1,
        )
        yield from (row.tobytes() for row in raw)


# The colours of real photos (the 40 originals of bench/corpus.py's folder and the 40 of the camera folder):
# percentiles 0, 5, 25, 50, 75, 95 and 100 of the whole picture's chromaticities and brightness (nearly
# uncorrelated: |r| <= 0.12), and the mean difference of each channel between a window and its picture's whole (over
# those photos and their copies), by size of window (the 95% windows, 87.5%, 80%, 77%, and the changes of shape);
# about Laplace-distributed.
_COLOUR_PERCENTILES = (
    (16, 49, 71, 85, 100, 146, 197),
    (38, 58, 83, 87, 97, 130, 157),
    (15, 37, 83, 108, 132, 167, 202),
)
_WINDOW_COLOUR_SPREAD = (
    (9, (0.56, 0.31, 1.47)),
    (25, (1.32, 0.72, 3.31)),
    (25, (2.20, 1.22, 5.21)),
    (36, (2.52, 1.38, 5.89)),
    (6, (1.87, 1.10, 4.15)),
)


def synthetic_colours(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint8]:
    """The mean colours of the windows of n pictures like photos', (n, windows, 3): each whole picture's channels
    drawn apart from real photos' percentiles (_COLOUR_PERCENTILES), each window's its whole's moved by a Laplace
    step of the spread its size shows (_WINDOW_COLOUR_SPREAD). A random window and another whole picture share a
    colour cell of the crop search as often as real photos' do (29%; 28% for those 80 photos), but have colours
    within the crop rule's bounds less often (1.6% against 3.9%: real photos' chromaticities crowd together near
    grey, these are drawn apart)."""
    w = len(CROP_WINDOWS)
    quantiles = np.array([0, 5, 25, 50, 75, 95, 100]) / 100
    whole = np.stack([np.interp(rng.random(n), quantiles, values) for values in _COLOUR_PERCENTILES], axis=1)
    out = np.empty((n, w, 3))
    out[:, 0] = whole
    at = 1
    for count, spread in _WINDOW_COLOUR_SPREAD:
        out[:, at : at + count] = whole[:, None] + rng.laplace(0.0, spread, size=(n, count, 3))
        at += count
    assert at == w
    colours: npt.NDArray[np.uint8] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return colours


def _flips(rng: np.random.Generator, shape: tuple[int, int], least: int, most: int) -> npt.NDArray[np.uint64]:
    """Values of least to most random bits set (fewer where two fall on one bit)."""
    count = rng.integers(least, most + 1, size=shape)
    out = np.zeros(shape, dtype=np.uint64)
    for k in range(most):
        bit = np.uint64(1) << rng.integers(0, 64, size=shape).astype(np.uint64)
        out ^= np.where(count > k, bit, np.uint64(0))
    return out


def synthetic_library(columns: npt.NDArray[np.uint64]) -> Library:
    """The columns Store.library_under would give for the files of synthetic_records."""
    n = len(columns)
    ids = np.arange(n, dtype=np.int64)
    return Library(
        ids=ids,
        paths=[path_of(i) for i in range(n)],
        size=ids + 100_000,
        dev=np.ones(n, dtype=np.int64),
        ino=ids + 1,
        content=ids,
        image=ids,
        width=np.full(n, 4000, dtype=np.int64),
        height=np.full(n, 3000, dtype=np.int64),
        phash=columns[:, 0].copy(),
        dhash=columns[:, 1].copy(),
        low_info=np.zeros(n, dtype=bool),
        turned=np.ones(n, dtype=bool),
        variants=columns[:, 2:].copy(),
        camera=np.zeros(n, dtype="S1"),
        taken=np.zeros(n, dtype="S1"),
        crops=np.zeros((n, 0), dtype=np.uint8),
        has_crops=np.zeros(n, dtype=bool),
        distinct_paths=True,
    )


def path_of(i: int) -> str:
    return f"/photos/{i // 1000:04d}/{i:07d}.jpg"


def synthetic_records(
    columns: npt.NDArray[np.uint64], ids: Sequence[int], crops: Callable[[], bytes] | None = None
) -> list[FileRecord]:
    """The records of the pictures with these ids (row numbers), as a scan would store them (and made as
    Store.records_of makes them: with the cyclic garbage collector paused)."""
    rows = np.asarray(ids, dtype=np.int64)
    hashes = columns[rows].tolist()
    with gc_paused():
        out = [record_of(i, h, crops) for i, h in zip(rows.tolist(), hashes, strict=True)]
    return out


def record_of(i: int, h: list[int], crops: Callable[[], bytes] | None) -> FileRecord:
    fp = Fingerprint(
        f"{i:032x}",
        f"{i:031x}f",
        "JPEG",
        4000,
        3000,
        h[0],
        h[1],
        None,
        False,
        tuple(h[2:]),
        crops=crops() if crops else b"",
    )
    return FileRecord(path_of(i), 100_000 + i, 0, 1, i + 1, fp)


def _child_group(kind: str, n: int) -> None:
    """In a fresh process: time one grouping step and print JSON."""
    from dedupe.group import find_groups, find_groups_in
    from dedupe.match import DEFAULT_THRESHOLD, MatchRule
    from dedupe.models import CROP_BYTES
    from dedupe.pairs import near_pairs

    columns = synthetic_columns(n)
    input_mib = 0.0
    if kind == "near_pairs":
        distinct = np.unique(columns[:, 0]).tolist()
        del columns
        input_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        pairs = near_pairs(distinct, DEFAULT_THRESHOLD)
        result = {"seconds": time.perf_counter() - start, "pairs": len(pairs), "values": len(distinct)}
    elif kind == "crop_pairs":
        # The crop search alone (crop_search.crop_pairs), on the signatures find_groups_crops gives its records.
        from dedupe.crop_search import crop_pairs

        crops = np.frombuffer(b"".join(synthetic_signatures(columns)), dtype=np.uint8).reshape(n, CROP_BYTES)
        del columns
        input_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start, cpu = time.perf_counter(), time.process_time()
        a, _ = crop_pairs(crops, np.arange(n, dtype=np.int64))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        result = {"seconds": seconds, "cpu": cpu, "pairs": len(a), "values": n}
    elif kind == "find_groups_in":
        library = synthetic_library(columns)
        input_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        grouping = find_groups_in(library, MatchRule(DEFAULT_THRESHOLD))
        grouped = time.perf_counter() - start
        del library  # as stored_groups does, before the records are made
        release_freed_memory()
        groups = grouping.groups(synthetic_records(columns, grouping.ids.tolist()))
        result = {"seconds": time.perf_counter() - start, "grouping": grouped, "groups": len(groups), "values": n}
    else:
        # find_groups_crops: each picture also has window hashes and colours (fingerprint.crop_signature), random
        # ones (_random) or like a photo's (see synthetic_signatures), and the crop search is left to decide
        # (on up to CROP_SEARCH_LIMIT pictures) unless --crops is asked for (_asked).
        crops = kind.startswith("find_groups_crops")
        source: Callable[[], bytes] | None = None
        if kind.startswith("find_groups_crops_random"):
            rng = random.Random(2)
            source = lambda: rng.randbytes(CROP_BYTES)  # noqa: E731
        elif crops:
            signatures = synthetic_signatures(columns)
            source = lambda: next(signatures)  # noqa: E731
        records = synthetic_records(columns, range(n), source)
        del columns
        input_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        groups = find_groups(records, MatchRule(DEFAULT_THRESHOLD, crops=True if kind.endswith("_asked") else None))
        cropped = sum(m.crop is not None for g in groups for m in g.members)
        result = {"seconds": time.perf_counter() - start, "groups": len(groups), "values": n, "cropped": cropped}
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["input_mib"] = input_mib  # the peak before the measured call: making the input
    print(json.dumps(result))


def _child_store(db: str) -> None:
    """In a fresh process: group the synthetic store's files (as `dedupe groups` does) and print JSON, with the
    time from the process's start until stored_groups could be called (Python, numpy and dedupe loaded)."""
    from dedupe.group import stored_groups
    from dedupe.store import Store

    loaded = _since_start()
    with Store.open(db, readonly=True) as store:
        groups, _, images = stored_groups(store, ["/photos"])
    print(json.dumps({"groups": len(groups), "images": images, "loading": loaded}))


def _since_start() -> float:
    """Seconds since this process started (to the clock tick), from /proc; 0 where there is none."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[dict[str, float], float]:
    """Run a fresh process; return its JSON result and its wall time."""
    start = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), wall


LABELS = {
    "near_pairs": "near_pairs",
    "find_groups_in": "find_groups_in (columns in, groups out)",
    "find_groups": "find_groups (FileRecords in)",
    "find_groups_crops": "find_groups, with window hashes like a photo's (crops by default)",
    "find_groups_crops_random_asked": "find_groups, with random window hashes, --crops",
}


def bench_grouping(sizes: list[int], repeat: int) -> list[str]:
    rows = []
    for n in sizes:
        kinds = ["near_pairs", "find_groups_in", "find_groups", "find_groups_crops"]
        kinds += ["find_groups_crops_random_asked"] if n <= 200_000 else []  # minutes at a million
        for kind in kinds:
            best: dict[str, float] | None = None
            for _ in range(repeat):
                res, _wall = run_child([sys.executable, os.path.abspath(__file__), "_group", kind, str(n)])
                if best is None or res["seconds"] < best["seconds"]:
                    best = res
                print(f"  {kind} {n}: {res}", file=sys.stderr)
            assert best is not None
            what = f"{int(best['pairs'])} pairs" if kind == "near_pairs" else f"{int(best['groups'])} groups"
            if kind.startswith("find_groups_crops"):
                what += f", {int(best['cropped']):,} members found as crops"
            rows.append(
                f"| {LABELS[kind]} | {n:,} | {best['seconds']:.2f} | {best['peak_mib']:.0f}"
                f" | {best['peak_mib'] - best['input_mib']:.0f} | {what}"
                f" ({int(best['values']):,} distinct hashes) |"
            )
    return rows


def make_store(db: str, n: int, crops: bool = False) -> None:
    """A store of n files with the synthetic fingerprints (as if a scan had found them); kept between runs. With
    crops, each also has a crop signature like a photo's (synthetic_signatures)."""
    from dedupe import fingerprint
    from dedupe.store import Store

    marker = f"{db}.complete"
    if os.path.exists(marker):
        return
    for suffix in ("", "-wal", "-shm", ".complete"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(db + suffix)
    columns = synthetic_columns(n)
    signatures = synthetic_signatures(columns) if crops else None
    with Store.open(db) as store, store.transaction():
        for start in range(0, n, 10_000):
            rows = range(start, min(n, start + 10_000))
            for record in synthetic_records(columns, rows, (lambda: next(signatures)) if signatures else None):
                store.put_fingerprint(record.fingerprint, fingerprint.VERSION)
                st = (0o100644, record.ino, record.dev, 1, 0, 0, record.size, 0, 0, 0, 0.0, 0.0, 0.0, 0, 0, 0)
                store.put_file(record.path, os.stat_result(st), record.content_hash)
    with open(marker, "w") as f:
        f.write("ok\n")


def bench_store(n: int, work: str, repeat: int) -> list[str]:
    """stored_groups as a whole process, twice over: with no copy of the columns beside the store (they are read
    through SQLite, and the copy is written), and with a current copy (column_cache)."""
    from dedupe import column_cache, fingerprint
    from dedupe.store import Store

    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, f"store-{n}-{fingerprint.VERSION}.sqlite")
    t0 = time.perf_counter()
    make_store(db, n)
    with Store.open(db) as store:  # a store kept from an older dedupe is migrated here, not in the measure
        cache = column_cache.cache_path(store)
    print(f"  store of {n} files ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    env = {**os.environ, "PYTHONPATH": REPO}
    rows = []
    for label, copy in (("no copy of the columns", False), ("from the copy beside the store", True)):
        walls, peaks, loading = [], [], []
        for _ in range(repeat):
            if not copy:
                with contextlib.suppress(FileNotFoundError):
                    cache.unlink()
            m = measure([sys.executable, os.path.abspath(__file__), "_store", db], env)
            if m.returncode != 0:
                raise SystemExit(f"stored_groups failed: {m.stderr[-2000:]}")
            res = json.loads(m.stdout.strip().splitlines()[-1])
            walls.append(m.wall)
            peaks.append(m.peak_mib)
            loading.append(res["loading"])
            print(
                f"  stored_groups {n}, {label}: {m.wall:.2f}s ({res['loading']:.2f}s of it loading),"
                f" peak {m.peak_mib:.0f} MiB",
                file=sys.stderr,
            )
        best = walls.index(min(walls))
        rows.append(
            f"| groups from a SQLite store (`stored_groups`, whole process), {label} | {n:,} | {walls[best]:.2f}"
            f" | {max(peaks):.0f} | - | {res['groups']:,} groups ({res['images']:,} images); {loading[best]:.2f} s"
            " of the time starting Python and loading numpy and dedupe |"
        )
    return rows


def tiny_jpegs() -> list[bytes]:
    from PIL import Image

    out = []
    for seed in range(4):
        rng = random.Random(seed)
        im = Image.new("RGB", (24, 16), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        out.append(buf.getvalue())
    return out


def make_tree(root: str, n: int) -> None:
    """n real copies of a few tiny JPEGs, 1000 per folder; kept between runs."""
    marker = os.path.join(root, f".complete-{n}")
    if os.path.exists(marker):
        return
    shutil.rmtree(root, ignore_errors=True)
    blobs = tiny_jpegs()
    for i in range(n):
        folder = os.path.join(root, f"{i // 1000:04d}")
        if i % 1000 == 0:
            os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"IMG_{i:07d}.jpg"), "wb") as f:
            f.write(blobs[i % len(blobs)])
    with open(marker, "w") as f:
        f.write("ok\n")


def fill_store(root: str, db: str) -> int:
    """Store rows for every file of the tree, each with its own random fingerprint, as a first scan would."""
    from dedupe import fingerprint
    from dedupe.models import Fingerprint
    from dedupe.store import Store

    rng = random.Random(7)
    n = 0
    with Store.open(db) as store, store.transaction():
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                ch = f"{n:032x}"
                fp = Fingerprint(ch, ch, "JPEG", 24, 16, rng.getrandbits(64), rng.getrandbits(64), None, False)
                store.put_fingerprint(fp, fingerprint.VERSION)
                store.put_file(path, st, ch)
                n += 1
    return n


def bench_rescan(n: int, work: str, repeat: int) -> list[str]:
    root = os.path.realpath(os.path.join(work, f"tree{n}"))
    t0 = time.perf_counter()
    make_tree(root, n)
    print(f"  tree of {n} files ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dedupe-rescan-") as tmp:
        db = os.path.join(tmp, "store.sqlite")
        stored = fill_store(root, db)
        env = {**os.environ, "PYTHONPATH": REPO}
        cmd = [sys.executable, "-m", "dedupe", "scan", root, "--db", db, "--format", "json", "--quiet"]
        walls, peaks, floors = [], [], []
        for _ in range(repeat):
            floor = measure([sys.executable, "-c", WALK_FLOOR, root])  # interleaved: both see the same load
            if floor.returncode != 0 or int(floor.stdout) != stored:
                raise SystemExit(f"the walk floor failed: {floor.stdout} {floor.stderr[-2000:]}")
            floors.append(floor.wall)
            print(f"  walk floor {n}: {floor.wall:.2f}s", file=sys.stderr)
            m = measure(cmd, env)
            if m.returncode != 0:
                raise SystemExit(f"dedupe scan failed: {m.stderr[-2000:]}")
            summary = json.loads(m.stdout)["summary"]
            if summary["fingerprinted"] != 0 or summary["images"] != stored:
                raise SystemExit(f"the re-scan was not a no-change re-scan: {summary}")
            walls.append(m.wall)
            peaks.append(m.peak_mib)
            print(f"  re-scan {n}: {m.wall:.2f}s, peak {m.peak_mib:.0f} MiB", file=sys.stderr)
        rows.append(
            f"| no-change re-scan (`dedupe scan`, whole process tree) | {n:,} | {min(walls):.2f} | {max(peaks):.0f} | -"
            f" | {summary['images']:,} images, 0 fingerprinted, {summary['groups']} groups; the first run, which"
            f" writes the copies beside the store: {walls[0]:.2f} s |"
        )
        rows.append(
            f"| the floor: walking the same tree (`os.scandir` and `stat`, whole process) | {n:,} | {min(floors):.2f}"
            f" | - | - | re-scan / walk: {min(walls) / min(floors):.1f}x |"
        )
    return rows


# What any re-scan must do at least: list every folder and stat every file in it, in a fresh Python.
WALK_FLOOR = """
import os, sys
def walk(folder):
    n = 0
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                n += walk(entry.path)
            else:
                entry.stat(follow_symlinks=False)
                n += 1
    return n
print(walk(sys.argv[1]))
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_group":
        _child_group(argv[1], int(argv[2]))
        return 0
    if argv and argv[0] == "_store":
        _child_store(argv[1])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k and 100k hashes, a tree of 10k files, one run each")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "scale.md"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dedupe-bench"))
    ap.add_argument("--repeat", type=int, help="runs per measure; the best is reported (default 2, quick 1)")
    ap.add_argument("--skip-rescan", action="store_true")
    ap.add_argument("--skip-grouping", action="store_true")
    ap.add_argument("--skip-store", action="store_true")
    a = ap.parse_args(argv)
    repeat = a.repeat or (1 if a.quick else 2)
    compile_package()
    sizes = [10_000, 100_000] if a.quick else [100_000, 1_000_000]
    rows = [
        "| what | n | seconds (best) | peak MiB | MiB above the input | result |",
        "|---|---|---|---|---|---|",
    ]
    if not a.skip_grouping:
        rows += bench_grouping(sizes, repeat)
    if not a.skip_store:
        rows += bench_store(sizes[-1], a.work, repeat)
    if not a.skip_rescan:
        rows += bench_rescan(10_000 if a.quick else 100_000, a.work, repeat)
    table = f"Machine: {machine()}. Best of {repeat} run(s); threshold 4 (the default).\n\n" + "\n".join(rows) + "\n"
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
