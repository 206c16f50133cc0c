"""Issue #20, bugs 7 and 8: caches keyed on a file's identity, not just its size and mtime; Precision on a
device name; atomic writes through symlinks, synced; a temperature fit that does not clamp silently."""

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import dermcli.data.cache as cache_module
from dermcli.core.files import atomic_path, write_text
from dermcli.data.cache import cache_key, cached_images, decode_images
from dermcli.evaluation.metrics import fit_temperature, nll, temperature_note
from dermcli.inference.loading import checkpoint_digest
from dermcli.models.outputs import probabilities, softmax
from dermcli.runtime.devices import Precision
from dermcli.training.distill import teacher_cache_key
from tests.conftest import write_image

HOW = ["rewritten in place", "renamed over"]  # cp -p keeps the inode; rsync -a and tar x rename a new file over it


def replace_keeping_size_and_mtime(path: Path, content: bytes, how: str) -> None:
    """Put `content` (as long as the old content) at `path` and set its mtime back, as cp -p / rsync -a do.
    Skips the test on a filesystem whose ctime is too coarse to tell the two files apart."""
    before = os.stat(path)
    assert len(content) == before.st_size
    if how == "renamed over":
        fresh = path.with_name(path.name + ".new")
        fresh.write_bytes(content)
        os.replace(fresh, path)
    else:
        path.write_bytes(content)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns):
        pytest.skip("this filesystem's ctime is too coarse to see the replacement")


def bmp_bytes(tmp_path: Path, seed: int) -> bytes:
    """An uncompressed image: every seed gives a file of the same size."""
    return write_image(tmp_path / f"source_{seed}.bmp", seed, fmt="BMP").read_bytes()


@pytest.mark.parametrize("how", HOW)
def test_decoded_image_cache_serves_the_new_pixels_of_a_same_size_same_mtime_replacement(tmp_path, how):
    paths = [str(write_image(tmp_path / f"{i}.bmp", i, fmt="BMP")) for i in range(2)]
    old = cached_images(paths, 16)
    replace_keeping_size_and_mtime(Path(paths[1]), bmp_bytes(tmp_path, 99), how)
    new = cached_images(paths, 16)
    assert np.array_equal(new, decode_images(paths, 16)) and not np.array_equal(new[1], old[1])


def test_a_new_decoder_version_invalidates_the_decoded_image_cache(tmp_path, monkeypatch):
    paths = [str(write_image(tmp_path / "0.png", 0, fmt="PNG"))]
    key = cache_key(paths, 16)
    monkeypatch.setattr(cache_module, "DECODE_VERSION", cache_module.DECODE_VERSION + 1)
    assert cache_key(paths, 16) != key


@pytest.mark.parametrize("how", HOW)
def test_checkpoint_digest_sees_a_same_size_same_mtime_replacement(tmp_path, how):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"a" * 1000)
    old = checkpoint_digest(weights)
    assert checkpoint_digest(weights) == old  # the memo answers
    replace_keeping_size_and_mtime(weights, b"b" * 1000, how)
    new = checkpoint_digest(weights)
    assert new != old and new == checkpoint_digest(weights)


@pytest.mark.parametrize("how", HOW)
def test_teacher_logits_cache_key_changes_when_an_image_is_replaced_keeping_size_and_mtime(tmp_path, how):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"teacher weights")  # only hashed here
    paths = [str(write_image(tmp_path / f"{i}.bmp", i, fmt="BMP")) for i in range(2)]
    key = teacher_cache_key(teacher, paths, "dihedral", 224)
    assert teacher_cache_key(teacher, paths, "dihedral", 224) == key
    assert teacher_cache_key(teacher, paths, "flips", 224) != key and teacher_cache_key(teacher, paths, "dihedral", 96) != key
    replace_keeping_size_and_mtime(Path(paths[0]), bmp_bytes(tmp_path, 99), how)
    assert teacher_cache_key(teacher, paths, "dihedral", 224) != key


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_precision_takes_a_device_name(amp):
    precision = Precision(amp, "cpu")
    assert precision.device.type == "cpu" and not precision.scaler.is_enabled()


def linked_file(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "real" / "config.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "config.json"
    link.symlink_to(target)
    return link, target


def temp_files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.glob(".*.tmp")]


def test_an_atomic_write_through_a_symlink_keeps_the_link_and_updates_its_target(tmp_path):
    link, target = linked_file(tmp_path)
    write_text(link, "new")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_text() == "new" and link.read_text() == "new"
    assert not temp_files(tmp_path, target.parent)


def test_a_failed_atomic_write_leaves_the_old_file_the_link_and_no_temporary_file(tmp_path):
    link, target = linked_file(tmp_path)
    with pytest.raises(ValueError), atomic_path(link) as tmp:
        tmp.write_text("half")
        raise ValueError
    assert link.is_symlink() and target.read_text() == "old"
    assert not temp_files(tmp_path, target.parent)


def test_an_atomic_write_syncs_the_file_before_the_rename_and_its_folder_after(tmp_path, monkeypatch):
    path = tmp_path / "result.txt"
    path.write_text("old")
    synced, real_fsync = [], os.fsync

    def recording_fsync(fd):
        synced.append(("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", path.read_text()))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_text(path, "new")
    assert synced == [("file", "old"), ("folder", "new")]


def calibrated_logits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true class distribution (so the best temperature is 1), and labels drawn from it."""
    rng = np.random.default_rng(seed)
    logits = 2 * rng.normal(size=(n, 7))
    cumulative = softmax(logits).cumsum(axis=1)
    y = np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), 6)
    return logits, y


def old_grid_temperature(views: list[np.ndarray], y: np.ndarray) -> float:
    """Today's fit before the fix: the best of 161 points over 0.2-5."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 161))
    return float(grid[np.argmin([nll(y, np.mean([probabilities(v, t) for v in views], axis=0)) for t in grid])])


def test_a_temperature_below_the_old_range_is_found_not_clamped():
    logits, y = calibrated_logits(20000)
    best = fit_temperature(logits, y)  # the finite sample's own optimum, close to 1
    assert fit_temperature(0.1 * logits, y) == pytest.approx(0.1 * best, rel=1e-3)
    assert fit_temperature(0.1 * logits, y) == pytest.approx(0.1, rel=0.05)


def test_an_ordinary_temperature_matches_the_old_grid_within_one_step():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 2000)
    logits = 4 * (rng.normal(size=(2000, 7)) + 2.0 * np.eye(7)[y])
    views = [logits, logits + rng.normal(size=logits.shape)]
    step = np.log(5.0 / 0.2) / 160
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for given in (logits, views):
            listed = given if isinstance(given, list) else [given]
            assert abs(np.log(fit_temperature(given, y)) - np.log(old_grid_temperature(listed, y))) <= step


def test_a_temperature_at_the_edge_of_the_search_range_is_noted():
    y = np.random.default_rng(0).integers(0, 7, 500)
    t = fit_temperature(5 * np.eye(7)[y], y)  # separable: the NLL keeps falling as T goes to 0
    assert t == pytest.approx(0.01, rel=1e-3)
    assert "at the edge of its search range" in temperature_note(t) and temperature_note(1.3) is None
