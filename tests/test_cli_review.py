"""`dedupe review` and `dedupe undo` through click's CliRunner with scripted answers, and one real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from dedupe.cli import cli
from dedupe.models import Action
from dedupe.store import Store
from tests.conftest import REPO, draw_photo, run_dedupe, save

SMALL = (400, 300)


class Library:
    """Two exact groups and one near group, scanned into a store."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "photos"
        self.db = str(tmp_path / "store.sqlite")
        self.a = save(draw_photo(1, SMALL), self.root / "a.jpg", quality=90)
        self.a_copy = self._copy(self.a, self.root / "backup" / "a.jpg")
        self.b = save(draw_photo(2, SMALL), self.root / "b.jpg", quality=90)
        self.b_copy = self._copy(self.b, self.root / "backup" / "b.jpg")
        self.c = save(draw_photo(3, SMALL), self.root / "c.jpg", quality=95)
        self.c_near = save(draw_photo(3, SMALL), self.root / "old" / "c-small.jpg", quality=40)
        self.original = {p: p.read_bytes() for p in self.all}
        r = CliRunner().invoke(cli, ["scan", str(self.root), "--db", self.db, "-q"])
        assert r.exit_code == 0, r.output

    @staticmethod
    def _copy(src: Path, dst: Path) -> Path:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        os.utime(dst, (2_000_000_000, 2_000_000_000))  # the backups are newer: "oldest" keeps the originals
        return dst

    @property
    def all(self) -> list[Path]:
        return [self.a, self.a_copy, self.b, self.b_copy, self.c, self.c_near]

    def present(self) -> set[str]:
        return {p.name if p.parent == self.root else f"{p.parent.name}/{p.name}" for p in self.all if p.exists()}

    def intact(self) -> bool:
        return all(p.read_bytes() == self.original[p] for p in self.all if p.exists())

    def review(self, *args: str, answers: str = "", env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, ["review", str(self.root), "--db", self.db, *args], input=answers, env=env)


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    return Library(tmp_path)


ALL = {"a.jpg", "backup/a.jpg", "b.jpg", "backup/b.jpg", "c.jpg", "old/c-small.jpg"}


# --- interactive ----------------------------------------------------------------------------------------------


def test_interactive_keep_suggestion_pick_another_and_confirm(lib: Library, trash_home: Path) -> None:
    assert lib.present() == ALL
    # Group order follows the reference path: a, b, c. Keep a's suggestion, keep b's copy instead, skip c.
    r = lib.review(answers="k\n2\ns\ny\n")
    assert r.exit_code == 0, r.output
    assert "Group 1 of 3" in r.output and "★ keep" in r.output and "Suggested keeper: 1" in r.output
    assert "same bytes" in r.output and "similar: phash " in r.output
    assert lib.present() == ALL - {"backup/a.jpg", "b.jpg"}
    assert lib.intact()
    assert len(list((trash_home / "files").iterdir())) == 2
    assert "2 trashed" in r.output and "'dedupe undo' reverses it" in r.output

    u = CliRunner().invoke(cli, ["undo", "--db", lib.db])
    assert u.exit_code == 0, u.output
    assert "2 file(s) restored" in u.output
    assert lib.present() == ALL and lib.intact()


def test_nothing_happens_without_confirmation(lib: Library, trash_home: Path) -> None:
    r = lib.review(answers="k\nk\nk\nn\n")
    assert r.exit_code == 0, r.output
    assert "Trash 3 file(s)?" in r.output and "Discarded; nothing changed." in r.output
    assert lib.present() == ALL and not trash_home.exists()


def test_piped_answers_that_run_out_change_nothing_and_exit_2(lib: Library, trash_home: Path) -> None:
    """Piped answers that end before the last group, or before the confirmation, stop the review with exit 2
    and nothing changed: a script that ran out of answers does not end 0 as if the review had been done."""
    for answers in ("k\n", "k\nk\nk\n"):
        r = lib.review(answers=answers)
        assert r.exit_code == 2, r.output
        assert "the input is not a terminal to ask again: nothing changed" in r.output and lib.present() == ALL


def test_back_changes_an_earlier_decision(lib: Library, trash_home: Path) -> None:
    # a: keep suggestion; b: back; a again: skip; b: keep suggestion; c: skip; confirm.
    r = lib.review(answers="k\nb\ns\nk\ns\ny\n")
    assert r.exit_code == 0, r.output
    assert lib.present() == ALL - {"backup/b.jpg"}


def test_quit_then_apply_or_discard_what_was_decided(tmp_path: Path, trash_home: Path) -> None:
    lib = Library(tmp_path)
    r = lib.review(answers="k\nq\ndiscard\n")
    assert r.exit_code == 0, r.output
    assert "Apply what was decided so far" in r.output and lib.present() == ALL
    r = lib.review(answers="k\nq\napply\n")
    assert r.exit_code == 0, r.output
    assert lib.present() == ALL - {"backup/a.jpg"}


def test_back_shows_the_answer_given_and_the_first_group_has_nothing_before_it(lib: Library, trash_home: Path) -> None:
    r = lib.review(answers="b\n2\nb\nk\nk\ns\ny\n")
    assert r.exit_code == 0, r.output
    assert "this is the first group: there is nothing before it" in r.output
    assert f"Answered before: keep 2 ({lib.a_copy}), the rest go" in r.output
    assert lib.present() == ALL - {"backup/a.jpg", "backup/b.jpg"}


def test_a_group_shows_which_members_are_byte_copies(lib: Library) -> None:
    r = lib.review(answers="q\n")
    assert r.exit_code == 0, r.output
    table = r.output.split("Group 1 of 3")[1].split("Suggested keeper")[0]
    assert "Copies" in table
    assert [line.split("│")[-3].strip() for line in table.splitlines() if str(lib.root) in line] == ["A", "A"]


def test_a_group_fits_80_columns_with_whole_file_names(lib: Library) -> None:
    r = lib.review(answers="q\n", env={"FORCE_COLOR": "1", "COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    shown = click.unstyle(r.output)
    assert max(len(line) for line in shown.splitlines()) <= 80
    path_lines = [line.strip() for line in shown.splitlines() if line.startswith("    ")]  # under the facts
    assert path_lines and all(line.endswith(("/", ".jpg")) for line in path_lines)
    assert any(line.endswith("backup/a.jpg") or line == "a.jpg" for line in path_lines)


def test_the_plan_numbers_groups_as_the_review_and_scan_do(lib: Library, trash_home: Path) -> None:
    scan = CliRunner().invoke(cli, ["groups", str(lib.root), "--db", lib.db, "--format", "csv"]).output
    numbered = {line.split(",")[0] for line in scan.splitlines()[1:] if "b.jpg" in line}
    assert numbered == {"2"}
    r = lib.review(answers="s\nk\ns\nn\n")
    assert f"Group 2: keep {lib.b}" in r.output and "Group 1: keep" not in r.output


def test_piped_input_that_cannot_answer_stops_at_once(lib: Library, tmp_path: Path) -> None:
    """On a stdin that is not a terminal, an answer that is not understood (`yes |`) or no answer at all
    (`< /dev/null`) ends the review with exit 2 and a pointer to the ways to run without questions."""
    for answers in ("y\ny\ny\n", ""):
        r = lib.review(answers=answers)
        assert r.exit_code == 2, r.output
        assert "--yes" in r.output and "--dry-run" in r.output and "--script" in r.output
        assert r.output.count("Group 1 of 3") == 1 and lib.present() == ALL
    with Path(os.devnull).open() as nothing:
        proc = subprocess.run(
            [*run_dedupe_command(), "review", str(lib.root), "--db", lib.db],
            stdin=nothing,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
    assert proc.returncode == 2 and "--yes" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_closed_stdin_is_no_answer(lib: Library) -> None:
    """A review started with its stdin closed (`<&-` in a cron line, where Python has no sys.stdin) stops as on
    no answer: exit 2, the pointer to --yes, nothing changed, no internal error."""
    proc = subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" <&-', *run_dedupe_command(), "review", str(lib.root), "--db", lib.db],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "no answer" in proc.stderr and "--yes" in proc.stderr and "internal error" not in proc.stderr
    assert lib.present() == ALL


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["review", "{root}", "--dry-run", "--port", "8080"], "--port is only for --web"),
        (["review", "{root}", "--yes", "--host", "0.0.0.0", "--no-browser"], "--host and --no-browser are only for"),
        (["undo", "--list", "--run", "1"], "--list lists every run"),
        (["forget", "--list", "1"], "--list lists them"),
        (["forget", "1"], "there is no 1: nothing is marked as not duplicates"),
        (["review", "{root}", "--script", "{root}.sh", "--format", "json"], "--format json needs --yes or --dry-run"),
    ],
)
def test_options_that_would_be_ignored_are_a_usage_error(lib: Library, args: list[str], reason: str) -> None:
    """An option that does nothing in its combination (a --web option without --web, --list with what to undo or
    forget) is a usage error naming why, and nothing changes."""
    r = CliRunner().invoke(cli, [*(a.format(root=lib.root) for a in args), "--db", lib.db])
    assert r.exit_code == 2, r.output
    assert reason in r.output and lib.present() == ALL and not Path(f"{lib.root}.sh").exists()


def test_not_duplicates_are_listed_and_forgotten(lib: Library, trash_home: Path) -> None:
    assert lib.review(answers="s\na\na\n").exit_code == 0
    listed = CliRunner().invoke(cli, ["forget", "--list", "--db", lib.db])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("not duplicates since") == 2
    first, second = listed.output.split("not duplicates since")[1:]
    assert str(lib.b) in first and str(lib.c) in second and str(lib.c_near) in second
    forgot = CliRunner().invoke(cli, ["forget", "2", "--db", lib.db])
    assert forgot.exit_code == 0 and "Forgot 2" in forgot.output
    g = CliRunner().invoke(cli, ["groups", str(lib.root), "--db", lib.db, "--format", "json"])
    grouped = {Path(f["path"]).name for grp in json.loads(g.output)["groups"] for f in grp["files"]}
    assert "c-small.jpg" in grouped and "b.jpg" not in grouped
    assert CliRunner().invoke(cli, ["forget", "5", "--db", lib.db]).exit_code == 2


def run_dedupe_command() -> list[str]:
    return [sys.executable, "-m", "dedupe"]


def test_keep_all_is_remembered_as_not_duplicates(lib: Library, trash_home: Path) -> None:
    r = lib.review(answers="s\ns\na\n")
    assert r.exit_code == 0, r.output
    assert "Remembered 1 group(s) as not duplicates" in r.output and lib.present() == ALL
    g = CliRunner().invoke(cli, ["groups", str(lib.root), "--db", lib.db, "--format", "json"])
    groups = json.loads(g.output)["groups"]
    assert len(groups) == 2 and not any(f["path"].endswith("c.jpg") for grp in groups for f in grp["files"])
    # Remembered by content: a renamed file is still not proposed.
    lib.c_near.rename(lib.c_near.with_name("renamed.jpg"))
    CliRunner().invoke(cli, ["scan", str(lib.root), "--db", lib.db, "-q"])
    g = CliRunner().invoke(cli, ["groups", str(lib.root), "--db", lib.db, "--format", "json"])
    assert len(json.loads(g.output)["groups"]) == 2


def test_open_uses_the_system_viewer_or_says_there_is_none(lib: Library, tmp_path: Path, trash_home: Path) -> None:
    log = tmp_path / "viewer.log"
    viewer = tmp_path / "viewer.sh"
    viewer.write_text(f'#!/bin/sh\necho "$1" >> {log}\n')
    viewer.chmod(0o755)
    r = lib.review(answers="o\ns\ns\ns\n", env={"DEDUPE_VIEWER": str(viewer)})
    assert r.exit_code == 0, r.output
    assert "Opened 2 file(s)" in r.output
    assert log.read_text().splitlines() == [str(lib.a), str(lib.a_copy)]
    r = lib.review(answers="o\nq\n", env={"DEDUPE_VIEWER": "no-such-viewer-here"})
    assert "No system viewer found (no-such-viewer-here is not installed)" in r.output


def test_a_tie_must_be_decided_by_number(tmp_path: Path, trash_home: Path) -> None:
    root = tmp_path / "p"
    a = save(draw_photo(4, SMALL), root / "x" / "a.jpg")
    b = root / "y" / "a.jpg"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    db = str(tmp_path / "s.sqlite")
    CliRunner().invoke(cli, ["scan", str(root), "--db", db, "-q"])
    # The default rules end with the path, so they never tie: a rule list without it can.
    r = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--keep", "resolution,size"], input="2\ny\n")
    assert r.exit_code == 0, r.output
    assert "tie" in r.output and "pick the keeper by number" in r.output and "tie?" in r.output
    assert b.exists() and not a.exists()
    # Non-interactive runs leave a tied group alone and say why.
    a.write_bytes(b.read_bytes())
    os.utime(a, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns))
    CliRunner().invoke(cli, ["scan", str(root), "--db", db, "-q"])
    r = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--yes", "--keep", "resolution,size"])
    assert "left alone: tie" in r.output and a.exists() and b.exists()


# --- non-interactive ------------------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_changes_nothing(lib: Library, trash_home: Path) -> None:
    r = lib.review("--dry-run", "--keep", "oldest")
    assert r.exit_code == 0, r.output
    assert f"trash {lib.a_copy}" in r.output and f"trash {lib.b_copy}" in r.output
    assert f"leave {lib.c_near}: similar" in r.output
    assert "Would trash 2 file(s)" in r.output and "nothing was changed" in r.output
    assert lib.present() == ALL
    j = lib.review("--dry-run", "--include-near", "--format", "json")
    data = json.loads(j.output)
    assert data["dry_run"] is True and data["summary"]["files"] == 3
    planned = {s["path"] for g in data["groups"] for s in g["steps"]}
    assert planned == {str(lib.a_copy), str(lib.b_copy), str(lib.c_near)}
    assert lib.present() == ALL


def test_yes_acts_on_identical_copies_only_unless_include_near(lib: Library, trash_home: Path) -> None:
    r = lib.review("--yes", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["summary"] == {"done": 2, "skipped": 0, "failed": 0, "freed_bytes": data["summary"]["freed_bytes"]}
    assert {x["path"] for x in data["results"]} == {str(lib.a_copy), str(lib.b_copy)}
    assert all(x["destination"].startswith(str(trash_home)) for x in data["results"])
    assert lib.present() == ALL - {"backup/a.jpg", "backup/b.jpg"}
    r = lib.review("--yes", "--include-near")
    assert r.exit_code == 0, r.output
    assert lib.present() == {"a.jpg", "b.jpg", "c.jpg"} and lib.intact()


def test_a_byte_copy_of_a_similar_copy_names_the_file_that_stays_for_it(lib: Library, trash_home: Path) -> None:
    """--yes cuts byte copies of a similar copy to one file, and the plan says which file stays for them, not only
    the group's keeper; after --yes, a file left alone is shown under the keeper of its group."""
    twin = lib._copy(lib.c_near, lib.root / "phone" / "c-small.jpg")
    assert CliRunner().invoke(cli, ["scan", str(lib.root), "--db", lib.db, "-q"]).exit_code == 0
    r = lib.review("--dry-run")
    assert f"Group 3: keep {lib.c} (" in r.output
    assert f"  trash {twin} (same bytes as {lib.c_near}, which stays)\n" in r.output
    planned = json.loads(lib.review("--dry-run", "--format", "json").output)["groups"][2]["steps"]
    assert [(s["path"], s["keeper"], s["match"]) for s in planned] == [(str(twin), str(lib.c_near), "exact")]
    r = lib.review("--yes")
    assert r.exit_code == 0, r.output
    assert r.output.index(f"Group 3: keep {lib.c} (") < r.output.index(f"  leave {lib.c_near}: similar")
    assert "Group 1: keep" not in r.output  # nothing of group 1 is left alone: its result lines say it all
    assert not twin.exists() and lib.c_near.exists() and lib.c.exists()


def test_a_same_pixels_copy_of_a_similar_copy_names_the_file_that_stays_for_it(lib: Library, trash_home: Path) -> None:
    """A copy with the same pixels as a similar copy but other metadata goes in favour of that copy, as a byte copy
    does: the text plan names the file that stays, and the JSON step gives it as its keeper with match "image"."""
    data = lib.c_near.read_bytes()
    twin = lib.root / "phone" / "c-small.jpg"
    twin.parent.mkdir()
    twin.write_bytes(data[:2] + b"\xff\xfe\x00\x08edited" + data[2:])  # a JPEG comment: other bytes, same pixels
    assert CliRunner().invoke(cli, ["scan", str(lib.root), "--db", lib.db, "-q"]).exit_code == 0
    planned = json.loads(lib.review("--dry-run", "--format", "json").output)["groups"][2]["steps"]
    assert len(planned) == 1 and {planned[0]["path"], planned[0]["keeper"]} == {str(twin), str(lib.c_near)}
    assert planned[0]["match"] == "image"
    text = lib.review("--dry-run").output
    assert f"  trash {planned[0]['path']} (same picture as {planned[0]['keeper']}, which stays)\n" in text


def test_a_run_that_changed_nothing_does_not_point_at_undo(lib: Library, trash_home: Path) -> None:
    """When every step is skipped (each copy changed since the scan), the result says nothing was changed rather
    than that 'dedupe undo' reverses the run, which would only answer "nothing to undo"."""
    for copy in (lib.a_copy, lib.b_copy):
        with copy.open("ab") as f:
            f.write(b"edited since the scan")
    r = lib.review("--yes")
    assert r.exit_code == 0, r.output
    assert "0 trashed (0 B), 2 skipped, 0 failed. Nothing was changed." in r.output and "dedupe undo" not in r.output
    assert CliRunner().invoke(cli, ["undo", "--db", lib.db]).output == "Error: nothing to undo\n"


def test_move_with_reference_folder(lib: Library, tmp_path: Path) -> None:
    dest = tmp_path / "dups"
    # The backup folder is the reference: its files win and stay, the originals move.
    r = lib.review("--yes", "--action", "move", "--to", str(dest), "--reference", str(lib.root / "backup"))
    assert r.exit_code == 0, r.output
    assert lib.present() == ALL - {"a.jpg", "b.jpg"}
    assert (dest / "photos" / "a.jpg").read_bytes() == lib.original[lib.a]
    u = CliRunner().invoke(cli, ["undo", "--db", lib.db])
    assert u.exit_code == 0, u.output
    assert lib.present() == ALL and lib.intact() and not (dest / "photos" / "a.jpg").exists()


def test_move_into_the_reviewed_folder_is_a_usage_error(lib: Library, tmp_path: Path) -> None:
    """--to inside the reviewed folder (where the next scan would find the moved copies again), or holding it, is
    refused before anything is touched, as watch refuses such a quarantine folder; the error says which of the
    two it is, since a --to that holds the folder is outside it."""
    root = os.path.realpath(lib.root)
    for dest, relation in ((lib.root / "dups", "is inside"), (tmp_path, "holds")):
        r = lib.review("--yes", "--action", "move", "--to", str(dest))
        assert r.exit_code == 2, r.output
        assert f"--to {os.path.realpath(dest)} {relation} the reviewed folder {root}: copies go outside it" in r.output
    assert lib.present() == ALL and lib.intact() and not (lib.root / "dups").exists()


def test_a_path_longer_than_the_piped_width_stays_on_one_line(tmp_path: Path) -> None:
    """Piped, the plan, the result and undo print a file in a deep folder (a path over 400 characters) on one
    line of its own: never folded, where it would look like several lines."""
    photos = tmp_path / "photos"
    deep = photos.joinpath(*[f"a_folder_with_a_rather_long_name_{i:02d}" for i in range(14)])
    copy = save(draw_photo(4, SMALL), deep / "copy.jpg")
    keeper = photos / "keeper.jpg"
    keeper.write_bytes(copy.read_bytes())
    os.utime(copy, (2_000_000_000, 2_000_000_000))  # newer: "oldest" keeps keeper.jpg
    db, dest = str(tmp_path / "s.sqlite"), tmp_path / "dups"
    assert CliRunner().invoke(cli, ["scan", str(photos), "--db", db, "-q"]).exit_code == 0
    assert len(str(copy)) > 450
    moved = dest / copy.relative_to(tmp_path)
    move = ["--db", db, "--action", "move", "--to", str(dest), str(photos)]
    for args, line in (
        (["review", "--dry-run", *move], f"  move {copy} -> {moved}"),
        (["review", "--yes", *move], f"moved {copy} -> {moved}"),
        (["undo", "--db", db], f"restored {copy}: moved back from {moved}"),
    ):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
        assert line in r.output.splitlines()


def test_script_is_written_not_run(lib: Library, tmp_path: Path) -> None:
    script = tmp_path / "plan.sh"
    r = lib.review("--script", str(script), "--action", "delete")
    assert r.exit_code == 0, r.output
    assert "Wrote" in r.output and lib.present() == ALL
    text = script.read_text()
    assert text.startswith("#!/bin/sh") and f"rm -f -- {lib.a_copy}" in text and "check " in text
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert lib.present() == ALL - {"backup/a.jpg", "backup/b.jpg"}


def test_the_store_is_updated_and_undo_lists_runs(lib: Library, trash_home: Path) -> None:
    lib.review("--yes")
    runs = CliRunner().invoke(cli, ["undo", "--list", "--db", lib.db])
    assert runs.exit_code == 0 and "trash" in runs.output and "finished" in runs.output
    assert CliRunner().invoke(cli, ["undo", "--db", lib.db]).exit_code == 0
    runs = CliRunner().invoke(cli, ["undo", "--list", "--db", lib.db])
    assert "undone" in runs.output
    again = CliRunner().invoke(cli, ["undo", "--db", lib.db])
    assert again.exit_code == 1 and "nothing to undo" in again.output


def test_runs_and_not_duplicates_are_listed_from_a_store_on_a_read_only_disk(
    tmp_path: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    """undo --list and forget --list only read: they list a store on a read-only disk, while undo itself says
    in one line that the store cannot be written."""
    disk = mount_tmpfs("disk")
    db = str(disk / "s.sqlite")
    with Store.open(db) as store:
        store.finish_run(store.start_run(Action.TRASH))
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    runs = CliRunner().invoke(cli, ["undo", "--list", "--db", db])
    assert runs.exit_code == 0, runs.output
    assert "trash" in runs.output and "finished" in runs.output
    kept = CliRunner().invoke(cli, ["forget", "--list", "--db", db])
    assert (kept.exit_code, kept.output) == (0, "Nothing is marked as not duplicates.\n")
    undo = CliRunner().invoke(cli, ["undo", "--db", db])
    assert undo.exit_code == 1
    assert undo.output == f"Error: cannot use the store at {db}: read-only file system\n"


def test_a_failed_file_is_reported_and_counted(lib: Library, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "photos").write_text("a file where a folder is needed")
    r = lib.review("--yes", "--action", "move", "--to", str(dest))
    assert r.exit_code == 1
    assert "failed" in r.output and "2 failed" in r.output
    assert lib.present() == ALL


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--action", "move"], "--action move needs --to DIR"),
        (["--to", "/tmp/x"], "--to is only for --action move"),
        (["--keep", "biggest"], "unknown keeper rule"),
        (["--format", "json"], "--format json needs --yes"),
        (["--script", "x.sh", "--yes"], "do not combine"),
        (["--action", "shred"], "Invalid value for '--action'"),
        (["--include-near"], "--include-near is for --yes, --dry-run and --script"),
    ],
)
def test_bad_command_lines_are_usage_errors(lib: Library, args: list[str], message: str) -> None:
    r = lib.review(*args)
    assert r.exit_code == 2 and message in r.output
    assert lib.present() == ALL


def test_no_groups_and_a_missing_store(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    with Store.open(db):
        pass
    r = CliRunner().invoke(cli, ["review", "--db", db, "--yes"])
    assert r.exit_code == 0 and "No duplicates found." in r.output
    r = CliRunner().invoke(cli, ["undo", "--db", db])
    assert r.exit_code == 1 and "nothing to undo" in r.output


def test_review_and_undo_in_a_real_process(tmp_path: Path) -> None:
    root = tmp_path / "p"
    a = save(draw_photo(5, SMALL), root / "a.jpg")
    dup = root / "z" / "a.jpg"
    dup.parent.mkdir()
    dup.write_bytes(a.read_bytes())
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "DEDUPE_DB": str(tmp_path / "s.sqlite")}
    assert run_dedupe("scan", str(root), "-q", env=env).returncode == 0
    r = run_dedupe("review", str(root), "--yes", "--keep", "shortest", env=env)
    assert r.returncode == 0, r.stderr
    assert not dup.exists() and (tmp_path / "xdg" / "Trash" / "files" / "a.jpg").exists()
    r = run_dedupe("undo", env=env)
    assert r.returncode == 0, r.stderr
    assert dup.read_bytes() == a.read_bytes()


def test_a_delete_run_says_it_cannot_be_undone_and_undo_passes_over_it(lib: Library) -> None:
    """review --action delete ends by saying that permanent deletes cannot be undone, and plain undo then has
    nothing to do instead of failing on that run."""
    r = lib.review("--yes", "--action", "delete")
    assert r.exit_code == 0, r.output
    assert "permanent deletes cannot be undone" in r.output and "'dedupe undo' reverses" not in r.output
    u = CliRunner().invoke(cli, ["undo", "--db", lib.db])
    assert u.exit_code == 1 and "Error: nothing to undo" in u.output


def test_a_full_disk_under_the_store_during_review_is_one_clear_line(
    tmp_path: Path, mount_tmpfs: Callable[..., Path], trash_home: Path
) -> None:
    """A review whose store's disk is full ends with one Error: line that says the disk is full (SQLite may say
    only "disk I/O error"); never an internal error, and nothing is changed."""
    root = tmp_path / "p"
    save(draw_photo(1, SMALL), root / "a.jpg")
    (root / "b.jpg").write_bytes((root / "a.jpg").read_bytes())
    drive = mount_tmpfs("store", size="1m")
    db = str(drive / "store.sqlite")
    assert CliRunner().invoke(cli, ["scan", str(root), "--db", db, "-q"]).exit_code == 0
    fd = os.open(drive / "filler", os.O_WRONLY | os.O_CREAT)
    for chunk in (65536, 4096, 1):
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * chunk)
    os.close(fd)
    r = run_dedupe("review", str(root), "--yes", "--db", db, env={"XDG_DATA_HOME": str(trash_home.parent)})
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"Error: cannot write to the store at {db}: the disk is full"), r.stderr
    assert "free some space" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (root / "b.jpg").exists()


def test_a_threshold_above_the_safe_range_warns_and_near_acts_need_a_yes(lib: Library, trash_home: Path) -> None:
    """--threshold above 16 warns; a --yes run acting on near matches at such a threshold still asks, and
    changes nothing unless the answer is yes."""
    g = CliRunner().invoke(cli, ["groups", str(lib.root), "--db", lib.db, "--threshold", "20"])
    assert g.exit_code == 0 and "warning: --threshold 20 is above the measured safe range (up to 16)" in g.output
    r = lib.review("--yes", "--include-near", "--threshold", "20")
    assert r.exit_code == 1 and "near match(es), which may be different pictures. Go ahead?" in r.output
    assert lib.present() == ALL
    r = lib.review("--yes", "--include-near", "--threshold", "20", answers="y\n")
    assert r.exit_code == 0, r.output
    assert not lib.c_near.exists() or not lib.c.exists()
    assert lib.intact()


def test_an_interrupted_delete_run_does_not_promise_undo() -> None:
    """A run stopped by Ctrl-C points to 'dedupe undo' only when its acts can be reversed: permanent deletes
    cannot."""
    from dedupe.cli_review import interrupted_message
    from dedupe.models import Action

    assert "cannot be undone" in interrupted_message(Action.DELETE)
    assert "dedupe undo" not in interrupted_message(Action.DELETE)
    for action in (Action.TRASH, Action.MOVE):
        assert "'dedupe undo' reverses them" in interrupted_message(action)
