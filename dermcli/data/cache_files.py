"""`dermcli cache`: what the cache folder holds, by kind, and a clean-up that is safe beside running jobs.

Removing is safe while another process reads: a reader holds its file open (or memory-mapped), and on POSIX an
unlinked file lives on until it is closed. A file being written is a hidden temporary (core.files.atomic_path)
renamed into place when whole; clean-up skips those, so it never pulls a file from under a writer.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from dermcli.core.errors import DermcliError
from dermcli.data.cache import cache_dir

# kind -> how its files are named (the caches' writers: data.cache, training.features, training.distill, inference.loading)
KINDS = {"images": "images_*.npy", "features": "features_*.npy", "teacher": "teacher_*.npy", "onnx": "onnx/*"}
DESCRIPTIONS = {"images": "decoded images", "features": "frozen-layer features", "teacher": "teacher logits", "onnx": "ONNX graphs"}


@dataclass
class Usage:
    kind: str
    files: int
    bytes: int


def cached_files(kind: str) -> list[Path]:
    if kind not in KINDS:
        raise DermcliError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    return sorted(p for p in cache_dir().glob(KINDS[kind]) if p.is_file() and not p.name.startswith("."))


def usage() -> list[Usage]:
    """Files and bytes of each kind in the cache folder."""
    return [Usage(kind, len(files), sum(p.stat().st_size for p in files)) for kind in KINDS for files in [cached_files(kind)]]


def clean(kinds: list[str] | None = None, older_than_days: float | None = None, now: float | None = None) -> Usage:
    """Remove the cached files of `kinds` (default all) not used for `older_than_days` (by access, else modification
    time; default: any age); returns how many files and bytes went."""
    if older_than_days is not None and older_than_days < 0:
        raise DermcliError(f"--older-than {older_than_days}: must be 0 or more days")
    cutoff = (now or time.time()) - (older_than_days or 0) * 86400
    removed = Usage(",".join(kinds or KINDS), 0, 0)
    for kind in kinds or list(KINDS):
        for path in cached_files(kind):
            try:
                stat = path.stat()
                if older_than_days is not None and max(stat.st_atime, stat.st_mtime) > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:  # another clean-up took it first
                continue
            removed.files, removed.bytes = removed.files + 1, removed.bytes + stat.st_size
    return removed
