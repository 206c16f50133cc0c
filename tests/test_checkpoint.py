import pickle

import pytest
import torch

from dermcli.core.errors import DermcliError
from dermcli.models.checkpoint import round_to_half, save_checkpoint
from dermcli.models.loading import load_model
from dermcli.models.registry import get_backend


def meta(backend="cnn", task="multiclass"):
    return {"backend": backend, "task": task, "class_names": ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"], "input_size": 28,
            "preprocessing": "unit", "model_options": {}, "threshold": 0.3, "temperature": 1.2}


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = get_backend("cnn").build(7, {}).eval()
    save_checkpoint(tmp_path / "m.pt", model, meta())
    loaded, info = load_model(tmp_path / "m.pt")
    x = torch.rand(3, 3, 28, 28)
    assert torch.equal(loaded(x), model(x))
    assert info["threshold"] == 0.3 and info["dermcli_version"]


def test_half_precision_storage_stays_within_1e3(tmp_path):
    torch.manual_seed(0)
    model = get_backend("resnet50").build(1, {}).eval()
    with torch.no_grad():  # caffe preprocessing feeds 0..255 pixels: the stem's variance passes fp16's range
        model.conv1.weight.mul_(30)
        model.bn1.running_var.fill_(8e4)
    save_checkpoint(tmp_path / "half.pt", model, {**meta("resnet50", "binary"), "input_size": 224}, half=True)
    loaded, _ = load_model(tmp_path / "half.pt")
    x = torch.rand(2, 3, 96, 96) * 255 - 120
    assert torch.allclose(torch.sigmoid(loaded(x)), torch.sigmoid(model(x)), atol=1e-3)
    assert (tmp_path / "half.pt").stat().st_size < 55e6


def test_weights_rounded_before_training_are_stored_in_fp16_without_loss(tmp_path):
    torch.manual_seed(0)
    model = get_backend("resnet50").build(1, {}).eval()
    with torch.no_grad():
        model.bn1.running_var.fill_(8e4)  # beyond fp16: statistics must stay as they are
    original = {k: v.clone() for k, v in model.state_dict().items()}
    round_to_half(model.layer1)
    assert torch.equal(model.bn1.running_var, original["bn1.running_var"])
    assert not torch.equal(model.layer1[0].conv1.weight, original["layer1.0.conv1.weight"])
    save_checkpoint(tmp_path / "half.pt", model, {**meta("resnet50", "binary"), "input_size": 224}, half=True)
    loaded = load_model(tmp_path / "half.pt")[0].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items() if k.startswith("layer1.") or "running" in k)


class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("name, write, message", [
    ("truncated.pt", lambda p, good: p.write_bytes(good.read_bytes()[:5000]), "not a readable PyTorch weights file"),
    ("noise.pt", lambda p, good: p.write_bytes(b"\x80\x04garbage" * 300), "not a readable PyTorch weights file"),
    ("plain.pt", lambda p, good: torch.save(get_backend("cnn").build(7, {}).state_dict(), p), "plain state dict"),
    ("list.pt", lambda p, good: torch.save([1, 2, 3], p), "not a dermcli checkpoint"),
])
def test_bad_weights_files_are_refused(tmp_path, name, write, message):
    good = tmp_path / "good.pt"
    save_checkpoint(good, get_backend("cnn").build(7, {}), meta())
    write(tmp_path / name, good)
    with pytest.raises(DermcliError, match=message):
        load_model(tmp_path / name)


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    evidence = tmp_path / "pwned"
    torch.save({"format": "dermcli-checkpoint", "meta": Payload(str(evidence))}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(DermcliError, match="refused"):
        load_model(tmp_path / "evil.pt")
    assert not evidence.exists()


def test_other_backend_and_folders_are_refused(tmp_path):
    save_checkpoint(tmp_path / "cnn.pt", get_backend("cnn").build(7, {}), meta())
    with pytest.raises(DermcliError, match="a cnn checkpoint, not resnet50"):
        load_model(tmp_path / "cnn.pt", expect_backend="resnet50")
    with pytest.raises(DermcliError, match="is a folder"):
        load_model(tmp_path)
    mislabelled = tmp_path / "mislabelled.pt"
    save_checkpoint(mislabelled, get_backend("cnn").build(7, {}), meta("resnet50", "binary"))
    with pytest.raises(DermcliError, match="do not fit the resnet50 architecture"):
        load_model(mislabelled)
