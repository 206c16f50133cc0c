"""Every data-set layout, generated from real HAM10000 images with the file names, columns and value formats of the
real releases: detection, a 1-epoch CNN run, its eval's class rows, predict's columns, the ONNX metadata and the
patient-level split; cross-data-set eval of a HAM10000 model on an ISIC 2019-layout set with SCC; and the errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from PIL import Image

import dermcli.training.run as training
from dermcli.core.errors import DermcliError
from dermcli.data.dataset import Source, detect_format, load_dataset
from dermcli.data.split import load_split
from dermcli.evaluation.evaluate import evaluate
from dermcli.evaluation.report import write_reports
from dermcli.inference.export import export_onnx
from dermcli.inference.predict import predict
from dermcli.models.checkpoint import read_checkpoint
from dermcli.training.config import TrainConfig
from tests.conftest import REAL_DATA, REPO

ISIC2019 = {"akiec": "AK", "bcc": "BCC", "bkl": "BKL", "df": "DF", "mel": "MEL", "nv": "NV", "vasc": "VASC"}
PAD = {"akiec": "ACK", "bcc": "BCC", "bkl": "SEK", "mel": "MEL", "nv": "NEV", "df": "SCC", "vasc": "SCC"}
ISIC2020 = {"akiec": "actinic keratosis", "bcc": "basal cell carcinoma", "bkl": "seborrheic keratosis", "df": "dermatofibroma",
            "mel": "melanoma", "nv": "nevus", "vasc": "vascular lesion"}


def ham_rows(root: Path) -> pd.DataFrame:
    meta = pd.read_csv(root / "HAM10000_metadata.csv")
    return meta.assign(path=meta["image_id"].map({p.stem: p for p in root.rglob("*.jpg")}))


def with_patients(meta: pd.DataFrame) -> pd.Series:
    """Two lesions a patient, so a patient's images span lesions (and sometimes classes)."""
    lesions = {lesion: i // 2 for i, lesion in enumerate(dict.fromkeys(meta["lesion_id"]))}
    return meta["lesion_id"].map(lambda lesion: f"IP_{lesions[lesion]:07d}")


def make_isic2019(root: Path, meta: pd.DataFrame, scc_lesions: int = 0) -> Path:
    """ISIC_2019_Training_GroundTruth.csv (1.0/0.0, UNK column), its metadata CSV, images in ISIC_2019_Training_Input/;
    the first `scc_lesions` nv lesions relabelled SCC."""
    labels = meta["dx"].map(ISIC2019)
    scc = set(list(dict.fromkeys(meta.loc[meta["dx"] == "nv", "lesion_id"]))[:scc_lesions])
    labels = labels.where(~meta["lesion_id"].isin(scc), "SCC")
    columns = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    truth = pd.DataFrame({"image": meta["image_id"], **{c: (labels == c).astype(float) for c in columns}})
    truth.to_csv(root / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame({"image": meta["image_id"], "age_approx": meta["age"], "anatom_site_general": meta["localization"],
                  "lesion_id": meta["lesion_id"], "sex": meta["sex"]}).to_csv(root / "ISIC_2019_Training_Metadata.csv", index=False)
    for image_id, path in zip(meta["image_id"], meta["path"]):
        (root / "ISIC_2019_Training_Input").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "ISIC_2019_Training_Input" / f"{image_id}.jpg")
    return root


def make_isic2020(root: Path, meta: pd.DataFrame) -> Path:
    malignant = meta["dx"].isin(("mel", "bcc", "akiec"))
    pd.DataFrame({"image_name": meta["image_id"], "patient_id": with_patients(meta), "sex": meta["sex"], "age_approx": meta["age"],
                  "anatom_site_general_challenge": meta["localization"], "diagnosis": meta["dx"].map(ISIC2020),
                  "benign_malignant": np.where(malignant, "malignant", "benign"), "target": malignant.astype(int)}).to_csv(root / "train.csv", index=False)
    for image_id, path in zip(meta["image_id"], meta["path"]):
        (root / "jpeg" / "train").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "jpeg" / "train" / f"{image_id}.jpg")
    return root


def make_pad_ufes(root: Path, meta: pd.DataFrame) -> Path:
    """metadata.csv with PAD-UFES-20's columns; PNGs spread over imgs_part_1/ and imgs_part_2/."""
    patients = with_patients(meta).str.replace("IP_", "PAT_")
    lesion_numbers = {lesion: i for i, lesion in enumerate(dict.fromkeys(meta["lesion_id"]))}
    rows = []
    for k, (image_id, lesion, patient, dx, path) in enumerate(zip(meta["image_id"], meta["lesion_id"], patients, meta["dx"], meta["path"])):
        img_id = f"{patient}_{lesion_numbers[lesion]}_{k}.png"
        folder = root / "images" / f"imgs_part_{1 + k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.open(path).save(folder / img_id)
        rows.append({"patient_id": patient, "lesion_id": lesion_numbers[lesion], "smoke": "False", "drink": "False", "age": 55,
                     "gender": "FEMALE", "fitspatrick": 2, "region": "FACE", "diameter_1": 6, "diameter_2": 5, "diagnostic": PAD[dx],
                     "itch": "True", "grew": "False", "hurt": "False", "changed": "False", "bleed": "False", "elevation": "True",
                     "img_id": img_id, "biopsed": "True"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def make_generic_csv(root: Path, meta: pd.DataFrame) -> Path:
    """A clinic's own sheet: its own column names and labels none of the known-names table has."""
    names = {"nv": "mole", "mel": "melanoma-like", "bkl": "keratosis", "bcc": "carcinoma", "akiec": "keratosis",
             "df": "firm-papule", "vasc": "red-lesion"}
    (root / "pictures").mkdir(parents=True)
    for image_id, path in zip(meta["image_id"], meta["path"]):
        shutil.copy(path, root / "pictures" / f"{image_id}.jpg")
    pd.DataFrame({"file": "pictures/" + meta["image_id"] + ".jpg", "finding": meta["dx"].map(names), "patient": with_patients(meta),
                  "age": meta["age"], "sex": meta["sex"]}).to_csv(root / "clinic.csv", index=False)
    return root / "clinic.csv"


def make_binary_folders(root: Path, meta: pd.DataFrame) -> Path:
    for image_id, dx, path in zip(meta["image_id"], meta["dx"], meta["path"]):
        folder = root / ("malignant" if dx in ("mel", "bcc", "akiec") else "benign")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{image_id}.jpg")
    return root


@pytest.fixture(scope="module")
def layouts(real_subset, tmp_path_factory):
    meta = ham_rows(real_subset)
    made = {}
    for name, make in (("isic", make_isic2019), ("isic2020", make_isic2020), ("pad-ufes-20", make_pad_ufes),
                       ("csv", make_generic_csv), ("folders", make_binary_folders)):
        made[name] = make(tmp_path_factory.mktemp(name.replace("-", "_")), meta)
    made["ham10000"] = real_subset
    return made


SOURCES = {"csv": {"image_column": "file", "label_column": "finding", "group_column": "patient"}}
EXPECTED = {  # layout -> (task, classes, malignant classes, groups by patient)
    "ham10000": ("multiclass", ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"], ["akiec", "bcc", "mel"], False),
    "isic": ("multiclass", ["AK", "BCC", "BKL", "DF", "MEL", "NV", "VASC"], ["AK", "BCC", "MEL"], False),
    "isic2020": ("binary", ["benign", "malignant"], ["malignant"], True),
    "pad-ufes-20": ("multiclass", ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"], ["ACK", "BCC", "MEL", "SCC"], True),
    "csv": ("multiclass", ["carcinoma", "firm-papule", "keratosis", "melanoma-like", "mole", "red-lesion"], None, False),
    "folders": ("binary", ["benign", "malignant"], ["malignant"], False),
}


@pytest.fixture(scope="module")
def runs(layouts, tmp_path_factory):
    """A 1-epoch CNN run on each layout, its test eval and reports, its ONNX export."""
    out, logs = {}, {}
    for name, path in layouts.items():
        run = tmp_path_factory.mktemp(f"run_{name.replace('-', '_')}")
        logs[name] = []
        cfg = TrainConfig(data=str(path), out=str(run), model="cnn", epochs=1, batch_size=32, **SOURCES.get(name, {}))
        training.train(cfg, log=logs[name].append)
        evaluate(run / "best.pt", Source.of(path, **SOURCES.get(name, {})), run / "eval", split="test", engine="torch")
        write_reports(run / "eval", plots=False)
        export_onnx(run / "best.pt", run / "best.onnx")
        out[name] = run
    return out, logs


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_layout_is_detected_trains_evaluates_predicts_and_exports_its_own_classes(layouts, runs, name):
    task, classes, malignant, by_patient = EXPECTED[name]
    if name != "csv":
        assert detect_format(layouts[name]) == name
    run = runs[0][name]
    meta = read_checkpoint(run / "best.pt")["meta"]
    assert meta["task"] == task and meta["data_classes"] == classes
    assert meta["malignant"] == (malignant if task == "multiclass" else ["malignant"])
    names = classes if task == "multiclass" else ["benign", "malignant"]
    assert meta["class_names"] == names
    report = (run / "eval" / "classification_report.txt").read_text()
    rows = [line.split()[0] for line in report.split("\n\n")[2].splitlines() if line.strip()]  # the per-class block
    assert rows == names
    predictions, problems = predict([str(p) for p in sorted(Path(layouts["ham10000"]).rglob("*.jpg"))[:3]], weights=run / "best.pt", engine="torch")
    assert not problems and list(predictions[0].probabilities) == names
    assert (predictions[0].malignant_score is None) == (malignant is None)
    stored = json.loads(next(e.value for e in onnx.load(run / "best.onnx").metadata_props if e.key == "dermcli"))
    assert stored["class_names"] == names and stored["malignant"] == meta["malignant"]
    split = load_split(run / "split.csv")
    assert ("patient_id" in split.columns) == by_patient
    if by_patient:  # no patient's images in two splits, though the patient's lesions are two
        assert split.groupby("patient_id")["split"].nunique().max() == 1
        assert split.groupby("patient_id")["lesion_id"].nunique().max() == 2 or name == "isic2020"


@pytest.mark.slow
def test_a_label_set_outside_the_known_names_has_no_binary_view_and_the_log_says_so(runs):
    logs = runs[1]["csv"]
    assert any("no benign/malignant view" in line and "mole" in line for line in logs)
    metrics = json.loads((runs[0]["csv"] / "eval" / "metrics.json").read_text())
    assert "Malignant vs benign" not in (runs[0]["csv"] / "eval" / "metrics.md").read_text()
    assert metrics["info"]["malignant"] is None


@pytest.fixture(scope="module")
def isic2019_external(tmp_path_factory):
    """An ISIC 2019-layout set from the shipped CNN's own test split (so no image is one it trained on), with SCC."""
    if not (REAL_DATA / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real HAM10000 not found at {REAL_DATA}")
    split = pd.read_csv(REPO / "weights" / "cnn_ham10000_7class" / "split.csv")
    test_lesions = split.loc[split["split"] == "test"].groupby("label")["lesion_id"].apply(lambda s: list(dict.fromkeys(s))[:10]).explode()
    meta = pd.read_csv(REAL_DATA / "HAM10000_metadata.csv")
    meta = meta[meta["lesion_id"].isin(set(test_lesions))].reset_index(drop=True)
    index = {p.stem: p for p in REAL_DATA.rglob("*.jpg")}
    return make_isic2019(tmp_path_factory.mktemp("isic2019_external"), meta.assign(path=meta["image_id"].map(index)), scc_lesions=4)


@pytest.mark.slow
def test_a_ham10000_model_on_isic_2019_matches_labels_by_alias_and_keeps_scc_in_the_malignant_view(isic2019_external, tmp_path):
    out = evaluate(REPO / "weights" / "cnn_ham10000_7class.pt", isic2019_external, tmp_path / "eval", split="all", engine="torch")
    info = json.loads((out / "eval_info.json").read_text())
    scc = info["unknown_labels"]["SCC"]
    assert scc > 0 and set(info["unknown_labels"]) == {"SCC"}
    r = write_reports(out, plots=False)
    rows = [line.split()[0] for line in r["classification_report"].split("\n\n")[2].splitlines() if line.strip()]
    assert rows == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]  # AK -> akiec by the alias table
    predictions = pd.read_csv(out / "predictions.csv")
    truth = pd.read_csv(isic2019_external / "ISIC_2019_Training_GroundTruth.csv")
    assert len(predictions) == len(truth) - scc
    view = pd.read_csv(out / "malignant_view" / "predictions.csv")
    assert len(view) == len(truth)  # every image: SCC's grouping is known
    assert set(view.loc[view["image_id"].isin(truth.loc[truth["SCC"] == 1, "image"]), "label"]) == {"malignant"}
    assert "left out of these figures" in (out / "metrics.md").read_text()
    write_reports(out / "malignant_view", plots=False)


def test_eval_refuses_a_set_that_shares_no_label_with_the_model(real_subset, tmp_path):
    (tmp_path / "stars" / "a").mkdir(parents=True)
    (tmp_path / "moons").mkdir()
    for i, image in enumerate(sorted(Path(real_subset).rglob("*.jpg"))[:4]):
        shutil.copy(image, tmp_path / ("stars/a" if i % 2 else "moons") / image.name)
    with pytest.raises(DermcliError, match="shares no label with the model"):
        evaluate(REPO / "weights" / "cnn_ham10000_7class.pt", tmp_path, tmp_path / "eval", split="all", engine="torch")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(MEL=t["MEL"].where(t.index != 2, 1.0)), "row 4: labels are not one-hot"),
    (lambda t: t.drop(columns=["image"]), "missing column.*image|no HAM10000"),
])
def test_isic_ground_truth_errors_name_the_row_or_the_column(layouts, tmp_path, edit, message):
    folder = shutil.copytree(layouts["isic"], tmp_path / "isic")
    csv = folder / "ISIC_2019_Training_GroundTruth.csv"
    edit(pd.read_csv(csv)).to_csv(csv, index=False)
    with pytest.raises(DermcliError, match=message):
        load_dataset(folder)


def test_generic_csv_errors_name_the_missing_column(layouts):
    with pytest.raises(DermcliError, match="missing column.*diagnosis"):
        load_dataset(Source.of(layouts["csv"], image_column="file", label_column="diagnosis"))
    with pytest.raises(DermcliError, match="needs --image-column and --label-column"):
        load_dataset(Source.of(layouts["csv"], format="csv", image_column="file"))


def test_label_choices_merge_keep_and_refuse(layouts, tmp_path):
    from dermcli.data.label_set import choose_labels, label_set

    table = load_dataset(layouts["pad-ufes-20"])
    merged = choose_labels(table, merge="keratosis=SEK,ACK")
    assert set(merged["dx"]) == {"BCC", "MEL", "NEV", "SCC", "keratosis"}
    with pytest.raises(DermcliError, match="labels outside --classes.*SCC"):
        choose_labels(table, classes="MEL,NEV,BCC,ACK,SEK")
    logged = []
    kept = choose_labels(table, classes="mel,nev", drop_other=True, log=logged.append)  # names match case-insensitively
    assert set(kept["dx"]) == {"MEL", "NEV"} and "left out" in logged[0]
    assert label_set(kept).malignant == ("MEL",)
    assert label_set(kept, malignant="NEV").malignant == ("NEV",)
    with pytest.raises(DermcliError, match="'XYZ' is not a label of the data set"):
        choose_labels(table, merge="a=XYZ")


def test_a_class_of_one_lesion_is_too_few_to_split(layouts, tmp_path):
    cfg = TrainConfig(data=str(layouts["pad-ufes-20"]), out=str(tmp_path / "run"), model="cnn", epochs=1)
    metadata = pd.read_csv(layouts["pad-ufes-20"] / "metadata.csv")
    folder = shutil.copytree(layouts["pad-ufes-20"], tmp_path / "pad")
    first = metadata.index[metadata["diagnostic"] == "MEL"][0]
    lesion = metadata.at[first, "lesion_id"]
    metadata.loc[(metadata["diagnostic"] == "MEL") & (metadata["lesion_id"] != lesion), "diagnostic"] = "NEV"
    metadata.to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(DermcliError, match="class MEL has only 1 patient, too few to split"):
        training.train(TrainConfig(**{**cfg.__dict__, "data": str(folder)}))
