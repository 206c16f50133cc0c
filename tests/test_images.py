import io

import numpy as np
import pytest
from PIL import Image

from dermcli.data.images import ImageError, load_rgb


def rgb(seed=0, size=(64, 48)):
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def test_cmyk_jpeg_matches_its_rgb_conversion(tmp_path):
    img = Image.fromarray(rgb()).convert("CMYK")
    img.save(tmp_path / "c.jpg")
    out = load_rgb(tmp_path / "c.jpg", 28)
    expected = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB").resize((28, 28), Image.Resampling.BILINEAR))
    assert out.shape == (28, 28, 3) and np.array_equal(out, expected)


def test_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[..., 0], rgba[:, :10, 3] = 255, 255  # left half opaque red, right half transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png", 20)
    assert out[5, 2].tolist() == [255, 0, 0] and out[5, 17].tolist() == [0, 0, 0]


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (16, 16), 1)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    assert load_rgb(tmp_path / "p.png", 16)[8, 8].tolist() == [0, 255, 0]


def test_16_bit_grayscale_uses_the_full_range(tmp_path):
    gray = np.full((10, 10), 65535, dtype=np.uint16)
    gray[:, :5] = 32768
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png", 10)
    assert out[0, 9].tolist() == [255, 255, 255] and out[0, 0].tolist() == [128, 128, 128]


def test_exif_rotated_photo_is_turned_upright(tmp_path):
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(wide).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_rgb(tmp_path / "r.jpg", 40)
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # upright: white half on top


def test_huge_jpeg_is_downscaled_while_decoding(tmp_path):
    Image.new("RGB", (12000, 9000), (200, 100, 50)).save(tmp_path / "big.jpg", quality=50)
    out = load_rgb(tmp_path / "big.jpg", 224)
    assert out.shape == (224, 224, 3) and abs(int(out[100, 100, 0]) - 200) < 5


def test_non_ascii_name(tmp_path):
    Image.fromarray(rgb()).save(tmp_path / "läsion_日本.png")
    assert load_rgb(tmp_path / "läsion_日本.png", 28).shape == (28, 28, 3)


def truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.fromarray(rgb(size=(200, 150))).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[:2000])


@pytest.mark.parametrize("name, write, message", [
    ("empty.jpg", lambda p: p.write_bytes(b""), "not an image"),
    ("text.jpg", lambda p: p.write_text("just some notes"), "not an image"),
    ("cut.jpg", truncated_jpeg, "unreadable image"),
    ("noise.png", lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)), "not an image"),
    ("absent.jpg", lambda p: None, "no such file"),
])
def test_bad_files_are_refused_naming_the_file(tmp_path, name, write, message):
    write(tmp_path / name)
    with pytest.raises(ImageError, match=f"{name}: {message}"):
        load_rgb(tmp_path / name, 28)
