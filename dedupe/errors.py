"""Errors with messages a person can read."""

from __future__ import annotations


class DedupeError(Exception):
    """A failure of a whole run: the message is shown to the user as it is."""


class StoreError(DedupeError):
    """The fingerprint store cannot be opened, read or written."""


class FileSkipped(DedupeError):
    """One file could not be fingerprinted; the run goes on and reports the reason."""

    def __init__(self, reason: str, *, ignorable: bool = False, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # A reason that comes from the file system (permission denied, vanished), not from the bytes: it is
        # not remembered, so the next scan tries again.
        self.transient = transient
        # A file that is plainly not an image (a video, a text file) and not named like one is
        # ignored quietly instead of filling the skipped list.
        self.ignorable = ignorable
        # The hash of the bytes when they were read but not decoded (a truncated photo): byte copies of it are
        # still exact duplicates.
        self.content_hash: str | None = None
