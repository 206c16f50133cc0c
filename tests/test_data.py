import pandas as pd
import pytest

from dermcli.core.errors import DermcliError
from dermcli.core.labels import CLASSES
from dermcli.data.dataset import detect_format, load_dataset
from tests.conftest import write_image


def test_ham10000_layout_parses(ham_dir):
    table = load_dataset(ham_dir)
    assert len(table) == 42 and table["lesion_id"].nunique() == 21
    assert set(table["dx"]) == set(CLASSES)
    assert all(p.endswith(".jpg") for p in table["path"])
    assert load_dataset(ham_dir / "HAM10000_metadata.csv").equals(table)


def edit_metadata(ham_dir, change):
    csv = ham_dir / "HAM10000_metadata.csv"
    table = pd.read_csv(csv)
    change(table).to_csv(csv, index=False)
    return ham_dir


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns=["dx"]), "missing column.*dx"),
    (lambda t: t.assign(dx=t["dx"].where(t.index != 4, " ")), "row 6: empty dx"),
    (lambda t: t.assign(image_id=t["image_id"].where(t.index != 7, t["image_id"][6])), "row 9: duplicate image_id"),
    (lambda t: t.assign(image_id=t["image_id"].where(t.index != 3, "ISIC_9999999")), "row 5: image 'ISIC_9999999' not found"),
    (lambda t: t.assign(image_id=t["image_id"].where(t.index != 2, "../../etc/passwd")), "row 4: image '../../etc/passwd' not found"),
])
def test_bad_metadata_is_refused_naming_the_row(ham_dir, change, message):
    with pytest.raises(DermcliError, match=message):
        load_dataset(edit_metadata(ham_dir, change))


def test_malformed_csv_is_refused(ham_dir):
    (ham_dir / "HAM10000_metadata.csv").write_bytes(b'lesion_id,image_id,dx\n"unclosed,quote\n')
    with pytest.raises(DermcliError, match="malformed CSV|missing|row"):
        load_dataset(ham_dir)


def make_isic(root, rows):
    for image, _ in rows:
        write_image(root / "images" / f"{image}.jpg", hash(image) % 1000)
    table = pd.DataFrame([{"image": image, **{c.upper(): float(c == dx) for c in CLASSES}} for image, dx in rows])
    table.to_csv(root / "ISIC2018_Task3_GroundTruth.csv", index=False)
    return root / "ISIC2018_Task3_GroundTruth.csv"


def test_isic_ground_truth_parses_with_images_folder(tmp_path):
    csv = make_isic(tmp_path, [("ISIC_1", "mel"), ("ISIC_2", "nv"), ("ISIC_3", "vasc")])
    assert detect_format(csv) == "isic" and detect_format(tmp_path) == "isic"
    table = load_dataset(csv, images=tmp_path / "images")
    assert list(table["dx"]) == ["MEL", "NV", "VASC"]  # the data set's own names
    assert list(table["lesion_id"]) == list(table["image_id"])  # each image its own group


def test_isic_rows_that_are_not_one_hot_are_refused(tmp_path):
    csv = make_isic(tmp_path, [("ISIC_1", "mel"), ("ISIC_2", "nv")])
    table = pd.read_csv(csv)
    table.loc[1, "MEL"] = 1.0
    table.to_csv(csv, index=False)
    with pytest.raises(DermcliError, match="row 3: labels are not one-hot"):
        load_dataset(csv)


def test_class_folders_of_any_names_parse_and_hidden_ones_are_skipped(tmp_path):
    write_image(tmp_path / "mel" / "a.png", 1, fmt="PNG")
    write_image(tmp_path / "nv" / "sub" / "b.jpg", 2)
    write_image(tmp_path / "other" / "c.jpg", 3)
    write_image(tmp_path / ".thumbnails" / "d.jpg", 4)
    write_image(tmp_path / "nv" / ".hidden" / "e.jpg", 5)
    table = load_dataset(tmp_path)
    assert sorted(table["dx"]) == ["mel", "nv", "other"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "absent", "no such file or folder"),
    (lambda p: p, "no HAM10000_metadata.csv, ISIC or PAD-UFES-20 CSV, or class sub-folders"),
    (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "expected a folder or a CSV"),
])
def test_unrecognised_paths_are_refused(tmp_path, make, message):
    with pytest.raises(DermcliError, match=message):
        load_dataset(make(tmp_path))


def test_labels_json_is_the_order_the_code_uses():
    import json

    from dermcli.core.labels import MALIGNANT
    from tests.conftest import REPO

    labels = json.loads((REPO / "labels.json").read_text())
    assert tuple(labels["classes"]) == CLASSES and tuple(labels["malignant"]) == MALIGNANT


def test_isic_metadata_beside_the_ground_truth_gives_lesions_and_subgroup_columns(tmp_path):
    csv = make_isic(tmp_path, [("ISIC_1", "mel"), ("ISIC_2", "nv"), ("ISIC_3", "vasc")])
    pd.DataFrame({"image": ["ISIC_1", "ISIC_2", "ISIC_3"], "age_approx": ["55", "", "70"], "anatom_site_general": ["head/neck", "torso", ""],
                  "lesion_id": ["IL_1", "IL_1", ""], "sex": ["male", "male", "female"]}).to_csv(
        tmp_path / "ISIC_2019_Training_Metadata.csv", index=False)
    table = load_dataset(csv).set_index("image_id")
    assert table.loc["ISIC_1", "lesion_id"] == table.loc["ISIC_2", "lesion_id"] == "IL_1"
    assert table.loc["ISIC_3", "lesion_id"] == "ISIC_3"  # no lesion id: its own group
    assert table.loc["ISIC_1", "age"] == "55" and table.loc["ISIC_2", "localization"] == "torso" and table.loc["ISIC_3", "sex"] == "female"
