"""Inputs larger than the training images are first brought down to the training images' resolution (issue 27)."""

import json

import numpy as np
import pytest
from PIL import Image

from benchmarks.resolution import enlarge, pixels
from dermcli.data.cache import cache_key, cached_images
from dermcli.data.images import decode_rgb, load_rgb, training_resolution
from dermcli.inference.loading import load_runner
from dermcli.inference.predict import SHIPPED, predict
from dermcli.inference.runners import OnnxRunner, sha256
from dermcli.inference.tta import predict_probabilities
from dermcli.models.checkpoint import read_checkpoint, write_payload
from tests.conftest import REPO, make_ham, run_cli, write_image

EXAMPLE = REPO / "examples" / "ISIC_0024431.jpg"
RESAMPLED = "resampled {} -> 200x150 (the training images' resolution)"
ENGINES = {"lite0": "auto", "cnn": "torch", "cnn-distilled": "torch", "resnet50": "torch"}  # lite0: ONNX Runtime on the shipped .onnx


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """A bundled example, lossless, at 200x150 and at 600x450: each pixel a 3x3 block of that mean, with texture in it."""
    folder = tmp_path_factory.mktemp("copies")
    small = pixels(EXAMPLE)
    Image.fromarray(small).save(folder / "small.png")
    Image.fromarray(enlarge(small, 3, detail=24)).save(folder / "large.png")
    return [str(folder / "small.png"), str(folder / "large.png")]


def probabilities(results) -> np.ndarray:
    return np.array([list(p.probabilities.values()) for p in results])


@pytest.mark.parametrize("tta", ["none", "dihedral"])
@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_a_large_image_gives_the_answer_of_its_copy_at_the_training_resolution(copies, model, tta):
    logs = []
    results, problems = predict(copies, model=model, engine=ENGINES[model], tta=tta, log=logs.append)
    assert not problems and results[0].label == results[1].label
    assert np.abs(probabilities(results)[0] - probabilities(results)[1]).max() <= 1e-5
    assert [p.resampled for p in results] == [None, RESAMPLED.format("600x450")]
    assert logs == [f"{copies[1]}: {RESAMPLED.format('600x450')}"]


def test_native_resolution_resizes_straight_to_the_input_as_before(copies):
    runner = load_runner(SHIPPED["lite0"])
    before = predict_probabilities(runner, load_rgb(copies[1], 224)[None], "dihedral")[0]  # no resolution: the decode of old
    native, _ = predict(copies, native_resolution=True)
    resampled, _ = predict(copies)
    assert np.abs(probabilities(native)[1] - before).max() <= 1e-6 and native[1].resampled is None
    assert np.abs(probabilities(native)[1] - probabilities(resampled)[1]).max() > 0.05  # the texture the step removes
    assert np.array_equal(probabilities(native)[0], probabilities(resampled)[0])  # at the training resolution: untouched


def test_a_checkpoint_without_the_field_behaves_as_before_and_says_so_once(copies, tmp_path):
    payload = read_checkpoint(SHIPPED["cnn"])
    old = tmp_path / "old.pt"
    write_payload(old, {**payload, "meta": {k: v for k, v in payload["meta"].items() if k != "training_resolution"}})
    logs = []
    results, _ = predict(copies, weights=old, engine="torch", log=logs.append)
    native, _ = predict(copies, model="cnn", engine="torch", native_resolution=True)
    assert np.array_equal(probabilities(results), probabilities(native)) and results[1].resampled is None
    assert len(logs) == 1 and "does not record its training images' resolution" in logs[0]


def test_the_shipped_files_record_the_resolution_and_the_onnx_still_matches():
    for weights in SHIPPED.values():
        assert read_checkpoint(weights)["meta"]["training_resolution"] == {"short_side": 150, "size": [200, 150]}
    onnx = SHIPPED["lite0"].with_suffix(".onnx")
    meta = OnnxRunner(onnx).meta
    assert meta["checkpoint_sha256"] == sha256(SHIPPED["lite0"]) and meta["training_resolution"]["short_side"] == 150


def test_only_larger_images_are_brought_down_by_area_aspect_kept_and_upright(copies, tmp_path):
    small = load_rgb(copies[0], 224)
    assert decode_rgb(copies[0], 224, 150)[1] is None and np.array_equal(load_rgb(copies[0], 224, 150), small)
    assert np.array_equal(load_rgb(copies[0], 224, 300), small)  # a smaller image is never enlarged first
    image, sizes = decode_rgb(copies[1], 224, 150)
    assert sizes == ((600, 450), (200, 150)) and np.array_equal(image, small)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 6000x4000, shown turned a quarter: 4000x6000
    Image.new("RGB", (6000, 4000), (200, 100, 50)).save(tmp_path / "turned.jpg", exif=exif, quality=50)
    image, sizes = decode_rgb(tmp_path / "turned.jpg", 28, 150)
    assert sizes == ((4000, 6000), (150, 225)) and image.shape == (28, 28, 3) and abs(int(image[14, 14, 0]) - 200) < 5


def test_the_decoded_image_cache_is_keyed_by_the_resolution(copies):
    assert len({cache_key(copies, 28), cache_key(copies, 28, 150), cache_key(copies, 28, 100)}) == 3
    brought_down, straight = cached_images(copies, 28, resolution=150), cached_images(copies, 28)
    again = cached_images(copies, 28, resolution=150)
    assert isinstance(again, np.memmap) and np.array_equal(again, brought_down)
    assert np.array_equal(brought_down[1], brought_down[0]) and not np.array_equal(straight[1], brought_down[1])


def test_training_records_the_median_short_side_and_size_of_its_images(tmp_path):
    sizes = [(40, 30), (90, 60), (48, 64), (100, 100), (60, 45)]  # short sides 30, 60, 48, 100, 45
    paths = [write_image(tmp_path / f"{i}.jpg", i, size) for i, size in enumerate(sizes)]
    assert training_resolution(paths) == {"short_side": 48, "size": [60, 60]}

    import dermcli.training.run as training
    from dermcli.training.config import TrainConfig
    from dermcli.training.ensemble import make_ensemble

    ham = make_ham(tmp_path / "ham")  # 40x30 images
    runs = [training.train(TrainConfig(data=str(ham), out=str(tmp_path / f"seed{seed}"), epochs=1, batch_size=16, seed=seed))
            for seed in (1, 2)]
    ensemble = make_ensemble(runs, ham, tmp_path / "ens.pt")
    for weights in runs + [ensemble]:  # an ensemble's members share a split, so their training images
        assert read_checkpoint(weights)["meta"]["training_resolution"] == {"short_side": 30, "size": [40, 30]}


def test_predict_json_and_log_say_what_was_brought_down(copies, tmp_path):
    """`dermcli predict` on 600x450 and 6000x4500 copies of a bundled example gives its 200x150 answer."""
    Image.fromarray(enlarge(pixels(EXAMPLE), 30)).save(tmp_path / "huge.png", compress_level=1)
    result = run_cli("predict", *copies, str(tmp_path / "huge.png"), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["resampled"] for r in rows] == [None, RESAMPLED.format("600x450"), RESAMPLED.format("6000x4500")]
    assert f"{tmp_path / 'huge.png'}: {RESAMPLED.format('6000x4500')}" in result.stderr
    assert all(abs(r["probabilities"][k] - rows[0]["probabilities"][k]) <= 1e-5 for r in rows for k in r["probabilities"])
    native = run_cli("predict", copies[1], "--json", "--native-resolution")
    assert native.returncode == 0, native.stderr
    assert json.loads(native.stdout)["resampled"] is None and "resampled" not in native.stderr


def test_eval_brings_larger_images_down_too_and_says_how_many(copies, tmp_path):
    import pandas as pd

    from dermcli.evaluation.evaluate import evaluate

    for name, path in zip(("small", "large"), copies):
        (tmp_path / "set" / "bkl").mkdir(parents=True, exist_ok=True)
        Image.open(path).save(tmp_path / "set" / "bkl" / f"{name}.png")
    runs = {}
    for native in (False, True):
        logs = []
        out = evaluate(SHIPPED["cnn"], tmp_path / "set", tmp_path / f"eval_{native}", split="all", engine="torch", log=logs.append,
                       native_resolution=native)
        runs[native] = pd.read_csv(out / "predictions.csv").filter(like="p_").to_numpy(), logs
    (resampled, logs), (native, native_logs) = runs[False], runs[True]
    assert np.abs(resampled[0] - resampled[1]).max() <= 1e-5 and np.abs(native[0] - native[1]).max() > 1e-3
    assert any(line.startswith("resampled 1 of 2 images to the training images' resolution, short side 150 (the first 600x450 -> 200x150)")
               for line in logs) and not any("resampled" in line for line in native_logs)
