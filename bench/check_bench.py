#!/usr/bin/env python3
"""How fast is `dedupe check` on a store of a million fingerprints, as a whole process?

Usage:
    python bench/check_bench.py [--count N] [--store FILE] [--runs R] [--kind imported|files] [--rebuild]
                                [--structures]

Builds (once; reused while --count and --kind match) a store holding N synthetic fingerprints: imported ones,
as a blocklist holds them, or scanned files (rows in files and images). Random 64-bit hashes, except that the
pHash's top bit is always set, as the DC term of a real pHash is. Two real JPEGs (3000x2000) are drawn: the
fingerprint of one is planted in the store with 3 pHash bits flipped (so checking it finds a near match, exit
1); the other is not (exit 0). Then `python -m dedupe check IMAGE --db STORE` is timed R times for each, as
an upload hook would run it, next to the bare start of Python and of `dedupe --version`, and the median, the
fastest and the slowest run are printed.

--structures also times the search structures inside one process at this size, the query's fingerprint given:
a one-off query through the store's pHash block indexes (what check does) at several thresholds, loading a
SearchIndex and querying it, and a pybktree BK-tree (built on at most 200,000 fingerprints: pure Python is slow
to build).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from dedupe import fingerprint  # noqa: E402
from dedupe.models import ListedFingerprint  # noqa: E402
from dedupe.store import Store  # noqa: E402

TOP_BIT = 1 << 63


def draw(seed: int, size: tuple[int, int] = (3000, 2000)) -> Image.Image:
    rng = random.Random(seed)
    w, h = size
    base = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    im = Image.blend(base, Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3))), 0.6)
    d = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = rng.randrange(w), rng.randrange(h)
        box = [x, y, x + rng.randrange(w // 20, w // 3), y + rng.randrange(h // 20, h // 3)]
        colour = tuple(rng.randrange(256) for _ in range(3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=colour)
    return im.filter(ImageFilter.GaussianBlur(3))


def flip(value: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(63), bits):
        value ^= 1 << bit
    return value


def build(path: Path, count: int, kind: str, planted: fingerprint.Fingerprint) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    rng = random.Random(5)
    started = time.perf_counter()
    near = ListedFingerprint(
        content_hash=f"{rng.getrandbits(128):032x}",
        image_hash=f"{rng.getrandbits(128):032x}",
        phash=flip(planted.phash, 3, rng),
        dhash=flip(planted.dhash, 5, rng),
        width=planted.width // 2,
        height=planted.height // 2,
        low_info=False,
        label="planted near copy",
    )
    items = [near]
    for i in range(count - 1):
        items.append(
            ListedFingerprint(
                content_hash=f"{rng.getrandbits(128):032x}",
                image_hash=f"{rng.getrandbits(128):032x}",
                phash=rng.getrandbits(64) | TOP_BIT,
                dhash=rng.getrandbits(64),
                width=4000,
                height=3000,
                low_info=False,
                label=f"synthetic/{i:07d}.jpg",
            )
        )
    with Store.open(path) as store:
        if kind == "imported":
            with store.transaction():
                store.add_imported(items, fingerprint.VERSION, "check_bench")
    if kind == "files":
        # Rows as a scan writes them, put straight in with one transaction (a scan of a million real files
        # would take hours).
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO images (content_hash, version, image_hash, format, width, height, phash, dhash, taken,"
            " low_info) VALUES (?, ?, ?, 'JPEG', ?, ?, ?, ?, NULL, 0)",
            (
                (f.content_hash, fingerprint.VERSION, f.image_hash, f.width, f.height, signed(f.phash), signed(f.dhash))
                for f in items
            ),
        )
        conn.executemany(
            "INSERT INTO files (path, size, mtime_ns, dev, ino, content_hash, scanned_at) VALUES (?, 1, 0, 1, ?, ?, 0)",
            ((f"/photos/{f.label}".encode(), i, f.content_hash) for i, f in enumerate(items)),
        )
        conn.execute("COMMIT")
        conn.close()
    Path(f"{path}.built").write_text(f"{count} {kind} {fingerprint.VERSION}\n")
    size = path.stat().st_size / 1e6
    print(f"built {count:,} {kind} fingerprints in {time.perf_counter() - started:.1f} s ({size:.0f} MB)")


def signed(v: int) -> int:
    return v - (1 << 64) if v >= TOP_BIT else v


def time_command(args: list[str], runs: int) -> tuple[list[float], list[float], int]:
    """Wall-clock and CPU (user + system) seconds of each run: CPU time stays honest on a busy machine."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    wall: list[float] = []
    cpu: list[float] = []
    status = 0
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        status = done.returncode
        if status not in (0, 1):
            sys.exit(f"{' '.join(args)} failed ({status}): {done.stderr.strip()}")
    return wall, cpu, status


def row(name: str, wall: list[float], cpu: list[float], status: int) -> str:
    ms = [t * 1000 for t in wall]
    return (
        f"| {name:<40} | {statistics.median(ms):9.0f} | {min(ms):7.0f} | {max(ms):7.0f}"
        f" | {statistics.median(cpu) * 1000:10.0f} | {status:>6} |"
    )


def structures(store_path: Path, query: fingerprint.Fingerprint) -> None:
    import numpy as np
    import pybktree

    from dedupe.search import SearchIndex, find_similar

    print()
    print("| in one process                           |   time ms | note                          |")
    print("|------------------------------------------|-----------|-------------------------------|")
    with Store.open(store_path, readonly=True) as store:
        for threshold in (4, 8, 12, 16, 19, 20):
            find_similar(query, store, threshold=threshold)  # warm the page cache
            started = time.perf_counter()
            hits = find_similar(query, store, threshold=threshold).hits
            ms = (time.perf_counter() - started) * 1000
            how = "block indexes" if threshold < 20 else "whole columns"
            print(f"| {'store query, threshold ' + str(threshold):<40} | {ms:9.1f} | {len(hits):4} hits, {how:<14} |")
        started = time.perf_counter()
        index = SearchIndex.load(store)
        print(
            f"| SearchIndex.load                         | {(time.perf_counter() - started) * 1000:9.0f} |"
            f" {len(index):,} fingerprints{'':<6}|"
        )
        for threshold in (8, 16):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                hits = index.find_similar(query, threshold=threshold).hits
                times.append(time.perf_counter() - started)
            ms = statistics.median(times) * 1000
            name = f"SearchIndex query, threshold {threshold}"
            print(f"| {name:<40} | {ms:9.1f} | {len(hits):4} hits (median of 5)   |")
        phashes = store.fingerprint_columns(fingerprint.VERSION).phash
    sample = [int(v) for v in phashes[:200_000]]
    started = time.perf_counter()
    tree = pybktree.BKTree(lambda a, b: (a ^ b).bit_count(), sample)
    build_ms = (time.perf_counter() - started) * 1000
    print(f"| pybktree build, {len(sample):,} values             | {build_ms:9.0f} |{'':<31}|")
    arr = np.array(sample, dtype=np.uint64)
    for threshold in (8, 16):
        started = time.perf_counter()
        found = tree.find(query.phash, threshold)
        tree_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        scanned = int(np.count_nonzero(np.bitwise_count(arr ^ np.uint64(query.phash)) <= threshold))
        np_ms = (time.perf_counter() - started) * 1000
        assert scanned == len(found)
        name = f"pybktree query, threshold {threshold}"
        print(f"| {name:<40} | {tree_ms:9.1f} | numpy scan of these {np_ms:5.1f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "dedupe-check-bench.sqlite")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--kind", choices=["imported", "files"], default="imported")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--structures", action="store_true")
    args = parser.parse_args()

    # Bytecode written first, as installing does (see run.compile_package): no compiling inside the timings.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "dedupe")], check=True)
    folder = args.store.parent / "dedupe-check-bench-images"
    folder.mkdir(exist_ok=True)
    banned, clean = folder / "banned.jpg", folder / "clean.jpg"
    if not banned.exists() or not clean.exists():
        draw(1).save(banned, quality=90)
        draw(2).save(clean, quality=90)
    planted = fingerprint.fingerprint_file(banned)
    marker = Path(f"{args.store}.built")
    # The marker names the fingerprint version too: a store built by an older version would not match.
    wanted = f"{args.count} {args.kind} {fingerprint.VERSION}"
    if args.rebuild or not args.store.exists() or not marker.exists() or marker.read_text().strip() != wanted:
        build(args.store, args.count, args.kind, planted)

    py = sys.executable
    load = os.getloadavg()
    python = sys.version.split()[0]
    print(f"\nstore: {args.store} ({args.count:,} {args.kind} fingerprints); {args.runs} runs each; Python {python}")
    print()
    print(f"| {'command':<40} | median ms | min ms  | max ms  | median CPU | status |")
    print(f"|{'-' * 42}|-----------|---------|---------|------------|--------|")
    print(row("python -c pass", *time_command([py, "-c", "pass"], args.runs)))
    print(row("python -m dedupe --version", *time_command([py, "-m", "dedupe", "--version"], args.runs)))
    for image, expected in ((banned, 1), (clean, 0)):
        cmd = [py, "-m", "dedupe", "check", str(image), "--db", str(args.store)]
        wall, cpu, status = time_command(cmd, args.runs)
        if status != expected:
            sys.exit(f"check {image.name} exited {status}, expected {expected}")
        print(row(f"dedupe check {image.name} --db STORE", wall, cpu, status))
    print(f"\nload average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    if args.structures:
        structures(args.store, planted)


if __name__ == "__main__":
    main()
