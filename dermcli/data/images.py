"""Decode any image a user may have into the same RGB uint8 array at train, eval and predict time."""

import io
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from dermcli.core.errors import DermcliError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Transparent pixels are composited onto black, the colour of a dermoscope's vignette.
ALPHA_BACKGROUND = (0, 0, 0)
# Phone and scanner images reach 12000x9000 (108 MP); above this we refuse as a decompression bomb.
Image.MAX_IMAGE_PIXELS = 250_000_000
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(DermcliError):
    pass


class TooManyPixels(ImageError):
    """An image whose header promises more pixels than may be decoded: refused before anything is allocated for them."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float grayscale: scale the full range of the type to 8 bits.
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


# Part of every decoded-image cache's key: bump it whenever load_rgb's output changes for the same file.
DECODE_VERSION = 2


@contextmanager
def _opened(path: Path, data: bytes | None = None):
    """The image at `path`, or in `data` (bytes held in memory, which `path` only names), open (nothing decoded
    yet); any failure reading it raises ImageError naming the file."""
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            yield img
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        raise TooManyPixels(f"{path}: too many pixels to decode safely") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable image ({e})") from None


def image_sizes(paths: list) -> list[tuple[int, int]]:
    """(width, height) of each image as stored, read from its header: nothing is decoded."""
    sizes = []
    for path in paths:
        with _opened(Path(path)) as img:
            sizes.append(img.size)
    return sizes


def training_resolution(paths: list) -> dict:
    """What a checkpoint records of its training images: their median short side and median (width, height)."""
    sizes = np.array(image_sizes(paths))
    return {"short_side": round(float(np.median(sizes.min(axis=1)))), "size": [round(float(v)) for v in np.median(sizes, axis=0)]}


def reduced_size(size: tuple[int, int], short_side: int) -> tuple[int, int] | None:
    """`size` scaled so that its short side is `short_side`, aspect ratio kept; None when it is not larger."""
    scale = short_side / min(size)
    return None if scale >= 1 else (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def decode_rgb(path: Path, size: int, resolution: int | None = None, data: bytes | None = None,
               max_pixels: int | None = None) -> tuple[np.ndarray, tuple | None]:
    """load_rgb's image, and ((width, height) stored, (width, height) brought down to) when it was brought down.
    With `data`, the image is those bytes (an upload) and `path` only names it; with `max_pixels`, an image whose
    header says more raises TooManyPixels before it is decoded."""
    path = Path(path)
    with _opened(path, data) as img:
        stored = img.size
        if max_pixels and stored[0] * stored[1] > max_pixels:
            raise TooManyPixels(f"{path}: {stored[0]}x{stored[1]} pixels, more than the {max_pixels:,} allowed")
        reduced = reduced_size(stored, resolution) if resolution else None
        # JPEG decoders can scale by 1/2..1/8 while decoding: huge photos never fill memory. Twice the size that the
        # next filter makes leaves that filter the detail to average.
        target = reduced or (size, size)
        img.draft("RGB", (target[0] * 2, target[1] * 2))
        if reduced and img.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):  # exif_transpose turns these a quarter
            stored, reduced = stored[::-1], reduced[::-1]
        img = ImageOps.exif_transpose(img)
        img.load()
        img = _to_rgb(img)
        if reduced:  # an area average: the lesion as a camera at the training images' resolution records it
            img = img.resize(reduced, Image.Resampling.BOX)
        rgb = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8).copy(), ((stored, reduced) if reduced else None)


def load_rgb(path: Path, size: int, resolution: int | None = None) -> np.ndarray:
    """Return the image at `path` upright, in RGB, resized to (size, size, 3) uint8. With `resolution`, an image
    whose short side is larger is first brought down (box filter, aspect ratio kept) to that short side, the
    training images' resolution; smaller ones are untouched.

    Raises ImageError naming the file when it is not a complete, readable image.
    """
    return decode_rgb(path, size, resolution)[0]
