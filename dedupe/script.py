"""A reviewable POSIX shell script that carries out a plan, for people who would rather run it themselves."""
# ruff: noqa: PTH118, PTH120

from __future__ import annotations

import os
import re
import shlex
import time

from dedupe.files import fitted, name_max
from dedupe.formats import display_path
from dedupe.models import Action, Plan
from dedupe.sidecars import sidecar_target

_SCRIPT_HEAD = """#!/bin/sh
# Written by dedupe on {when}: {summary}.
# Read it first, then run it with: sh {name}
# Each step first checks that the keeper is still a regular file of its recorded size, and that the copy still
# has its recorded size; otherwise the step is skipped with a message. Nothing is overwritten.
set -u
skipped=0
has_size() {{ [ -f "$1" ] && [ ! -L "$1" ] && [ "$(($(wc -c < "$1")))" -eq "$2" ]; }}
skip() {{ echo "skipped $1" >&2; skipped=$((skipped + 1)); return 1; }}
check() {{ # keeper keeper_size copy copy_size
  has_size "$1" "$2" || skip "$3: its keeper $1 is missing or changed" || return 1
  has_size "$3" "$4" || skip "$3: it is missing or changed"
}}
free() {{ # destination
  if [ -e "$1" ] || [ -L "$1" ]; then skip "$1: already exists, not overwritten"; fi
}}
to_trash() {{
  if command -v gio >/dev/null 2>&1; then gio trash -- "$1"
  elif command -v trash-put >/dev/null 2>&1; then trash-put -- "$1"
  else skip "$1: no trash command (gio or trash-put) here; not deleted"
  fi
}}
"""


def plan_script(plan: Plan, name: str = "dedupe-plan.sh") -> str:
    """A POSIX shell script that carries out the plan, every path quoted for the shell."""
    q = _quote
    steps = plan.steps
    lines = [
        _SCRIPT_HEAD.format(
            when=time.strftime("%Y-%m-%d %H:%M"),
            summary=f"{plan.action.value} {len(steps)} redundant copies ({plan.reclaimable_bytes} bytes)",
            name=name,
        )
    ]
    for n, g in enumerate(plan.groups, start=1):
        if not g.steps:
            continue
        k = g.choice.keeper
        lines.append(f"# group {n}: keep {_comment(k.path)} ({_comment(g.choice.reason)})")
        for s in g.steps:
            check = f"check {q(k.path)} {k.size} {q(s.file.path)} {s.file.size}"
            c = q(s.file.path)
            if s.action is Action.TRASH:
                act = f"to_trash {c}"
            elif s.action is Action.DELETE:
                act = f"rm -f -- {c}"
            elif s.action is Action.MOVE:
                assert s.destination is not None
                d = q(s.destination)
                act = f"free {d} && mkdir -p -- {q(os.path.dirname(s.destination))} && mv -- {c} {d}"
            else:
                folder, base = os.path.split(s.file.path)
                tmp = q(os.path.join(folder, fitted(f".{base}", ".dedupe.tmp", name_max(folder))))  # 255 bytes at most
                flag = "" if s.action is Action.HARDLINK else "-s "
                act = f"free {tmp} && ln {flag}-- {q(k.path)} {tmp} && mv -f -- {tmp} {c}"
            if not s.sidecars:
                lines.append(f"{check} && {act}")
                continue
            lines.append(f"if {check} && {act}; then")
            for sidecar in s.sidecars:
                sc = q(sidecar)
                if s.action is Action.TRASH:
                    lines.append(f"  [ -f {sc} ] && to_trash {sc}")
                elif s.action is Action.DELETE:
                    lines.append(f"  [ -f {sc} ] && [ ! -L {sc} ] && rm -f -- {sc}")
                else:
                    assert s.destination is not None
                    sd = q(sidecar_target(sidecar, s.file.path, s.destination))
                    lines.append(f"  [ -f {sc} ] && free {sd} && mv -- {sc} {sd}")
            lines.append("fi")
        lines.append("")
    lines.append('echo "dedupe script finished; $skipped step(s) skipped" >&2')
    return "\n".join(lines) + "\n"


# Control characters: C0, DEL and C1 (U+0080-U+009F, which a terminal may take as escape sequences too).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PLAIN = frozenset(b'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$&()*+,-./:;<=>?@[]^_`{|}~"')


def _quote(path: str) -> str:
    """path quoted for the shell. A path holding a control character is written as "$(printf '...')" with octal
    escapes, so that the script stays text a person can read (an escape sequence in it would drive the terminal
    of whoever looks at it with cat) and each step stays on one line; $(...) would drop a trailing newline, so a
    name ending in one keeps plain quotes."""
    if not _CONTROL.search(path) or path.endswith("\n"):
        return shlex.quote(path)
    raw = os.fsencode(path)
    return "\"$(printf '" + "".join(chr(b) if b in _PLAIN else f"\\{b:03o}" for b in raw) + "')\""


def _comment(text: str) -> str:
    # As the terminal shows it: a newline or CR would end the comment (a space would name another file), an
    # escape sequence would drive the terminal of whoever reads the script first.
    return display_path(text)


__all__ = ["plan_script"]
