"""Atomic writes: a crash mid-write leaves the previous good file, never a half-written one."""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from dermcli.core.errors import DermcliError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _fsync(path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable; some filesystems (and Windows) cannot open or sync a folder."""
    try:
        _fsync(path, os.O_RDONLY)
    except OSError:
        pass


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path in the same folder; rename it onto `path` only if the block succeeds.

    A symlink is followed: its target is replaced, so the link stays a link to the new content. The file
    is synced before the rename and its folder after, so a power cut leaves the old or the new file whole."""
    path = Path(os.path.realpath(path))  # realpath, unlike resolve(), does not raise on a symlink loop
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise DermcliError(f"cannot write to {path.parent}: {e.strerror or e}") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results should be as readable as any other
    try:
        yield Path(tmp)
        _fsync(tmp, os.O_RDWR)  # read-write: Windows cannot sync a read-only descriptor
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` if needed and check we can write there, before any long work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DermcliError(f"cannot create output folder {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise DermcliError(f"output folder {path} is not writable")
    return path


def ensure_writable_file(path: str | Path, option: str, example_name: str) -> Path:
    """Check, before any long work, that `path` can become a file: not a folder, and its folder writable."""
    folder_named = str(path).endswith(("/", os.sep))  # a trailing slash names a folder, even one not made yet
    path = Path(path)
    if path.is_dir() or folder_named:
        raise DermcliError(f"{option} {path}: is a folder; give a file name, e.g. {path / example_name}")
    ensure_writable_dir(path.parent)
    return path
