"""Searching for an image, checking uploads against a blocklist, and sharing fingerprint lists."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pybktree
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedupe import (
    DEFAULT_THRESHOLD,
    CheckResult,
    DedupeError,
    FileSkipped,
    HitSource,
    ListedFingerprint,
    MatchKind,
    MatchRule,
    SearchIndex,
    Store,
    check,
    exchange,
    export_fingerprints,
    find_similar,
    fingerprint_file,
    import_fingerprints,
    match,
    scan,
)
from dedupe.cli import cli
from dedupe.exchange import HEADER
from dedupe.fingerprint import VERSION
from dedupe.match import readings
from dedupe.models import hamming
from dedupe.search import _within
from dedupe.store_search import PHASH_BLOCKS, _block_expr
from tests.conftest import REPO, draw_photo, run_dedupe, save, transparent_logo

BANNED = (0, 1, 2)
ALLOWED = (3, 4)


def add_comment(jpeg: bytes, text: bytes) -> bytes:
    """The same JPEG with a comment segment: other bytes, the same image data."""
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return jpeg[:2] + segment + jpeg[2:]


@dataclass(frozen=True)
class Photos:
    root: Path
    banned: dict[int, Path]  # the blocklist's images
    edits: dict[tuple[int, str], Path]  # (photo, edit) -> an edited copy outside the store


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Photos:
    root = tmp_path_factory.mktemp("photos")
    banned: dict[int, Path] = {}
    edits: dict[tuple[int, str], Path] = {}
    for i in BANNED + ALLOWED:
        im = draw_photo(i)
        original = save(im, root / "originals" / f"photo{i}.jpg", quality=92)
        if i in BANNED:
            banned[i] = save(im, root / "banned" / f"banned{i}.jpg", quality=92)
        edits[(i, "copy")] = root / "uploads" / f"copy{i}.jpg"
        edits[(i, "copy")].parent.mkdir(parents=True, exist_ok=True)
        edits[(i, "copy")].write_bytes(original.read_bytes())
        edits[(i, "comment")] = root / "uploads" / f"comment{i}.jpg"
        edits[(i, "comment")].write_bytes(add_comment(original.read_bytes(), b"uploaded by someone"))
        edits[(i, "resized")] = save(im.resize((480, 360)), root / "uploads" / f"resized{i}.png")
        edits[(i, "recompressed")] = save(im, root / "uploads" / f"recompressed{i}.jpg", quality=40)
        edits[(i, "webp")] = save(im.resize((800, 600)), root / "uploads" / f"small{i}.webp", quality=60)
    return Photos(root, banned, edits)


@pytest.fixture(scope="module")
def blocklist(photos: Photos, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store that knows only the banned images, by scanning them."""
    db = tmp_path_factory.mktemp("store") / "blocklist.sqlite"
    with Store.open(db) as store:
        report = scan([photos.root / "banned"], store)
    assert report.images == len(BANNED)
    return db


@pytest.fixture
def readonly(blocklist: Path) -> Iterator[Store]:
    with Store.open(blocklist, readonly=True) as store:
        yield store


EXPECTED_KIND = {
    "copy": MatchKind.EXACT,  # photo{i}.jpg and banned{i}.jpg were encoded alike: the same bytes
    "comment": MatchKind.IMAGE,
    "resized": MatchKind.NEAR,
    "recompressed": MatchKind.NEAR,
    "webp": MatchKind.NEAR,
}


# --- the library ----------------------------------------------------------------------------------------------


def test_edited_copies_of_banned_images_match_and_others_do_not(photos: Photos, readonly: Store) -> None:
    index = SearchIndex.load(readonly)
    assert len(index) == len(BANNED)
    for (i, edit), path in photos.edits.items():
        for where in (readonly, index):
            result = check(path, where)
            if i in ALLOWED:
                assert result == CheckResult(query=str(path), matched=False, hit=None), (i, edit)
                continue
            assert result.matched, (i, edit)
            assert result.hit is not None
            assert result.hit.name == str(photos.banned[i])
            assert result.hit.source is HitSource.FILE
            assert result.hit.match is EXPECTED_KIND[edit], (i, edit)
            assert result.distance is not None and result.distance <= 8


def test_the_same_bytes_match_exactly_with_the_reason(photos: Photos, readonly: Store) -> None:
    result = find_similar(photos.banned[1].read_bytes(), readonly)
    assert [h.name for h in result.hits] == [str(photos.banned[1])]
    hit = result.hits[0]
    assert (hit.match, hit.distance, hit.dhash_distance, hit.reason) == (MatchKind.EXACT, 0, 0, "same bytes")
    assert (hit.width, hit.height) == (1200, 900)
    assert result.query == f"{len(photos.banned[1].read_bytes())} bytes"
    near = check(photos.edits[(1, "resized")], readonly).hit
    assert near is not None
    assert near.reason == f"pHash distance {near.distance}, dHash distance {near.dhash_distance}"


def test_search_lists_closest_first_one_hit_per_file_and_limits(photos: Photos, tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    for name in ("b.jpg", "a.jpg"):
        shutil.copy(photos.banned[0], folder / name)
    shutil.copy(photos.edits[(0, "recompressed")], folder / "c-recompressed.jpg")
    shutil.copy(photos.edits[(0, "comment")], folder / "d-comment.jpg")
    shutil.copy(photos.banned[1], folder / "other.jpg")
    with Store.open(tmp_path / "s.sqlite") as store:
        scan([folder], store)
        result = find_similar(photos.banned[0], store, threshold=12)
        names = [Path(h.name).name for h in result.hits]
        assert names == ["a.jpg", "b.jpg", "d-comment.jpg", "c-recompressed.jpg"]
        assert [h.match for h in result.hits] == [MatchKind.EXACT, MatchKind.EXACT, MatchKind.IMAGE, MatchKind.NEAR]
        assert [Path(h.name).name for h in find_similar(photos.banned[0], store, limit=3).hits] == names[:3]
        assert find_similar(photos.banned[0], store, limit=0).hits == ()
        # At threshold 0 the near copy is only found if its pHash is the very same.
        strict = find_similar(photos.banned[0], store, threshold=0).hits
        assert all(h.distance == 0 for h in strict)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"just some text, not a photo", "not an image file"),
        (None, "truncated image"),  # the first third of a real JPEG
    ],
)
def test_a_corrupt_query_image_is_a_readable_error(
    photos: Photos, readonly: Store, tmp_path: Path, content: bytes | None, reason: str
) -> None:
    bad = tmp_path / "upload.jpg"
    data = photos.banned[0].read_bytes()
    bad.write_bytes(content if content is not None else data[: len(data) // 3])
    with pytest.raises(FileSkipped, match=reason):
        check(bad, readonly)
    with pytest.raises(FileSkipped, match="no such file"):
        check(tmp_path / "missing.jpg", readonly)
    with pytest.raises(FileSkipped, match="folder"):
        check(tmp_path, readonly)


def test_a_named_pipe_given_to_check_is_refused_without_opening_it(blocklist: Path, tmp_path: Path) -> None:
    """A named pipe is never opened (opening one waits for a writer, maybe for ever): check says it is no
    regular file, exit status 2, at once."""
    fifo = tmp_path / "upload.jpg"
    os.mkfifo(fifo)
    result = run_dedupe("check", str(fifo), "--db", str(blocklist), timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"{fifo}: error: not a regular file (a pipe, socket or device), not opened\n"


def test_concurrent_checks_from_threads_match_serial_answers(photos: Photos, readonly: Store) -> None:
    index = SearchIndex.load(readonly)
    uploads = [p.read_bytes() for p in photos.edits.values()] * 2
    for where in (index, readonly):
        serial = [check(data, where) for data in uploads]
        with ThreadPoolExecutor(max_workers=6) as pool:
            parallel = list(pool.map(lambda data: check(data, where), uploads))  # noqa: B023
        assert parallel == serial
        assert sum(r.matched for r in serial) == 2 * len(BANNED) * len(EXPECTED_KIND)


def test_an_index_is_a_snapshot_and_its_arrays_cannot_change(photos: Photos, tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        scan([photos.root / "banned"], store)
        index = SearchIndex.load(store)
        with pytest.raises(ValueError, match="read-only"):
            index._columns.phash[0] = 0
        with store.transaction():
            store.forget_files([str(photos.banned[0])])
            store.forget_orphan_images()
        # The hashes are still in the snapshot, but the file is gone from the store: no hit names it.
        assert not check(photos.banned[0], index).matched
        assert check(photos.banned[1], index).matched


# --- the two search paths agree -------------------------------------------------------------------------------


def random_listed(rng: random.Random, phash: int, label: str, low_info: bool = False) -> ListedFingerprint:
    return ListedFingerprint(
        content_hash=f"{rng.getrandbits(128):032x}",
        image_hash=f"{rng.getrandbits(128):032x}",
        phash=phash,
        dhash=rng.getrandbits(64),
        width=rng.randrange(1, 5000),
        height=rng.randrange(1, 5000),
        low_info=low_info,
        label=label,
    )


def flip(value: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def test_store_queries_index_queries_and_a_bktree_agree(photos: Photos, tmp_path: Path) -> None:
    rng = random.Random(7)
    centres = [rng.getrandbits(64) for _ in range(6)] + [0, (1 << 64) - 1, 1 << 63]
    listed: list[ListedFingerprint] = []
    for c, centre in enumerate(centres):
        for bits in range(0, 24):
            listed.append(random_listed(rng, flip(centre, bits, rng), f"c{c}-{bits}", low_info=bits == 5))
    listed += [random_listed(rng, rng.getrandbits(64), f"random{i}") for i in range(1500)]
    with Store.open(tmp_path / "s.sqlite") as store:
        scan([photos.root / "banned"], store)  # stored files as well as imported fingerprints
        with store.transaction():
            store.add_imported(listed, VERSION, "test")
        index = SearchIndex.load(store)
        assert len(index) == len(listed) + len(BANNED)
        tree = pybktree.BKTree(lambda a, b: (a.phash ^ b.phash).bit_count(), [f for f in listed if not f.low_info])
        queries = [
            fingerprint_file(photos.banned[0]),
            *(fingerprint_file(photos.edits[(i, "resized")]) for i in BANNED),
        ]
        template = queries[0]
        queries += [dataclasses.replace(template, phash=centre, low_info=False) for centre in centres]
        for query in queries:
            for threshold in (0, 3, 4, 8, 11, 12, 15, 16, 19, 20, 24):
                from_store = find_similar(query, store, threshold=threshold)
                from_index = find_similar(query, index, threshold=threshold)
                assert from_store == from_index, (query.phash, threshold)
                imported = {h.name for h in from_store.hits if h.source is HitSource.IMPORTED}
                expected = {f.label for _, f in tree.find(query, threshold)}
                assert imported == expected, (query.phash, threshold)
                distances = [(h.match, h.distance, h.dhash_distance) for h in from_store.hits]
                assert distances == sorted(distances, key=lambda d: (["exact", "image", "near"].index(d[0]), *d[1:]))


def test_an_index_reads_hashes_of_unusual_length_the_slow_way(photos: Photos, tmp_path: Path) -> None:
    """The fast column read expects 32 hex digits per hash; a store holding others must still be read right."""
    db = tmp_path / "s.sqlite"
    with Store.open(db) as store:
        scan([photos.root / "banned"], store)
    fp = fingerprint_file(photos.edits[(1, "resized")])
    phash = fp.phash - (1 << 64) if fp.phash >= 1 << 63 else fp.phash
    longer = fp.content_hash + "ff"  # must not pass for the query's own content hash
    conn = sqlite3.connect(db)
    with conn:
        for content_hash, path in (("short", b"/x"), (longer, b"/y")):
            conn.execute(
                "INSERT INTO images (content_hash, version, image_hash, format, width, height, phash, dhash, taken,"
                " low_info) VALUES (?, ?, ?, 'JPEG', 1, 1, ?, 0, NULL, 0)",
                (content_hash, VERSION, content_hash, phash),
            )
            conn.execute(
                "INSERT INTO files (path, size, mtime_ns, dev, ino, content_hash, scanned_at)"
                " VALUES (?, 1, 0, 0, 0, ?, 0)",
                (path, content_hash),
            )
    conn.close()
    with Store.open(db, readonly=True) as store:
        index = SearchIndex.load(store)
        assert len(index) == len(BANNED) + 2
        from_index = find_similar(fp, index)
        assert from_index == find_similar(fp, store)
        kinds = {h.name: h.match for h in from_index.hits}
        assert kinds == {"/x": MatchKind.NEAR, "/y": MatchKind.NEAR, str(photos.banned[1]): MatchKind.NEAR}


def test_a_plain_query_only_matches_the_same_image(tmp_path: Path) -> None:
    """A blank picture's pHash says nothing: it never matches another blank picture by distance."""
    save(Image.new("RGB", (640, 480), (200, 200, 200)), tmp_path / "lib" / "grey.png")
    save(Image.new("RGB", (640, 480), (90, 90, 90)), tmp_path / "query" / "dark.png")
    save(Image.new("RGB", (640, 480), (200, 200, 200)), tmp_path / "query" / "grey.bmp")
    with Store.open(tmp_path / "s.sqlite") as store:
        scan([tmp_path / "lib"], store)
        for where in (store, SearchIndex.load(store)):
            assert not check(tmp_path / "query" / "dark.png", where, threshold=32).matched
            same = check(tmp_path / "query" / "grey.bmp", where, threshold=0)
            assert same.hit is not None and same.hit.match is MatchKind.IMAGE


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 15))
def test_pigeonhole_every_match_shares_a_block_within_the_radius(a: int, b: int, threshold: int) -> None:
    if (a ^ b).bit_count() > threshold:
        return
    radius = threshold // PHASH_BLOCKS
    blocks = [(k, (a >> (16 * k)) & 0xFFFF, (b >> (16 * k)) & 0xFFFF) for k in range(PHASH_BLOCKS)]
    assert any(vb in _within(va, radius, 16) for _, va, vb in blocks)


def test_block_queries_use_the_indexes(blocklist: Path) -> None:
    conn = sqlite3.connect(f"{blocklist.as_uri()}?mode=ro", uri=True)
    try:
        for table in ("images", "imported"):
            for k in range(PHASH_BLOCKS):
                plan = conn.execute(
                    f"EXPLAIN QUERY PLAN SELECT * FROM {table} WHERE {_block_expr(k)} IN (1, 2) AND phash > 0"
                ).fetchall()
                assert f"USING INDEX {table}_phash_block{k}" in str(plan)
    finally:
        conn.close()


# --- exchanging lists -----------------------------------------------------------------------------------------


def test_an_exported_list_works_without_the_images(photos: Photos, blocklist: Path, tmp_path: Path) -> None:
    listing = tmp_path / "blocklist.csv"
    with Store.open(blocklist, readonly=True) as store:
        assert export_fingerprints(store, listing) == len(BANNED)
    lines = listing.read_text().splitlines()
    assert lines[0] == f"{HEADER}{VERSION}"
    assert lines[1] == "content_hash,image_hash,phash,dhash,width,height,low_info,label"
    assert [line.rsplit(",", 1)[1] for line in lines[2:]] == [str(photos.banned[i]) for i in BANNED]
    # The receiving side has neither the images nor the store they came from.
    with Store.open(tmp_path / "site.sqlite") as site:
        report = import_fingerprints(site, listing)
        assert (report.listed, report.added) == (len(BANNED), len(BANNED))
        assert import_fingerprints(site, listing).added == 0  # importing twice adds nothing
        for (i, edit), path in photos.edits.items():
            result = check(path, site)
            assert result.matched is (i in BANNED), (i, edit)
            if result.hit:
                assert result.hit.source is HitSource.IMPORTED
                assert result.hit.name == str(photos.banned[i])
        # Exported again, the imported fingerprints travel on.
        again = io.StringIO()
        assert export_fingerprints(site, again) == len(BANNED)
        assert again.getvalue() == listing.read_text()


def test_a_scan_never_prunes_imported_fingerprints(photos: Photos, blocklist: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    with Store.open(blocklist, readonly=True) as store:
        export_fingerprints(store, listing)
    folder = tmp_path / "site"
    shutil.copytree(photos.root / "originals", folder)
    with Store.open(tmp_path / "site.sqlite") as site:
        scan([folder], site)
        import_fingerprints(site, listing)
        for path in folder.iterdir():
            path.unlink()
        report = scan([folder], site)
        assert report.pruned == len(BANNED + ALLOWED)
        assert site.count_imported(VERSION) == len(BANNED)
        assert check(photos.edits[(2, "resized")], site).matched
        assert not check(photos.edits[(3, "resized")], site).matched


def write_list(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, "content_hash,image_hash,phash,dhash,width,height,low_info,label", *rows]))
    return path


GOOD_ROW = f"{'a' * 32},{'b' * 32},00000000000000ff,ffffffffffffffff,10,20,0,one"


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (f"{HEADER}0;work=128;phash=16", GOOD_ROW, "another fingerprint algorithm"),
        ("content_hash,image_hash", GOOD_ROW, "not a list of dedupe fingerprints"),
        (f"{HEADER}{VERSION}", GOOD_ROW.replace("00000000000000ff", "ff"), "line 4: phash should be 16 hex digits"),
        (f"{HEADER}{VERSION}", GOOD_ROW.replace("a" * 32, "xyz"), "line 4: content_hash should be 32 hex digits"),
        (f"{HEADER}{VERSION}", GOOD_ROW.replace(",10,", ",-1,"), "line 4: width should be a whole number"),
        (f"{HEADER}{VERSION}", GOOD_ROW.replace(",10,", f",{'9' * 30},"), "line 4: width should be a whole number"),
        (f"{HEADER}{VERSION}", GOOD_ROW.replace(",20,", f",{'9' * 5000},"), "line 4: height should be a whole number"),
        (f"{HEADER}{VERSION}", GOOD_ROW.replace("a" * 32, "f" * 100_000), "line 4: content_hash should be 32 hex"),
        (f"{HEADER}{VERSION}", "," * 2_000_000, "line 4: over 1,048,576 characters"),  # not split into fields
        (f"{HEADER}{VERSION}", GOOD_ROW.replace(",one", ",o\x00ne"), "line 4: a label cannot hold a NUL character"),
        ("#" * 2_000_000, GOOD_ROW, "its first line is far too long"),
    ],
    ids=[
        "algorithm",
        "no-header",
        "phash",
        "content-hash",
        "negative",
        "past-64-bits",
        "past-int",
        "huge-field",
        "huge-line",
        "huge-first-line",
        "nul-in-label",
    ],
)
def test_a_list_from_another_algorithm_or_damaged_is_refused_whole(
    tmp_path: Path, header: str, row: str, message: str
) -> None:
    listing = write_list(tmp_path / "list.csv", header, [GOOD_ROW.replace("a" * 32, "c" * 32), row])
    with Store.open(tmp_path / "s.sqlite") as store:
        with pytest.raises(DedupeError, match=message):
            import_fingerprints(store, listing)
        assert store.count_imported() == 0
    result = CliRunner().invoke(cli, ["import", str(listing), "--db", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output) < 2000  # a damaged field of any length is shown cut short


def test_a_good_handwritten_list_imports_with_optional_columns_left_out(tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(
        f"{HEADER}{VERSION}\nphash,dhash,content_hash,image_hash\n00000000000000FF,0,{'A' * 32},{'b' * 32}\n"
    )
    with pytest.raises(Exception, match="dhash should be 16 hex digits"), Store.open(tmp_path / "s.sqlite") as store:
        import_fingerprints(store, listing)
    listing.write_text(
        f"{HEADER}{VERSION}\nphash,dhash,content_hash,image_hash\n00000000000000FF,{'0' * 16},{'A' * 32},{'b' * 32}\n"
    )
    with Store.open(tmp_path / "s.sqlite") as store:
        assert import_fingerprints(store, listing).added == 1
        [item] = store.imported(VERSION)
    assert item == ListedFingerprint("a" * 32, "b" * 32, 255, 0, 0, 0, False, "a" * 32)


def test_stale_imported_fingerprints_are_not_searched_and_a_warning_says_so(photos: Photos, tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    fp = fingerprint_file(photos.banned[0])
    old = ListedFingerprint(fp.content_hash, fp.image_hash, fp.phash, fp.dhash, 1, 1, False, "old")
    with Store.open(db) as store, store.transaction():
        store.add_imported([old], "0;an older algorithm", "old.csv")
    result = CliRunner().invoke(cli, ["check", str(photos.banned[0]), "--db", str(db)])
    assert result.exit_code == 0
    assert "1 imported fingerprints were made with another fingerprint algorithm" in result.stderr


# --- the command line -----------------------------------------------------------------------------------------


def test_check_exit_statuses_and_output(photos: Photos, blocklist: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--db", str(blocklist)]
    clean = str(photos.edits[(3, "resized")])
    dirty = str(photos.edits[(1, "recompressed")])

    result = runner.invoke(cli, ["check", clean, *db])
    assert (result.exit_code, result.stdout) == (0, f"{clean}: no match\n")

    result = runner.invoke(cli, ["check", clean, dirty, *db])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].startswith(f"{dirty}: match: pHash distance ")
    assert result.stdout.splitlines()[1].endswith(f"(file {photos.banned[1]})")

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photos.banned[0].read_bytes()[:5000])
    result = runner.invoke(cli, ["check", dirty, str(corrupt), *db])
    assert result.exit_code == 2
    assert f"{corrupt}: error: truncated image" in result.stderr

    result = runner.invoke(cli, ["check", clean, dirty, str(corrupt), *db, "--format", "json"])
    assert result.exit_code == 2
    answers = json.loads(result.stdout)
    assert [a["match"] for a in answers] == [False, True, None]
    assert answers[1]["distance"] == answers[1]["closest"]["distance"] <= 8
    assert answers[1]["closest"]["name"] == str(photos.banned[1])
    assert answers[1]["closest"]["match"] == "near"
    assert "truncated image" in answers[2]["error"]

    result = runner.invoke(cli, ["check", clean, "--db", str(tmp_path / "missing.sqlite")])
    assert result.exit_code == 2
    assert "no store at" in result.stderr
    not_a_store = tmp_path / "text.sqlite"
    not_a_store.write_text("hello")
    result = runner.invoke(cli, ["check", clean, "--db", str(not_a_store)])
    assert result.exit_code == 2
    assert "is not a SQLite database" in result.stderr
    # click's own usage errors
    assert runner.invoke(cli, ["check", *db]).exit_code == 2
    assert runner.invoke(cli, ["check", clean, *db, "--threshold", "99"]).exit_code == 2


def test_search_command_table_and_json(photos: Photos, blocklist: Path) -> None:
    runner = CliRunner()
    db = ["--db", str(blocklist)]
    query = str(photos.edits[(2, "webp")])
    result = runner.invoke(cli, ["search", query, str(photos.edits[(4, "copy")]), *db])
    assert result.exit_code == 1
    assert f"{query}: 1 match" in result.stdout
    assert str(photos.banned[2]) in result.stdout
    assert "1200x900" in result.stdout
    assert f"{photos.edits[(4, 'copy')]}: no match" in result.stdout

    result = runner.invoke(
        cli, ["search", str(photos.edits[(0, "comment")]), *db, "--format", "json", "--threshold", "0"]
    )
    assert result.exit_code == 1
    [answer] = json.loads(result.stdout)
    assert answer["error"] is None
    assert [(m["name"], m["match"], m["reason"]) for m in answer["matches"]] == [
        (str(photos.banned[0]), "image", "same image data")
    ]
    result = runner.invoke(cli, ["search", str(photos.edits[(4, "copy")]), *db, "--format", "json"])
    assert (result.exit_code, json.loads(result.stdout)[0]["matches"]) == (0, [])


def test_export_and_import_commands(photos: Photos, blocklist: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    listing = tmp_path / "out" / "list.csv"
    listing.parent.mkdir()
    result = runner.invoke(cli, ["export", "--db", str(blocklist), "-o", str(listing)])
    assert result.exit_code == 0, result.output
    assert f"Exported {len(BANNED)} fingerprints to {listing}" in result.stderr
    assert [p.name for p in listing.parent.iterdir()] == ["list.csv"]  # no temporary file left behind

    only_one = runner.invoke(cli, ["export", str(photos.banned[1]), "--db", str(blocklist)])
    assert only_one.exit_code == 0
    assert only_one.stdout.splitlines()[2].endswith(f",{photos.banned[1]}")
    assert len(only_one.stdout.splitlines()) == 3

    site = str(tmp_path / "site.sqlite")
    result = runner.invoke(cli, ["import", str(listing), "--db", site])
    assert (result.exit_code, result.stdout) == (0, f"Imported 3 of 3 fingerprints from {listing}.\n")
    result = runner.invoke(cli, ["import", "-", "--db", site, "--replace"], input=only_one.stdout)
    assert result.exit_code == 0
    assert result.stdout == "Imported 1 of 1 fingerprints from <stdin>; dropped 3 imported before.\n"
    assert runner.invoke(cli, ["check", str(photos.edits[(1, "webp")]), "--db", site]).exit_code == 1
    assert runner.invoke(cli, ["check", str(photos.edits[(0, "webp")]), "--db", site]).exit_code == 0

    result = runner.invoke(cli, ["import", str(photos.banned[0]), "--db", site])
    assert result.exit_code == 1
    assert "not UTF-8 text" in result.output or "not a list of dedupe fingerprints" in result.output


def test_export_replaces_a_links_target_writes_into_a_pipe_and_keeps_permissions(
    blocklist: Path, tmp_path: Path
) -> None:
    """export -o replaces a symbolic link's target and keeps the link; a named pipe (or a device such as
    /dev/stdout) is written into, never replaced by a file; a new list gets 0666 less the umask (it is made to be
    shared), and a list replaced keeps its own permissions."""
    runner = CliRunner()
    target = tmp_path / "lists" / "list.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert runner.invoke(cli, ["export", "--db", str(blocklist), "-o", str(link)]).exit_code == 0
    assert link.is_symlink()
    assert target.read_text().startswith(HEADER)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["list.csv"]

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader waiting, so that opening it to write returns
    try:
        assert runner.invoke(cli, ["export", "--db", str(blocklist), "-o", str(fifo)]).exit_code == 0
        received = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert received.decode().startswith(HEADER)

    umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.csv"
        assert runner.invoke(cli, ["export", "--db", str(blocklist), "-o", str(fresh)]).exit_code == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644


def test_export_to_dev_stdout_writes_through_the_redirected_descriptor(blocklist: Path, tmp_path: Path) -> None:
    """export -o /dev/stdout with the output redirected to a regular file writes through that descriptor, as -o -
    does: appended (>>) after what the file held, and followed by what the shell writes next ({ ...; } > file);
    the file is never replaced by the list alone."""
    lists = tmp_path / "lists.csv"
    lists.write_text("# kept from before\n")
    inode = lists.stat().st_ino
    for mode in ("a", "r+"):  # r+: a redirection that does not append, at the end of what is there
        with lists.open(mode) as out:
            out.seek(0, os.SEEK_END)
            result = subprocess.run(
                [sys.executable, "-m", "dedupe", "export", "--db", str(blocklist), "-o", "/dev/stdout"],
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            out.write(f"# after {mode}\n")  # the shared offset is past the list
    assert lists.stat().st_ino == inode
    head, _, rest = lists.read_text().partition("\n")
    assert head == "# kept from before"
    one, _, two = rest.partition("# after a\n")
    assert two.endswith("# after r+\n")
    assert exchange.read_list(io.StringIO(one), "list") == exchange.read_list(
        io.StringIO(two[: -len("# after r+\n")]), "list"
    )


def test_an_older_store_is_upgraded_by_import_and_refused_read_only(tmp_path: Path) -> None:
    from dedupe.store import _MIGRATIONS

    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(_MIGRATIONS[0] + "PRAGMA user_version = 1;")
    conn.close()
    result = CliRunner().invoke(cli, ["check", str(db), "--db", str(db)])
    assert result.exit_code == 2
    assert "older dedupe" in result.stderr
    with Store.open(db) as store:
        assert store.count_imported() == 0  # upgraded: the imported table exists


def test_check_in_a_real_process(photos: Photos, blocklist: Path) -> None:
    dirty = run_dedupe("check", str(photos.edits[(0, "resized")]), "--db", str(blocklist))
    assert dirty.returncode == 1, dirty.stderr
    assert dirty.stdout.startswith(f"{photos.edits[(0, 'resized')]}: match: pHash distance")
    clean = run_dedupe("check", str(photos.edits[(4, "resized")]), "--db", str(blocklist), "--format", "json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)[0]["match"] is False


def test_exported_labels_never_start_a_spreadsheet_formula_and_import_back_unchanged(tmp_path: Path) -> None:
    """A label starting with = + - @ tab or CR is exported with a single quote in front (OWASP), and importing
    the list gives the label back as it was."""
    listed = ListedFingerprint("a" * 32, "b" * 32, 1, 2, 10, 10, False, '=HYPERLINK("http://x")')
    out = io.StringIO()
    exchange.write_list([listed], out)
    ((*_, label),) = csv.reader(io.StringIO(out.getvalue().split("\n", 2)[2]))
    assert label == "'" + listed.label
    (back,) = exchange.read_list(io.StringIO(out.getvalue()), "test")
    assert back.label == listed.label


def _semi_transparent(seed: int, alpha: Image.Image | None = None) -> Image.Image:
    """A drawn photo whose every pixel is partly transparent, more so towards the top (or with the alpha given)."""
    im = draw_photo(seed, (900, 600)).convert("RGBA")
    gradient = Image.linear_gradient("L").rotate(90).resize(im.size).point(lambda v: 20 + v * 200 // 255)
    im.putalpha(alpha or gradient)
    return im


def test_a_transparent_picture_finds_its_copy_that_dropped_the_alpha_channel(tmp_path: Path) -> None:
    """A semi-transparent PNG matches a stored JPEG copy that dropped its alpha channel by its second reading (its
    colours alone), which its flattened reading does not: from the store, from a SearchIndex, and in a list of
    imported fingerprints."""
    query = save(_semi_transparent(7), tmp_path / "query" / "overlay.png")
    root = tmp_path / "photos"
    save(_semi_transparent(7).convert("RGB"), root / "copy.jpg", quality=85)
    save(draw_photo(8, (900, 600)), root / "other.jpg", quality=90)
    flattened = readings(fingerprint_file(query))[0]
    with Store.open(tmp_path / "files.sqlite") as files, Store.open(tmp_path / "list.sqlite") as listed:
        scan([str(root)], files)
        export_fingerprints(files, tmp_path / "list.csv")
        import_fingerprints(listed, tmp_path / "list.csv")
        for where in (files, SearchIndex.load(files), listed, SearchIndex.load(listed)):
            assert find_similar(flattened, where).hits == ()
            hits = find_similar(query, where).hits
            assert [Path(h.name).name for h in hits] == ["copy.jpg"] and hits[0].match == MatchKind.NEAR
            result = check(query, where)
            assert result.matched and result.hit == hits[0]


def test_the_colour_reading_of_a_transparent_query_passes_over_stored_pictures_with_transparency(
    tmp_path: Path,
) -> None:
    """As in grouping, two pictures with transparency are compared flattened only: a query's colours alone do not
    match a stored picture with transparency whose flattened reading looks like them."""
    query = save(_semi_transparent(9), tmp_path / "query" / "faded.png")
    corner = Image.new("L", (900, 600), 255)
    corner.paste(0, (0, 0, 40, 40))
    stored = save(_semi_transparent(9, corner), tmp_path / "photos" / "corner.png")
    colour, stored_fp = readings(fingerprint_file(query))[1], fingerprint_file(stored)
    assert len(readings(stored_fp)) == 2 and hamming(colour.phash, stored_fp.phash) <= DEFAULT_THRESHOLD
    assert match(fingerprint_file(query), stored_fp, MatchRule()) is None
    with Store.open(tmp_path / "files.sqlite") as files:
        scan([str(tmp_path / "photos")], files)
        for where in (files, SearchIndex.load(files)):
            assert find_similar(query, where).hits == ()
            assert Path(find_similar(colour, where).hits[0].name).name == "corner.png"


def test_a_copy_that_dropped_the_alpha_channel_finds_the_stored_transparent_picture(tmp_path: Path) -> None:
    """The other way round: a stored semi-transparent PNG is found from its JPEG copy that dropped the alpha channel
    by the PNG's second reading (migration 11's table), which its flattened reading is too far for; from the store, a
    SearchIndex, `dedupe check` and `dedupe search`, as a near match at the second reading's distances."""
    root = tmp_path / "photos"
    png = save(_semi_transparent(7), root / "overlay.png")
    save(draw_photo(8, (900, 600)), root / "other.jpg", quality=90)
    query = save(_semi_transparent(7).convert("RGB"), tmp_path / "query" / "copy.jpg", quality=85)
    copy = fingerprint_file(query)
    flattened, colours = readings(fingerprint_file(png))
    assert hamming(copy.phash, flattened.phash) > DEFAULT_THRESHOLD
    db = tmp_path / "files.sqlite"
    with Store.open(db) as files:
        scan([str(root)], files)
        for where in (files, SearchIndex.load(files)):
            hits = find_similar(query, where).hits
            assert [Path(h.name).name for h in hits] == ["overlay.png"]
            assert (hits[0].match, hits[0].distance, hits[0].dhash_distance) == (
                MatchKind.NEAR,
                hamming(copy.phash, colours.phash),
                hamming(copy.dhash, colours.dhash),
            )
            assert check(query, where) == CheckResult(query=str(query), matched=True, hit=hits[0])
            # Past the block indexes (a threshold above 4 bits per block reads every hash) it is found the same.
            assert find_similar(query, where, threshold=20).hits[0] == hits[0]
    runner = CliRunner()
    result = runner.invoke(cli, ["check", str(query), "--db", str(db)])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{query}: match: pHash distance ") and f"(file {png})" in result.stdout
    result = runner.invoke(cli, ["search", str(query), "--db", str(db), "--format", "json"])
    assert result.exit_code == 1
    assert [(m["name"], m["match"]) for m in json.loads(result.stdout)[0]["matches"]] == [(str(png), "near")]


def test_two_transparent_logos_on_one_background_do_not_find_each_other(tmp_path: Path) -> None:
    """Two logos cut by their alpha from one colour layer share their second reading, but two pictures with
    transparency are compared flattened only: neither finds the other, while a copy of the colour layer without
    alpha finds both (as match says)."""
    root = tmp_path / "logos"
    ring = save(transparent_logo(8, ring=True), root / "ring.png")
    cross = save(transparent_logo(8, ring=False), tmp_path / "query" / "cross.png")
    layer = save(transparent_logo(8, ring=False).convert("RGB"), tmp_path / "query" / "layer.png")
    assert readings(fingerprint_file(ring))[1].phash == readings(fingerprint_file(cross))[1].phash
    with Store.open(tmp_path / "files.sqlite") as files:
        scan([str(root)], files)
        for where in (files, SearchIndex.load(files)):
            assert find_similar(cross, where).hits == ()
            assert not check(cross, where).matched
            assert match(fingerprint_file(layer), fingerprint_file(ring), MatchRule(crops=False)) is not None
            assert [Path(h.name).name for h in find_similar(layer, where).hits] == ["ring.png"]


def test_an_exported_list_has_a_line_per_image_whatever_its_names_hold(tmp_path: Path) -> None:
    """Names holding a carriage return, a newline, a tab or bytes that are not UTF-8 are exported as labels on
    one line each (with \\xNN escapes), and the list imports whole."""
    root = tmp_path / "photos"
    names = ["cr\rhere.jpg", "new\nline.jpg", "tab\there.jpg", os.fsdecode(b"bad\xff.jpg"), "\rstart.jpg"]
    for seed, name in enumerate(names):
        save(draw_photo(seed, (320, 240)), root / name)
    db, listed = str(tmp_path / "s.sqlite"), tmp_path / "list.csv"
    assert CliRunner().invoke(cli, ["scan", str(root), "--db", db, "-q"]).exit_code == 0
    r = CliRunner().invoke(cli, ["export", "--db", db, "-o", str(listed)])
    assert r.exit_code == 0, r.output
    lines = listed.read_bytes().split(b"\n")
    assert len(lines) == 2 + len(names) + 1 and lines[-1] == b"" and b"\r" not in listed.read_bytes()
    labels = sorted(line.rsplit(b",", 1)[1].decode() for line in lines[2:-1])
    assert labels == sorted(
        f"{root}/{n}"
        for n in ("cr\\x0dhere.jpg", "new\\x0aline.jpg", "tab\\x09here.jpg", "bad\\xff.jpg", "\\x0dstart.jpg")
    )
    r = CliRunner().invoke(cli, ["import", str(listed), "--db", str(tmp_path / "other.sqlite")])
    assert r.exit_code == 0, r.output
    with Store.open(tmp_path / "other.sqlite", readonly=True) as other:
        assert sorted(f.label for f in other.imported()) == labels
