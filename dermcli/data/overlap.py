"""Is an evaluation set free of the model's own training and validation images?

ISIC 2019 and other public sets contain HAM10000's images, some under other names. So a set is compared with
the checkpoint's split by image id and by a digest of the decoded pixels at the model's input size (what the
model saw), which a renamed or re-encoded-losslessly copy shares.
"""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.data.cache import cached_images
from dermcli.data.split import save_split

SEEN = ("train", "val")  # what a model has learnt from or been chosen on


def digest_column(size: int) -> str:
    return f"pixels_{size}px"


def pixel_digests(images: np.ndarray) -> list[str]:
    """A short sha256 of each decoded uint8 image."""
    return [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:20] for image in images]


def with_digests(split: pd.DataFrame, digests: dict[str, str], size: int) -> pd.DataFrame:
    """`split` with the pixel digest of each image id in `digests` (decoded at `size`) in its digest column."""
    return split.assign(**{digest_column(size): split["image_id"].map(digests).fillna("")})


def seen_split(table: pd.DataFrame, images: np.ndarray, split: pd.DataFrame, size: int) -> pd.Series:
    """For each row of `table`: "train" or "val" when the checkpoint's `split` holds that image (same id, or the
    same pixels where the split records digests at `size`), else ""."""
    seen = split[split["split"].isin(SEEN)]
    where = table["image_id"].map(dict(zip(seen["image_id"], seen["split"])))
    column = digest_column(size)
    if column in seen.columns and len(table):
        known = seen[seen[column] != ""]
        by_pixels = pd.Series(pixel_digests(images), index=table.index).map(dict(zip(known[column], known["split"])))
        where = where.fillna(by_pixels)
    return where.fillna("")


def record_digests(path: Path, split: pd.DataFrame, parts: list[pd.DataFrame], size: int, track=None) -> None:
    """Add the digests of the images of `parts` (the run's training and validation rows, each decoded as training
    decodes it, so the cache serves them) to the split file at `path`, once: a later eval of another data set
    checks its pixels against them."""
    if digest_column(size) not in split.columns:
        digests = {i: d for rows in parts for i, d in zip(rows["image_id"], pixel_digests(cached_images(rows["path"].tolist(), size, track)))}
        save_split(with_digests(split, digests, size), path)
