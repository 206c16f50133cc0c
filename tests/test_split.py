import numpy as np
import pandas as pd
import pytest

from dermcli.core.errors import DermcliError
from dermcli.core.labels import CLASSES
from dermcli.data.split import check_no_leakage, load_split, make_split, save_split, select
from tests.conftest import REAL_DATA


def synthetic_table(lesions: int = 20000, seed: int = 0) -> pd.DataFrame:
    """Lesions with 1-6 images each and HAM10000-like class imbalance."""
    rng = np.random.default_rng(seed)
    dx = rng.choice(CLASSES, lesions, p=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    images = rng.choice([1, 1, 1, 2, 2, 3, 6], lesions)
    rows = [(f"L{i}", dx[i]) for i in range(lesions) for _ in range(images[i])]
    return pd.DataFrame({"image_id": [f"I{j}" for j in range(len(rows))], "lesion_id": [r[0] for r in rows], "dx": [r[1] for r in rows]})


def tables():
    yield synthetic_table()
    if (REAL_DATA / "HAM10000_metadata.csv").is_file():
        yield pd.read_csv(REAL_DATA / "HAM10000_metadata.csv")


@pytest.mark.parametrize("table", list(tables()), ids=lambda t: f"{len(t)}images")
def test_split_is_lesion_level_and_stratified(table):
    split = make_split(table, seed=42)
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()
    shares = pd.crosstab(split["label"], split["split"], normalize="index")
    assert np.allclose(shares[["train", "val", "test"]].to_numpy(), [0.70, 0.15, 0.15], atol=0.01)


def test_split_is_seeded():
    table = synthetic_table(500)
    assert make_split(table, seed=1).equals(make_split(table, seed=1))
    assert not make_split(table, seed=1)["split"].equals(make_split(table, seed=2)["split"])


def test_split_round_trip_and_select(tmp_path):
    table = synthetic_table(300)
    split = make_split(table)
    save_split(split, tmp_path / "split.csv")
    loaded = load_split(tmp_path / "split.csv")
    assert loaded.equals(split.astype(str))
    test_rows = select(table, loaded, "test")
    assert set(test_rows["image_id"]) == set(split.loc[split["split"] == "test", "image_id"])


def test_leaking_split_file_is_refused(tmp_path):
    split = make_split(synthetic_table(300))
    leaked = split[split["split"] == "test"].iloc[[0]].assign(image_id="copy_of_a_test_image", split="train")
    split = pd.concat([split, leaked])
    save_split(split, tmp_path / "split.csv")
    with pytest.raises(DermcliError, match="more than one split"):
        load_split(tmp_path / "split.csv")
    with pytest.raises(DermcliError, match="refused"):
        check_no_leakage(split)


def test_select_refuses_images_missing_from_data():
    table = synthetic_table(100)
    split = make_split(table)
    with pytest.raises(DermcliError, match="not in the data set"):
        select(table.iloc[5:], split, "train")
