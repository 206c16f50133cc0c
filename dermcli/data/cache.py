"""Decode once: images resized to the model's input size, kept as a memory-mappable uint8 .npy.

The cache key hashes every file's path, size, mtime, inode and ctime plus the target size, the resolution larger
images are first brought down to (load_rgb) and the decoder's version, so a changed, added or removed image (or
another size or resolution, or a new decoder) builds a new cache instead of reusing a stale one. Inode and ctime
catch a same-size replacement whose mtime was kept (`cp -p`, `rsync -a`, `tar x`, os.utime): a rename-over gets a
new inode, an in-place rewrite a new ctime, and neither can be set back from user space.
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dermcli.core.errors import DermcliError
from dermcli.core.files import atomic_path
from dermcli.data.images import DECODE_VERSION, load_rgb


def cache_dir() -> Path:
    if os.environ.get("DERMCLI_CACHE_DIR"):
        return Path(os.environ["DERMCLI_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dermcli"


def cache_key(paths: list[str], size: int, resolution: int | None = None) -> str:
    # without a resolution, the key caches had before it existed: they hold the same decodes
    stated = f"resolution={resolution}\t" if resolution else ""
    digest = hashlib.sha256(f"size={size}\t{stated}decode={DECODE_VERSION}\n".encode())
    for p in paths:
        st = os.stat(p)
        digest.update(f"{os.path.abspath(p)}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}\t{st.st_ctime_ns}\n".encode())
    return digest.hexdigest()[:24]


def decode_images(paths: list[str], size: int, track=None, resolution: int | None = None) -> np.ndarray:
    """(N, size, size, 3) uint8 for `paths`, in order (load_rgb). Threads overlap JPEG decoding (PIL drops the GIL)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = pool.map(lambda p: load_rgb(p, size, resolution), paths)
        for i, img in enumerate(track(decoded, f"decoding {len(paths)} images", len(paths)) if track else decoded):
            out[i] = img
    return out


def cached_images(paths: list[str], size: int, track=None, use_cache: bool = True, resolution: int | None = None) -> np.ndarray:
    if not use_cache:
        return decode_images(paths, size, track, resolution)
    path = cache_dir() / f"images_{size}px_{cache_key(paths, size, resolution)}.npy"
    if path.is_file():
        try:
            cached = np.load(path, mmap_mode="r")
            if cached.shape == (len(paths), size, size, 3) and cached.dtype == np.uint8:
                return cached
        except (OSError, ValueError):
            pass  # unreadable cache: rebuild below
    images = decode_images(paths, size, track, resolution)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, images)
    except (DermcliError, OSError):
        pass  # a cache we cannot write only costs speed
    return images
