"""RAW files: fingerprinted from their embedded preview, and never trashed as a mere copy of their JPEG twin.

The RAW files here are synthetic containers, not camera files: a small TIFF written by Pillow (standing in for a
RAW's main IFD, with the JPEGInterchangeFormat tags of a camera's preview) followed by a full-size JPEG preview
stream, named .nef, .dng and so on. They have the structure dedupe reads (TIFF header and tags, embedded JPEG
streams), not real sensor data.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from dedupe import fingerprint
from dedupe.errors import FileSkipped
from tests.conftest import draw_photo, save


def jpeg_bytes(im: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **params)
    return buf.getvalue()


def synthetic_raw(
    photo: Image.Image,
    *,
    preview: bytes | None = None,
    orientation: int = 1,
    thumb_side: int = 160,
    filler: bytes = b"",
) -> bytes:
    """A TIFF-container "RAW": a small thumbnail TIFF whose tags point at a full-size JPEG preview appended to it.

    filler goes between the TIFF and the preview, standing in for sensor data.
    """
    jpg = jpeg_bytes(photo, quality=90) if preview is None else preview
    thumb = photo.copy()
    thumb.thumbnail((thumb_side, thumb_side))

    def container(offset: int) -> bytes:
        buf = io.BytesIO()
        tags = {513: offset, 514: len(jpg), 271: "Synthetic", 272: "Container 1", 274: orientation}
        thumb.save(buf, "TIFF", tiffinfo=tags)
        return buf.getvalue()

    head = container(0)
    head = container(len(head) + len(filler))  # same length: the offset is a fixed-size LONG
    return head + filler + jpg


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- fingerprinting ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["nef", "dng", "cr2", "arw"])
def test_raw_is_fingerprinted_from_its_full_size_preview(tmp_path: Path, ext: str) -> None:
    photo = draw_photo(1)
    raw = write(tmp_path / f"IMG_0001.{ext.upper()}", synthetic_raw(photo))
    fp = fingerprint.fingerprint_file(raw)
    assert fp.format == f"RAW:{ext}"
    assert (fp.width, fp.height) == (1200, 900)  # the preview's, not the 160 px thumbnail IFD's
    assert fp.camera == "Synthetic Container 1"
    twin = fingerprint.fingerprint_file(save(photo, tmp_path / "IMG_0001.JPG", quality=85))
    assert fingerprint.hamming(fp.phash, twin.phash) <= 4
    assert fp.image_hash != twin.image_hash  # a RAW is "the same pixels" only as the same bytes


def test_the_same_container_named_tif_stays_a_tiff(tmp_path: Path) -> None:
    data = synthetic_raw(draw_photo(2))
    fp = fingerprint.fingerprint_file(write(tmp_path / "scan.tif", data))
    assert fp.format == "TIFF"
    assert fp.width == 160


def test_largest_decodable_preview_wins_over_thumbnails_and_broken_streams(tmp_path: Path) -> None:
    photo = draw_photo(3)
    small = jpeg_bytes(photo.resize((320, 240)))
    # A stream that follows JPEG structure but whose data is not decodable (SOF3, like lossless sensor data),
    # larger than the real preview.
    broken = b"\xff\xd8\xff\xc3\x00\x0b\x08\x10\x00\x10\x00\x01\x01\x11\x00\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    broken += bytes(range(1, 255)) * 4000 + b"\xff\xd9"
    filler = b"\x00" * 1000 + small + b"\x00" * 1000 + broken
    data = synthetic_raw(photo, filler=filler)
    spans = fingerprint.jpeg_streams(data)
    assert len(spans) >= 3
    assert spans[0][1] - spans[0][0] == len(broken)
    fp = fingerprint.fingerprint_file(write(tmp_path / "a.dng", data))
    assert (fp.width, fp.height) == (1200, 900)


def test_preview_with_an_exif_thumbnail_inside_is_read_whole(tmp_path: Path) -> None:
    photo = draw_photo(4)
    exif = Image.Exif()
    exif[271] = "Synthetic"
    # The preview carries its own small JPEG thumbnail in APP1: its EOI must not end the preview.
    exif_bytes = exif.tobytes() + jpeg_bytes(photo.resize((80, 60)))
    preview = jpeg_bytes(photo, quality=90, exif=exif_bytes)
    data = synthetic_raw(photo, preview=preview)
    start, end = fingerprint.jpeg_streams(data)[0]
    assert data[start:end] == preview


def test_container_orientation_turns_the_preview(tmp_path: Path) -> None:
    photo = draw_photo(5)
    upright = fingerprint.fingerprint_file(save(photo.transpose(Image.Transpose.ROTATE_270), tmp_path / "u.jpg"))
    fp = fingerprint.fingerprint_file(write(tmp_path / "turned.nef", synthetic_raw(photo, orientation=6)))
    assert (fp.width, fp.height) == (900, 1200)
    assert fingerprint.hamming(fp.phash, upright.phash) <= 4


def test_raw_without_a_preview_is_skipped_with_the_reason(tmp_path: Path) -> None:
    buf = io.BytesIO()
    draw_photo(6).resize((200, 150)).save(buf, "TIFF")
    path = write(tmp_path / "nopreview.nef", buf.getvalue())
    with pytest.raises(FileSkipped) as e:
        fingerprint.fingerprint_file(path)
    assert e.value.reason == fingerprint.NO_PREVIEW


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("x.cr3", b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom"),
        ("x.raf", b"FUJIFILMCCD-RAW 0201FF383501"),
        ("x.orf", b"IIRO\x08\x00\x00\x00"),
        ("x.rw2", b"IIU\x00\x08\x00\x00\x00"),
    ],
)
def test_non_tiff_raw_containers_are_recognised(tmp_path: Path, name: str, head: bytes) -> None:
    photo = draw_photo(7)
    path = write(tmp_path / name, head + b"\x00" * 200 + jpeg_bytes(photo) + b"\x00" * 50)
    fp = fingerprint.fingerprint_file(path)
    assert fp.format == "RAW:" + name.split(".")[1]
    assert (fp.width, fp.height) == (1200, 900)


def test_raw_name_with_other_content_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "fake.cr3", b"%PDF-1.4 not a raw file" + b"\x00" * 100)
    with pytest.raises(FileSkipped) as e:
        fingerprint.fingerprint_file(path)
    assert "unrecognised content" in e.value.reason
    assert not e.value.ignorable  # named like a photo: the user hears about it
