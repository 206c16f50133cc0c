"""`dermcli cache`: sizes by kind, and a clean-up by kind and age that leaves writers' temporaries and readers alone."""

import os
import time

import numpy as np
import pytest

from dermcli.data.cache import cache_dir
from dermcli.data.cache_files import clean, usage
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache folder of this test's own: the session's holds other tests' files."""
    monkeypatch.setenv("DERMCLI_CACHE_DIR", str(tmp_path / "cache"))


def fill(days_old: dict[str, float]) -> None:
    root = cache_dir()
    (root / "onnx").mkdir(parents=True, exist_ok=True)
    for name, age in days_old.items():
        path = root / name
        np.save(path, np.zeros(1000, dtype=np.uint8)) if name.endswith(".npy") else path.write_bytes(b"x" * 1000)
        stamp = time.time() - age * 86400
        os.utime(path, (stamp, stamp))


def test_usage_counts_each_kind_and_clean_removes_by_kind_and_age():
    fill({"images_224px_a.npy": 10, "images_28px_b.npy": 0, "features_c_plain.npy": 10, "onnx/d.onnx": 10,
          ".images_224px_e.npy.x.tmp": 10})  # a writer's temporary: never counted or removed
    sizes = {u.kind: (u.files, u.bytes > 0) for u in usage()}
    assert sizes == {"images": (2, True), "features": (1, True), "teacher": (0, False), "onnx": (1, True)}
    removed = clean(["images"], older_than_days=5)
    assert removed.files == 1 and not (cache_dir() / "images_224px_a.npy").exists() and (cache_dir() / "images_28px_b.npy").exists()
    assert clean(None).files == 3  # the rest, any age
    assert (cache_dir() / ".images_224px_e.npy.x.tmp").exists()


def test_a_reader_keeps_reading_a_cache_file_removed_under_it():
    fill({"images_224px_r.npy": 0})
    mapped = np.load(cache_dir() / "images_224px_r.npy", mmap_mode="r")
    clean(["images"])
    assert not (cache_dir() / "images_224px_r.npy").exists() and int(mapped.sum()) == 0 and len(mapped) == 1000


def test_the_cache_command_shows_sizes_and_refuses_an_unknown_kind():
    fill({"teacher_t.npy": 0})
    env = {"DERMCLI_CACHE_DIR": str(cache_dir())}
    shown = run_cli("cache", env=env)
    assert shown.returncode == 0 and "teacher" in shown.stdout and str(cache_dir()) in shown.stdout
    bad = run_cli("cache", "clean", "--kind", "zzz", env=env)
    assert bad.returncode != 0 and "--kind 'zzz' is not one of" in bad.stderr and "Traceback" not in bad.stderr
    assert run_cli("cache", "clean", env=env).returncode == 0 and not (cache_dir() / "teacher_t.npy").exists()
