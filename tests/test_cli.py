"""The product path through the real console script, on a small real HAM10000 subset."""

import json

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def cnn_run(real_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cnn"
    result = run_cli("train", "--model", "cnn", "--data", str(real_subset), "--out", str(out), "--epochs", "1", "--batch-size", "32")
    assert result.returncode == 0, result.stderr
    return out


def test_train_writes_the_run_folder(cnn_run):
    for name in ("best.pt", "last.pt", "split.csv", "history.csv", "config.json"):
        assert (cnn_run / name).is_file(), name
    assert json.loads((cnn_run / "config.json").read_text())["model"] == "cnn"


@pytest.mark.slow
def test_eval_uses_the_runs_own_test_split_and_report_reproduces_it(cnn_run, real_subset, tmp_path):
    out = tmp_path / "eval"
    result = run_cli("eval", "--weights", str(cnn_run / "best.pt"), "--data", str(real_subset), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "macro avg" in result.stdout and "ROC-AUC" in result.stdout
    predictions = pd.read_csv(out / "predictions.csv")
    split = pd.read_csv(cnn_run / "split.csv")
    assert set(predictions["image_id"]) == set(split.loc[split["split"] == "test", "image_id"])
    texts = {name: (out / name).read_bytes() for name in ("classification_report.txt", "metrics.md", "metrics.json")}
    for name in texts:
        (out / name).unlink()
    assert run_cli("report", str(out)).returncode == 0
    assert {name: (out / name).read_bytes() for name in texts} == texts
    assert run_cli("report", str(out), "--card").returncode == 0
    card = (out / "MODEL_CARD.md").read_text()
    assert card.splitlines()[2].startswith("> **Disclaimer.**")
    sections = ["## Description", "## Architecture", "## Training configuration", "## Data and split", "## Metrics", "## Limitations",
                "## Citation", "## Licence"]
    assert [card.index(s) for s in sections] == sorted(card.index(s) for s in sections)
    test_images = (split["split"] == "test").sum()
    assert f"| **images** | {(split['split'] == 'train').sum()} | {(split['split'] == 'val').sum()} | {test_images} |" in card
    for png in ("confusion_matrix.png", "roc_pr.png", "reliability.png", "training_curves.png"):
        with Image.open(out / png) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300


def test_predict_reports_bad_files_and_carries_on(cnn_run, real_subset, tmp_path):
    folder = tmp_path / "mixed"
    good = sorted(real_subset.rglob("*.jpg"))[:2]
    for image in good:
        (folder / image.name).parent.mkdir(parents=True, exist_ok=True)
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "broken.jpg").write_text("not an image")
    result = run_cli("predict", str(folder), "--weights", str(cnn_run / "best.pt"), "--out", str(tmp_path / "p.csv"))
    assert result.returncode == 1
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr and "Traceback" not in result.stderr
    assert "2 predicted, 1 failed" in result.stdout and "Research use only" in result.stdout
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 2 and abs(table.filter(like="p_").sum(axis=1) - 1).max() < 1e-4

    as_json = run_cli("predict", str(good[0]), "--weights", str(cnn_run / "best.pt"), "--json")
    assert as_json.returncode == 0
    record = json.loads(as_json.stdout.splitlines()[0])
    assert record["label"] in record["probabilities"] and 0 <= record["malignant_score"] <= 1


def test_plain_predict_skips_typer_and_answers_as_typer_does(cnn_run, real_subset):
    image, weights = str(sorted(real_subset.rglob("*.jpg"))[0]), str(cnn_run / "best.pt")
    plain = run_cli("predict", image, "--weights", weights, "--json", "--engine", "onnx")
    through_typer = run_cli("predict", image, f"--weights={weights}", "--json", "--engine=onnx")  # `=` forms go to Typer
    assert plain.returncode == through_typer.returncode == 0
    assert plain.stdout == through_typer.stdout and json.loads(plain.stdout)["image"] == image


def test_the_fast_predict_parser_knows_exactly_typers_predict_options():
    import typer

    from dermcli.__main__ import PREDICT_OPTIONS, plain_predict_call
    from dermcli.cli.app import app

    params = typer.main.get_command(app).commands["predict"].params
    assert {opt: p.name for p in params for opt in p.opts if opt.startswith("--")} == {k: v[0] for k, v in PREDICT_OPTIONS.items()}
    assert plain_predict_call(["predict", "a.jpg", "b", "--threshold", "0.3", "--json"]) == {
        "inputs": ["a.jpg", "b"], "threshold": 0.3, "as_json": True}
    for for_typer in (["predict", "--help"], ["predict", "a.jpg", "--engine=onnx"], ["predict", "a.jpg", "--threshold", "x"],
                      ["predict", "a.jpg", "--model"], ["predict", "a", "--json", "--json"], ["predict"], ["eval", "a.jpg"]):
        assert plain_predict_call(for_typer) is None


@pytest.mark.slow
def test_resnet50_through_the_imagenet_weights_api(real_subset, torch_home, tmp_path):
    env = {"TORCH_HOME": str(torch_home)}
    out = tmp_path / "r50"
    result = run_cli("train", "--model", "resnet50", "--data", str(real_subset), "--out", str(out), "--epochs", "1",
                     "--freeze", "backbone", "--batch-size", "16", env=env)
    assert result.returncode == 0, result.stderr
    assert "IMAGENET1K_V2" in result.stderr
    result = run_cli("eval", "--weights", str(out / "best.pt"), "--data", str(real_subset), "--out", str(tmp_path / "e"))
    assert result.returncode == 0, result.stderr
    assert "PR-AUC" in result.stdout and pd.read_csv(tmp_path / "e" / "predictions.csv").columns[-2:].tolist() == ["p_malignant", "ood_score"]
    image = sorted(real_subset.rglob("*.jpg"))[0]
    result = run_cli("predict", str(image), "--weights", str(out / "best.pt"))
    assert result.returncode == 0 and "Prediction: " in result.stdout and "Confidence: " in result.stdout


@pytest.mark.slow
def test_missing_imagenet_weights_say_how_to_fix(real_subset, tmp_path):
    result = run_cli("train", "--model", "resnet50", "--data", str(real_subset), "--out", str(tmp_path / "r"), "--epochs", "1",
                     env={"TORCH_HOME": str(tmp_path / "empty_home")})
    assert result.returncode == 1 and "--no-pretrained" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["eval", "--weights", ".", "--data", ".", "--out", "x"], "is a folder"),
    (["predict", "nowhere.jpg", "--weights", "nowhere.pt"], "no such file"),
    (["train", "--data", "nowhere", "--out", "x"], "no such file or folder"),
    (["train", "--model", "vit", "--data", ".", "--out", "x"], "unknown model"),
    (["report", "."], "no predictions.csv"),
    (["predict", "."], "folder holds no images"),
])
@pytest.mark.slow
def test_bad_input_is_one_line_and_non_zero(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


@pytest.mark.slow
def test_eval_on_an_external_isic_set(cnn_run, real_subset, tmp_path):
    split = pd.read_csv(cnn_run / "split.csv")
    meta = pd.read_csv(real_subset / "HAM10000_metadata.csv")  # images the model never saw: its own are refused
    meta = meta[meta["image_id"].isin(split.loc[split["split"] == "test", "image_id"])].groupby("dx").head(2)
    images = tmp_path / "ISIC2018_Task3_Test_Input"
    images.mkdir()
    for image_id in meta["image_id"]:
        (images / f"{image_id}.jpg").write_bytes(next(real_subset.rglob(f"{image_id}.jpg")).read_bytes())
    truth = pd.DataFrame({"image": meta["image_id"], **{c.upper(): (meta["dx"] == c).astype(float)
                                                        for c in ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc")}})
    truth.to_csv(tmp_path / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    out = tmp_path / "isic_eval"
    result = run_cli("eval", "--weights", str(cnn_run / "best.pt"), "--data", str(tmp_path / "ISIC2018_Task3_Test_GroundTruth.csv"),
                     "--images", str(images), "--split", "all", "--out", str(out))
    assert result.returncode == 0, result.stderr
    predictions = pd.read_csv(out / "predictions.csv")
    assert sorted(predictions["image_id"]) == sorted(meta["image_id"]) and list(predictions["label"]) == list(meta["dx"])


@pytest.mark.parametrize("raised, code, line", [
    (KeyboardInterrupt(), 130, "interrupted"), (ValueError("boom"), 2, "internal error: ValueError: boom"),
])
def test_commands_end_in_one_line_and_an_exit_code_whatever_they_raise(capsys, raised, code, line):
    from dermcli.cli.console import run_guarded

    def command():
        raise raised

    with pytest.raises(SystemExit) as stop:
        run_guarded(command)
    assert stop.value.code == code
    assert capsys.readouterr().err.strip().splitlines() == [line + (" (set DERMCLI_DEBUG=1 for the traceback)" if code == 2 else "")]
