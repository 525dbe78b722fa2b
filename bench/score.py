"""Score a `dedupe scan --format json` report against a benchmark corpus's truth.json.

    python -m dedupe scan /tmp/c1 --db /tmp/x.sqlite --format json > report.json
    python bench/score.py report.json /tmp/c1/truth.json [--root /tmp/c1] [--markdown]

Every original and its edited copies are one identity; each look-alike and each junk file is its own. A pair of
files in one group is true when both belong to one identity. Recall per edit kind counts a copy as found when it
shares a group with its original. Importable: `score(report, truth, root)` returns a `Score`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any


@dataclass
class Score:
    true_pairs: int  # same-identity pairs the report grouped
    false_pairs: int  # different-identity pairs the report grouped
    possible_pairs: int  # same-identity pairs in the truth
    lookalike_pairs: int  # grouped pairs that truth.json lists as look-alikes
    by_edit: dict[str, tuple[int, int]] = field(default_factory=dict)  # edit -> (found, total)
    false_examples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        grouped = self.true_pairs + self.false_pairs
        return self.true_pairs / grouped if grouped else 1.0

    @property
    def recall(self) -> float:
        return self.true_pairs / self.possible_pairs if self.possible_pairs else 1.0

    @property
    def copy_recall(self) -> float:
        found = sum(f for f, _ in self.by_edit.values())
        total = sum(t for _, t in self.by_edit.values())
        return found / total if total else 1.0


def identities(truth: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Relative path -> identity, and copy path -> edit kind."""
    ident: dict[str, str] = {p: p for p in truth["originals"]}
    edit: dict[str, str] = {}
    for c in truth["copies"]:
        ident[c["path"]] = c["original"]
        edit[c["path"]] = c["edit"]
    for a, b in truth["lookalikes"]:
        ident.setdefault(a, a)
        ident.setdefault(b, b)
    for j in truth["junk"]:
        ident.setdefault(j, j)
    return ident, edit


def score(report: dict[str, Any], truth: dict[str, Any], root: str) -> Score:
    ident, edit = identities(truth)
    root = os.path.realpath(root)
    group_of: dict[str, int] = {}
    true_pairs = false_pairs = 0
    examples: list[tuple[str, str]] = []
    grouped: set[frozenset[str]] = set()
    for n, g in enumerate(report["groups"]):
        paths = sorted(os.path.relpath(f["path"], root) for f in g["files"])
        for p in paths:
            group_of[p] = n
        for a, b in combinations(paths, 2):
            grouped.add(frozenset((a, b)))
            if ident.get(a, a) == ident.get(b, b):
                true_pairs += 1
            else:
                false_pairs += 1
                examples.append((a, b))
    members: dict[str, int] = defaultdict(int)
    for _p, i in ident.items():
        members[i] += 1
    possible = sum(k * (k - 1) // 2 for k in members.values())
    by_edit: dict[str, tuple[int, int]] = {}
    for path, kind in sorted(edit.items()):
        found, total = by_edit.get(kind, (0, 0))
        original = ident[path]
        hit = path in group_of and group_of[path] == group_of.get(original)
        by_edit[kind] = (found + int(hit), total + 1)
    lookalikes = sum(1 for a, b in truth["lookalikes"] if frozenset((a, b)) in grouped)
    return Score(true_pairs, false_pairs, possible, lookalikes, by_edit, examples)


def as_markdown(s: Score, label: str = "") -> str:
    kinds = list(s.by_edit)
    head = "| run | precision | pair recall | copy recall | false pairs | look-alikes | " + " | ".join(kinds) + " |"
    sep = "|" + "---|" * (6 + len(kinds))
    cells = [f"{100 * f / t:.0f}" for f, t in s.by_edit.values()]
    row = (
        f"| {label} | {100 * s.precision:.2f} | {100 * s.recall:.1f} | {100 * s.copy_recall:.1f} | {s.false_pairs}"
        f" | {s.lookalike_pairs} | " + " | ".join(cells) + " |"
    )
    return "\n".join((head, sep, row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("--root", help="the corpus folder [default: the folder of truth.json]")
    ap.add_argument("--markdown", action="store_true", help="print one markdown table row")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    truth = json.loads(args.truth.read_text())
    report = json.loads(args.report.read_text())
    s = score(report, truth, args.root or str(args.truth.parent))
    if args.markdown:
        print(as_markdown(s, args.label))
        return
    print(
        f"precision {100 * s.precision:.2f}%  pair recall {100 * s.recall:.1f}%  copy recall {100 * s.copy_recall:.1f}%"
    )
    print(f"true pairs {s.true_pairs}/{s.possible_pairs}, false pairs {s.false_pairs}, look-alikes {s.lookalike_pairs}")
    for kind, (f, t) in s.by_edit.items():
        print(f"  {kind:12} {f:3}/{t:<3} {100 * f / t:5.1f}%")
    for a, b in s.false_examples[:20]:
        print(f"  false: {a}  ~  {b}")


if __name__ == "__main__":
    main()
