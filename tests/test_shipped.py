"""The weights in weights/ load safely and give the predictions recorded next to the bundled examples."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from dermcli.inference.predict import SHIPPED, predict
from tests.conftest import REPO

RECORDED = {name: REPO / "examples" / f"predictions_{name}.csv" for name in SHIPPED}


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_shipped_weights_reproduce_the_recorded_example_predictions(model):
    if not SHIPPED[model].is_file() or not RECORDED[model].is_file():
        pytest.skip(f"{model}: no shipped weights yet")
    torch.load(SHIPPED[model], weights_only=True)
    recorded = pd.read_csv(RECORDED[model])
    images = [str(REPO / "examples" / Path(p).name) for p in recorded["image"]]
    for engine in ("torch", "onnx"):
        results, problems = predict(images, model=model, engine=engine)
        assert not problems
        assert [p.label for p in results] == recorded["label"].tolist()
        got = pd.DataFrame([{f"p_{k}": v for k, v in p.probabilities.items()} for p in results])
        assert (got - recorded[got.columns]).abs().max().max() <= 1e-4


def test_readme_results_table_is_the_one_the_eval_files_give():
    from dermcli.evaluation.card import results_table

    folders = [weights.with_suffix("") / "eval" for weights in SHIPPED.values()]
    folders = [f for f in folders if (f / "metrics.json").is_file()]
    if not folders:
        pytest.skip("no shipped eval files yet")
    assert results_table(folders) in (REPO / "README.md").read_text()


def test_the_fp16_file_was_checked_against_fp32_on_validation_and_its_card_says_so():
    folder = REPO / "weights" / "resnet50_ham10000_binary"
    if not (folder / "fp16_check.json").is_file():
        pytest.skip("no fp16 check written yet")
    check = json.loads((folder / "fp16_check.json").read_text())
    assert check["split"] == "val" and check["images"] > 1000 and check["max_abs_difference"] <= 1e-3
    assert f"at most {check['max_abs_difference']:.1e}" in (folder / "eval" / "MODEL_CARD.md").read_text()
