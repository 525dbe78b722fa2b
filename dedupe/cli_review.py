"""Commands that act on the groups: review (interactive, --yes, --dry-run, --script) and undo."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, cast

import click
from rich.console import Console
from rich.prompt import Confirm, Prompt
from rich.table import Table
from rich.text import Text

from dedupe.actions import apply, undo
from dedupe.cli_common import (
    MATCH_LABEL,
    SAFE_THRESHOLD,
    Output,
    command,
    db_option,
    find_stored_groups,
    format_option,
    keep_option,
    match_options,
    note_no_images,
    open_store,
    pass_output,
    print_files,
    progress_bar,
    real,
    reference_option,
)
from dedupe.errors import StoreError
from dedupe.formats import applied_json, copy_labels, display_path, human_size, no_groups_json, plan_json, run_state
from dedupe.match import MatchRule
from dedupe.models import (
    Action,
    ApplyResult,
    DuplicateGroup,
    KeeperChoice,
    KeeperRule,
    MatchKind,
    Plan,
    StepState,
)
from dedupe.plan import in_folder, keepers_first, plan
from dedupe.review import Reply, Review
from dedupe.script import plan_script
from dedupe.store import Store


@command("review")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True, path_type=str))
@db_option
@click.option(
    "--action",
    type=click.Choice([a.value for a in Action]),
    default=Action.TRASH.value,
    show_default=True,
    help="What happens to the redundant copies: trash (restorable), delete (permanent), move (needs --to),"
    " hardlink or symlink (the copy becomes a link to the keeper).",
)
@click.option(
    "--to", "to", metavar="DIR", type=click.Path(file_okay=False, path_type=str), help="Where move puts the copies."
)
@keep_option
@reference_option
@click.option("--yes", "-y", is_flag=True, help="No questions: act on every exact and same-pixels copy.")
@click.option("--include-near", is_flag=True, help="With --yes, --dry-run or --script: also act on similar copies.")
@click.option(
    "--include-raw",
    is_flag=True,
    help="Treat RAW files like other photos: a RAW may then go in favour of its JPEG twin, or the twin in favour of"
    " the RAW. Without it a RAW is removed only as an exact copy of another RAW.",
)
@click.option("--dry-run", is_flag=True, help="Print exactly what --yes would do, and change nothing.")
@format_option("table", "json", help="How to print the plan or the result (json with --yes or --dry-run).")
@click.option(
    "--script",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write the plan as a shell script to read and run yourself, instead of acting.",
)
@match_options()
@click.option("--web", is_flag=True, help="Review in the browser: a local page to compare, decide, apply and undo.")
@click.option(
    "--port", type=click.IntRange(0, 65535), metavar="N", default=0, help="With --web: the port [default: a free one]."
)
@click.option(
    "--host", metavar="ADDR", default="127.0.0.1", show_default=True, help="With --web: the address to listen on."
)
@click.option("--no-browser", is_flag=True, help="With --web: print the address, do not open a browser.")
@click.pass_context
@pass_output
def review_command(
    output: Output,
    ctx: click.Context,
    dirs: tuple[str, ...],
    db: str | None,
    action: str,
    to: str | None,
    rules: tuple[KeeperRule, ...],
    references: tuple[str, ...],
    yes: bool,
    include_near: bool,
    include_raw: bool,
    dry_run: bool,
    fmt: str,
    script: str | None,
    rule: MatchRule,
    web: bool,
    port: int,
    host: str,
    no_browser: bool,
) -> None:
    """Review the duplicate groups and deal with the redundant copies.

    Interactively, each group is shown with the suggested keeper; answer k (keep the suggestion), a number
    (keep that file instead), a (keep all: not duplicates, remembered), s (skip), o (open in the image viewer),
    b (back) or q (quit). Nothing is touched before you confirm, every file and its keeper are checked again
    right before acting, and 'dedupe undo' reverses the run. A RAW file and its JPEG/HEIC twin are shown together
    but neither is removed in favour of the other ("RAW original kept") unless --include-raw is given.

    Example:

    \b
        dedupe review ~/Pictures --keep resolution,oldest --reference ~/Pictures/Originals
        dedupe review /media/backup --yes --action move --to /media/backup-dups
        dedupe review ~/Pictures --dry-run --format json
        dedupe review ~/Pictures --web
    """
    act = Action(action)
    if act is Action.MOVE and not to:
        raise click.UsageError("--action move needs --to DIR")
    if to and act is not Action.MOVE:
        raise click.UsageError("--to is only for --action move")
    if script and (yes or dry_run):
        raise click.UsageError("--script writes the plan instead of acting: do not combine it with --yes or --dry-run")
    if not web:
        given = [f"--{name.replace('_', '-')}" for name in ("port", "host", "no_browser") if _given(ctx, name)]
        if given:
            raise click.UsageError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} only for --web")
    interactive = not (yes or dry_run or script)
    if fmt == "json" and not (yes or dry_run):
        raise click.UsageError("--format json needs --yes or --dry-run (--script writes a shell script)")
    if interactive and include_near:
        raise click.UsageError(
            "--include-near is for --yes, --dry-run and --script: the interactive review shows similar copies"
            " and acts on them once you pick a keeper"
        )
    refs = real(references)
    roots = real(dirs)
    if to:
        dest = os.path.realpath(to)
        for r in roots:
            if in_folder(dest, r) or in_folder(r, dest):
                # Inside, the next scan would find the moved copies again; holding it, every file is already there.
                relation = "is inside" if in_folder(dest, r) else "holds"
                raise click.UsageError(
                    f"--to {display_path(dest)} {relation} the reviewed folder {display_path(r)}: copies go outside it"
                )
    store = open_store(ctx, db)
    if web:
        if yes or dry_run or script:
            raise click.UsageError("--web reviews in the browser: do not combine it with --yes, --dry-run or --script")
        from dedupe.web import serve_review  # the optional 'web' extra: says how to install it when missing

        def planner(chosen: Sequence[DuplicateGroup], keepers: Mapping[int, str]) -> Plan:
            return plan(chosen, rules, act, references=refs, destination=os.path.realpath(to) if to else None,
                        roots=roots, include_near=True, keepers=keepers, include_raw=include_raw,
                        match_rule=rule)  # fmt: skip

        def load() -> list[DuplicateGroup]:  # each group from the file it would keep, as the terminal review
            found = find_stored_groups(store, roots, rule)[0]
            return keepers_first(found, rules, refs, roots=roots, rule=rule, include_raw=include_raw)

        serve_review(
            store, load, planner, action=act, host=host, port=port, open_browser=not no_browser
        )  # fmt: skip
        return
    groups, _, images = find_stored_groups(store, roots, rule)
    console = output.out
    if dirs and images == 0:
        note_no_images(dirs)
    if not groups:
        if fmt == "json":
            click.echo(json.dumps(no_groups_json(act, dry_run=dry_run)))
        else:
            console.print("No duplicates found.")
        return
    destination = os.path.realpath(to) if to else None
    if interactive:
        _interactive_review(
            ctx,
            store,
            output,
            Review(groups, rules, refs, include_raw=include_raw, roots=roots, rule=rule),
            act,
            destination,
            roots,
        )
        return
    the_plan = plan(
        groups,
        rules,
        act,
        references=refs,
        destination=destination,
        roots=roots,
        include_near=include_near,
        include_raw=include_raw,
        match_rule=rule,
    )
    if script:
        _write_script(the_plan, script)
        console.print(
            Text(
                f"Wrote {display_path(script)}: {len(the_plan.steps)} step(s)."
                f" Read it, then run: sh {display_path(shlex.quote(script))}"
            )
        )
        return
    if dry_run:
        if fmt == "json":
            click.echo(json.dumps(plan_json(the_plan, dry_run=True), indent=2))
        else:
            render_plan(console, the_plan, dry_run=True)
        return
    if not the_plan.steps:
        if fmt == "json":
            click.echo(json.dumps(applied_json(the_plan, None), indent=2))
        else:
            render_plan(console, the_plan, dry_run=False, steps=False)
            console.print("Nothing to do.")
        return
    near = sum(s.match is MatchKind.NEAR for s in the_plan.steps)
    if near and rule.threshold > SAFE_THRESHOLD:
        # Even with --yes: at such distances most near matches are other pictures.
        click.confirm(
            f"--threshold {rule.threshold} is above the measured safe range (up to {SAFE_THRESHOLD}) and the plan"
            f" acts on {near} near match(es), which may be different pictures. Go ahead?",
            abort=True,
            err=True,
        )
    result = _apply(output, store, the_plan)
    if fmt == "json":
        click.echo(json.dumps(applied_json(the_plan, result), indent=2))
    else:
        render_plan(console, the_plan, dry_run=False, steps=False)
        render_result(console, result)
    if result.count(StepState.FAILED):
        ctx.exit(1)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the option was set on the command line or from the environment, not left to its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source is not click.core.ParameterSource.DEFAULT


class _Input:
    """The answers stream: end of input is a quit, never an endless loop of empty answers."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def readline(self) -> str:
        line = str(self._stream.readline())
        if not line:
            raise EOFError
        return line


def _write_script(the_plan: Plan, path: str) -> None:
    try:
        # Paths keep their exact bytes (surrogate escapes) so that the script names the real files.
        with Path(path).open("w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(plan_script(the_plan, Path(path).name))
        Path(path).chmod(0o755)
    except OSError as e:
        raise click.ClickException(f"cannot write {display_path(path)}: {e.strerror or e}") from None


def _apply(output: Output, store: Store, the_plan: Plan) -> ApplyResult:
    err = output.err
    try:
        with progress_bar(err, enabled=err.is_terminal and len(the_plan.steps) > 20) as on_progress:
            return apply(the_plan, store, on_progress=on_progress)
    except KeyboardInterrupt:
        err.print(interrupted_message(the_plan.action))
        sys.exit(130)


def interrupted_message(action: Action) -> str:
    """What a run stopped by Ctrl-C tells: permanent deletes are journaled but cannot be reversed."""
    if action is Action.DELETE:
        return "Interrupted: every delete so far is in the journal; permanent deletes cannot be undone."
    return "Interrupted: every act so far is in the journal; 'dedupe undo' reverses them."


REVIEW_COLUMNS = ("#", "Keep", "Resolution", "Size", "Format", "Taken", "Modified", "Match", "Copies", "Path")


def print_group(console: Console, group: DuplicateGroup, choice: KeeperChoice, refs: Sequence[str]) -> None:
    """The review table of one group: the facts a keeper is chosen by."""
    rows: list[list[Text]] = []
    for i, (m, label) in enumerate(zip(group.members, copy_labels(group), strict=True), start=1):
        fp = m.file.fingerprint
        if m.file.path == choice.keeper.path and not choice.is_tie:
            mark = Text("★ keep", style="bold green")
        elif choice.is_tie and m.file.path in choice.tied:
            mark = Text("tie?", style="bold yellow")
        elif any(in_folder(m.file.path, r) for r in refs):
            mark = Text("reference", style="cyan")
        else:
            mark = Text("")
        if i == 1:
            match = "reference"
        elif m.match.value == "near":
            match = f"similar: {m.why}"
        else:
            match = MATCH_LABEL[m.match.value]
        rows.append(
            [
                Text(str(i)),
                mark,
                Text(f"{fp.width}x{fp.height}"),
                Text(human_size(m.file.size)),
                Text(fp.format),
                Text(fp.taken.replace("T", " ") if fp.taken else "-"),
                Text(datetime.fromtimestamp(m.file.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")),
                Text(match),
                Text(label or ""),
                Text(display_path(m.file.path)),
            ]
        )
    print_files(console, REVIEW_COLUMNS, rows, [False] * len(rows), right=("#", "Resolution", "Size"))


def _interactive_review(
    ctx: click.Context,
    store: Store,
    output: Output,
    review: Review,
    act: Action,
    destination: str | None,
    roots: Sequence[str],
) -> None:
    """Asks about each group of the review and shows what it answers; then plans, confirms and acts."""
    console = output.out
    stream = cast(TextIO, _Input(sys.stdin))
    # Piped answers (a script's, or `yes`) cannot correct themselves: on a wrong one, or when they run out, the
    # review stops with exit status 2 instead of asking again forever, or of ending 0 having done nothing.
    piped = not sys.stdin.isatty()
    groups, refs = review.groups, review.references
    while not review.done:
        group, choice = review.current
        console.print()
        console.print(Text(f"Group {review.index + 1} of {len(groups)}: {MATCH_LABEL[group.kind.value]}", style="bold"))
        print_group(console, group, choice, refs)
        if choice.is_tie:
            console.print(Text(f"{display_path(choice.reason)}: pick the keeper by number.", style="yellow"))
        else:
            console.print(Text(f"Suggested keeper: {review.suggested()}, {display_path(choice.reason)}"))
        if (before := review.decision()) is not None:
            console.print(Text(f"Answered before: {display_path(before)}", style="cyan"))
        try:
            text = Prompt.ask(
                review.keys(), console=console, stream=stream, default=review.default(), show_default=not choice.is_tie
            )
        except EOFError:
            if piped:
                _not_a_terminal(ctx, "no answer")
            console.print("\nEnd of input: quitting without changing anything.")
            return
        answered = review.answer(text)
        if answered.reply is Reply.OPEN:
            console.print(open_in_viewer(answered.paths))
        elif answered.reply is Reply.NOTE:
            console.print(Text(answered.hint, style="yellow"))
        elif answered.reply is Reply.NOT_UNDERSTOOD:
            console.print(Text(answered.hint, style="red"))
            if piped:
                _not_a_terminal(ctx, answered.hint)

    if not review.decided:
        console.print("Nothing decided; nothing changed.")
        return
    the_plan = review.plan(act, destination=destination, roots=roots)
    console.print()
    render_plan(console, the_plan, dry_run=False, numbers=review.planned_numbers())
    if review.keep_all:
        console.print(f"{len(review.keep_all)} group(s) will be remembered as not duplicates.")
    try:
        if review.quit_early:
            go = Prompt.ask(
                "Apply what was decided so far, or discard it?",
                console=console,
                stream=stream,
                choices=["apply", "discard"],
                default="discard",
            )
            confirmed = go == "apply"
        elif the_plan.steps:
            confirmed = Confirm.ask(
                f"{act.value.capitalize()} {len(the_plan.steps)} file(s)?",
                console=console,
                stream=stream,
                default=False,
            )
        else:
            confirmed = True
    except EOFError:
        if piped:
            _not_a_terminal(ctx, "no answer to apply or discard")
        confirmed = False
    if not confirmed:
        console.print("Discarded; nothing changed.")
        return
    if review.keep_all:
        store.add_not_duplicates(review.not_duplicate_pairs())
        console.print(f"Remembered {len(review.keep_all)} group(s) as not duplicates.")
    if the_plan.steps:
        result = _apply(output, store, the_plan)
        render_result(console, result)
        if result.count(StepState.FAILED):
            ctx.exit(1)


def _not_a_terminal(ctx: click.Context, what: str) -> None:
    click.echo(
        f"dedupe review: {what}, and the input is not a terminal to ask again: nothing changed. Without questions,"
        " use --yes (act), --dry-run (show the plan) or --script FILE (write it).",
        err=True,
    )
    ctx.exit(2)


def open_in_viewer(paths: Sequence[str]) -> str:
    """Open files in the system image viewer ($DEDUPE_VIEWER, else xdg-open or open); says what happened."""
    if os.environ.get("DEDUPE_VIEWER"):
        command = shlex.split(os.environ["DEDUPE_VIEWER"])
    elif sys.platform == "darwin":
        command = ["open"]
    elif sys.platform == "win32":
        for path in paths:
            os.startfile(path)  # type: ignore[attr-defined]
        return f"Opened {len(paths)} file(s)."
    else:
        command = ["xdg-open"]
    if not shutil.which(command[0]):
        return f"No system viewer found ({command[0]} is not installed); open the files yourself."
    for path in paths:
        try:
            subprocess.run(
                [*command, path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"The viewer {command[0]} failed: {e}"
    return f"Opened {len(paths)} file(s) with {command[0]}."


_VERB = {
    Action.TRASH: ("trash", "trashed"),
    Action.DELETE: ("delete permanently", "deleted"),
    Action.MOVE: ("move", "moved"),
    Action.HARDLINK: ("hard-link", "hard-linked"),
    Action.SYMLINK: ("symlink", "symlinked"),
}


def render_plan(
    console: Console, the_plan: Plan, *, dry_run: bool, steps: bool = True, numbers: Sequence[int] = ()
) -> None:
    """The plan, group by group; numbers: each planned group's number in the whole review (default 1, 2, ...)."""
    verb = _VERB[the_plan.action][0]
    for n, g in zip(numbers or range(1, len(the_plan.groups) + 1), the_plan.groups, strict=True):
        if g.skipped:
            console.print(Text(f"Group {n}: left alone: {display_path(g.skipped)}", style="yellow"))
            continue
        if steps or g.left:  # a file left alone is read beside the keeper it was compared with
            console.print(
                Text(f"Group {n}: keep {display_path(g.choice.keeper.path)} ({display_path(g.choice.reason)})")
            )
        if steps:
            for s in g.steps:
                line = f"  {verb} {display_path(s.file.path)}"
                if s.destination:
                    line += f" -> {display_path(s.destination)}"
                if s.keeper.path != g.choice.keeper.path:
                    # A byte copy of a member that stays goes in favour of that member, not the group's keeper.
                    line += f" ({_KEPT_AS[s.match]} {display_path(s.keeper.path)}, which stays)"
                console.print(Text(line + _with_sidecars(s.sidecars)))
        for left in g.left:
            console.print(Text(f"  leave {display_path(left.path)}: {display_path(left.reason)}", style="dim"))
    if steps:
        console.print(
            f"Would {verb} {len(the_plan.steps)} file(s), {human_size(the_plan.reclaimable_bytes)}."
            + (" Dry run: nothing was changed." if dry_run else "")
        )


_KEPT_AS = {MatchKind.EXACT: "same bytes as", MatchKind.IMAGE: "same picture as", MatchKind.NEAR: "similar to"}


def _with_sidecars(sidecars: Sequence[str]) -> str:
    return f" (with {', '.join(display_path(Path(s).name) for s in sidecars)})" if sidecars else ""


def render_result(console: Console, result: ApplyResult) -> None:
    for r in result.results:
        if r.state is StepState.DONE:
            where = f" -> {display_path(r.destination)}" if r.destination else ""
            console.print(Text(f"{_VERB[result.action][1]} {display_path(r.path)}{where}{_with_sidecars(r.sidecars)}"))
            if r.reason:  # done, but a sidecar could not go along
                console.print(Text(f"  {display_path(r.reason)}", style="yellow"))
        else:
            style = "red" if r.state is StepState.FAILED else "yellow"
            console.print(Text(f"{r.state.value} {display_path(r.path)}: {display_path(r.reason)}", style=style))
    done = result.count(StepState.DONE)
    if not done:
        after = " Nothing was changed."  # and 'dedupe undo' would find nothing to reverse
    elif result.action is Action.DELETE:
        after = f" Run {result.run_id}: permanent deletes cannot be undone."
    else:
        after = f" Run {result.run_id}: 'dedupe undo' reverses it."
    console.print(
        f"{done} {_VERB[result.action][1]} ({human_size(result.freed_bytes)}),"
        f" {result.count(StepState.SKIPPED)} skipped, {result.count(StepState.FAILED)} failed." + after
    )


@command("undo")
@db_option
@click.option("--list", "list_runs", is_flag=True, help="List past runs instead of undoing.")
@click.option("--run", "run_id", type=click.IntRange(1), metavar="N", help="Undo this run instead of the last one.")
@click.pass_context
@pass_output
def undo_command(output: Output, ctx: click.Context, db: str | None, list_runs: bool, run_id: int | None) -> None:
    """Reverse the last review run: put trashed and moved files back and turn links into files again.

    Interrupted runs are understood too. Permanent deletes cannot be reversed.

    Example:

    \b
        dedupe undo --list
        dedupe undo
    """
    if list_runs and run_id is not None:
        raise click.UsageError("--list lists every run: give --run N without it to undo run N")
    store = _open_to_list(ctx, db) if list_runs else open_store(ctx, db)
    console = output.out
    if list_runs:
        all_runs = store.runs()
        if not all_runs:
            console.print("No runs yet.")
            return
        table = Table(pad_edge=False)
        for column in ("Run", "Started", "Action", "Done", "Failed", "Undone", "State"):
            table.add_column(column)
        for r in all_runs:
            table.add_row(
                str(r.id),
                datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S"),
                r.action.value,
                str(r.counts.get("done", 0)),
                str(r.counts.get("failed", 0)),
                str(r.counts.get("undone", 0)),
                run_state(r),
            )
        console.print(table)
        return
    result = undo(store, run_id)
    for item in result.results:
        if item.state is StepState.DONE:
            console.print(Text(f"restored {display_path(item.path)}: {display_path(item.reason)}"))
        elif item.state is StepState.SKIPPED:
            console.print(
                Text(f"nothing to do for {display_path(item.path)}: {display_path(item.reason)}", style="dim")
            )
        else:
            console.print(
                Text(f"could not restore {display_path(item.path)}: {display_path(item.reason)}", style="red")
            )
    restored = sum(r.state is StepState.DONE for r in result.results)
    failed = sum(r.state is StepState.FAILED for r in result.results)
    if result.complete:
        console.print(f"Run {result.run_id} ({result.action.value}) undone: {restored} file(s) restored.")
    else:
        console.print(
            f"Run {result.run_id} ({result.action.value}) partly undone: {restored} restored, {failed} could not be;"
            " fix what is said above and run 'dedupe undo' again."
        )
        ctx.exit(1)


def _open_to_list(ctx: click.Context, db: str | None) -> Store:
    """The store for a list, which only reads: opened to write where it can be (a store of an older dedupe is
    upgraded, as by any command), else read-only (a store on a read-only drive is listed all the same)."""
    try:
        return open_store(ctx, db)
    except StoreError:
        return open_store(ctx, db, readonly=True)


@command("forget")
@click.argument("numbers", nargs=-1, type=click.IntRange(1), metavar="[N]...")
@db_option
@click.option("--list", "list_them", is_flag=True, help="List what was said not to be duplicates, numbered.")
@click.pass_context
@pass_output
def forget_command(
    output: Output, ctx: click.Context, numbers: tuple[int, ...], db: str | None, list_them: bool
) -> None:
    """Take back "not duplicates" (answer a in review): those files are grouped again.

    With --list (or no N), each group kept whole is listed with a number; 'dedupe forget N' forgets it.

    Example:

    \b
        dedupe forget --list
        dedupe forget 2
    """
    if list_them and numbers:
        raise click.UsageError("--list lists them: give N without it to forget N")
    store = _open_to_list(ctx, db) if list_them or not numbers else open_store(ctx, db)
    sets = store.not_duplicate_sets()
    console = output.out
    if list_them or not numbers:
        if not sets:
            console.print("Nothing is marked as not duplicates.")
            return
        paths = store.paths_of_contents(h for _, hashes in sets for h in hashes)
        for n, (at, hashes) in enumerate(sets, start=1):
            when = datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")
            console.print(Text(f"{n}  not duplicates since {when}:", style="bold"))
            for h in hashes:
                for path in paths[h] or [f"(no file left with content {h[:12]})"]:
                    console.print(Text(f"  {display_path(path)}"))
        console.print("'dedupe forget N' takes one back: its files are grouped again.")
        return
    if not sets:
        raise click.BadParameter(f"there is no {numbers[0]}: nothing is marked as not duplicates")
    for n in numbers:
        if n > len(sets):
            raise click.BadParameter(f"there is no {n}: 'dedupe forget --list' numbers them 1 to {len(sets)}")
    for n in sorted(set(numbers)):
        at, hashes = sets[n - 1]
        store.forget_not_duplicates(at, hashes)
        console.print(f"Forgot {n}: its {len(hashes)} file content(s) are grouped again by 'dedupe groups'.")
