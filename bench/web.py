#!/usr/bin/env python3
"""Speed of the review page (`dedupe review --web`): opening 10,000 groups, and making thumbnails of real photos.

Usage:
    python bench/web.py [--groups N] [--photos N] [--repeat N]

Groups: N synthetic groups (60% pairs of byte copies, 40% near triples; the files need not exist) go through the
page's own path: ReviewState plans every group with dedupe.plan (the suggestions the overview counts), then a real
uvicorn server on 127.0.0.1 answers over HTTP. "First page" is what the browser fetches to show the overview and
the first group (the page, its script and style, the overview, the first 100 lines of the group list, group 1);
"tenth group" adds groups 2 to 10 one after the other, as pressing j does. Grouping from the store is not in these
figures: bench/scale.py measures stored_groups.

Thumbnails: real photographs (Debian's wallpapers: /usr/share/backgrounds and /usr/share/wallpapers, 1-6K pixels,
JPEG and PNG), made by the page's thread pool (one thread per core) into an empty cache, then served again from it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import uvicorn  # noqa: E402
from run import machine  # noqa: E402  (bench/ is this script's folder, first on sys.path)

from dedupe import Store, fingerprint, plan  # noqa: E402
from dedupe.models import DuplicateGroup, FileRecord, Fingerprint, GroupMember, MatchKind  # noqa: E402
from dedupe.web.app import create_app  # noqa: E402
from dedupe.web.state import ReviewState  # noqa: E402
from dedupe.web.thumbs import Thumbnails  # noqa: E402


def synthetic_groups(n: int, seed: int = 1) -> list[DuplicateGroup]:
    rng = random.Random(seed)
    groups = []
    for g in range(n):
        near = rng.random() < 0.4
        members = []
        for m in range(3 if near else 2):
            content = f"{g:08x}{m if near else 0:08x}".ljust(32, "0")
            width = 4000 - 1000 * m * near
            fp = Fingerprint(content, content, "JPEG", width, 3000, rng.getrandbits(64), 0, None, False)
            path = f"/nonexistent/bench/{g // 100:03d}/{'copy' if m else 'orig'}{m}-{g}.jpg"
            record = FileRecord(path, 2_000_000 + rng.randrange(100_000), 10**18 + g * 10 + m, 1, g * 10 + m, fp)
            kind = MatchKind.EXACT if m == 0 or not near else MatchKind.NEAR
            members.append(GroupMember(record, kind, 0 if kind is MatchKind.EXACT else rng.randrange(1, 5)))
        groups.append(DuplicateGroup(MatchKind.NEAR if near else MatchKind.EXACT, tuple(members)))
    return groups


# What the browser fetches to show the overview, then the first group.
FIRST_PAGE = (
    "/",
    "/static/review.js",
    "/static/review.css",
    "/api/overview",
    "/api/groups?offset=0&limit=100",
    "/api/group/0",
)


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Host": f"127.0.0.1:{port}", "Cookie": f"dedupe_token={token}"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> bytes:
        self.conn.request("GET", path, headers=self.headers)
        r = self.conn.getresponse()
        body = r.read()
        assert r.status == 200, (path, r.status, body[:200])
        return body


def bench_groups(n: int, repeat: int, work: Path) -> list[tuple[str, str]]:
    groups = synthetic_groups(n)
    store = Store.open(work / "bench.sqlite")
    t0 = time.perf_counter()
    state = ReviewState(store, lambda: groups, lambda gs, keepers: plan(gs, keepers=keepers, include_near=True))
    startup = time.perf_counter() - t0
    token = "bench-token"
    thumbs = Thumbnails(work / "thumbs")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    app = create_app(state, thumbs, token, {f"127.0.0.1:{port}"})
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    firsts, tenths = [], []
    try:
        for _ in range(repeat):
            client = Client(port, token)
            t0 = time.perf_counter()
            for path in FIRST_PAGE:
                client.get(path)
            firsts.append(time.perf_counter() - t0)
            for i in range(1, 10):
                client.get(f"/api/group/{i}")
            tenths.append(time.perf_counter() - t0)
    finally:
        server.should_exit = True
        thread.join()
        thumbs.close()
        store.close()
    return [
        (f"start: plan the suggestions of {n:,} groups", f"{startup:.2f} s"),
        (f"first page (overview, list, group 1), median of {repeat}", f"{statistics.median(firsts) * 1000:.0f} ms"),
        (f"to the tenth group, median of {repeat}", f"{statistics.median(tenths) * 1000:.0f} ms"),
    ]


def photos(limit: int) -> list[FileRecord]:
    found = sorted(
        p
        for folder in ("/usr/share/backgrounds", "/usr/share/wallpapers")
        for p in Path(folder).rglob("*")
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file() and not p.is_symlink()
    )
    rng = random.Random(7)
    rng.shuffle(found)
    records = []
    for p in found[:limit]:
        st = p.stat()
        fp = Fingerprint(fingerprint.hash_file(p), "", "JPEG", 0, 0, 0, 0, None, False)
        records.append(FileRecord(str(p), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, fp))
    return records


def bench_thumbs(n: int, work: Path) -> list[tuple[str, str]]:
    records = photos(n)
    if not records:
        return [("thumbnails", "no photos: apt-get install gnome-backgrounds mate-backgrounds")]
    size = sum(r.size for r in records)
    jpegs = sum(Path(r.path).suffix.lower() in (".jpg", ".jpeg") for r in records)
    thumbs = Thumbnails(work / "thumbs-real")
    rows = []
    for label in ("made (empty cache)", "served from the cache"):
        t0 = time.perf_counter()
        jobs = [thumbs.submit(r) for r in records]
        made = sum(j.exception() is None for j in jobs)
        dt = time.perf_counter() - t0
        rows.append(
            (
                f"thumbnails {label}: {made} of {len(records)} photos ({jpegs} JPEG, others PNG), {size / 1e6:.0f} MB",
                f"{len(records) / dt:.1f} photos/s ({dt:.2f} s)",
            )
        )
    thumbs.close()
    cache = sum(p.stat().st_size for p in (work / "thumbs-real").rglob("*.jpg"))
    rows.append(("thumbnail cache on disk", f"{cache / 1e6:.1f} MB ({cache / len(records) / 1e3:.0f} kB each)"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dedupe-bench-web-") as tmp:
        rows = bench_groups(args.groups, args.repeat, Path(tmp))
        rows += bench_thumbs(args.photos, Path(tmp))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak memory of the whole benchmark process", f"{peak:.0f} MiB"))
    load = os.getloadavg()
    print(f"Machine: {machine()}; load average at the end {load[0]:.1f} (shared machine)\n")
    print("| Measure | Result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
