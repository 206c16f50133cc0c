"""`train --config FILE`: any option from a TOML file (or a run's config.json), flags override it, and every
TrainConfig field is a `train` option made from its one declaration."""

import json
from dataclasses import fields

import pandas as pd
import pytest

from dermcli.training.config import TrainConfig
from tests.conftest import make_ham, run_cli


@pytest.fixture(scope="module")
def tiny_ham(tmp_path_factory):
    return make_ham(tmp_path_factory.mktemp("config_ham"), lesions_per_class=3, images_per_lesion=2)


@pytest.mark.slow
def test_a_toml_file_sets_options_flags_override_it_and_config_json_reproduces_the_run(tiny_ham, tmp_path):
    (tmp_path / "run.toml").write_text(f'data = "{tiny_ham}"\nepochs = 1\nbatch-size = 16\nlr = 0.002\nscheduler = "cosine"\n')
    first = run_cli("train", "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "a"), "--lr", "0.003", "--deterministic")
    assert first.returncode == 0, first.stderr
    recorded = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (recorded["epochs"], recorded["batch_size"], recorded["scheduler"], recorded["lr"]) == (1, 16, "cosine", 0.003)
    again = run_cli("train", "--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stderr
    assert {**json.loads((tmp_path / "b" / "config.json").read_text()), "out": ""} == {**recorded, "out": ""}
    first_history, second_history = (pd.read_csv(tmp_path / run / "history.csv").drop(columns="seconds") for run in ("a", "b"))
    assert len(first_history) == 1 and first_history.equals(second_history)  # --deterministic, recorded, trains the same


@pytest.mark.parametrize("text, message", [
    ("batchsize = 8\n", "unknown key 'batchsize' (did you mean 'batch_size'?)"),
    ("epochs = 'ten'\n", "epochs = 'ten': must be a number (a whole number)"),
    ("epochs = 2.5\n", "epochs = 2.5: must be a number (a whole number)"),
    ("pretrained = 1\n", "pretrained = 1: must be true or false"),
    ("lr = 20\n", "lr = 20: must be in (0, 10]"),
    ("label-smoothing = 1.0\n", "label-smoothing = 1.0: must be in [0, 1)"),
    ("lr = \n", "not valid TOML"),
])
def test_a_bad_config_file_is_one_line_naming_the_key_and_what_it_allows(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    result = run_cli("train", "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "run"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and str(tmp_path / "bad.toml") in result.stderr
    assert not (tmp_path / "run").exists()


def test_every_config_field_is_a_train_option_with_its_declared_help():
    from typer.main import get_command

    from dermcli.cli.app import app

    train = get_command(app).commands["train"]
    options = {p.name: p for p in train.params}
    for f in fields(TrainConfig):
        assert f.name in options, f.name
        assert f.metadata["help"].split(";")[0] in options[f.name].help
    assert {"config", "folds", "resume", "device", "overwrite"} <= set(options)


@pytest.mark.slow
def test_distillation_options_without_a_teacher_are_refused_whatever_their_value(tiny_ham, tmp_path):
    for weight in ("0.5", "0.6"):  # 0.5 was the old default, and slipped through
        result = run_cli("train", "--data", str(tiny_ham), "--out", str(tmp_path / "run"), "--distill-weight", weight)
        assert result.returncode == 1 and "need --teacher" in result.stderr
