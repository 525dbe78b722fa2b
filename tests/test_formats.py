"""The output schemas: the same dictionaries and rows for a Python caller as for `dedupe ... --format`."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from click.testing import CliRunner

from dedupe import (
    GROUP_CSV_FIELDS,
    Action,
    RunInfo,
    Store,
    display_path,
    groups_csv,
    groups_json,
    parse_rules,
    plan,
    stored_groups,
    summarize,
)
from dedupe.cli import cli
from dedupe.formats import (
    applied_json,
    check_json,
    copy_labels,
    groups_paths,
    human_size,
    no_groups_json,
    plan_json,
    run_json,
    run_state,
)
from dedupe.models import CheckResult, DuplicateGroup, GroupMember, MatchKind
from dedupe.plan import keepers_chosen, keepers_first
from dedupe.scan import scan
from tests.conftest import make_record


def test_csv_header_and_rows_have_the_same_columns(photo_dir: Path, store: Store) -> None:
    scan([photo_dir], store)
    groups, _, _ = stored_groups(store, [photo_dir])
    rows = list(csv.DictReader(io.StringIO(groups_csv(groups))))
    assert len(rows) == sum(len(g.members) for g in groups) == 6
    for row in rows:
        assert tuple(row) == GROUP_CSV_FIELDS
        assert None not in row and None not in row.values()  # no row longer or shorter than the header
        assert Path(row["path"]).is_file()
    assert [r["reference"] for r in rows if r["group"] == "1"] == ["1", "0"]
    assert all(r["why"] for r in rows if r["reference"] == "0")  # why a copy is in its group has a column


def test_the_cli_prints_the_library_s_dictionaries(photo_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    printed = CliRunner().invoke(cli, ["scan", str(photo_dir), "--db", str(db), "--format", "json", "-q"])
    assert printed.exit_code == 0, printed.output
    with Store.open(db) as store:
        groups, skipped, images = stored_groups(store, [photo_dir])
    # The CLI shows each group from the file review would keep.
    chosen = keepers_chosen(groups, roots=[os.path.realpath(photo_dir)])
    groups = [g for g, _ in chosen]
    reasons = [c.reason for _, c in chosen]
    built = groups_json(groups, skipped, summarize(groups, images, len(skipped)), keeper_reasons=reasons)
    report = json.loads(printed.output)
    assert report["groups"] == built["groups"] and report["skipped"] == built["skipped"]
    assert {k: v for k, v in report["summary"].items() if k in built["summary"]} == built["summary"]
    csv_out = CliRunner().invoke(cli, ["groups", "--db", str(db), "--format", "csv"]).output
    assert csv_out == groups_csv(keepers_first(groups))


def test_a_plan_in_json_names_keeper_steps_and_summary(photo_dir: Path, store: Store) -> None:
    scan([photo_dir], store)
    groups, _, _ = stored_groups(store, [photo_dir])
    the_plan = plan(groups, parse_rules("resolution"), Action.TRASH, include_near=True)
    out = plan_json(the_plan, dry_run=True)
    assert out["action"] == "trash" and out["dry_run"] is True
    assert out["summary"]["files"] == len(the_plan.steps) == sum(len(g["steps"]) for g in out["groups"])
    assert applied_json(the_plan, None) == {**plan_json(the_plan, dry_run=False), "run": None, "results": []}
    assert no_groups_json(Action.MOVE, dry_run=False) == {
        "action": "move",
        "dry_run": False,
        "groups": [],
        "results": [],
    }


def test_a_run_is_interrupted_when_it_journaled_acts_but_never_finished() -> None:
    def run(finished: float | None, undone: float | None, **counts: int) -> RunInfo:
        return RunInfo(1, Action.TRASH, 10.0, finished, undone, counts)

    assert run_state(run(None, None, done=2)) == "interrupted"
    assert run_state(run(None, None)) == "unfinished"
    assert run_state(run(11.0, None, done=2)) == "finished"
    assert run_state(run(11.0, 12.0, done=2)) == "undone"
    assert run_json(run(11.0, None, done=2, failed=1)) == {
        "run": 1,
        "started": 10.0,
        "action": "trash",
        "done": 2,
        "failed": 1,
        "undone": 0,
        "state": "finished",
    }


def test_an_image_that_could_not_be_checked_has_an_error_and_no_match() -> None:
    assert check_json("x.jpg", None, "not an image file") == {
        "image": "x.jpg",
        "match": None,
        "distance": None,
        "error": "not an image file",
        "closest": None,
    }
    clean = check_json("y.jpg", CheckResult("y.jpg", False, None))
    assert clean["match"] is False and clean["closest"] is None and clean["error"] is None


def test_control_characters_in_names_are_shown_escaped() -> None:
    assert display_path("/p/esc\x1b]0;pwned\x07.jpg") == "/p/esc\\x1b]0;pwned\\x07.jpg"
    assert display_path("/p/new\nline\r.jpg") == "/p/new\\x0aline\\x0d.jpg"
    assert display_path("/p/c1\x9b31m.jpg") == "/p/c1\\x9b31m.jpg"
    assert display_path("/p/bad" + os.fsdecode(b"\xff") + "é.jpg") == "/p/bad\\xffé.jpg"


def test_a_backslash_in_a_name_is_shown_doubled() -> None:
    """A literal backslash in a name is shown as two, so that a name holding the text \\x0a is told apart from a
    name holding a newline."""
    assert display_path("/p/lit\\x0a.jpg") == "/p/lit\\\\x0a.jpg"
    assert display_path("/p/lit\\x0a.jpg") != display_path("/p/lit\n.jpg")


def test_groups_csv_paths_never_start_a_spreadsheet_formula(tmp_path: Path) -> None:
    """A path starting with = + - @ tab or CR is written to the groups CSV with a single quote in front."""
    member = GroupMember(make_record("=cmd|' /C calc'!A0.jpg"), MatchKind.EXACT, 0)
    (row,) = list(csv.DictReader(io.StringIO(groups_csv([DuplicateGroup(MatchKind.EXACT, (member,))]))))
    assert row["path"] == "'=cmd|' /C calc'!A0.jpg"


def test_sizes_are_shown_in_decimal_units() -> None:
    assert [human_size(n) for n in (999, 1000, 1_500_000, 10**13)] == ["999 B", "1.0 KB", "1.5 MB", "10.0 TB"]


def test_copies_are_labelled_per_set_of_equal_bytes_and_paths_keep_their_bytes() -> None:
    """Each set of members with the same bytes shares a letter (AA after Z); a file without a byte copy has
    none. groups_paths writes each path's exact bytes, the reference first, a blank line after each group."""
    files = [make_record(f"/p/{n}.jpg", content_hash=f"{n // 2:032d}") for n in range(56)]
    files.append(make_record("/p/\udcff.jpg", content_hash="f" * 32))
    group = DuplicateGroup(MatchKind.EXACT, tuple(GroupMember(f, MatchKind.EXACT, 0) for f in files))
    labels = copy_labels(group)
    assert labels[:4] == ["A", "A", "B", "B"] and labels[52:56] == ["AA", "AA", "AB", "AB"] and labels[56] is None
    listed = groups_paths([group, group])
    assert listed.split(b"\n\n")[0].split(b"\n")[0] == b"/p/0.jpg"
    assert listed.count(b"\n\n") == 2 and b"/p/\xff.jpg\n" in listed


def test_a_path_holding_a_newline_is_written_escaped_on_one_line() -> None:
    """groups_paths writes a path holding a newline as display_path shows it, on one line: never as two lines
    that could each name another file. Other paths keep their bytes."""
    files = [make_record("/p/a.jpg"), make_record("/p/new\nline.jpg"), make_record("/p/back\\slash.jpg")]
    group = DuplicateGroup(MatchKind.EXACT, tuple(GroupMember(f, MatchKind.EXACT, 0) for f in files))
    assert groups_paths([group]) == b"/p/a.jpg\n/p/new\\x0aline.jpg\n/p/back\\slash.jpg\n\n"
