#!/usr/bin/env python3
"""A report round of `dedupe watch` on a large store: how long the watcher takes to tell whether one new file
duplicates a stored picture, at 50,000 to 200,000 stored pictures.

Usage:
    python bench/watch_rounds.py [--sizes 50000,200000] [--rounds N] [--work DIR] [--code DIR]

The store holds synthetic fingerprints (bench/scale.py's: pHashes of which one in five is a near copy of another,
with crop signatures like a photo's, as a scan of photos would store them), written once through the Store API and
kept in --work. In a fresh process, a DuplicateReporter (what the watcher calls after each batch it reads) is asked
about one new real JPEG per round, written to disk and read into the store as the watcher reads it
(scan.fingerprint_files, timed apart: "read"). The first round is the watcher's first duplicate after its start;
the later rounds are what each new file costs afterwards. Wall and CPU time (user+sys of the process) per round, the
best and the median of the later rounds, and the process's peak memory. --code runs another checkout's dedupe
package (a folder holding dedupe/) instead of this one's: how the figures before a change are taken.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_store(db: str, n: int) -> None:
    """A store of n synthetic pictures with crop signatures, as if a scan had found them; kept between runs."""
    sys.path.insert(0, REPO)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import scale

    scale.make_store(db, n, crops=True)


def _child(db: str, rounds: int, folder: str) -> None:
    """In a fresh process: rounds of one new file each; prints JSON."""
    from PIL import Image, ImageDraw

    from dedupe.match import MatchRule
    from dedupe.scan import fingerprint_files
    from dedupe.store import Store
    from dedupe.watch_report import DuplicateReporter

    def cpu() -> float:
        t = os.times()
        return t.user + t.system

    results = []
    with Store.open(db) as store:
        reporter = DuplicateReporter(store, MatchRule(), print)
        for i in range(rounds):
            im = Image.new("RGB", (320, 240), (40 * i % 256, 90, 160))
            ImageDraw.Draw(im).ellipse((10 + 7 * i, 20, 200, 180 + i), fill=(250 - 9 * i % 256, 30, 20))
            path = os.path.join(folder, f"new{i}.jpg")
            im.save(path, quality=90)
            start = time.perf_counter()
            added = fingerprint_files([(path, os.stat(path))], store, workers=1).added
            read = time.perf_counter() - start
            start, before = time.perf_counter(), cpu()
            assert reporter.report(added) == []
            results.append({"read": read, "wall": time.perf_counter() - start, "cpu": cpu() - before})
        # Leave the store as it was: the next run measures the same.
        with store.transaction():
            store.forget_files([os.path.join(folder, f"new{i}.jpg") for i in range(rounds)])
            store.forget_orphan_images()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rounds": results, "peak_mib": peak}))


def measure(db: str, rounds: int, code: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": code}
    with tempfile.TemporaryDirectory(prefix="dedupe-watch-rounds-") as folder:
        r = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "_child", db, str(rounds), folder],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if r.returncode != 0:
        raise SystemExit(f"failed:\n{r.stderr[-3000:]}")
    result: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50000,200000")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dedupe-bench"))
    ap.add_argument("--code", default=REPO, help="the folder holding the dedupe package to measure")
    args = ap.parse_args(argv)
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(args.code, "dedupe")], check=True)
    os.makedirs(args.work, exist_ok=True)
    print(
        "| stored pictures | first round: wall / CPU s | later rounds: best wall / CPU s | median wall s"
        " | reading the file s | peak MiB |"
    )
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        db = os.path.join(args.work, f"watch-rounds-{n}.sqlite")
        make_store(db, n)
        res = measure(db, args.rounds, args.code)
        rounds = res["rounds"]
        assert isinstance(rounds, list)
        first, later = rounds[0], rounds[1:]
        best = min(later, key=lambda r: r["wall"])
        print(
            f"| {n:,} | {first['wall']:.2f} / {first['cpu']:.2f} | {best['wall']:.3f} / {best['cpu']:.3f}"
            f" | {statistics.median(r['wall'] for r in later):.3f}"
            f" | {statistics.median(r['read'] for r in rounds):.3f} | {res['peak_mib']:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(main())
