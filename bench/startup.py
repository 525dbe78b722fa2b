#!/usr/bin/env python3
"""How long do dedupe's quick commands take, as whole processes started by a shell?

Usage:
    python bench/startup.py [--runs N] [--store FILE] [--count N] [--build] [--source DIR]

Times, as separate processes, the bare start of Python (`python -c pass`, the floor), `dedupe --version`,
`dedupe --help`, the shell asking for the completion of `dedupe sc` (bash and zsh) and, when the store is there,
`dedupe check IMAGE --db STORE` against a store of --count imported fingerprints (a near match, exit status 1).
Each command runs N times (default 9); the table gives the fastest and the median wall time, the median CPU time
(user + system: steadier on a busy machine), the time above the floor, and the goal of issue 17 (0.15 s for the
start-up commands, 0.3 s for check).

The store and its two images are those of bench/check_bench.py (same default path): it is reused while its
--count matches; --build makes it when it is missing or was built for another count or fingerprint version (a
million fingerprints take about two minutes). Without --build and without a store, the check row is left out.

--source times the dedupe package in another folder (a checkout of another branch, say) instead of this one's.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTUP_GOAL = 0.15
CHECK_GOAL = 0.3


@dataclass(frozen=True)
class Timed:
    name: str
    wall: list[float]
    cpu: list[float]
    goal: float | None


def run_once(args: list[str], env: dict[str, str], expected: int, cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of args; a run ending with another exit status stops the
    script, since its time would not be the command's."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expected:
        sys.exit(f"{' '.join(args)} exited {done.returncode}, expected {expected}: {done.stderr.strip()}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def completion_env(shell: str, words: str) -> dict[str, str]:
    """What a shell's click completion script sets to ask for the completion of the last word of words."""
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    return {"_DEDUPE_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": cword}


def check_store(path: Path, count: int, build: bool) -> tuple[Path, Path] | None:
    """The store of check_bench.py and its planted image, built when asked; None when missing and not asked."""
    sys.path.insert(0, str(REPO / "bench"))
    import check_bench  # the store's builder, shared so that both scripts time the same store

    folder = path.parent / "dedupe-check-bench-images"
    banned = folder / "banned.jpg"
    marker = Path(f"{path}.built")
    from dedupe import fingerprint

    wanted = f"{count} imported {fingerprint.VERSION}"
    ready = path.exists() and banned.exists() and marker.exists() and marker.read_text().strip() == wanted
    if ready:
        from dedupe.store import Store

        with Store.open(path):  # a store built by an earlier dedupe is brought up to date, as a scan would
            pass
        return path, banned
    if not build:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    if not banned.exists():
        check_bench.draw(1).save(banned, quality=90)
    check_bench.build(path, count, "imported", fingerprint.fingerprint_file(banned))
    return path, banned


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def row(timed: Timed, floor: float) -> str:
    best, median = min(timed.wall), statistics.median(timed.wall)
    goal = "" if timed.goal is None else f"{timed.goal * 1000:.0f}"
    met = "" if timed.goal is None else ("yes" if best <= timed.goal else "**no**")
    return (
        f"| {timed.name:<42} | {best * 1000:7.0f} | {median * 1000:9.0f} | {statistics.median(timed.cpu) * 1000:6.0f}"
        f" | {(best - floor) * 1000:10.0f} | {goal:>7} | {met:>6} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "dedupe-check-bench.sqlite")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--build", action="store_true", help="make the check store when it is missing or stale")
    parser.add_argument("--source", type=Path, default=REPO, help="the folder whose dedupe package is timed")
    args = parser.parse_args()

    # Bytecode written first, as installing does: no compiling inside the timings.
    source = args.source.resolve()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(source / "dedupe")], check=True)
    # Run in source too: `python -m` puts the working folder first on the path.
    env = {**os.environ, "PYTHONPATH": str(source)}
    py, dedupe = sys.executable, [sys.executable, "-m", "dedupe"]
    commands: list[tuple[str, list[str], dict[str, str], float | None, int]] = [
        ("python -c pass", [py, "-c", "pass"], env, None, 0),
        ("dedupe --version", [*dedupe, "--version"], env, STARTUP_GOAL, 0),
        ("dedupe --help", [*dedupe, "--help"], env, STARTUP_GOAL, 0),
        ("bash completion of `dedupe sc`", dedupe, {**env, **completion_env("bash", "dedupe sc")}, STARTUP_GOAL, 0),
        ("zsh completion of `dedupe sc`", dedupe, {**env, **completion_env("zsh", "dedupe sc")}, STARTUP_GOAL, 0),
    ]
    store = check_store(args.store, args.count, args.build)
    if store is not None:
        db, image = store
        name = f"dedupe check IMAGE --db STORE ({args.count:,})"
        commands.append((name, [*dedupe, "check", str(image), "--db", str(db)], env, CHECK_GOAL, 1))

    load = os.getloadavg()[0]
    # Interleaved (A B C A B C ...) rather than each command N times in a row: a burst of load from elsewhere
    # then slows one run of each rather than every run of one.
    samples: dict[str, tuple[list[float], list[float]]] = {c[0]: ([], []) for c in commands}
    for _ in range(args.runs):
        for name, argv, command_env, _goal, expected in commands:
            wall, cpu = run_once(argv, command_env, expected, source)
            samples[name][0].append(wall)
            samples[name][1].append(cpu)
    results = [Timed(name, *samples[name], goal) for name, _argv, _env, goal, _expected in commands]
    floor = min(results[0].wall)

    print(
        f"\ndedupe from {source}; {os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}; {args.runs} runs each, interleaved; load average {load:.2f} before,"
        f" {os.getloadavg()[0]:.2f} after"
    )
    print()
    print(f"| {'command':<42} | best ms | median ms | CPU ms | over floor | goal ms | met    |")
    print(f"|{'-' * 44}|--------:|----------:|-------:|-----------:|--------:|-------:|")
    for timed in results:
        print(row(timed, floor))
    if store is None:
        print(f"\n(no check row: no store of {args.count:,} fingerprints at {args.store}; --build makes it)")


if __name__ == "__main__":
    main()
