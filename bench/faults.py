#!/usr/bin/env python3
"""Kill -9 at random points of scan, review and undo, and check that a final undo gives back the starting tree.

Usage:
    python bench/faults.py [--trials N] [--work DIR] [--seed S] [--out FILE]

A tree of photos (small JPEGs and a few large noise PNGs, each with three byte copies in backup folders) is built
in --work, with a store and a trash ($XDG_DATA_HOME) beside it, and its sha256 manifest (path -> hash) taken.
Each trial picks a kind and runs `dedupe` in a real process that is killed with SIGKILL:

- scan: a scan of the tree (with its worker processes), killed at a random moment.
- trash, move, hardlink: `dedupe review --yes` with that action (move goes to --to on a tmpfs, another device,
  when this runs as root and may mount one; else to a folder on the same drive, which the table says), killed at
  a random moment or, in one trial of three, at a fault point named by $DEDUPE_FAULT (planned, acted; for a move
  also copying, copied, named: see dedupe/files.py and dedupe/actions.py).
- undo-trash, undo-move, undo-hardlink: a complete review, then `dedupe undo` killed the same ways (fault points
  copying, copied, named for a move, copying and restored for a hardlink).

The random moment is uniform between the time Python takes to start dedupe and the time the same command took
uninterrupted (both measured first).
After the kill, `dedupe undo` runs until there is nothing left to undo (a scan trial re-scans instead, and checks
the store with PRAGMA integrity_check). The trial passes when the tree's manifest equals the starting one, and no
temporary file (.NAME.dedupe-PID-N.tmp), no partial copy and no moved copy is left in the tree or in --to. Files
left in the trash are counted apart (they are whole copies in the trash, not leftovers in the tree). A failed
trial rebuilds the tree, so the next one starts clean.

The work folder, the tree and the store are generated data: they live outside the repository (default
/tmp/dedupe-faults) and are never committed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
KINDS = ("scan", "trash", "move", "hardlink", "undo-trash", "undo-move", "undo-hardlink")
# The fault points each kind passes (a cross-device copy only happens in a move and its undo).
FAULTS = {
    "trash": ("planned", "acted"),
    "move": ("planned", "acted", "copying", "copied", "named"),
    "hardlink": ("planned", "acted"),
    "undo-trash": (),
    "undo-move": ("copying", "copied", "named"),
    "undo-hardlink": ("copying", "restored"),
}


def build_tree(photos: Path, seed: int) -> None:
    """Fifteen originals (twelve small JPEGs, three ~5 MB noise PNGs so that copies across drives take a while),
    each with three byte copies in backup folders: 45 acts per review."""
    rng = random.Random(seed)
    for i in range(15):
        if i < 12:
            im = Image.new("RGB", (800, 600), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
            draw = ImageDraw.Draw(im)
            for _ in range(30):
                x, y = rng.randrange(800), rng.randrange(600)
                draw.ellipse((x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)), fill=rng.randrange(256))
            name = f"p{i}.jpg"
        else:
            im = Image.frombytes("RGB", (1300, 1300), rng.randbytes(1300 * 1300 * 3))
            name = f"p{i}.png"
        original = photos / name
        original.parent.mkdir(parents=True, exist_ok=True)
        im.save(original, quality=90)
        for backup in ("backup1", "backup2/old", "backup3"):
            copy = photos / backup / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(original.read_bytes())
            os.utime(copy, (2_000_000_000, 2_000_000_000))  # newer: the default rules keep the originals


def manifest(folder: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() or path.is_symlink():
            kind = "link:" if path.is_symlink() else ""
            found[str(path.relative_to(folder))] = kind + hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leftovers(*folders: Path) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob("*") if ".dedupe-" in p.name)


@dataclass
class Bench:
    work: Path
    seed: int
    photos: Path = field(init=False)
    pristine: Path = field(init=False)
    target: Path = field(init=False)
    xdg: Path = field(init=False)
    db: Path = field(init=False)
    cross_device: bool = False

    def __post_init__(self) -> None:
        self.photos = self.work / "photos"
        self.pristine = self.work / "pristine"
        self.target = self.work / "target"
        self.xdg = self.work / "xdg"
        self.db = self.work / "store.sqlite"

    def env(self, fault: str | None = None) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_DATA_HOME": str(self.xdg)}
        env.pop("DEDUPE_FAULT", None)
        if fault:
            env["DEDUPE_FAULT"] = fault
        return env

    def args(self, kind: str) -> list[str]:
        action = kind.removeprefix("undo-")
        if kind == "scan":
            return ["scan", str(self.photos), "-q", "-j", "2"]
        if kind.startswith("undo-"):
            return ["undo"]
        extra = ["--to", str(self.target)] if action == "move" else []
        return ["review", str(self.photos), "--yes", "--action", action, *extra]

    def dedupe(self, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dedupe", *args, "--db", str(self.db)],
            env=self.env(fault),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def setup(self) -> None:
        if self.work.exists():
            if self.target.is_mount():
                subprocess.run(["umount", str(self.target)], check=True)
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        build_tree(self.pristine, self.seed)
        self.target.mkdir()
        if os.geteuid() == 0:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(self.target)], check=False)
            self.cross_device = r.returncode == 0
        self.reset()

    def reset(self) -> None:
        """The tree as built, an empty target and trash, and a fresh store."""
        shutil.rmtree(self.photos, ignore_errors=True)
        shutil.copytree(self.pristine, self.photos)
        for child in self.target.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        shutil.rmtree(self.xdg, ignore_errors=True)
        self.xdg.mkdir()
        for part in self.work.glob("store.sqlite*"):
            part.unlink()
        assert self.dedupe(*self.args("scan")).returncode == 0

    def teardown(self) -> None:
        if self.target.is_mount():
            subprocess.run(["umount", str(self.target)], check=False)

    def killed(self, args: list[str], delay: float | None, fault: str | None) -> bool:
        """Run dedupe and kill it after delay seconds (or let it kill itself at the fault point); True when it
        was killed before it finished."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "dedupe", *args, "--db", str(self.db)],
            env=self.env(fault),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=300)
        return code == -signal.SIGKILL

    def undo_all(self) -> str | None:
        """Undo until nothing is left; the reason when that does not happen."""
        for _ in range(8):
            r = self.dedupe("undo")
            if "nothing to undo" in r.stderr:
                return None
            if r.returncode not in (0, 1) or "internal error" in r.stderr:
                return f"undo failed: {r.stderr.strip() or r.stdout.strip()}"
        return "undo did not finish in 8 tries: " + r.stdout.strip().splitlines()[-1]


def measure(bench: Bench) -> dict[str, float]:
    """How long each kind of command takes uninterrupted, and (as "startup") how long Python takes to start
    dedupe at all: the random kill moment is drawn between the two."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "dedupe", "--version"], env=bench.env(), capture_output=True, check=True)
    took: dict[str, float] = {"startup": time.monotonic() - start}
    for kind in KINDS:
        bench.reset()
        if kind == "scan":
            for part in bench.work.glob("store.sqlite*"):
                part.unlink()
        elif kind.startswith("undo-"):
            assert bench.dedupe(*bench.args(kind.removeprefix("undo-"))).returncode == 0
        start = time.monotonic()
        r = bench.dedupe(*bench.args(kind))
        took[kind] = time.monotonic() - start
        assert r.returncode == 0, (kind, r.stderr)
    return took


def trial(
    bench: Bench, kind: str, took: tuple[float, float], rng: random.Random, start: dict[str, str]
) -> tuple[bool, str, bool]:
    """(passed, what went wrong, killed mid-run) of one trial."""
    if kind == "scan":
        for part in bench.work.glob("store.sqlite*"):
            part.unlink()
    elif kind.startswith("undo-"):
        r = bench.dedupe(*bench.args(kind.removeprefix("undo-")))
        if r.returncode != 0:
            return False, f"review before undo failed: {r.stderr.strip()}", False
    faults = FAULTS.get(kind, ())
    fault = rng.choice(faults) if faults and rng.random() < 1 / 3 else None
    delay = None if fault else rng.uniform(*took)
    was_killed = bench.killed(bench.args(kind), delay, fault)
    if kind == "scan":
        r = bench.dedupe(*bench.args("scan"))
        if r.returncode != 0:
            return False, f"re-scan failed: {r.stderr.strip()}", was_killed
        with sqlite3.connect(bench.db) as conn:
            if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                return False, "the store is damaged", was_killed
    else:
        problem = bench.undo_all()
        if problem:
            return False, problem, was_killed
    if manifest(bench.photos) != start:
        return False, "the tree differs from the start", was_killed
    left = leftovers(bench.photos, bench.target)
    if left:
        return False, f"leftovers: {left}", was_killed
    moved = [p for p in bench.target.rglob("*") if p.is_file()]
    if moved:
        return False, f"moved copies left in --to: {moved}", was_killed
    return True, "", was_killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dedupe-faults"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="Also write the table to this file.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    bench = Bench(args.work, args.seed)
    bench.setup()
    try:
        start = manifest(bench.photos)
        took = measure(bench)
        tried: Counter[str] = Counter()
        killed: Counter[str] = Counter()
        passed: Counter[str] = Counter()
        trashed: Counter[str] = Counter()
        problems: dict[str, list[str]] = defaultdict(list)
        began = time.monotonic()
        for n in range(args.trials):
            kind = KINDS[n % len(KINDS)]
            bench.reset()
            ok, why, was_killed = trial(bench, kind, (took["startup"], took[kind]), rng, start)
            tried[kind] += 1
            killed[kind] += was_killed
            passed[kind] += ok
            trashed[kind] += sum(1 for p in (bench.xdg / "Trash" / "files").glob("*"))
            if not ok:
                problems[kind].append(why)
                print(f"trial {n + 1} ({kind}) FAILED: {why}", file=sys.stderr)
        elapsed = time.monotonic() - began
    finally:
        bench.teardown()
    where = "a tmpfs (another device)" if bench.cross_device else "a folder on the same drive (no tmpfs)"
    lines = [
        f"{sum(tried.values())} trials in {elapsed:.0f} s, seed {args.seed}; move --to {where};"
        f" {os.cpu_count()} cores, Python {sys.version.split()[0]}; dedupe starts in {took['startup']:.2f} s",
        "",
        "| kind | trials | killed mid-run | passed | failed | files left in the trash | uninterrupted run (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        lines.append(
            f"| {kind} | {tried[kind]} | {killed[kind]} | {passed[kind]} | {tried[kind] - passed[kind]}"
            f" | {trashed[kind]} | {took[kind]:.2f} |"
        )
    lines.append(
        f"| all | {sum(tried.values())} | {sum(killed.values())} | {sum(passed.values())}"
        f" | {sum(tried.values()) - sum(passed.values())} | {sum(trashed.values())}"
        f" | {statistics.mean(took[k] for k in KINDS):.2f} |"
    )
    for kind, whys in problems.items():
        lines += ["", f"{kind}: " + "; ".join(sorted(set(whys)))]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    if any(problems.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
