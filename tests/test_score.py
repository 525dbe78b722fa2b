"""bench/score.py scores a scan report against a corpus's truth.json."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PATH = Path(__file__).resolve().parent.parent / "bench" / "score.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_score", _PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_score"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_pairwise_precision_recall_and_recall_by_edit() -> None:
    score = _load()
    truth = {
        "originals": ["originals/a.jpg", "originals/b.jpg"],
        "copies": [
            {"path": "copies/a_rot90.jpg", "original": "originals/a.jpg", "edit": "rot90"},
            {"path": "copies/a_crop5.jpg", "original": "originals/a.jpg", "edit": "crop5"},
            {"path": "copies/b_rot90.jpg", "original": "originals/b.jpg", "edit": "rot90"},
        ],
        "lookalikes": [["lookalikes/b_dark.jpg", "originals/b.jpg"]],
        "junk": [],
    }
    report = {
        "groups": [
            {"files": [{"path": "/c/originals/a.jpg"}, {"path": "/c/copies/a_rot90.jpg"}]},
            {"files": [{"path": "/c/originals/b.jpg"}, {"path": "/c/lookalikes/b_dark.jpg"}]},
        ]
    }
    s = score.score(report, truth, "/c")
    assert (s.true_pairs, s.false_pairs, s.possible_pairs, s.lookalike_pairs) == (1, 1, 4, 1)
    assert s.precision == 0.5 and s.recall == 0.25
    assert s.by_edit == {"crop5": (0, 1), "rot90": (1, 2)}
    assert "| x | 50.00 | 25.0 |" in score.as_markdown(s, "x")
