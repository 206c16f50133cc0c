"""Decode any image a user may have into the same RGB uint8 array at train, eval and predict time."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from dermcli.errors import DermcliError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Transparent pixels are composited onto black, the colour of a dermoscope's vignette.
ALPHA_BACKGROUND = (0, 0, 0)
# Phone and scanner images reach 12000x9000 (108 MP); above this we refuse as a decompression bomb.
Image.MAX_IMAGE_PIXELS = 250_000_000
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(DermcliError):
    pass


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


def load_rgb(path: Path, size: int) -> np.ndarray:
    """Return the image at `path` upright, in RGB, resized to (size, size, 3) uint8.

    Raises ImageError naming the file when it is not a complete, readable image.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            # JPEG decoders can scale by 1/2..1/8 while decoding: huge photos never fill memory.
            img.draft("RGB", (size * 2, size * 2))
            img = ImageOps.exif_transpose(img)
            img.load()
            rgb = _to_rgb(img).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: too many pixels to decode safely") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable image ({e})") from None
