"""Fixtures: generated data sets, a small real HAM10000 subset, and a pre-seeded $TORCH_HOME."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermcli.core.labels import CLASSES

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = Path(os.environ.get("DERMCLI_TEST_DATA", REPO.parent / "shared" / "data" / "ham10000"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own decoded-image cache, never the user's."""
    monkeypatch.setenv("DERMCLI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def write_image(path: Path, seed: int, size=(40, 30), fmt=None, tint=None) -> Path:
    """Noise; `tint` (an RGB colour) mixes in half of it, so that images of one tint can be told from others."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    if tint is not None:
        pixels = ((pixels.astype(np.uint16) + np.asarray(tint, dtype=np.uint16)) // 2).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
    return path


def make_ham(root: Path, lesions_per_class: int = 3, images_per_lesion: int = 2, tinted: bool = False) -> Path:
    """A generated HAM10000-layout folder: metadata CSV plus JPEGs split over two part folders. Its images are
    noise, so a model learns nothing from them and its validation NLL barely depends on the temperature; `tinted`
    gives each class a colour of its own, for tests that need a model to learn something."""
    rows, n = [], 0
    for k, dx in enumerate(CLASSES):
        for lesion in range(lesions_per_class):
            for _ in range(images_per_lesion):
                image_id = f"ISIC_{n:07d}"
                write_image(root / f"HAM10000_images_part_{1 + n % 2}" / f"{image_id}.jpg", n,
                            tint=(255 * (k & 1), 255 * (k >> 1 & 1), 255 * (k >> 2 & 1)) if tinted else None)
                rows.append({"lesion_id": f"HAM_{dx}_{lesion}", "image_id": image_id, "dx": dx, "dx_type": "histo",
                             "age": 50.0, "sex": "male", "localization": "back"})
                n += 1
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


@pytest.fixture
def ham_dir(tmp_path) -> Path:
    return make_ham(tmp_path / "ham")


@pytest.fixture(scope="session")
def real_subset(tmp_path_factory) -> Path:
    """A few real HAM10000 lesions per class (all images of each), in Kaggle's layout."""
    if not (REAL_DATA / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real HAM10000 not found at {REAL_DATA}")
    meta = pd.read_csv(REAL_DATA / "HAM10000_metadata.csv")
    lesions = meta.groupby("dx")["lesion_id"].apply(lambda s: list(dict.fromkeys(s))[:12]).explode()
    subset = meta[meta["lesion_id"].isin(set(lesions))]
    root = tmp_path_factory.mktemp("ham_subset")
    index = {p.stem: p for p in REAL_DATA.rglob("*.jpg")}
    for i, image_id in enumerate(subset["image_id"]):
        target = root / f"HAM10000_images_part_{1 + i % 2}" / f"{image_id}.jpg"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(index[image_id], target)
    subset.to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory) -> Path:
    """$TORCH_HOME holding a generated stand-in for torchvision's IMAGENET1K_V2 ResNet50 file."""
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    home = tmp_path_factory.mktemp("torch_home")
    target = home / "hub" / "checkpoints" / Path(ResNet50_Weights.IMAGENET1K_V2.url).name
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(resnet50(weights=None).state_dict(), target)
    return home


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real console script, as a user runs it."""
    exe = shutil.which("dermcli") or sys.executable
    cmd = [exe, *args] if exe != sys.executable else [sys.executable, "-m", "dermcli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=900)
