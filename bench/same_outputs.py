"""Whether two checkouts of dedupe give the same outputs on one store: for a redesign that must change nothing.

Runs `dedupe groups --format json` and `dedupe review --dry-run --format json` (the plan) with each checkout's
package on PYTHONPATH, over the same store and folders, for several sets of match options, and prints a table
saying, for each, whether the two outputs are byte for byte the same. The store is only read (scan it first, with
either checkout: the fingerprint version must be the same).

    python bench/same_outputs.py --old /work/main --new . --db /tmp/bench.sqlite /tmp/dedupe-bench/mixed
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys

OPTIONS = (
    [],
    ["--threshold", "0"],
    ["--threshold", "8"],
    ["--no-rotations"],
    ["--no-two-stage"],
    ["--bursts-together"],
    ["--crops"],
    ["--no-crops"],
)


def run(checkout: str, args: list[str]) -> tuple[int, bytes]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(checkout), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "dedupe", *args], capture_output=True, env=env, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the checkout before the change")
    parser.add_argument("--new", required=True, help="the checkout after it")
    parser.add_argument("--db", required=True, help="a store scanned beforehand")
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    print("| command | options | exit (old, new) | same output | sha256 (first 12) |")
    print("|---|---|---|---|---|")
    differ = 0
    for command in (["groups"], ["review", "--dry-run", "--include-near"]):
        for options in OPTIONS:
            line = [*command, *args.dirs, "--db", args.db, "--format", "json", *options]
            (old_rc, old), (new_rc, new) = run(args.old, line), run(args.new, line)
            same = old_rc == new_rc and old == new
            differ += not same
            digest = hashlib.sha256(new).hexdigest()[:12]
            print(f"| {command[0]} | {' '.join(options) or '(defaults)'} | {old_rc}, {new_rc} | {same} | {digest} |")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
