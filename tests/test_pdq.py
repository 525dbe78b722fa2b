"""PDQ hash lists: imported from hashes that pdqhash computed directly, matched by edited copies, exported."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dedupe import pdq
from dedupe.cli import cli
from dedupe.errors import DedupeError
from dedupe.search import SearchIndex, check
from dedupe.store import Store
from tests.conftest import draw_photo, run_dedupe, save
from tests.serving import serving

pdqhash = pytest.importorskip("pdqhash", reason="PDQ needs the pdq extra: pip install -e '.[test]'")

BANNED = range(3)


def direct_pdq(path: Path) -> str:
    """The PDQ hash as another program would take it: pdqhash on the whole decoded picture."""
    with Image.open(path) as im:
        bits, _quality = pdqhash.compute(np.asarray(im.convert("RGB")))
    return f"{int(''.join(str(int(b)) for b in bits), 2):064x}"


@pytest.fixture
def pdq_store(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A store holding only PDQ hashes of three photos (a list made outside dedupe), and query images."""
    photos: dict[str, Path] = {}
    lines = ["# PDQ hashes from a partner, one a line", ""]
    for seed in BANNED:
        im = draw_photo(seed, (1600, 1200))
        original = save(im, tmp_path / "partner" / f"{seed}.jpg", quality=92)
        lines.append(f"{direct_pdq(original)},partner ban {seed}")
        photos[f"resized{seed}"] = save(im.resize((640, 480)), tmp_path / "q" / f"resized{seed}.jpg", quality=85)
        photos[f"recompressed{seed}"] = save(im, tmp_path / "q" / f"recompressed{seed}.jpg", quality=50)
        photos[f"png{seed}"] = save(im.resize((800, 600)), tmp_path / "q" / f"png{seed}.png")
    for seed in range(300, 303):
        photos[f"other{seed}"] = save(draw_photo(seed, (1600, 1200)), tmp_path / "q" / f"other{seed}.jpg")
    listing = tmp_path / "partner.pdq"
    listing.write_text("\n".join(lines) + "\n")
    db = tmp_path / "bans.sqlite"
    result = CliRunner().invoke(cli, ["import", "--format", "pdq", str(listing), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "Imported 3 of 3 PDQ hashes" in result.output
    return db, photos


def test_edited_copies_match_an_imported_pdq_list_and_others_do_not(pdq_store: tuple[Path, dict[str, Path]]) -> None:
    db, photos = pdq_store
    result = CliRunner().invoke(cli, ["check", *map(str, photos.values()), "--db", str(db), "--format", "json"])
    assert result.exit_code == 1, result.output
    for row in json.loads(result.output):
        name = Path(row["image"]).stem
        if name.startswith("other"):
            assert row["match"] is False, row
            continue
        seed = name[-1]
        assert row["match"] is True, row
        assert row["closest"]["hash"] == "pdq"
        assert row["closest"]["name"] == f"partner ban {seed}"
        assert row["distance"] <= pdq.PDQ_THRESHOLD
        assert row["closest"]["reason"] == f"PDQ distance {row['distance']}"


def test_an_index_and_the_server_match_pdq_lists_too(pdq_store: tuple[Path, dict[str, Path]]) -> None:
    db, photos = pdq_store
    with Store.open(db, readonly=True) as store:
        index = SearchIndex.load(store)
        assert len(index.pdq) == 3
        assert check(photos["png1"], index).hit == check(photos["png1"], store).hit
    with serving(db) as server, server.client() as client:
        answer = client.post(
            "/v1/check", content=photos["resized2"].read_bytes(), headers={"Content-Type": "image/jpeg"}
        ).json()
        status = client.get("/v1/status").json()
    assert (answer["match"], answer["hash"]) == (True, "pdq")
    assert answer["closest"]["name"] == "partner ban 2"
    assert status["pdq_hashes"] == 3


def test_export_writes_pdq_hashes_with_quality_for_the_stores_own_images(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    paths = [save(draw_photo(seed), folder / f"{seed}.jpg", quality=90) for seed in range(3)]
    db = tmp_path / "store.sqlite"
    assert run_dedupe("scan", str(folder), "--db", str(db), "-q").returncode == 0
    out = tmp_path / "export.pdq"
    result = CliRunner().invoke(cli, ["export", "--format", "pdq", "--db", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [line.split(",", 2) for line in out.read_text().splitlines()]
    assert [label for _, _, label in rows] == [str(p) for p in paths]
    for (value, quality, _), path in zip(rows, paths, strict=True):
        assert value == pdq.hash_file(path)[0]
        # Hashed from a 512-pixel copy (a full-size hash takes up to a second): within half the threshold.
        assert pdq.distance(value, direct_pdq(path)) <= pdq.PDQ_THRESHOLD // 2
        assert 0 <= int(quality) <= 100
    # The list goes back in as it came out, with the same labels.
    other = tmp_path / "other.sqlite"
    assert CliRunner().invoke(cli, ["import", "--format", "pdq", str(out), "--db", str(other)]).exit_code == 0
    with Store.open(other, readonly=True) as store:
        assert [(e.hash, str(e.quality), e.label) for _, e in store.pdq_entries()] == [tuple(r) for r in rows]


def test_a_list_is_parsed_with_optional_labels_and_quality() -> None:
    text = "\n".join(
        [
            "# comment",
            "A" * 64,
            f"{'b' * 64},a label, with a comma",
            f"{'c' * 64},87,photo.jpg",
            "",
        ]
    )
    entries = pdq.read_list(io.StringIO(text), "list")
    assert [(e.hash, e.label, e.quality) for e in entries] == [
        ("a" * 64, "a" * 64, None),
        ("b" * 64, "a label,with a comma", None),
        ("c" * 64, "photo.jpg", 87),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc\n", "list, line 1: a PDQ hash should be 64 hex digits, not 'abc'"),
        (f"{'a' * 64}\n{'z' * 64}\n", "list, line 2"),
        ("# only a comment\n", "list holds no PDQ hash"),
        (f"{'a' * 64},101,label\n", "list, line 1: a PDQ quality should be 0 to 100, not 101"),
        (f"{'a' * 64},{'9' * 5000},label\n", "list, line 1: a PDQ quality should be 0 to 100, not 9{20}$"),
        (f"{'f' * 100_000}\n", "list, line 1: a PDQ hash should be 64 hex digits, not 'f{80}...'$"),
        (f"{'a' * 64}\n{',' * 2_000_000}\n", "list, line 2: over 1,048,576 characters"),  # not split into fields
        (f"{'a' * 64},spam\x00\n", "list, line 1: a label cannot hold a NUL character"),
    ],
)
def test_a_damaged_list_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(DedupeError, match=message):
        pdq.read_list(io.StringIO(text), "list")


def test_import_of_a_damaged_list_changes_nothing(tmp_path: Path) -> None:
    listing = tmp_path / "bad.pdq"
    listing.write_text(f"{'a' * 64},fine\nnot a hash\n")
    db = tmp_path / "bans.sqlite"
    result = CliRunner().invoke(cli, ["import", "--format", "pdq", str(listing), "--db", str(db)])
    assert result.exit_code == 1
    assert "line 2" in result.output
    with Store.open(db, readonly=True) as store:
        assert store.count_pdq() == 0


def test_unrelated_photos_are_far_apart_in_pdq(tmp_path: Path) -> None:
    a = pdq.hash_file(save(draw_photo(1), tmp_path / "a.jpg"))[0]
    b = pdq.hash_file(save(draw_photo(2), tmp_path / "b.jpg"))[0]
    assert pdq.distance(a, b) > 2 * pdq.PDQ_THRESHOLD


def test_an_exported_pdq_list_has_a_line_per_image_whatever_its_names_hold(tmp_path: Path) -> None:
    """A PDQ list names each image on one line (a carriage return or newline in a name as \\xNN), and imports whole."""
    folder = tmp_path / "photos"
    names = ["cr\rhere.jpg", "new\nline.jpg"]
    for seed, name in enumerate(names):
        save(draw_photo(seed, (320, 240)), folder / name, quality=90)
    db, out = tmp_path / "store.sqlite", tmp_path / "export.pdq"
    assert CliRunner().invoke(cli, ["scan", str(folder), "--db", str(db), "-q"]).exit_code == 0
    assert CliRunner().invoke(cli, ["export", "--format", "pdq", "--db", str(db), "-o", str(out)]).exit_code == 0
    lines = out.read_bytes().split(b"\n")
    assert sorted(line.split(b",", 2)[2] for line in lines[:-1]) == sorted(
        f"{folder}/{n}".encode() for n in ("cr\\x0dhere.jpg", "new\\x0aline.jpg")
    )
    r = CliRunner().invoke(cli, ["import", "--format", "pdq", str(out), "--db", str(tmp_path / "other.sqlite")])
    assert r.exit_code == 0, r.output
