"""`dermcli runs`: one row per run folder made here, from its files alone; sorting; the mark on runs of another split."""

import csv
import io
import json
import subprocess
import sys

import pandas as pd
import pytest

import dermcli.training.run as training
from dermcli.core.errors import DermcliError
from dermcli.evaluation.evaluate import evaluate
from dermcli.evaluation.report import write_reports
from dermcli.evaluation.runs import COLUMNS, run_table
from dermcli.runtime.tracking import split_digest
from dermcli.training.config import TrainConfig
from tests.conftest import REPO, make_ham


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three 1-epoch CNN runs below one folder: a and b on one split (a evaluated on its test split), c on another."""
    ham = make_ham(tmp_path_factory.mktemp("data") / "ham_sample", lesions_per_class=5, images_per_lesion=2)
    root = tmp_path_factory.mktemp("runs")
    for name, changes in (("a", {}), ("b", {"lr": 3e-3}), ("nested/c", {"split_seed": 7})):
        training.train(TrainConfig(data=str(ham), out=str(root / name), model="cnn", epochs=1, batch_size=16, tensorboard=False, **changes))
    evaluate(root / "a" / "best.pt", ham, root / "a" / "eval")
    write_reports(root / "a" / "eval", plots=False)
    return root


def dermcli(*args: str) -> subprocess.CompletedProcess:
    """The command from this checkout, whatever console script is installed."""
    return subprocess.run([sys.executable, "-m", "dermcli", *args], check=False, capture_output=True, text=True, cwd=REPO, timeout=300)


def by_run(rows):
    return {row["run"].rsplit("/", 1)[-1]: row for row in rows}


def test_each_run_folder_is_a_row_of_its_own_files(runs):
    rows = by_run(run_table([runs]))
    assert set(rows) == {"a", "b", "c"}
    for name, run in (("a", runs / "a"), ("b", runs / "b"), ("c", runs / "nested" / "c")):
        row, history = rows[name], pd.read_csv(run / "history.csv")
        assert set(COLUMNS) | {"other_split"} == set(row)
        assert (row["model"], row["task"], row["data"], row["epochs"]) == ("cnn", "multiclass", "ham_sample", 1)
        assert row["split"] == split_digest(run / "split.csv")
        assert row["val_macro_f1"] == pytest.approx(history["val_macro_f1"].max())
        assert row["wall_time"] == pytest.approx(history["seconds"].sum(), abs=0.05)
    metrics = json.loads((runs / "a" / "eval" / "metrics.json").read_text())
    assert rows["a"]["test_macro_f1"] == pytest.approx(metrics["multiclass"]["macro_f1"])
    assert rows["a"]["test_malignant_auc"] == pytest.approx(metrics["binary"]["roc_auc"])
    assert rows["b"]["test_macro_f1"] is None and rows["b"]["val_balanced_accuracy"] is None  # not evaluated; history lacks it


def test_runs_on_another_split_are_marked(runs):
    rows = by_run(run_table([runs]))
    assert rows["a"]["split"] == rows["b"]["split"] != rows["c"]["split"]
    assert [rows[n]["other_split"] for n in "abc"] == [False, False, True]
    assert not any(r["other_split"] for r in run_table([runs / "a", runs / "b"]))


def test_sorting_by_any_column(runs):
    rows = run_table([runs], sort="val_macro_auc")
    assert [r["val_macro_auc"] for r in rows] == sorted((r["val_macro_auc"] for r in rows), reverse=True)  # largest first
    assert [r["run"] for r in run_table([runs], sort="run")] == sorted(r["run"] for r in rows)
    assert [r["test_macro_f1"] is None for r in run_table([runs], sort="test_macro_f1")] == [False, True, True]  # missing last
    with pytest.raises(DermcliError, match="--sort 'val_f1' is not a column"):
        run_table([runs], sort="val_f1")


def test_the_command_prints_a_table_csv_and_json(runs):
    table = dermcli("runs", str(runs), "--sort", "split")
    assert table.returncode == 0, table.stderr
    assert "another split than most runs'" in table.stdout and table.stdout.count(" *") == 1
    as_csv = list(csv.DictReader(io.StringIO(dermcli("runs", str(runs), "--csv").stdout)))
    as_json = json.loads(dermcli("runs", str(runs), "--json").stdout)
    assert len(as_csv) == len(as_json) == 3 and list(as_csv[0]) == [*COLUMNS, "other_split"]
    assert sorted(r["other_split"] for r in as_json) == [False, False, True]
    empty = dermcli("runs", str(runs / "nowhere"))
    assert empty.returncode == 1 and "no run folders" in empty.stderr
