from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, ImageFile, UnidentifiedImageError

from dedupe.errors import FileSkipped
from dedupe.fingerprint import (
    _exif_datetime,
    fingerprint_bytes,
    fingerprint_file,
    fingerprint_unless_claimed,
    hamming,
    open_image,
    perceptual_hashes,
    working_image,
)
from dedupe.models import ALPHA_VARIANTS, TRANSFORMS, Fingerprint, SamePixels
from tests.conftest import REPO, damaged_exif_photo, draw_photo, save, transparent_logo


def test_jpeg_fingerprint_records_size_format_and_hashes(tmp_path: Path) -> None:
    path = save(draw_photo(1, (1600, 1200)), tmp_path / "a.jpg", quality=90)
    fp = fingerprint_file(path)
    assert (fp.format, fp.width, fp.height) == ("JPEG", 1600, 1200)
    assert len(fp.content_hash) == 32 and fp.image_hash != fp.content_hash
    assert 0 < fp.phash < 2**64 and 0 < fp.dhash < 2**64
    assert not fp.low_info


def test_reduced_decode_gives_the_hashes_of_a_full_decode(tmp_path: Path) -> None:
    for seed in range(3):
        path = save(draw_photo(seed, (4000, 3000)), tmp_path / f"{seed}.jpg", quality=90)
        fast = fingerprint_file(path)
        with Image.open(path) as im:
            im.load()  # no draft: every pixel decoded
            full_phash, full_dhash = perceptual_hashes(working_image(im))
        assert hamming(fast.phash, full_phash) <= 2
        assert hamming(fast.dhash, full_dhash) <= 2


def test_exif_orientation_is_applied_before_hashing(tmp_path: Path) -> None:
    upright = draw_photo(7, (1200, 800))
    a = fingerprint_file(save(upright, tmp_path / "upright.jpg", quality=92))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: stored sideways, shown upright
    b = fingerprint_file(
        save(upright.transpose(Image.Transpose.ROTATE_90), tmp_path / "phone.jpg", quality=92, exif=exif)
    )
    assert (b.width, b.height) == (1200, 800)
    assert hamming(a.phash, b.phash) <= 4


def test_metadata_only_change_keeps_the_image_hash(tmp_path: Path) -> None:
    im = draw_photo(3)
    plain = fingerprint_file(save(im, tmp_path / "plain.jpg", quality=85))
    exif = Image.Exif()
    exif[0x0132] = "2020:01:01 10:00:00"
    exif.get_ifd(0x8769)[36867] = "2019:05:04 12:34:56"
    tagged = fingerprint_file(save(im, tmp_path / "tagged.jpg", quality=85, exif=exif))
    assert tagged.content_hash != plain.content_hash
    assert tagged.image_hash == plain.image_hash
    assert tagged.taken == "2019-05-04T12:34:56"
    # A different encoding of the same picture is not the same image data.
    other = fingerprint_file(save(im, tmp_path / "q60.jpg", quality=60))
    assert other.image_hash != plain.image_hash


def test_a_subsecond_time_in_other_digits_is_left_out_of_the_date_taken(tmp_path: Path) -> None:
    """A photo whose EXIF SubSecTimeOriginal holds bytes that read as superscript digits ("²³") is fingerprinted,
    its date taken without the fraction, rather than skipped as corrupt."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2019:05:04 12:34:56"
    exif.get_ifd(0x8769)[37521] = "@@"
    path = save(draw_photo(3), tmp_path / "photo.jpg", quality=85, exif=exif)
    data = path.read_bytes()
    at = data.index(b"@@\x00")
    path.write_bytes(data[:at] + b"\xb2\xb3" + data[at + 2 :])
    with Image.open(path) as im:
        assert im.getexif().get_ifd(0x8769)[37521] == "²³"
    assert fingerprint_file(path).taken == "2019-05-04T12:34:56"


@pytest.mark.parametrize(
    "text",
    [
        "2019:05:04 12:34:56",
        "0001:01:01 00:00:00",
        "9999:12:31 23:59:59",
        "2020:02:29 10:00:00",
        "2019:02:29 10:00:00",
        "2020:13:01 00:00:00",
        "2020:00:10 00:00:00",
        "2020:01:32 00:00:00",
        "2020:01:01 24:00:00",
        "2020:01:01 23:60:00",
        "2020:01:01 23:59:60",
        "0000:01:01 00:00:00",
        "2020:1:01 00:00:00",
        "2020:01:01  00:00:00",
        "2020:01:01\t00:00:00",
        "\uff12\uff10\uff12\uff10:01:01 00:00:00",
        "2020:\u0660\u0661:01 00:00:00",
        "    :  :     :  :  ",
        "",
    ],
)
def test_an_exif_date_is_read_as_strptime_reads_it(text: str) -> None:
    """The same date, or the same refusal, as datetime.strptime with the EXIF format."""
    try:
        expected: datetime | None = datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
    except ValueError:
        expected = None
    try:
        got: datetime | None = _exif_datetime(text)
    except ValueError:
        got = None
    assert got == expected


def test_transparent_image_is_flattened_onto_a_fixed_background(tmp_path: Path) -> None:
    rgba = draw_photo(4, (600, 400)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((600, 400)))
    flat = Image.new("RGB", rgba.size, (128, 128, 128))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    a = fingerprint_file(save(rgba, tmp_path / "alpha.png"))
    b = fingerprint_file(save(flat, tmp_path / "flat.png"))
    assert hamming(a.phash, b.phash) <= 2


def test_a_picture_with_transparency_is_also_read_by_its_colours_alone(tmp_path: Path) -> None:
    """A picture with partly transparent pixels carries a second reading, its colour channels alone, after its 7
    turns; an opaque one, and one whose colour layer is blank (the picture is in its alpha), carry none."""
    rgba = draw_photo(4, (600, 400)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((600, 400)))
    fp = fingerprint_file(save(rgba, tmp_path / "alpha.png"))
    colour = fingerprint_file(save(rgba.convert("RGB"), tmp_path / "colour.png"))
    assert len(fp.variants) == ALPHA_VARIANTS
    assert fp.variants[7:9] == (colour.phash, colour.dhash) and fp.variants[9:] == colour.variants
    assert len(fingerprint_file(save(rgba.convert("RGB"), tmp_path / "opaque.png")).variants) == len(TRANSFORMS)
    white = Image.new("RGBA", (600, 400), (255, 255, 255, 0))
    white.putalpha(draw_photo(5, (600, 400)).convert("L"))
    assert len(fingerprint_file(save(white, tmp_path / "white.png")).variants) == len(TRANSFORMS)


def test_a_nearly_transparent_picture_is_read_by_its_colours_alone(tmp_path: Path) -> None:
    """A picture so transparent everywhere that flattened it says nothing is fingerprinted by its colours alone,
    like its copies that drop the alpha channel, instead of being left to match only its own image data."""
    rgba = draw_photo(6, (600, 400)).convert("RGBA")
    rgba.putalpha(3)
    fp = fingerprint_file(save(rgba, tmp_path / "faint.png"))
    colour = fingerprint_file(save(rgba.convert("RGB"), tmp_path / "colour.jpg", quality=95))
    assert not fp.low_info and len(fp.variants) == len(TRANSFORMS) and len(fp.crops) == len(colour.crops)
    assert hamming(fp.phash, colour.phash) <= 2


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("p.png", {}),
        ("p.gif", {}),
        ("p.bmp", {}),
        ("p.tiff", {}),
        ("p.webp", {"quality": 90}),
        ("p.heic", {"quality": 90}),
        ("p.avif", {"quality": 90}),
    ],
)
def test_photo_formats_are_read_and_match_the_jpeg(tmp_path: Path, name: str, params: dict[str, object]) -> None:
    im = draw_photo(5, (800, 600))
    ref = fingerprint_file(save(im, tmp_path / "ref.jpg", quality=95))
    fp = fingerprint_file(save(im, tmp_path / name, **params))
    assert (fp.width, fp.height) == (800, 600)
    assert hamming(ref.phash, fp.phash) <= 6


def test_sixteen_bit_png(tmp_path: Path) -> None:
    grey = draw_photo(6, (500, 400)).convert("L")
    wide = Image.eval(grey, lambda v: v).convert("I").point(lambda v: v * 256).convert("I;16")
    a = fingerprint_file(save(grey, tmp_path / "8.png"))
    b = fingerprint_file(save(wide, tmp_path / "16.png"))
    assert hamming(a.phash, b.phash) <= 2


def test_blank_images_are_low_information(tmp_path: Path) -> None:
    assert fingerprint_file(save(Image.new("RGB", (300, 200), (30, 90, 200)), tmp_path / "blank.png")).low_info
    assert not fingerprint_file(save(draw_photo(1), tmp_path / "photo.png")).low_info


def _skip_reason(path: Path) -> FileSkipped:
    with pytest.raises(FileSkipped) as info:
        fingerprint_file(path)
    return info.value


def test_bad_files_get_one_line_reasons(tmp_path: Path) -> None:
    good = save(draw_photo(2), tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (tmp_path / "headers.jpg").write_bytes(good[: good.find(b"\xff\xda") - 10])  # cut before its image data
    (tmp_path / "text.jpg").write_text("hello, not a photo")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "random.webp").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "fake.jpg").write_bytes(b"8BPS" + b"\0" * 100)  # a Photoshop file renamed
    reasons = {p.name: _skip_reason(p) for p in sorted(tmp_path.iterdir()) if p.name != "good.jpg"}
    assert "truncated" in reasons["truncated.jpg"].reason
    assert reasons["headers.jpg"].reason.startswith("truncated image")
    assert "not an image" in reasons["text.jpg"].reason
    assert reasons["empty.png"].reason == "empty file"
    assert "not an image" in reasons["random.webp"].reason
    assert "not an image" in reasons["fake.jpg"].reason
    for e in reasons.values():
        assert "\n" not in e.reason and not e.ignorable


def test_non_images_with_other_names_are_ignorable(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\0" * 100)
    assert _skip_reason(tmp_path / "clip.mp4").ignorable


def test_missing_file_is_a_transient_reason(tmp_path: Path) -> None:
    e = _skip_reason(tmp_path / "gone.jpg")
    assert e.transient and "vanished" in e.reason


def _png_with_size(width: int, height: int) -> bytes:
    """A small real PNG whose header claims another size."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_decompression_bomb_is_refused_without_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_with_size(30000, 30000))
    assert "decompression bomb" in _skip_reason(bomb).reason


def test_a_real_100_megapixel_photo_is_fingerprinted(tmp_path: Path) -> None:
    big = draw_photo(9, (1000, 1000)).convert("L").resize((10000, 10000))
    fp = fingerprint_file(save(big, tmp_path / "big.jpg", quality=80))
    assert (fp.width, fp.height) == (10000, 10000)


def test_open_image_refuses_formats_that_are_not_photos() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "PCX")
    with pytest.raises(UnidentifiedImageError):
        open_image(buf.getvalue())


def test_png_and_webp_metadata_changes_keep_the_image_hash(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    im = draw_photo(8, (500, 400))
    plain = fingerprint_file(save(im, tmp_path / "plain.png"))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "edited in a photo manager")
    exif = Image.Exif()
    exif[0x0132] = "2021:02:03 04:05:06"
    tagged = fingerprint_file(save(im, tmp_path / "tagged.png", pnginfo=info, exif=exif))
    assert tagged.content_hash != plain.content_hash and tagged.image_hash == plain.image_hash
    other = fingerprint_file(save(draw_photo(9, (500, 400)), tmp_path / "other.png"))
    assert other.image_hash != plain.image_hash
    turned = Image.Exif()
    turned[0x0112] = 3  # shown upside down: not the same picture as displayed
    assert fingerprint_file(save(im, tmp_path / "turned.png", exif=turned)).image_hash != plain.image_hash

    w_plain = fingerprint_file(save(im, tmp_path / "plain.webp", quality=80))
    w_tagged = fingerprint_file(save(im, tmp_path / "tagged.webp", quality=80, exif=exif))
    assert w_tagged.content_hash != w_plain.content_hash and w_tagged.image_hash == w_plain.image_hash


def _retagged(im: Image.Image, fmt: str) -> tuple[bytes, bytes]:
    """A picture saved as fmt twice, with the same image data and other metadata (dates, camera, a comment)."""
    from PIL import PngImagePlugin

    copies = []
    for date, camera in (("2020:01:01 10:00:00", "Canon"), ("2023:06:07 08:09:10", "Nikon")):
        exif = Image.Exif()
        exif[0x010F] = camera
        exif.get_ifd(0x8769)[36867] = date
        params: dict[str, object] = {"exif": exif}
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_text("Comment", f"tagged in {date[:4]}")
            params["pnginfo"] = info
        else:
            params["quality"] = 85
        buf = io.BytesIO()
        im.save(buf, fmt, **params)
        copies.append(buf.getvalue())
    return copies[0], copies[1]


def _recording(claims: list[str]) -> Callable[[str], bool]:
    """A claim that always succeeds, noting the key."""

    def claim(key: str) -> bool:
        claims.append(key)
        return True

    return claim


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "RGBA PNG"])
def test_a_picture_whose_decoding_is_claimed_is_fingerprinted_from_its_twin(fmt: str) -> None:
    """A picture with the image data of one already claimed is not decoded; its fingerprint, made from its
    twin's, is the one its own decoding gives (its own content hash, date and camera)."""
    im = transparent_logo(3, ring=True) if fmt == "RGBA PNG" else draw_photo(5, (700, 500))
    first, second = _retagged(im, fmt.split()[-1])
    claims: list[str] = []
    twin = fingerprint_unless_claimed(first, "first", claim=_recording(claims))
    same = fingerprint_unless_claimed(second, "second", claim=lambda key: key not in claims)
    assert isinstance(same, SamePixels) and same.key == claims[0]
    assert not isinstance(twin, SamePixels)
    decoded = fingerprint_bytes(second, "second")
    assert same.of(twin) == decoded and decoded.taken == "2023-06-07T08:09:10" and decoded.camera == "Nikon"


def test_a_png_whose_decoding_fails_after_its_image_data_is_never_a_twin() -> None:
    """A PNG with a malformed pHYs chunk after its image data (Pillow's decoding reads it there and fails) is
    skipped as it is alone, also when a PNG with the same image data was claimed first: it claims its own
    decoding, since the image-data hash leaves that chunk out."""
    buf = io.BytesIO()
    draw_photo(14, (300, 200)).save(buf, "PNG")
    whole = buf.getvalue()
    ihdr, idat, iend = _png_chunks(whole)
    broken = whole[:8] + ihdr + idat + _chunk(b"pHYs", b"\x01") + iend
    alone = _outcome(broken)
    assert isinstance(alone, str) and "pHYs" in alone
    claims: list[str] = []
    fingerprint_unless_claimed(whole, "whole", claim=_recording(claims))
    with pytest.raises(FileSkipped) as skipped:
        fingerprint_unless_claimed(broken, "broken", claim=lambda key: key not in claims)
    assert skipped.value.reason == alone


def test_pictures_that_may_decode_otherwise_are_never_twins() -> None:
    """Another picture, the same picture turned by its EXIF orientation, a JPEG with and one without a JFIF
    segment as libjpeg reads it (libjpeg then guesses the colour space otherwise) and an animation each claim their
    own decoding."""
    im = draw_photo(6, (400, 300))

    def key_of(data: bytes) -> str | None:
        claimed: list[str] = []
        fingerprint_unless_claimed(data, "x", claim=_recording(claimed))
        return claimed[0] if claimed else None

    def saved(picture: Image.Image, fmt: str, **params: object) -> bytes:
        buf = io.BytesIO()
        picture.save(buf, fmt, **params)
        return buf.getvalue()

    plain = saved(im, "JPEG", quality=85)
    turned = Image.Exif()
    turned[0x0112] = 6
    without_jfif = plain[:2] + plain[4 + int.from_bytes(plain[4:6], "big") :]
    assert plain[6:11] == b"JFIF\x00" and without_jfif[2:4] != b"\xff\xe0"
    # An RGB JPEG (no JFIF, Adobe transform 0) behind an APP0 of "JFIF" and no NUL, which Pillow calls JFIF and
    # libjpeg does not, decodes to other colours than behind a real JFIF segment.
    rgb = saved(im, "JPEG", quality=85, keep_rgb=True)
    real_jfif, not_jfif = (
        rgb[:2] + b"\xff\xe0\x00\x10" + start + b"\x01\x01\x00\x00\x01\x00\x01\x00\x00" + rgb[2:]
        for start in (b"JFIF\x00", b"JFIFX")
    )
    keys = [
        key_of(plain),
        key_of(saved(draw_photo(7, (400, 300)), "JPEG", quality=85)),
        key_of(saved(im, "JPEG", quality=85, exif=turned)),
        key_of(without_jfif),
        key_of(real_jfif),
        key_of(not_jfif),
    ]
    assert None not in keys and len(set(keys)) == len(keys)
    frames = [draw_photo(i, (100, 80)) for i in range(2)]
    assert key_of(saved(frames[0], "PNG", save_all=True, append_images=frames[1:])) is None


def test_an_rgb_jpeg_behind_a_jfif_segment_is_not_the_same_picture_as_without_it() -> None:
    """An RGB JPEG behind a JFIF segment, which libjpeg decodes as YCbCr (other colours), has another image hash
    than the same JPEG without one, so no plan removes either as a copy of the other; a YCbCr JPEG with and
    without its JFIF segment keeps one image hash."""
    im = draw_photo(6, (400, 300))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85, keep_rgb=True)
    rgb = buf.getvalue()
    jfif = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    behind_jfif = rgb[:2] + jfif + rgb[2:]
    a, b = fingerprint_bytes(behind_jfif, "a"), fingerprint_bytes(rgb, "b")
    assert a.phash != b.phash and a.image_hash != b.image_hash
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    ycbcr = buf.getvalue()
    assert ycbcr[6:11] == b"JFIF\x00"
    without_jfif = ycbcr[:2] + ycbcr[4 + int.from_bytes(ycbcr[4:6], "big") :]
    assert fingerprint_bytes(ycbcr, "c").image_hash == fingerprint_bytes(without_jfif, "d").image_hash


def _png_chunks(data: bytes) -> list[bytes]:
    """A PNG's chunks, each whole (length, type, data and CRC)."""
    chunks, i = [], 8
    while i < len(data):
        end = i + 12 + int.from_bytes(data[i : i + 4], "big")
        chunks.append(data[i:end])
        i = end
    return chunks


def test_png_exif_is_read_before_or_after_the_image_data_and_without_decoding_it() -> None:
    """A PNG's EXIF (its orientation, its date) is read wherever its eXIf chunk lies; when it lies before the
    image data, reading it leaves the picture undecoded."""
    from dedupe.fingerprint import _exif

    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[36867] = "2021:02:03 04:05:06"
    buf = io.BytesIO()
    draw_photo(11, (300, 200)).save(buf, "PNG", exif=exif)
    before = buf.getvalue()
    chunks = _png_chunks(before)
    assert [c[4:8] for c in chunks] == [b"IHDR", b"eXIf", b"IDAT", b"IEND"]
    after = before[:8] + b"".join([chunks[0], chunks[2], chunks[1], chunks[3]])
    im = open_image(before)
    assert _exif(before, im)[0x0112] == 6
    assert isinstance(im, ImageFile.ImageFile) and im.tile  # still to decode
    a, b = fingerprint_bytes(before, "x"), fingerprint_bytes(after, "x")
    assert a == b and (a.width, a.height, a.taken) == (200, 300, "2021-02-03T04:05:06")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_photo_whose_exif_block_is_damaged_is_read_as_one_without_exif(fmt: str) -> None:
    """A photo whose EXIF block cannot be read (a damaged TIFF header) has the fingerprint of the same photo
    without EXIF (upright, no date), but for its content hash: only the metadata is lost, never the photo skipped
    as corrupt. A JPEG with a resolution in its JFIF segment included, which Pillow does not read the EXIF for."""
    plain, damaged = damaged_exif_photo(fmt)
    read = fingerprint_bytes(damaged, "damaged")
    assert read == dataclasses.replace(fingerprint_bytes(plain, "plain"), content_hash="damaged")
    assert read.taken is None and (read.width, read.height) == (300, 200)


def test_calibration_copies_of_a_photo_whose_exif_block_is_damaged_are_those_of_it_without_exif() -> None:
    """`dedupe calibrate` edits a photo whose EXIF block is damaged as the scan reads it, as one without EXIF,
    rather than failing on it after the scan took it as a sample."""
    from dedupe.fingerprint import edited_copies

    plain, damaged = damaged_exif_photo("JPEG")
    assert edited_copies(damaged) == edited_copies(plain)


def test_an_animated_png_whose_image_data_is_damaged_is_skipped_as_corrupt() -> None:
    """An animated PNG whose first frame's image data is damaged (its CRC made again: zlib fails on it) is skipped
    as corrupt, never fingerprinted from the part decoded before the damage: reading its EXIF decodes it, and that
    failure is the picture's, not its EXIF's."""
    buf = io.BytesIO()
    draw_photo(16, (320, 240)).save(buf, "PNG", save_all=True, append_images=[draw_photo(17, (320, 240))])
    chunks = _png_chunks(buf.getvalue())
    first = next(i for i, c in enumerate(chunks) if c[4:8] == b"IDAT")
    body = bytearray(chunks[first][8:-4])
    body[len(body) // 2 : len(body) // 2 + 50] = bytes(50)
    chunks[first] = _chunk(b"IDAT", bytes(body))
    outcome = _outcome(buf.getvalue()[:8] + b"".join(chunks))
    assert isinstance(outcome, str) and outcome.startswith("corrupt image")


def _png(kind: str) -> bytes:
    im = draw_photo(12, (160, 120))
    params: dict[str, object] = {}
    if kind in ("RGBA", "LA"):
        im = transparent_logo(4, ring=False).resize((160, 120)).convert(kind)
    elif kind == "I;16":
        im = im.convert("L").point(lambda v: v * 257, "I").convert("I;16")
    elif kind == "RGB tRNS":
        params["transparency"] = im.getpixel((0, 0))
    elif kind == "P tRNS":
        im, params["transparency"] = im.quantize(64), 3
    elif kind != "RGB":
        im = im.convert(kind.split()[0])
    buf = io.BytesIO()
    im.save(buf, "PNG", **params)
    return buf.getvalue()


def _outcome(data: bytes) -> Fingerprint | str:
    try:
        return fingerprint_bytes(data, "x")
    except FileSkipped as e:
        return e.reason


@pytest.mark.parametrize("kind", ["RGB", "RGBA", "L", "LA", "1", "P", "P tRNS", "RGB tRNS", "I;16"])
def test_pngs_decoded_by_libspng_have_the_fingerprints_of_pillows_decoding(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind of PNG has the fingerprint that Pillow's decoder gives, whether libspng decodes it (8-bit grey
    or colour, with or without alpha) or Pillow does (the others); a damaged one fails the same way."""
    from dedupe import png

    pytest.importorskip("pyspng", reason="pyspng is not installed: Pillow decodes every PNG")
    data = _png(kind)
    cut = len(data) // 2
    damaged = [data[:cut], data[:cut] + bytes(len(data) - cut)]
    with_spng = [_outcome(d) for d in (data, *damaged)]
    assert isinstance(with_spng[0], Fingerprint)
    monkeypatch.setattr(png, "pyspng", None)
    assert with_spng == [_outcome(d) for d in (data, *damaged)]


@pytest.mark.parametrize("level", [0, 9])
def test_a_png_whose_image_data_rotted_is_skipped_as_pillow_skips_it(
    level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PNG with a changed byte inside its image data (its IDAT CRC and zlib's Adler-32 no longer match) is
    skipped as corrupt whether libspng is installed or not, never fingerprinted from the changed pixels."""
    from dedupe import png

    buf = io.BytesIO()
    draw_photo(12, (400, 300)).save(buf, "PNG", compress_level=level)
    rotted = bytearray(buf.getvalue())
    rotted[buf.getvalue().index(b"IDAT") + 5000] ^= 1
    with_spng = _outcome(bytes(rotted))
    assert isinstance(with_spng, str) and with_spng.startswith("corrupt image")
    monkeypatch.setattr(png, "pyspng", None)
    assert _outcome(bytes(rotted)) == with_spng


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


@pytest.mark.parametrize(
    "odd",
    [
        "tRNS after the image data",
        "short gAMA after the image data",
        "short pHYs after the image data",
        "empty sRGB after the image data",
        "one-frame APNG with a smaller frame",
        "private chunk cut short at the end",
    ],
)
def test_a_png_with_chunks_pillow_reads_otherwise_has_pillows_outcome(
    odd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PNG with chunks that Pillow's reader interprets and libspng passes over (after the image data, or APNG's
    frame size), or cut inside a chunk after its image data, has the fingerprint or skip reason that Pillow's
    decoding gives it, whether libspng is installed or not."""
    from dedupe import png

    pytest.importorskip("pyspng", reason="pyspng is not installed: Pillow decodes every PNG")
    im = draw_photo(13, (160, 120)).convert("L" if "tRNS" in odd else "RGB")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    ihdr, idat, iend = _png_chunks(buf.getvalue())
    histogram = im.histogram()
    commonest = histogram.index(max(histogram))  # of a grey picture: its commonest grey becomes transparent
    after = {
        "tRNS after the image data": _chunk(b"tRNS", commonest.to_bytes(2, "big")),
        "short gAMA after the image data": _chunk(b"gAMA", b"\x01"),
        "short pHYs after the image data": _chunk(b"pHYs", b"\x01"),
        "empty sRGB after the image data": _chunk(b"sRGB", b""),
    }
    if odd == "one-frame APNG with a smaller frame":
        frame = struct.pack(">IIIIIHHBB", 0, 80, 60, 0, 0, 1, 10, 0, 0)
        animation = _chunk(b"acTL", struct.pack(">II", 1, 0)) + _chunk(b"fcTL", frame)
        data = buf.getvalue()[:8] + ihdr + animation + idat + iend
    elif odd == "private chunk cut short at the end":
        data = buf.getvalue()[:8] + ihdr + idat + _chunk(b"prVt", bytes(100))[:50]
    else:
        data = buf.getvalue()[:8] + ihdr + idat + after[odd] + iend
    with_spng = _outcome(data)
    monkeypatch.setattr(png, "pyspng", None)
    assert with_spng == _outcome(data)


def test_same_pixels_in_other_uncompressed_formats_share_the_image_hash(tmp_path: Path) -> None:
    im = draw_photo(10, (300, 200))
    bmp = fingerprint_file(save(im, tmp_path / "a.bmp"))
    tiff = fingerprint_file(save(im, tmp_path / "a.tiff"))
    assert bmp.content_hash != tiff.content_hash and bmp.image_hash == tiff.image_hash


def test_a_file_too_large_for_any_photo_is_refused_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as f:
        f.write(b"\xff\xd8\xff\xe0" + b"\0" * 60)
        f.truncate((1 << 30) + 1)  # sparse: costs no disk
    assert "too large" in _skip_reason(huge).reason


def test_phash_has_the_same_bits_as_imagehash(tmp_path: Path) -> None:
    """Our pHash has ImageHash's bits. ImageHash's is computed in another process: it imports SciPy, whose own
    OpenBLAS threads would stay in this one and keep later scans from forking their workers."""
    from dedupe.fingerprint import phash

    pictures = [draw_photo(seed, (640, 480)) for seed in range(12)]
    pictures += [p.transpose(Image.Transpose.ROTATE_90) for p in pictures[:4]]
    for path in sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))[:5]:  # real photographs, where installed
        with Image.open(path) as photo:
            pictures.append(photo.convert("RGB").resize((800, 500)))
    paths = [str(save(im, tmp_path / f"{k}.png")) for k, im in enumerate(pictures)]
    script = (
        "import sys, imagehash; from PIL import Image; "
        "print(*(imagehash.phash(Image.open(p), hash_size=8) for p in sys.argv[1:]))"
    )
    theirs = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, check=True)
    assert [phash(im) for im in pictures] == [int(h, 16) for h in theirs.stdout.split()]
    assert len(theirs.stdout.split()) == len(pictures) >= 16


def test_dhash_has_the_same_bits_as_imagehash() -> None:
    """Our dHash has ImageHash's bits (ImageHash's dhash imports no SciPy, so it runs here)."""
    import imagehash

    from dedupe.fingerprint import _dhash, working_image

    pictures = [working_image(draw_photo(seed, (640, 480))) for seed in range(12)]
    for path in sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))[:5]:  # real photographs, where installed
        with Image.open(path) as photo:
            pictures.append(working_image(photo.convert("RGB")))
    theirs = [int(str(imagehash.dhash(im, hash_size=8)), 16) for im in pictures]
    assert [_dhash(im) for im in pictures] == theirs
    assert len(set(theirs)) >= 12


def test_version_names_the_imagehash_in_use() -> None:
    """The fingerprint version, kept in models without Pillow, names the ImageHash that fingerprint.py imports."""
    import imagehash

    from dedupe import fingerprint, models

    assert fingerprint.VERSION is models.VERSION
    assert models.VERSION.endswith(f"imagehash={imagehash.__version__}")


@pytest.mark.parametrize(
    ("distribution", "module"),
    [
        ("ImageHash", "imagehash"),
        ("Pillow", "PIL"),
        ("pillow-heif", "pillow_heif"),
        ("numpy", "numpy"),
        ("pybktree", "pybktree"),  # a module, not a package
    ],
)
def test_installed_version_is_what_importlib_metadata_reads(distribution: str, module: str) -> None:
    """The version read beside a module without importlib.metadata is the one importlib.metadata reads."""
    from importlib.metadata import version

    from dedupe import models

    assert models.installed_version(distribution, module) == version(distribution)


def test_installed_version_of_what_is_not_installed_is_an_error() -> None:
    """A distribution that is not installed is reported as importlib.metadata reports it."""
    from importlib.metadata import PackageNotFoundError

    from dedupe import models

    with pytest.raises(PackageNotFoundError):
        models.installed_version("no-such-distribution-here", "no_such_module_here")


def test_files_with_several_frames_are_the_same_image_only_with_the_same_bytes(tmp_path: Path) -> None:
    """Two animations (or multi-page TIFFs) sharing their first frame are never 'the same image': the perceptual
    hashes see the first frame only, and a copy must not take unique frames with it."""
    first = draw_photo(7, (320, 240))
    for ext in ("gif", "tiff"):
        a = tmp_path / f"a.{ext}"
        b = tmp_path / f"b.{ext}"
        first.save(a, save_all=True, append_images=[draw_photo(8, (320, 240))])
        first.save(b, save_all=True, append_images=[draw_photo(9, (320, 240))])
        fa, fb = fingerprint_file(a), fingerprint_file(b)
        assert fa.phash == fb.phash  # the same first frame
        assert fa.image_hash != fb.image_hash
        c = tmp_path / f"c.{ext}"
        c.write_bytes(a.read_bytes())
        assert fingerprint_file(c).image_hash == fa.image_hash


def test_pillow_heif_is_loaded_by_the_first_heic_file(tmp_path: Path) -> None:
    """pillow-heif is not loaded with the fingerprint module, only once a HEIC file is met; that file is then
    read, in a process that never loaded it before."""
    heic = save(draw_photo(3, (320, 240)), tmp_path / "a.heic", quality=90)
    jpeg = save(draw_photo(3, (320, 240)), tmp_path / "b.jpg")
    code = (
        "import sys; from dedupe import fingerprint; loaded = 'pillow_heif' in sys.modules; "
        "print(loaded, fingerprint.fingerprint_file(sys.argv[1]).format, 'pillow_heif' in sys.modules, "
        "fingerprint.fingerprint_file(sys.argv[1]).phash, fingerprint.fingerprint_file(sys.argv[2]).phash)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(heic), str(jpeg)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        timeout=120,
    )
    before, fmt, after, heic_phash, jpeg_phash = r.stdout.split()
    assert (before, fmt, after) == ("False", "HEIF", "True")
    assert bin(int(heic_phash) ^ int(jpeg_phash)).count("1") <= 4


def test_without_pillow_heif_heic_files_are_skipped_with_the_reason(tmp_path: Path) -> None:
    """A broken install without pillow-heif still scans: HEIC files are skipped and say what to install."""
    save(draw_photo(3, (320, 240)), tmp_path / "p" / "a.heic", quality=90)
    save(draw_photo(3, (320, 240)), tmp_path / "p" / "b.jpg")
    code = "import sys; sys.modules['pillow_heif'] = None; from dedupe.cli import main; main()"
    args = ["scan", str(tmp_path / "p"), "--db", str(tmp_path / "s.sqlite"), "-q", "--format", "json"]
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    skipped = json.loads(r.stdout)["skipped"]
    assert [s["path"] for s in skipped] == [str(tmp_path / "p" / "a.heic")]
    assert "pip install pillow-heif" in skipped[0]["reason"]
