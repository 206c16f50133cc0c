"""Shipped model cards name data sets and relative paths only, and hold no stale settings."""

import re
from pathlib import Path

import pytest

from dermcli.evaluation.card import card_config, public_path
from tests.conftest import REPO

CARDS = sorted((REPO / "weights").glob("*/eval/MODEL_CARD.md"))


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.parent.parent.name)
def test_a_shipped_card_shows_no_machine_paths_and_no_stale_settings(card):
    text = card.read_text()
    assert not re.search(r"(?<![\w.])/(work|home|root|tmp|Users|check)/", text), "an absolute path of the training machine"
    assert "| augment | `True` |" not in text and "| augment | `False` |" not in text
    if "cnn" in card.parent.parent.name:
        assert "| pretrained |" not in text  # the CNN has no pretrained weights
    assert "on HAM10000" in text.splitlines()[0]


def test_card_config_rewrites_old_records_in_todays_terms():
    shown = card_config({"data": "/work/shared/data/ham10000", "out": "/work/runs/cnn", "augment": True, "pretrained": True,
                         "members": ["/work/runs/a/best.pt", "runs/b/best.pt"], "lr": 0.001, "teacher": ""}, "cnn")
    assert shown == {"data": "HAM10000", "out": "runs/cnn", "augment": "dihedral", "members": ["a/best.pt", "runs/b/best.pt"], "lr": 0.001}
    assert card_config({"pretrained": True, "init": "w.pt"}, "resnet50") == {"init": "w.pt"}
    assert public_path("weights/x.pt") == "weights/x.pt" and public_path(str(Path("/a/b/c.pt"))) == "b/c.pt"
