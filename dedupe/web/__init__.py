"""The review web page (`dedupe review --web`): a local Starlette app over the dedupe library.

Starlette, uvicorn and Jinja2 come with the `web` extra. Importing this package needs none of them, so that the
command line can say how to install them instead of failing with a traceback.
"""

from __future__ import annotations

from typing import TextIO

from dedupe.errors import DedupeError
from dedupe.models import Action
from dedupe.store import Store
from dedupe.web.state import Decision, GroupLoader, Planner, ReviewState

INSTALL_HINT = "the web review needs the 'web' extra: pip install 'photo-dedupe[web]'"


def serve_review(
    store: Store,
    load: GroupLoader,
    planner: Planner,
    *,
    action: Action = Action.TRASH,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = True,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """Serve the review page until Ctrl-C or SIGTERM, printing `Review at URL` (with its token) on out.

    load gives the groups (again after every apply and undo); planner makes the Plan for some groups with the
    keepers chosen on the page, the same plan the command line applies. port 0 takes a free port. Raises
    DedupeError naming the pip command when the web extra is not installed.
    """
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise DedupeError(INSTALL_HINT) from None
    from dedupe.web import app

    app.serve_review(
        store, load, planner, action=action, host=host, port=port, open_browser=open_browser, out=out, err=err
    )


__all__ = ["INSTALL_HINT", "Decision", "GroupLoader", "Planner", "ReviewState", "serve_review"]
