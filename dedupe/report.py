"""A self-contained HTML page of the duplicate groups: thumbnails embedded as data: URIs, no network, no script."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from dedupe.errors import DedupeError, FileSkipped
from dedupe.formats import copy_labels, display_path
from dedupe.models import DuplicateGroup, GroupMember, KeeperRule, MatchKind, ProgressEvent
from dedupe.plan import DEFAULT_RULES, choose_keeper, in_folder

ProgressCallback = Callable[[ProgressEvent], None]

THUMBNAIL_SIZE = 240

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin: 0 0 .5em; }
.group { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1em; margin: 0 0 1.5em; }
.members { display: flex; flex-wrap: wrap; gap: 1em; }
.member { margin: 0; width: 260px; border: 4px solid #e4e4e4; border-radius: 6px; padding: .5em; background: #fff; }
.member.keeper { border-color: #1b8a2e; background: #eefbea; }
.member.reference .badge.ref { display: inline-block; }
.thumb { width: 240px; height: 240px; display: flex; align-items: center; justify-content: center; background: #eee; }
.thumb img { max-width: 240px; max-height: 240px; }
.badge { display: inline-block; font-weight: bold; padding: 0 .4em; border-radius: 3px; }
.badge.keep { background: #1b8a2e; color: #fff; } .badge.ref { background: #345; color: #fff; }
.badge.tie { background: #c60; color: #fff; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0 .6em; margin: .5em 0 0; font-size: 12px; }
dt { color: #666; } dd { margin: 0; overflow-wrap: anywhere; }
.reason { color: #2a6f35; } .tie-note { color: #c60; font-weight: bold; }
"""

_MATCH = {MatchKind.EXACT: "same bytes", MatchKind.IMAGE: "same pixels", MatchKind.NEAR: "similar"}


def write_html_report(
    path: str | os.PathLike[str],
    groups: Sequence[DuplicateGroup],
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    references: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
    *,
    roots: Sequence[str] = (),
) -> int:
    """Write the report page; returns the number of thumbnails that could not be made. roots: the folders in the
    order the user named them, for the keeper rule "order"."""
    page, missing = render_html(groups, rules, references, on_progress, roots=roots)
    try:
        Path(path).write_text(page, encoding="utf-8")
    except OSError as e:
        raise DedupeError(f"cannot write {path}: {e.strerror or e}") from None
    return missing


def render_html(
    groups: Sequence[DuplicateGroup],
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    references: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
    *,
    roots: Sequence[str] = (),
) -> tuple[str, int]:
    """The report page, and the number of thumbnails that could not be made."""
    total = sum(len(g.members) for g in groups)
    done = missing = 0
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No network, ever: only inline styles and data: images may load.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:;'
        " style-src 'unsafe-inline'\">",
        "<title>dedupe report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>dedupe: {len(groups)} duplicate groups, {total} files</h1>",
        f"<p>Keeper rules: {html.escape(', '.join(str(r) for r in rules))}."
        " The suggested keeper of each group has a green frame.</p>",
    ]
    for n, group in enumerate(groups, start=1):
        choice = choose_keeper(group, rules, references, roots=roots)
        kind = _MATCH[group.kind]
        parts.append(f'<section class="group" id="group-{n}" data-kind="{group.kind.value}">')
        parts.append(f"<h2>Group {n}: {len(group.members)} files, {kind}</h2>")
        if choice.is_tie:
            parts.append(f'<p class="tie-note">{_text(choice.reason)}</p>')
        else:
            parts.append(f'<p class="reason">Keep: {_text(choice.keeper.path)} ({_text(choice.reason)})</p>')
        parts.append('<div class="members">')
        for i, (m, label) in enumerate(zip(group.members, copy_labels(group), strict=True)):
            keeper = m.file.path == choice.keeper.path and not choice.is_tie
            tied = choice.is_tie and m.file.path in choice.tied
            is_ref = any(in_folder(m.file.path, r) for r in references)
            thumb, ok = _thumbnail(m.file.path)
            missing += not ok
            done += 1
            if on_progress:
                on_progress(ProgressEvent("report", done, total, m.file.path))
            classes = "member" + (" keeper" if keeper else "") + (" reference" if is_ref else "")
            badges = (
                ('<span class="badge keep">KEEP</span> ' if keeper else "")
                + ('<span class="badge tie">TIE</span> ' if tied else "")
                + ('<span class="badge ref">REFERENCE</span> ' if is_ref else "")
            )
            parts.append(f'<figure class="{classes}" data-path="{_text(m.file.path)}">')
            parts.append(f'<div class="thumb">{thumb}</div>')
            parts.append(f"<figcaption>{badges}<dl>{_facts(m, i, label)}</dl></figcaption></figure>")
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n", missing


def _text(s: str) -> str:
    return html.escape(display_path(s))  # a newline or tab in a name would show as a space


def _thumbnail(path: str) -> tuple[str, bool]:
    try:
        from dedupe.fingerprint import thumbnail_jpeg  # Pillow: only once a page is made

        data = thumbnail_jpeg(path, THUMBNAIL_SIZE)
    except FileSkipped as e:
        return f'<span class="no-thumb">no preview: {_text(e.reason)}</span>', False
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return f'<img alt="{_text(Path(path).name)}" src="{uri}">', True


def _facts(m: GroupMember, index: int, label: str | None) -> str:
    fp = m.file.fingerprint
    match = "reference" if index == 0 else _MATCH[m.match]
    if m.match is MatchKind.NEAR:
        match += f" (distance {m.distance})"
    modified = datetime.fromtimestamp(m.file.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    rows = (
        ("Path", m.file.path),
        ("Resolution", f"{fp.width}x{fp.height}"),
        ("Size", f"{m.file.size:,} bytes"),
        ("Format", fp.format),
        ("Taken", fp.taken.replace("T", " ") if fp.taken else "unknown"),
        ("Modified", modified),
        ("Match", match),
        # The same letter on files with the same bytes, as in the terminal's Copies column.
        ("Copies", f"byte copy {label}" if label else "-"),
    )
    return "".join(f"<dt>{k}</dt><dd class='{k.lower()}'>{_text(v)}</dd>" for k, v in rows)
