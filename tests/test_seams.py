"""Where two options meet: labels paired with rows on every input path, splits checked against the data's own
lesion ids, external sets checked against the model's training images, and resumes that resolve precision anew."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dermcli.core.errors import DermcliError
from dermcli.data.batches import FeatureBatches, ImageBatches, Rows
from dermcli.evaluation.evaluate import evaluate
from dermcli.models.checkpoint import read_checkpoint, write_payload
from dermcli.runtime.distributed import World
from dermcli.training.config import TrainConfig
from dermcli.training.distill import ViewRecordingBatches, geometric_views
from dermcli.training.run import train
from tests.conftest import make_ham

N = 25


def marked_images(n: int = N, size: int = 8) -> np.ndarray:
    """Grey images whose count of bright pixels is the row's index: flips, turns and mild colour jitter keep it."""
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        images[i].reshape(-1, 3)[np.random.default_rng(i).permutation(size * size)[:i]] = 255
    return images


def row_ids(x: torch.Tensor, preprocessing: str = "unit") -> np.ndarray:
    if x.dim() == 2:  # features: the first value holds the row
        return x[:, 0].round().long().numpy()
    return (x.mean(dim=1) > 0.5).flatten(1).sum(dim=1).numpy()


def input_paths():
    images = marked_images()
    ids = torch.arange(N, dtype=torch.float32)[:, None].repeat(1, 4)
    yield "images, no augmentation", ImageBatches(images, "unit", "none")
    yield "images, flips", ImageBatches(images, "unit", "flips")
    yield "images, dihedral", ImageBatches(images, "unit", "dihedral")
    yield "images augmented by tensor ops", ImageBatches(images, "unit", "dihedral", device=torch.device("cpu"))
    yield "features, one view", FeatureBatches([ids])
    yield "features, two views", FeatureBatches([ids, ids + 0.1])
    yield "distillation views", ViewRecordingBatches(images, "unit", "dihedral", views=geometric_views("dihedral"))
    yield "a process's share of an evaluation", Rows(FeatureBatches([ids]), slice(0, N))


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("name,batches", list(input_paths()))
def test_every_input_path_keeps_its_rows_in_the_order_asked(name, batches, processes):
    idx = np.random.default_rng(7).permutation(N)[:12]  # shuffled, as training asks
    for rank in range(processes):
        part = World(rank, rank, processes).part(len(idx))
        wanted = idx if part is None else idx[part]
        for rng in (np.random.default_rng(3), None):  # training draws, and evaluation
            assert row_ids(batches.get(idx, rng, part)).tolist() == wanted.tolist(), (name, rank, rng)


def colour_folders(root, per_class: int = 12, size: int = 32):
    """Class folders in which one colour per class makes the task trivially separable."""
    colours = np.random.default_rng(0).integers(0, 256, (7, 3))
    for k, dx in enumerate(("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")):
        for i in range(per_class):
            (root / dx).mkdir(parents=True, exist_ok=True)
            pixels = np.clip(colours[k] + np.random.default_rng(100 * k + i).integers(-8, 9, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / dx / f"{dx}_{i}.png")
    return root


def test_frozen_features_without_augmentation_learn_a_separable_task(tmp_path):
    data = colour_folders(tmp_path / "colours")
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), model="resnet18", pretrained=False, input_size=32, freeze="backbone",
                      augment="none", epochs=12, batch_size=16, lr=0.02, scheduler="cosine", patience=100, class_weights="none")
    train(cfg, device="cpu")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["train_loss"].iloc[-1] < 0.5 and history["val_macro_f1"].max() > 0.95, history.to_string()


@pytest.fixture
def ham(tmp_path):
    return make_ham(tmp_path / "ham", lesions_per_class=4, images_per_lesion=2)


def small_config(data, out, **changes):
    return TrainConfig(data=str(data), out=str(out), **{"epochs": 1, "batch_size": 8, "scheduler": "cosine", **changes})


def test_a_split_file_whose_lesion_ids_are_not_the_datas_is_refused(ham, tmp_path):
    from dermcli.data.dataset import load_dataset
    from dermcli.data.split import make_split, save_split

    table = load_dataset(ham)
    fake = make_split(table.assign(lesion_id=table["image_id"]))  # each image its own lesion: passes its own check
    save_split(fake, tmp_path / "fake.csv")
    with pytest.raises(DermcliError, match=r"fake.csv: the data set's lesion HAM_\w+ has images in more than one split \(ISIC_\d+ in \w+, "):
        train(small_config(ham, tmp_path / "run", split_file=str(tmp_path / "fake.csv")), device="cpu")
    assert not (tmp_path / "run" / "best.pt").exists()
    good = make_split(table)
    save_split(good, tmp_path / "good.csv")
    train(small_config(ham, tmp_path / "ok", split_file=str(tmp_path / "good.csv")), device="cpu")


def test_data_without_lesion_ids_warns_that_near_duplicates_may_straddle(tmp_path):
    data = colour_folders(tmp_path / "colours", per_class=6, size=16)
    said = []
    train(small_config(data, tmp_path / "run", input_size=28), device="cpu", log=said.append)
    assert any("names no lesion or patient ids" in line for line in said)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlap")
    ham = make_ham(root / "ham", lesions_per_class=7, images_per_lesion=2)  # enough lesions for a test split
    best = train(small_config(ham, root / "run"), device="cpu")
    return ham, best


def external_copy(ham, split_csv, target, rename: bool, as_png: bool = False):
    """An ISIC-format set of one train image and the test images, renamed and re-encoded when asked."""
    split = pd.read_csv(split_csv)
    chosen = pd.concat([split[split["split"] == "train"].head(1), split[split["split"] == "test"]])
    rows = []
    target.mkdir(parents=True)
    for i, (image_id, label) in enumerate(zip(chosen["image_id"], chosen["label"])):
        name = f"EXT_{i:04d}" if rename else image_id
        source = next(ham.rglob(f"{image_id}.jpg"))
        if as_png:
            Image.open(source).save(target / f"{name}.png")
        else:
            shutil.copy(source, target / f"{name}.jpg")
        rows.append({"image": name, **{c.upper(): float(c == label) for c in ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc")}})
    pd.DataFrame(rows).to_csv(target / "ground_truth.csv", index=False)
    return target / "ground_truth.csv", chosen["image_id"].iloc[0]


@pytest.mark.parametrize("rename,as_png", [(False, False), (True, False), (True, True)])
def test_an_external_set_holding_training_images_is_refused_or_reported_apart(trained, tmp_path, rename, as_png):
    ham, best = trained
    split = pd.read_csv(best.parent / "split.csv")
    assert (split.loc[split["split"] != "test", "pixels_28px"].str.len() == 20).all()  # train records its images' digests
    csv, first = external_copy(ham, best.parent / "split.csv", tmp_path / "ext", rename, as_png)
    with pytest.raises(DermcliError, match="1 of .* images are in .*'s train split .*--allow-overlap"):
        evaluate(best, csv, tmp_path / "refused", split="all", engine="torch")
    out = evaluate(best, csv, tmp_path / "apart", split="all", engine="torch", allow_overlap=True)
    headline, apart = pd.read_csv(out / "predictions.csv"), pd.read_csv(out / "overlap" / "predictions.csv")
    assert len(apart) == 1 and apart["seen_in"].tolist() == ["train"]
    assert len(headline) == (split["split"] == "test").sum() and apart["image_id"].iloc[0] not in set(headline["image_id"])


def test_the_models_own_test_split_passes_the_overlap_check(trained, tmp_path):
    ham, best = trained
    out = evaluate(best, ham, tmp_path / "test", split="test", engine="torch")
    assert not (out / "overlap").exists()


def test_a_resumed_run_resolves_the_precision_asked_on_its_own_device(ham, tmp_path):
    run = tmp_path / "run"
    train(small_config(ham, run), device="cpu")
    last = read_checkpoint(run / "last.pt")
    assert last["meta"]["config"]["amp"] == "" and last["meta"]["amp"] == "none"  # what was asked, and what it became here
    # as a GPU run records itself: asked the default, resolved to fp16 there
    write_payload(run / "last.pt", {**last, "meta": {**last["meta"], "amp": "fp16"}})
    train(small_config(ham, run), resume=True, resume_epochs=2, device="cpu")
    assert read_checkpoint(run / "last.pt")["meta"]["amp"] == "none"
    assert len(pd.read_csv(run / "history.csv")) == 2
