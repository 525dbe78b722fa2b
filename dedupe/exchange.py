"""Shareable lists of fingerprints, so that a blocklist travels without its images.

A list is UTF-8 CSV text. Its first line names the fingerprint algorithm, since hashes taken by another algorithm
(another dedupe or ImageHash version) cannot be compared; the second line names the columns::

    # dedupe fingerprints; algorithm=1;work=256;phash=8;dhash=8;imagehash=4.3.2
    content_hash,image_hash,phash,dhash,width,height,low_info,label
    3f0c...,9a1b...,c3d1e0f0a1b2c3d4,0f1e2d3c4b5a6978,4000,3000,0,/photos/banned/1.jpg

content_hash and image_hash are 32 hex digits, phash and dhash 16 (64 bits); width, height, low_info (0 or 1)
and label may be left out. Imported fingerprints are kept apart from the scanned files, so no scan ever forgets
them; searches and checks match them like stored images.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from dedupe.errors import DedupeError
from dedupe.models import VERSION, ImportReport, ListedFingerprint
from dedupe.store import Store

if TYPE_CHECKING:
    from dedupe.store_pg import PostgresStore

HEADER = "# dedupe fingerprints; algorithm="
COLUMNS = ("content_hash", "image_hash", "phash", "dhash", "width", "height", "low_info", "label")
_REQUIRED = ("content_hash", "image_hash", "phash", "dhash")
_HASH = re.compile(r"[0-9a-f]{32}")
_HASH64 = re.compile(r"[0-9a-f]{16}")
# Far above any real line (hashes and a path), far below what makes csv build millions of fields: a 50 MB line of
# commas took 850 MB to refuse.
LINE_LIMIT = 1 << 20


def bounded_lines(text: Iterable[str], source: str, first: int = 1) -> Iterator[str]:
    """The lines of a list, refusing one over LINE_LIMIT characters before the CSV reader splits it."""
    for number, line in enumerate(text, first):
        if len(line) > LINE_LIMIT:
            raise DedupeError(f"{source}, line {number}: over {LINE_LIMIT:,} characters, not a line of a list")
        yield line


def export_fingerprints(
    store: Store | PostgresStore, out: str | os.PathLike[str] | TextIO, roots: Sequence[str | os.PathLike[str]] = ()
) -> int:
    """Write the fingerprints of the stored images below the roots as a list; returns how many.

    With no roots, every stored image and every imported fingerprint is written. Each stored image is written
    once, labelled with the first of its paths. A path given as out is replaced whole, never left half written.
    """
    version = VERSION
    real_roots = [os.path.realpath(os.fspath(r)) for r in roots]
    items = store.listed_under(real_roots, version)
    if not roots:
        items += store.imported(version)
    if isinstance(out, str | os.PathLike):
        write_file(out, lambda f: write_list(items, f))
    else:
        write_list(items, out)
    return len(items)


def write_file(path: str | os.PathLike[str], write: Callable[[TextIO], None]) -> None:
    """Write a list to path: a regular file is replaced whole, never left half written; a symbolic link's target
    is replaced, the link kept; a pipe or a device is written into, since replacing it would put a file in its
    place, and /dev/stdout (or /dev/fd/N) is written through that descriptor, as "-" is. A new file gets the usual
    permissions (0666 less the umask), a replaced one keeps its own."""
    name = os.fspath(path)
    held = _descriptor(name)
    if held is not None:
        # Redirected to a regular file, /dev/stdout led to it: replaced, the file lost what it held before (>>) and
        # what the shell wrote after ({ ...; } > file). Through the descriptor, the shell's offset is shared.
        sys.stdout.flush()
        try:
            with os.fdopen(os.dup(held), "w", encoding="utf-8", newline="") as f:
                write(f)
        except OSError as e:
            raise DedupeError(f"cannot write {name}: {e.strerror or e}") from None
        return
    try:
        st: os.stat_result | None = Path(name).stat()
    except OSError:
        st = None
    try:
        if st is not None and not stat.S_ISREG(st.st_mode):
            with Path(name).open("w", encoding="utf-8", newline="") as f:
                write(f)
            return
        target = Path(name).resolve()
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise DedupeError(f"cannot write {name}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            if st is not None:
                os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode))
            write(f)
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DedupeError(f"cannot write {name}: {e.strerror or e}") from None


_STANDARD = {"/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR = re.compile(r"/(?:dev/fd|proc/self/fd)/([0-9]{1,9})")


def _descriptor(name: str) -> int | None:
    """The descriptor of this process that name stands for (/dev/stdout, /dev/fd/3), or None."""
    absolute = str(Path(name).absolute())  # not resolved: /dev/stdout leads on to whatever fd 1 is
    m = _DESCRIPTOR.fullmatch(absolute)
    return int(m.group(1)) if m else _STANDARD.get(absolute)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """text as one line of characters that do nothing: bytes that are not UTF-8 (kept as surrogate escapes) and
    control characters (a newline, a carriage return, a terminal's escape sequences) as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").translate(_CONTROL)


def spreadsheet_safe(text: str) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (OWASP CSV injection): a value
    starting with = + - @ tab or CR gets a single quote in front."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _unquote_cell(text: str) -> str:
    """spreadsheet_safe undone, so that a label survives export and import unchanged."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_STARTS) else text


def write_list(items: Iterable[ListedFingerprint], out: TextIO) -> None:
    out.write(f"{HEADER}{VERSION}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for f in items:
        # A path that is not valid UTF-8 or holds a control character is written with \xNN escapes (the label
        # only says what the image was): a carriage return, which csv leaves unquoted, would end the row.
        label = printable(f.label)
        writer.writerow(
            (
                f.content_hash,
                f.image_hash,
                f"{f.phash:016x}",
                f"{f.dhash:016x}",
                f.width,
                f.height,
                int(f.low_info),
                spreadsheet_safe(label),
            )
        )


def read_list(text: TextIO, source: str) -> list[ListedFingerprint]:
    """Parse a list, refusing one made with another fingerprint algorithm; errors name the line."""
    try:
        first = text.readline(LINE_LIMIT + 1)
        if len(first) > LINE_LIMIT:
            raise DedupeError(f"{source} is not a list of dedupe fingerprints: its first line is far too long")
        if not first:
            raise DedupeError(f"{source} is empty, not a list of dedupe fingerprints")
        if not first.startswith(HEADER):
            raise DedupeError(
                f"{source} is not a list of dedupe fingerprints: its first line should start with '{HEADER}'"
            )
        algorithm = first[len(HEADER) :].strip()
        if algorithm != VERSION:
            raise DedupeError(
                f"{source} was made with another fingerprint algorithm ({algorithm}) than this dedupe uses"
                f" ({VERSION}): its fingerprints cannot be compared. Export the list again from the"
                " images with this version of dedupe."
            )
        reader = csv.DictReader(bounded_lines(text, source, 2))
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or ())]
        if missing:
            raise DedupeError(f"{source}, line 2: the columns {', '.join(missing)} are missing")
        return [_parse_row(row, source, reader.line_num + 1) for row in reader]
    except UnicodeDecodeError:
        raise DedupeError(f"{source} is not UTF-8 text, not a list of dedupe fingerprints") from None
    except csv.Error as e:
        raise DedupeError(f"{source} is not valid CSV: {e}") from None


def _parse_row(row: dict[str | None, str | None], source: str, line: int) -> ListedFingerprint:
    def field(name: str, default: str = "") -> str:
        value = row.get(name)
        return default if value is None else value.strip()

    def bad(what: str, value: str) -> DedupeError:
        shown = value if len(value) <= 40 else f"{value[:40]}..."  # a damaged line can be megabytes long
        return DedupeError(f"{source}, line {line}: {what}, not {shown!r}")

    if None in row:
        raise DedupeError(f"{source}, line {line}: more fields than columns")
    content_hash, image_hash = field("content_hash").lower(), field("image_hash").lower()
    for name, value in (("content_hash", content_hash), ("image_hash", image_hash)):
        if not _HASH.fullmatch(value):
            raise bad(f"{name} should be 32 hex digits", value)
    hashes: list[int] = []
    for name in ("phash", "dhash"):
        value = field(name).lower()
        if not _HASH64.fullmatch(value):
            raise bad(f"{name} should be 16 hex digits", value)
        hashes.append(int(value, 16))
    sizes: list[int] = []
    for name in ("width", "height"):
        value = field(name, "0")
        # At most 9 digits: more would not fit SQLite's integers (or int() past 4,300 digits), and no picture
        # is a billion pixels wide.
        if not value.isdigit() or not value.isascii() or len(value) > 9:
            raise bad(f"{name} should be a whole number of pixels", value)
        sizes.append(int(value))
    low_info = field("low_info", "0").lower()
    if low_info not in ("0", "1", "true", "false"):
        raise bad("low_info should be 0 or 1", low_info)
    if "\x00" in field("label"):  # no path holds one, and PostgreSQL cannot store one
        raise bad("a label cannot hold a NUL character", field("label"))
    return ListedFingerprint(
        content_hash=content_hash,
        image_hash=image_hash,
        phash=hashes[0],
        dhash=hashes[1],
        width=sizes[0],
        height=sizes[1],
        low_info=low_info in ("1", "true"),
        label=_unquote_cell(field("label")) or content_hash,
    )


T = TypeVar("T")


def read_source(source: str | os.PathLike[str], read: Callable[[TextIO, str], T]) -> tuple[str, T]:
    """A list file parsed by read (given the text and a name for messages), "-" for standard input: the name to
    record (<stdin> for standard input) and what read returned. A BOM is skipped; the CSV reader sees raw newlines."""
    name = os.fspath(source)
    if name == "-":
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
        try:
            return "<stdin>", read(stdin, "standard input")
        finally:
            stdin.detach()  # leave sys.stdin open
    try:
        with Path(name).open(encoding="utf-8-sig", newline="") as f:
            return name, read(f, name)
    except OSError as e:
        raise DedupeError(f"cannot read {name}: {e.strerror or e}") from None


def import_fingerprints(
    store: Store | PostgresStore, source: str | os.PathLike[str], *, replace: bool = False
) -> ImportReport:
    """Add the fingerprints of a list to the store ("-" reads standard input), all or none.

    With replace, the fingerprints imported before are dropped first, so the store holds exactly this list.
    A list made with another fingerprint algorithm is refused with a DedupeError that says so.
    """
    name, items = read_source(source, read_list)
    with store.transaction():
        replaced = store.forget_imported() if replace else 0
        added = store.add_imported(items, VERSION, name)
    return ImportReport(source=name, listed=len(items), added=added, replaced=replaced)


__all__ = [
    "COLUMNS",
    "HEADER",
    "export_fingerprints",
    "import_fingerprints",
    "printable",
    "read_list",
    "write_file",
    "write_list",
]
