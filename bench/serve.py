#!/usr/bin/env python3
"""How many uploads a second does `dedupe serve` check against a million fingerprints, and how fast?

Usage:
    python bench/serve.py [--count N] [--store FILE] [--rebuild] [--requests R] [--clients C] [--workers 1,2]

Uploads are real photographs: the JPEG wallpapers of Debian's mate-backgrounds and plasma-workspace-wallpapers
packages (apt-get install -y mate-backgrounds plasma-workspace-wallpapers), each scaled to about 1.5 megapixels
and saved as a JPEG (quality 90). The store holds N synthetic imported fingerprints (random hashes, as
bench/check_bench.py makes them; built once and reused) plus the real fingerprints of every other upload, so
half the checks find a match.

Timed:
- in one process, without HTTP: SearchIndex.load, then check(bytes, index) for each upload in turn, as a
  Python web application would call the library;
- `dedupe serve --workers W` in a subprocess, with C client threads (keep-alive connections, http.client)
  posting the same uploads to /v1/check as fast as they are answered.
Both print checks per second and the p50/p99 latency; the server's memory is its processes' resident size once
the index is loaded. The clients share the machine with the server: on 2 cores they take some of its time.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from dedupe import fingerprint  # noqa: E402
from dedupe.models import ListedFingerprint  # noqa: E402
from dedupe.search import SearchIndex, check  # noqa: E402
from dedupe.store import Store  # noqa: E402

SOURCES = ("/usr/share/backgrounds", "/usr/share/wallpapers")
TARGET_PIXELS = 1_500_000
TOP_BIT = 1 << 63


def uploads(limit: int) -> list[tuple[str, bytes]]:
    """Real photos scaled to about 1.5 megapixels, as JPEG bytes."""
    found = sorted(
        {
            os.path.realpath(os.path.join(d, f))
            for root in SOURCES
            for d, _, files in os.walk(root)
            for f in files
            if f.lower().endswith((".jpg", ".jpeg"))
        }
    )
    out: list[tuple[str, bytes]] = []
    seen: set[bytes] = set()
    for path in found:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = (TARGET_PIXELS / (im.width * im.height)) ** 0.5
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90)
        data = buf.getvalue()
        key = fingerprint.hash_bytes(data).encode()
        if key not in seen:
            seen.add(key)
            out.append((path, data))
        if len(out) >= limit:
            break
    if len(out) < 4:
        sys.exit("bench/serve.py: too few JPEG photos; apt-get install -y mate-backgrounds plasma-workspace-wallpapers")
    return out


def build(path: Path, count: int, banned: list[tuple[str, bytes]]) -> None:
    marker = Path(f"{path}.built")
    want = f"{count} {len(banned)} {fingerprint.VERSION}\n"
    if marker.exists() and marker.read_text() == want and path.exists():
        return
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    rng = random.Random(5)
    items = [
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
        for i in range(count)
    ]
    for name, data in banned:
        fp = fingerprint.fingerprint_bytes(data, fingerprint.hash_bytes(data))
        items.append(
            ListedFingerprint(
                fp.content_hash, fp.image_hash, fp.phash, fp.dhash, fp.width, fp.height, fp.low_info, name
            )
        )
    with Store.open(path) as store, store.transaction():
        store.add_imported(items, fingerprint.VERSION, "bench/serve.py")
    marker.write_text(want)
    print(f"built {len(items):,} fingerprints in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def in_process(store_path: Path, photos: list[tuple[str, bytes]], requests: int) -> tuple[dict[str, float], list[bool]]:
    with Store.open(store_path, readonly=True) as store:
        started = time.perf_counter()
        index = SearchIndex.load(store)
        load = time.perf_counter() - started
        columns = index._columns
        nbytes = sum(getattr(columns, name).nbytes for name in type(columns).__slots__)
        check(photos[0][1], index)  # warm: imports, first decode
        latencies, answers = [], []
        started = time.perf_counter()
        for k in range(requests):
            t = time.perf_counter()
            answers.append(check(photos[k % len(photos)][1], index).matched)
            latencies.append(time.perf_counter() - t)
        wall = time.perf_counter() - started
    return {
        "rate": requests / wall,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "load": load,
        "index_mb": nbytes / 1e6,
        "fingerprints": len(index),
    }, answers


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers)."""
    pids = {pid}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.add(int(entry))
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def served(
    store_path: Path, photos: list[tuple[str, bytes]], requests: int, clients: int, workers: int, expected: list[bool]
) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "dedupe", "serve", "--db", str(store_path), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    started = time.perf_counter()
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("Serving on "):
        process.kill()
        sys.exit(f"bench/serve.py: the server did not start: {line}")
    startup = time.perf_counter() - started
    host, port = line.removeprefix("Serving on http://").strip().rsplit(":", 1)
    memory = rss_mb(process.pid)
    latencies: list[float] = []
    wrong: list[int] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        for _ in range(2):  # warm: a connection, a first decode in each worker
            conn.request("POST", "/v1/check", photos[0][1], {"Content-Type": "image/jpeg"})
            conn.getresponse().read()
        barrier.wait()
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                break
            t = time.perf_counter()
            conn.request("POST", "/v1/check", photos[k % len(photos)][1], {"Content-Type": "image/jpeg"})
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - t
            with lock:
                latencies.append(elapsed)
                if response.status != 200 or (b'"match":true' in body) != expected[k % len(expected)]:
                    wrong.append(k)
        conn.close()

    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    process.terminate()
    process.wait(timeout=60)
    if wrong:
        print(f"warning: {len(wrong)} answers differ from the in-process ones", file=sys.stderr)
    return {
        "rate": requests / wall,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "startup": startup,
        "memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="synthetic fingerprints in the store")
    parser.add_argument("--store", type=Path, default=Path("/tmp/dedupe-bench-serve.sqlite"))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--photos", type=int, default=32, help="distinct uploads")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", default="1,2", help="server processes to try, comma separated")
    args = parser.parse_args()
    photos = uploads(args.photos)
    if args.rebuild:
        Path(f"{args.store}.built").unlink(missing_ok=True)
    build(args.store, args.count, photos[::2])
    pixels = statistics.median(Image.open(io.BytesIO(d)).width * Image.open(io.BytesIO(d)).height for _, d in photos)
    size = statistics.median(len(d) for _, d in photos)
    local, answers = in_process(args.store, photos, args.requests)
    rows = [("in one process, no HTTP (serial)", local)]
    for workers in (int(w) for w in args.workers.split(",")):
        rows.append(
            (
                f"dedupe serve --workers {workers}, {args.clients} clients",
                served(args.store, photos, args.requests, args.clients, workers, answers),
            )
        )
    load1 = os.getloadavg()[0]
    print(
        f"\n{local['fingerprints']:,} fingerprints; {len(photos)} real JPEG uploads of {pixels / 1e6:.1f} MP"
        f" (median {size / 1e3:.0f} KB), {sum(answers) * 100 // len(answers)}% of checks matching;"
        f" {args.requests} checks per row; {os.cpu_count()} cores, load average {load1:.1f} at the end\n"
    )
    print(f"| {'how':<42} | checks/s | p50 ms | p99 ms | vs in-process |")
    print(f"|{'-' * 44}|---------:|-------:|-------:|--------------:|")
    for name, r in rows:
        print(
            f"| {name:<42} | {r['rate']:8.1f} | {r['p50'] * 1e3:6.0f} | {r['p99'] * 1e3:6.0f} |"
            f" {r['rate'] / local['rate']:12.2f}x |"
        )
    print(
        f"\nindex in one process: {local['index_mb']:.0f} MB of arrays, loaded in {local['load']:.1f} s;"
        + "".join(
            f" serve --workers {n.split('--workers ')[1].split(',')[0]}: {r['memory']:.0f} MB resident,"
            f" answering {r['startup']:.1f} s after start;"
            for n, r in rows[1:]
        )
    )


if __name__ == "__main__":
    main()
