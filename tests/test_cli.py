from __future__ import annotations

import ast
import csv
import gc
import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

import dedupe
from dedupe.cli import cli, frozen_imports, one_blas_thread
from dedupe.cli_common import fold_path, match_options
from dedupe.match import MatchRule
from tests.conftest import REPO, draw_photo, exact_copy, run_dedupe, save


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_scan_prints_a_table_and_a_summary(photo_dir: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    result = invoke("scan", str(photo_dir), "--db", db)
    assert result.exit_code == 0, result.output
    assert "reference" in result.output and "same bytes" in result.output and "near d=" in result.output
    assert str(photo_dir / "backup" / "small1.png") in result.output
    assert "notes.jpg: not an image file" in result.output
    assert "7 images, 3 groups, 3 duplicate files" in result.output


def test_scan_counts_the_files_that_are_not_images(tmp_path: Path) -> None:
    """Videos and documents are neither images nor skipped: the summary line counts them, so that a user who
    misses them sees where they went."""
    root = tmp_path / "phone"
    save(draw_photo(1, (300, 200)), root / "a.jpg")
    (root / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    (root / "notes.txt").write_text("shopping list")
    out = invoke("scan", str(root), "--db", str(tmp_path / "s.sqlite")).output
    assert "1 images, 0 groups, 0 duplicate files, 0 B reclaimable, 0 skipped" in out
    assert "(1 fingerprinted; 0 unchanged, moved or byte copies; 2 not images)" in out


def test_scan_json_schema(photo_dir: Path, tmp_path: Path) -> None:
    result = invoke("scan", str(photo_dir), "--db", str(tmp_path / "s.sqlite"), "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert [g["kind"] for g in report["groups"]] == ["exact", "near", "near"]
    for g in report["groups"]:
        assert g["files"][0]["reference"] is True
        for f in g["files"]:
            assert Path(f["path"]).is_absolute()
            assert {"path", "size", "width", "height", "distance"} <= f.keys()
    assert report["skipped"] == [{"path": str(photo_dir / "notes.jpg"), "reason": report["skipped"][0]["reason"]}]
    summary = report["summary"]
    assert summary["images"] == 7 and summary["groups"] == 3 and summary["duplicate_files"] == 3
    assert summary["reclaimable_bytes"] == sum(f["size"] for g in report["groups"] for f in g["files"][1:])


def test_groups_reads_back_the_same_answer_and_csv_has_a_row_per_file(photo_dir: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    scanned = json.loads(invoke("scan", str(photo_dir), "--db", db, "--format", "json").output)
    listed = json.loads(invoke("groups", str(photo_dir), "--db", db, "--format", "json").output)
    assert listed["groups"] == scanned["groups"]
    rows = list(csv.DictReader(io.StringIO(invoke("groups", "--db", db, "--format", "csv").output)))
    assert len(rows) == 6 and {r["group"] for r in rows} == {"1", "2", "3"}


def test_threshold_zero_keeps_only_identical_pictures(photo_dir: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    invoke("scan", str(photo_dir), "--db", db, "-q")
    report = json.loads(invoke("groups", str(photo_dir), "--db", db, "--threshold", "0", "--format", "json").output)
    assert all(f["distance"] == 0 for g in report["groups"] for f in g["files"])


def test_usage_errors_exit_2_and_run_failures_exit_1(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["scan"]).exit_code == 2
    assert runner.invoke(cli, ["scan", str(tmp_path / "missing")]).exit_code == 2
    assert runner.invoke(cli, ["scan", str(tmp_path), "--threshold", "99"]).exit_code == 2
    assert runner.invoke(cli, ["scan", str(tmp_path), "--format", "xml"]).exit_code == 2
    bad = runner.invoke(cli, ["scan", str(tmp_path), "--db", "/proc/nope/store.sqlite"])
    assert bad.exit_code == 1 and "no folder /proc/nope for the store" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(cli, ["groups", "--db", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 1 and "no store" in missing.output


@pytest.mark.parametrize(
    "args", [["scan", "{tmp}"], ["groups"], ["check", "{tmp}/x.jpg"], ["serve"], ["store", "reset"]]
)
def test_an_empty_db_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    """--db "" is a usage error for every command, where scan took it for the current folder and groups for the
    default store; an empty DEDUPE_DB still means the default store."""
    r = CliRunner().invoke(cli, [*(a.format(tmp=tmp_path) for a in args), "--db", ""])
    assert r.exit_code == 2 and "an empty path names no store" in r.output, r.output
    unset = CliRunner().invoke(cli, ["groups"], env={"DEDUPE_DB": "", "XDG_DATA_HOME": str(tmp_path)})
    assert unset.exit_code == 1 and f"no store at {tmp_path / 'dedupe' / 'store.sqlite'}" in unset.output


def test_a_closed_stdin_reads_as_end_of_input(tmp_path: Path) -> None:
    """Started with stdin closed (`<&-` in a cron line, where Python has no sys.stdin), a command that asks a
    question reads end of input, as from /dev/null: store reset is not confirmed (exit 1, the store stays), with
    no internal error."""
    db = tmp_path / "s.sqlite"
    assert run_dedupe("scan", str(tmp_path), "--db", str(db), "-q").returncode == 0
    proc = subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" <&-', sys.executable, "-m", "dedupe", "store", "reset", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert proc.returncode == 1 and "Aborted!" in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr and db.exists()


def all_commands() -> dict[str, click.Command]:
    """Every command of dedupe, each imported (the group imports a command on first use)."""
    ctx = click.Context(cli, info_name="dedupe")
    found = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


def test_every_command_has_help_with_an_example() -> None:
    assert isinstance(cli, click.Group)
    assert len(all_commands()) == 15
    for name, command in all_commands().items():
        result = invoke(name, "--help")
        assert result.exit_code == 0
        assert command.get_short_help_str(), name
        assert "Example:" in result.output and f"dedupe {name}" in result.output.split("Example:")[1], name


def test_a_name_with_an_escape_sequence_does_not_reach_the_terminal(tmp_path: Path) -> None:
    """A file name cannot drive the terminal or split a row: control characters are shown as \\xNN."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(3, (300, 200)), root / "a.jpg")
    for name in ("esc\x1b[2Jclear.jpg", "new\nline.jpg"):
        (root / name).write_bytes(keeper.read_bytes())
    db = str(tmp_path / "store.sqlite")
    for args in (["scan", str(root), "-q"], ["groups"], ["review", "--dry-run", "--keep", f"path:{keeper}"]):
        result = CliRunner().invoke(cli, [*args, "--db", db])
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "esc\\x1b[2Jclear.jpg" in result.output
        assert "new\\x0aline.jpg" in result.output


def test_a_library_error_is_one_line_with_the_command_s_exit_status(tmp_path: Path) -> None:
    """Store errors end every command with one line: exit 1, or 2 for search and check (1 there means a match)."""
    runner = CliRunner()
    bad = "/proc/nope/store.sqlite"
    for args, status in ((["groups"], 1), (["undo"], 1), (["search", str(tmp_path)], 2), (["check", "x.jpg"], 2)):
        result = runner.invoke(cli, [*args, "--db", bad])
        assert result.exit_code == status, (args, result.output)
        assert (
            result.output.count("\n") == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output
        )


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_output_is_deterministic(photo_dir: Path, tmp_path: Path, fmt: str) -> None:
    db = str(tmp_path / "s.sqlite")
    invoke("scan", str(photo_dir), "--db", db, "-q")
    first = invoke("groups", str(photo_dir), "--db", db, "--format", fmt).output
    assert first == invoke("groups", str(photo_dir), "--db", db, "--format", fmt).output


def test_real_subprocess_scan_with_undecodable_name(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    raw = os.fsencode(str(root)) + b"/\xff\xfe.jpg"
    save(draw_photo(1), Path(os.fsdecode(raw)))
    save(draw_photo(1), root / "copy.png")
    proc = run_dedupe("scan", str(root), "--db", str(tmp_path / "s.sqlite"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    paths = [f["path"] for f in report["groups"][0]["files"]]
    assert raw in [os.fsencode(p) for p in paths]  # lossless through JSON
    table = run_dedupe("groups", str(root), "--db", str(tmp_path / "s.sqlite"))
    assert table.returncode == 0 and "\\xff\\xfe.jpg" in table.stdout
    assert run_dedupe("scan").returncode == 2


def test_the_match_options_reach_the_command_as_one_rule() -> None:
    """match_options turns --threshold and the match switches into one MatchRule argument, rule."""
    seen: list[MatchRule] = []

    @click.command()
    @match_options()
    def full(rule: MatchRule) -> None:
        seen.append(rule)

    @click.command()
    @match_options(full=False)
    def threshold_only(rule: MatchRule) -> None:
        seen.append(rule)

    runner = CliRunner()
    assert runner.invoke(full, ["--threshold", "7", "--no-rotations", "--bursts-together", "--crops"]).exit_code == 0
    assert runner.invoke(full, []).exit_code == 0
    assert runner.invoke(threshold_only, ["--threshold", "0"]).exit_code == 0
    assert runner.invoke(threshold_only, ["--no-rotations"]).exit_code == 2
    assert seen[0] == MatchRule(7, rotations=False, two_stage=True, bursts_apart=False, crops=True)
    by_default = seen[1]
    assert (by_default.threshold, by_default.rotations, by_default.two_stage, by_default.bursts_apart) == (
        4,
        True,
        True,
        True,
    )
    assert by_default.crops is None  # left to the number of pictures
    assert seen[2] == MatchRule(0)


def test_a_group_shows_its_byte_copies_and_the_rule_that_chose_its_reference(tmp_path: Path) -> None:
    """Members with the same bytes share a copies label (JSON, CSV and table); each group says which keeper rules
    made its first file the reference, in JSON (keeper_reason) and under the group in the table."""
    root = tmp_path / "p"
    a = save(draw_photo(6, (400, 300)), root / "a.jpg")
    for name in ("b.jpg", "c.jpg"):
        (root / name).write_bytes(a.read_bytes())
    save(draw_photo(6, (400, 300)), root / "export.png")
    db = str(tmp_path / "s.sqlite")
    report = json.loads(invoke("scan", str(root), "--db", db, "--format", "json").output)
    (group,) = report["groups"]
    labels = {Path(f["path"]).name: f["copies"] for f in group["files"]}
    assert labels == {"a.jpg": "A", "b.jpg": "A", "c.jpg": "A", "export.png": None}
    assert "camera format (JPEG) over an export" in group["keeper_reason"]
    rows = list(csv.DictReader(io.StringIO(invoke("groups", "--db", db, "--format", "csv").output)))
    assert [r["copies"] for r in rows] == ["A", "A", "A", ""]
    assert all(Path(r["path"]).exists() for r in rows)
    table = invoke("groups", str(root), "--db", db).output
    assert f"kept by: {group['keeper_reason']}" in table


def test_paths_lists_one_path_per_line_the_keeper_first_and_a_blank_line_after_each_group(
    photo_dir: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "s.sqlite")
    report = json.loads(invoke("scan", str(photo_dir), "--db", db, "--format", "json").output)
    listed = invoke("groups", str(photo_dir), "--db", db, "--format", "paths").output
    expected = "".join("".join(f["path"] + "\n" for f in g["files"]) + "\n" for g in report["groups"])
    assert listed == expected
    assert invoke("scan", str(photo_dir), "--db", db, "--format", "paths").output == expected


def test_scan_names_the_next_step_and_the_date_column_says_what_date_it_is(photo_dir: Path, tmp_path: Path) -> None:
    out = invoke("scan", str(photo_dir), "--db", str(tmp_path / "s.sqlite")).output
    assert f"Next: 'dedupe review {photo_dir}'" in out and f"'dedupe report --html dups.html {photo_dir}'" in out
    assert "Taken / modified" in out and "(file)" in out  # the drawn photos have no date taken: file times
    assert "Next:" not in invoke("groups", str(photo_dir), "--db", str(tmp_path / "s.sqlite")).output


def test_help_shows_examples_on_lines_of_their_own_and_whole_summaries_in_80_columns() -> None:
    listing = CliRunner().invoke(cli, ["--help"], terminal_width=80).output
    for name, command in all_commands().items():
        assert command.short_help and not command.short_help.endswith("..."), name
        assert f"  {command.short_help}" in listing, name
    review = CliRunner().invoke(cli, ["help", "review"], terminal_width=80).output
    assert review == CliRunner().invoke(cli, ["review", "--help"], terminal_width=80).output
    example = review.split("Example:")[1]
    assert (
        "\n      dedupe review /media/backup --yes" in example
        and "\n      dedupe review ~/Pictures --dry-run" in example
    )
    assert "Commands:" in invoke("help").output
    unknown = CliRunner().invoke(cli, ["help", "nope"])
    assert unknown.exit_code == 2 and "no command 'nope'" in unknown.output


def test_every_option_names_what_it_takes_in_words_not_click_type_names() -> None:
    """Options show N, SECONDS, BYTES, ADDR, FILE ... as their value, never click's INTEGER RANGE or TEXT."""
    for name in [*all_commands(), "store reset"]:
        options = invoke(*name.split(), "--help").output.split("Options:")[1]
        for type_name in ("INTEGER", "FLOAT", "RANGE", "TEXT"):
            assert type_name not in options, (name, type_name)


def test_help_reaches_the_commands_of_store_and_their_examples_keep_their_lines() -> None:
    """`dedupe help store reset` is `dedupe store reset --help`; the store commands' examples stay one a line, and
    the listing of `dedupe store` shows reset's whole summary."""
    reset = invoke("store", "reset", "--help").output
    assert invoke("help", "store", "reset").output == reset
    assert "\n      dedupe store reset\n      dedupe scan ~/Pictures\n" in reset
    listing = CliRunner().invoke(cli, ["store", "--help"], terminal_width=80).output
    assert "  reset  Move a damaged store aside, so that the next scan starts a new one.\n" in listing
    for unknown in (["store", "nope"], ["scan", "nope"]):
        r = CliRunner().invoke(cli, ["help", *unknown])
        assert r.exit_code == 2 and f"no command '{' '.join(unknown)}'" in r.output


def test_a_terminal_table_folds_paths_at_slashes_and_piped_output_keeps_each_path_on_one_line(tmp_path: Path) -> None:
    assert fold_path("/media/backup/DCIM/100CANON/IMG_0001_long_name.jpg", 24) == (
        "/media/backup/DCIM/\n100CANON/\nIMG_0001_long_name.jpg"
    )
    root = tmp_path / "a_rather_long_folder_name_for_originals" / "another_long_subfolder_2019"
    keeper = save(draw_photo(7, (300, 200)), root / "IMG_20190101_a_long_camera_file_name.jpg")
    exact_copy(keeper, tmp_path / "backup_folder_with_a_long_name" / "IMG_20190101_a_long_camera_file_name.jpg")
    db = str(tmp_path / "s.sqlite")
    assert invoke("scan", str(tmp_path), "--db", db, "-q", "--format", "json").exit_code == 0
    for width in ("80", "120"):
        shown = run_dedupe("groups", str(tmp_path), "--db", db, env={"FORCE_COLOR": "1", "COLUMNS": width}).stdout
        assert "IMG_20190101_a_long_camera_file_name.jpg" in shown
        assert max(len(click.unstyle(line)) for line in shown.splitlines()) <= int(width)
    piped = run_dedupe("groups", str(tmp_path), "--db", db).stdout
    assert str(keeper) in piped


@pytest.mark.parametrize(
    "args",
    [
        ["groups"],
        ["review"],
        ["review", "--yes"],
        ["undo"],
        ["undo", "--list"],
        ["forget"],
        ["export"],
        ["report", "--html", "r.html"],
    ],
)
def test_a_command_that_reads_the_store_says_to_scan_first_when_there_is_none(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "new.sqlite"
    r = CliRunner().invoke(cli, [*args, "--db", str(db)])
    assert r.exit_code == 1 and r.output == f"Error: no store at {db}: run 'dedupe scan' first\n"
    assert not db.exists()
    for query in (["search", str(tmp_path)], ["check", str(tmp_path)]):
        r = CliRunner().invoke(cli, [*query, "--db", str(db)])
        assert r.exit_code == 2 and "run 'dedupe scan' first" in r.output and not db.exists()


def test_piped_tables_keep_a_path_longer_than_any_screen_on_one_line(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*[f"a_folder_with_a_rather_long_name_{i:02d}" for i in range(14)])
    keeper = save(draw_photo(8, (300, 200)), deep / "photo.jpg")
    exact_copy(keeper, tmp_path / "photo.jpg")
    assert len(str(keeper)) > 450
    db = str(tmp_path / "s.sqlite")
    out = invoke("scan", str(tmp_path), "--db", db).output
    assert str(keeper) in out


@pytest.mark.parametrize("args", [["scan", "{tmp}", "-j", "100000"], ["serve", "--workers", "100000"]])
def test_absurd_jobs_are_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    """scan -j and serve --workers beyond JOBS_PER_CORE processes per core are refused as a usage error (exit 2)
    with the reason, before a store is made or a process forked."""
    r = CliRunner().invoke(cli, [*(a.format(tmp=tmp_path) for a in args), "--db", str(tmp_path / "s.sqlite")])
    assert r.exit_code == 2 and "more workers only compete for the cores" in r.output
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["watch", "{tmp}", "--poll", "inf"],
        ["watch", "{tmp}", "--poll", "1e12"],
        ["watch", "{tmp}", "--settle", "nan"],
        ["serve", "--refresh", "inf"],
        ["serve", "--refresh", "nan"],
    ],
)
def test_a_wait_that_is_not_a_number_of_seconds_up_to_a_day_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    """--poll, --settle and --refresh take seconds up to a day: inf, nan or 1e12 is a usage error (exit 2) before
    any store is opened, not a thread's traceback once watching has started."""
    db = tmp_path / "s.sqlite"
    r = CliRunner().invoke(cli, [*(a.format(tmp=tmp_path) for a in args), "--db", str(db)])
    assert r.exit_code == 2, r.output
    assert "Invalid value for '--" in r.output and "Traceback" not in r.output
    assert not db.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["groups", "{missing}"],
        ["review", "{missing}", "--yes"],
        ["report", "{missing}", "--html", "{tmp}/r.html"],
        ["export", "{missing}"],
        ["scan", "{missing}"],
        ["scan", "{file}"],
    ],
)
def test_a_folder_that_does_not_exist_or_a_file_is_a_usage_error(
    photo_dir: Path, tmp_path: Path, args: list[str]
) -> None:
    """A missing folder (or, for scan, a file) is a usage error naming the reason, never 'No duplicates found.'."""
    db = str(tmp_path / "s.sqlite")
    assert invoke("scan", str(photo_dir), "--db", db, "-q").exit_code == 0
    filled = [a.format(missing=tmp_path / "nope", file=photo_dir / "original0.jpg", tmp=tmp_path) for a in args]
    r = CliRunner().invoke(cli, [*filled, "--db", db])
    assert r.exit_code == 2, r.output
    assert "does not exist" in r.output or "is a file" in r.output


@pytest.mark.parametrize("command", ["groups", "review", "report", "export"])
def test_a_folder_never_scanned_says_so(photo_dir: Path, tmp_path: Path, command: str) -> None:
    """A folder that exists but holds nothing the store knows says that it was not scanned."""
    db = str(tmp_path / "s.sqlite")
    assert invoke("scan", str(photo_dir), "--db", db, "-q").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    extra = {"review": ["--yes"], "report": ["--html", str(tmp_path / "r.html")]}.get(command, [])
    r = CliRunner().invoke(cli, [command, str(elsewhere), "--db", db, *extra])
    assert r.exit_code == 0, r.output
    assert f"No images stored below {elsewhere}: run 'dedupe scan' on it first." in r.output


# --- start-up: what a command imports ------------------------------------------------------------------------

# Libraries that only some commands need; the quick commands (--version, --help, completion) load none of them.
HEAVY = ("numpy", "PIL", "imagehash", "rich", "scipy", "pybktree", "watchdog", "starlette", "uvicorn", "psycopg")


def imported_by(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a run of `python -m dedupe args` imports (python -X importtime names each on stderr)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dedupe", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--version"], {}),
        (["--help"], {}),
        ([], {"_DEDUPE_COMPLETE": "bash_complete", "COMP_WORDS": "dedupe sc", "COMP_CWORD": "1"}),
        ([], {"_DEDUPE_COMPLETE": "zsh_complete", "COMP_WORDS": "dedupe ", "COMP_CWORD": "1"}),
    ],
    ids=["version", "help", "bash-completion", "zsh-completion"],
)
def test_the_quick_commands_import_no_command_and_no_heavy_library(args: list[str], env: dict[str, str]) -> None:
    """--version, --help and the completion of command names import only the command table: no command module,
    no numpy, Pillow, ImageHash or rich."""
    modules = imported_by(*args, env=env)
    assert "dedupe.cli" in modules
    assert heavy(modules) == set()
    assert {m for m in modules if m.startswith("dedupe.")} == {"dedupe.cli"}


def test_check_imports_neither_rich_nor_the_grouping_engine_nor_watchdog(photo_dir: Path, tmp_path: Path) -> None:
    """A check, run once per upload by a hook, loads what fingerprinting and the store query need, not the
    libraries of other commands."""
    db = str(tmp_path / "s.sqlite")
    assert invoke("scan", str(photo_dir), "--db", db, "-q").exit_code == 0
    modules = imported_by("check", str(photo_dir / "original0.jpg"), "--db", db)
    assert {"numpy", "PIL", "dedupe.search"} <= modules
    assert {m.split(".")[0] for m in heavy(modules)} == {"numpy", "PIL"}
    assert not modules & {"dedupe.group", "dedupe.pairs", "dedupe.plan", "dedupe.watch", "dedupe.scan"}


def test_a_scan_that_finds_nothing_new_does_not_load_the_decoders(photo_dir: Path, tmp_path: Path) -> None:
    """A re-scan of unchanged files reads none of them, so it loads no Pillow; the first scan, which decodes,
    does. Neither loads ImageHash, whose hashes dedupe makes itself."""
    db = str(tmp_path / "s.sqlite")
    first = imported_by("scan", str(photo_dir), "--db", db, "-q", "--format", "json")
    assert "PIL" in first and "imagehash" not in first
    again = imported_by("scan", str(photo_dir), "--db", db, "-q", "--format", "json")
    assert "dedupe.scan" in again and "dedupe.group" in again
    assert not again & {"PIL", "imagehash", "dedupe.webp"}


def test_a_quiet_scan_printing_json_or_csv_does_not_load_rich(photo_dir: Path, tmp_path: Path) -> None:
    """rich draws tables, progress and styled text; a quiet scan printing JSON or CSV draws none of them."""
    db = str(tmp_path / "s.sqlite")
    for fmt in ("json", "csv"):
        modules = imported_by("scan", str(photo_dir), "--db", db, "-q", "--format", fmt)
        assert "dedupe.scan" in modules and "dedupe.group" in modules
        assert "rich" not in modules, fmt
    assert "rich" in imported_by("scan", str(photo_dir), "--db", db, "-q")


def test_every_public_name_imports_from_the_package() -> None:
    """Every name of dedupe.__all__ is importable from dedupe, the lazy table names each exactly once, and the
    TYPE_CHECKING imports that type checkers read say the same as the table."""
    code = "import dedupe\nfor name in dedupe.__all__:\n    getattr(dedupe, name)\nprint(len(dedupe.__all__))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(dedupe.__all__)
    table = {name: module for module, names in dedupe._MODULES.items() for name in names}
    assert sorted(table) == sorted(dedupe.__all__) and len(set(dedupe.__all__)) == len(dedupe.__all__)
    tree = ast.parse((REPO / "dedupe" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    typed = {a.name: i.module for i in block.body if isinstance(i, ast.ImportFrom) for a in i.names}
    assert typed == {name: f"dedupe.{module}" for name, module in table.items()}
    for name in dedupe.__all__:
        assert getattr(dedupe, name) is getattr(importlib.import_module(f"dedupe.{table[name]}"), name), name


def test_a_function_named_like_its_module_stays_the_function_once_the_module_is_imported() -> None:
    """`from dedupe import scan` is scan() whether dedupe.scan was imported before or not (the import system
    binds a submodule on its package)."""
    code = (
        "import dedupe.calibrate, dedupe.match, dedupe.plan, dedupe.scan, dedupe.watch, types\n"
        "from dedupe import calibrate, match, plan, scan, watch\n"
        "assert not any(isinstance(f, types.ModuleType) for f in (calibrate, match, plan, scan, watch))\n"
        "assert scan.__module__ == 'dedupe.scan' and dedupe.plan.__name__ == 'plan'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert done.returncode == 0, done.stderr
    for name in ("calibrate", "match", "plan", "scan", "watch"):
        assert callable(getattr(dedupe, name)) and not isinstance(getattr(dedupe, name), ModuleType), name


def plain_group() -> click.Group:
    """What dedupe's group would be with every command imported up front: the reference for the lazy one."""
    return click.Group(
        "cli",
        commands=all_commands(),
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
    )


def test_the_listing_and_the_completions_are_what_click_makes_of_the_imported_commands() -> None:
    """The lazy group's --help and completions, made from its table, equal click's own from the commands."""
    for width in (80, 200):
        lazy, plain = (
            CliRunner().invoke(group, ["--help"], prog_name="dedupe", terminal_width=width).output
            for group in (cli, plain_group())
        )
        assert lazy == plain and "Commands:" in lazy

    def completions(group: click.Group, args: list[str], incomplete: str) -> list[tuple[str, str | None]]:
        found = ShellComplete(group, {}, "dedupe", "_DEDUPE_COMPLETE").get_completions(args, incomplete)
        return [(c.value, c.help) for c in found]

    for args, incomplete in (([], ""), ([], "sc"), ([], "-"), (["scan"], "--"), (["store"], "")):
        assert completions(cli, args, incomplete) == completions(plain_group(), args, incomplete), (args, incomplete)


def test_a_mistyped_command_is_answered_with_the_names_it_resembles() -> None:
    result = run_dedupe("sacn")
    assert result.returncode == 2
    assert "No such command 'sacn'. (Did you mean one of: 'scan', 'search'?)" in result.stderr


def test_a_command_is_imported_without_garbage_collection_and_then_frozen() -> None:
    """No collection runs while a command's module is imported; what the import made is frozen after it, and the
    collector is left on as it was."""
    assert gc.isenabled()
    try:
        with frozen_imports():
            assert not gc.isenabled()
            made = [object() for _ in range(100)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made)
    finally:
        gc.unfreeze()


def test_openblas_is_asked_for_one_thread_only_while_a_command_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command's import sets OPENBLAS_NUM_THREADS=1 unless the user chose a number, and takes it away after, so
    that programs dedupe starts see the environment as it was."""
    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    with one_blas_thread():
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with one_blas_thread():
        assert "OPENBLAS_NUM_THREADS" not in os.environ


def test_names_an_ascii_output_cannot_hold_are_printed_by_their_unicode_names(tmp_path: Path) -> None:
    """On an output that holds only ASCII, the tables and plans print a name's other characters as \\N{...}: the
    NFC and NFD forms of one name stay apart, and no command ends in an encoding error."""
    root = tmp_path / "r"
    keeper = save(draw_photo(9, (300, 200)), root / "a.jpg")
    for name in ("caf\u00e9.jpg", "cafe\u0301.jpg", "emoji\U0001f600.jpg"):
        exact_copy(keeper, root / name)
    db = str(tmp_path / "s.sqlite")
    ascii_out = {"PYTHONIOENCODING": "ascii"}
    for args in (
        ["scan", str(root)],
        ["groups", str(root)],
        ["review", str(root), "--dry-run"],
        ["search", str(keeper)],
    ):
        done = run_dedupe(*args, "--db", db, env=ascii_out)
        assert done.returncode == (1 if args[0] == "search" else 0), done.stderr  # search: 1 when it matched
        assert done.stdout.isascii() and not done.stderr
        if args[0] != "search":
            assert "caf\\N{LATIN SMALL LETTER E WITH ACUTE}.jpg" in done.stdout
            assert "cafe\\N{COMBINING ACUTE ACCENT}.jpg" in done.stdout
            assert "emoji\\N{GRINNING FACE}.jpg" in done.stdout


def test_paths_says_when_a_path_holding_a_newline_is_shown_escaped(tmp_path: Path) -> None:
    """groups --format paths writes one line per file, a name holding a newline escaped, and says so on stderr."""
    root = tmp_path / "r"
    keeper = save(draw_photo(10, (300, 200)), root / "a.jpg")
    exact_copy(keeper, root / "new\nline.jpg")
    db = str(tmp_path / "s.sqlite")
    assert invoke("scan", str(root), "--db", db, "-q").exit_code == 0
    done = run_dedupe("groups", str(root), "--db", db, "--format", "paths")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{keeper}\n{root}/new\\x0aline.jpg\n\n"
    assert done.stderr == "warning: 1 path(s) hold a newline: shown escaped (\\x0a); --format json has them\n"
