"""`dedupe report --html` made of the review page's parts: one self-contained page with the same overview, each member
marked with what review would do to it and why (from the same Plan, in the same words), and thumbnails from the
same code and on-disk cache as the page's.

The page runs no script and loads nothing: thumbnails are data: URIs, the style is inline and allowed by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from dedupe import __version__
from dedupe.errors import DedupeError, FileSkipped
from dedupe.models import Action, DuplicateGroup, ProgressEvent
from dedupe.store import Store
from dedupe.web.state import Planner, ReviewState
from dedupe.web.thumbs import Thumbnails, thumbnail_folder

REPORT_SIDE = 240  # long side of a report thumbnail: the page holds every group at once
ProgressCallback = Callable[[ProgressEvent], None]


def write_review_report(
    path: str | os.PathLike[str],
    store: Store,
    groups: Sequence[DuplicateGroup],
    planner: Planner,
    *,
    action: Action = Action.TRASH,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Write the report page; returns the number of files that could not be previewed."""
    page, missing = render_review_report(store, groups, planner, action=action, on_progress=on_progress)
    try:
        Path(path).write_text(page, encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise DedupeError(f"cannot write {os.fspath(path)}: {e.strerror or e}") from None
    return missing


def render_review_report(
    store: Store,
    groups: Sequence[DuplicateGroup],
    planner: Planner,
    *,
    action: Action = Action.TRASH,
    on_progress: ProgressCallback | None = None,
) -> tuple[str, int]:
    """The report page and the number of files that could not be previewed."""
    state = ReviewState(store, lambda: groups, planner, action)
    views = [state.describe(i) for i in range(len(groups))]
    thumbs = Thumbnails(thumbnail_folder(store.path))
    missing = done = 0
    total = sum(len(v["members"]) for v in views)
    try:
        jobs = [[thumbs.submit(m.file, REPORT_SIDE) for m in g.members] for g in groups]
        for view, group_jobs in zip(views, jobs, strict=True):
            for member, job in zip(view["members"], group_jobs, strict=True):
                try:
                    member["image"] = "data:image/jpeg;base64," + base64.b64encode(job.result()).decode("ascii")
                except FileSkipped as e:
                    member["image"], member["no_preview"] = None, e.reason
                    missing += 1
                done += 1
                if on_progress:
                    on_progress(ProgressEvent("report", done, total, member["path"]))
    finally:
        thumbs.close()
    return _page(state.overview(), views), missing


def _page(overview: dict[str, Any], views: list[dict[str, Any]]) -> str:
    env = Environment(loader=PackageLoader("dedupe.web", "templates"), autoescape=select_autoescape(default=True))
    css = (Path(__file__).with_name("static") / "report.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode("ascii")
    # Nothing loads but data: images and this one style sheet, named by its hash.
    csp = f"default-src 'none'; img-src data:; style-src 'sha256-{digest}'"
    return env.get_template("report.html").render(
        csp=csp, css=css, overview=overview, groups=views, version=__version__
    )
