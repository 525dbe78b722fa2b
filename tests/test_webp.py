"""WebP decoded at a reduced size by libwebp (dedupe.webp), against Pillow's whole decode of the same files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dedupe import fingerprint, webp
from dedupe.errors import FileSkipped
from dedupe.fingerprint import fingerprint_file, hamming
from tests.conftest import draw_photo, save


def webp_bytes(im: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, format="WEBP", **options)
    return out.getvalue()


def test_the_library_loads_here() -> None:
    # Pillow's wheel brings libwebp: without it every WebP would silently take the slow path.
    assert webp._library() is not None


def test_a_reduced_decode_shows_what_pillow_shows() -> None:
    im = draw_photo(4, (1600, 1200))
    decoded = webp.decode_reduced(webp_bytes(im, quality=90), 400, 300)
    assert decoded is not None
    mode, pixels = decoded
    assert mode == "RGB" and len(pixels) == 400 * 300 * 3
    ours = np.frombuffer(pixels, dtype=np.uint8).reshape(300, 400, 3).astype(int)
    pillows = np.asarray(Image.open(io.BytesIO(webp_bytes(im, quality=90))).reduce(4), dtype=int)
    assert np.abs(ours - pillows).mean() < 2.0


def test_transparency_animation_and_damage() -> None:
    im = draw_photo(5, (800, 600)).convert("RGBA")
    im.putalpha(Image.linear_gradient("L").resize((800, 600)))
    decoded = webp.decode_reduced(webp_bytes(im, quality=90), 200, 150)
    assert decoded is not None and decoded[0] == "RGBA" and len(decoded[1]) == 200 * 150 * 4
    frames = [draw_photo(s, (400, 300)) for s in (1, 2)]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    assert webp.decode_reduced(out.getvalue(), 100, 75) is None  # animations: Pillow's first frame
    data = webp_bytes(draw_photo(6, (800, 600)), quality=90)
    assert webp.decode_reduced(data[: len(data) // 2], 200, 150) is None  # truncated: Pillow says why
    assert webp.decode_reduced(b"RIFF\x00\x00\x00\x00WEBPVP8 garbage", 200, 150) is None
    assert webp.decode_reduced(data, 1600, 1200) is None  # never enlarged


def test_fingerprints_through_either_decoder_agree(tmp_path: Path) -> None:
    for seed in range(6):
        im = draw_photo(seed, (2400, 1800))
        path = save(im, tmp_path / f"{seed}.webp", quality=85)
        fast = fingerprint_file(path)
        whole = Image.open(path)
        whole.load()
        slow = fingerprint._perceptual(fingerprint.working_image(whole))
        assert hamming(fast.phash, slow[0]) <= 4 and hamming(fast.dhash, slow[1]) <= 6, seed
        png = fingerprint_file(save(im, tmp_path / f"{seed}.png"))
        assert hamming(fast.phash, png.phash) <= 4, seed


def test_a_truncated_webp_is_still_reported_as_truncated(tmp_path: Path) -> None:
    data = webp_bytes(draw_photo(7, (1600, 1200)), quality=90)
    (tmp_path / "cut.webp").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(FileSkipped) as caught:
        fingerprint_file(tmp_path / "cut.webp")
    assert "truncated" in caught.value.reason or "corrupt" in caught.value.reason
