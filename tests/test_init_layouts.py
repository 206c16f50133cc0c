"""Issue #20, bug 9: an --init file whose recognised layout was trained with other preprocessing or strides than
the run's is refused (or, where the recognition is not certain, warned about) in one line naming the flags that
match; a correctly flagged run is accepted. The stand-ins are generated here; ../shared is only for the last test."""

import pytest
import torch

from dermcli.core.errors import DermcliError
from dermcli.models.common import recognise
from dermcli.models.registry import get_backend
from dermcli.training.config import TrainConfig
from dermcli.training.run import train
from tests.conftest import REPO, run_cli

SHARED = REPO.parent / "shared" / "weights"
CAFFE_FLAGS = "train with --preprocessing caffe --strides v1"


def resnet50_stem_to_layer3(path, stem_variance: tuple[float, float]):
    """Like ../shared/weights/resnet50_imagenet_keras_stem-layer3.pt: torchvision's key names, stem to layer3,
    no num_batches_tracked; the stem's BatchNorm variances drawn from `stem_variance`."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    state = {k: v for k, v in resnet50().state_dict().items()
             if k.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")) and not k.endswith("num_batches_tracked")}
    assert len(state) == 215  # the Keras file's tensor count
    state["bn1.running_var"] = torch.empty(64).uniform_(*stem_variance)
    torch.save(state, path)
    return path


@pytest.fixture
def keras_resnet50(tmp_path):
    return resnet50_stem_to_layer3(tmp_path / "keras.pt", (180.0, 84000.0))  # the Keras file's range: 184 to 83615


def initialise(model: str, options: dict) -> list[str]:
    backend, messages = get_backend(model), []
    backend.initialise(backend.build(7 if model.startswith("timm/") else 1, options), options, messages.append)
    return messages


@pytest.mark.slow
def test_the_issues_command_is_refused_in_one_line_naming_the_flags(keras_resnet50, ham_dir, tmp_path):
    result = run_cli("train", "--model", "resnet50", "--init", str(keras_resnet50), "--data", str(ham_dir), "--out", str(tmp_path / "run"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and CAFFE_FLAGS in result.stderr and "this run: " in result.stderr


def test_caffe_weights_with_imagenet_preprocessing_are_refused(keras_resnet50):
    with pytest.raises(DermcliError, match=f"{CAFFE_FLAGS} \\(this run: --preprocessing imagenet\\)"):
        initialise("resnet50", {"init": keras_resnet50, "strides": "v1", "preprocessing": "imagenet"})
    with pytest.raises(DermcliError, match=f"{CAFFE_FLAGS} \\(this run: --preprocessing imagenet, --strides v1.5\\)"):
        initialise("resnet50", {"init": keras_resnet50, "strides": "v1.5", "preprocessing": "imagenet"})


def test_a_correctly_flagged_run_is_accepted(keras_resnet50, ham_dir, tmp_path):
    assert initialise("resnet50", {"init": keras_resnet50, "strides": "v1", "preprocessing": "caffe"})[0].startswith("initialised from")
    messages = []
    best = train(TrainConfig(data=str(ham_dir), out=str(tmp_path / "run"), model="resnet50", init=str(keras_resnet50), preprocessing="caffe",
                             strides="v1", epochs=1, batch_size=16, input_size=64), log=messages.append)
    assert best.is_file() and messages[0].startswith(f"initialised from {keras_resnet50}")
    assert not any("train with" in m for m in messages)


def test_weights_for_unit_scale_inputs_are_not_taken_for_caffe_ones(tmp_path):
    imagenet_scale = resnet50_stem_to_layer3(tmp_path / "torchvision.pt", (0.5, 20.0))
    assert recognise(torch.load(imagenet_scale, weights_only=True)) is None
    assert initialise("resnet50", {"init": imagenet_scale, "strides": "v1.5", "preprocessing": "imagenet"})[0].startswith("initialised from")


def test_tensorflow_efficientnet_lite_weights_warn_naming_inception(tmp_path):
    timm = pytest.importorskip("timm")
    lite = tmp_path / "lite0.pt"
    torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), lite)  # the shared file's key set
    warned = initialise("timm/efficientnet_lite0", {"init": lite, "preprocessing": "imagenet"})
    assert len(warned) == 2 and warned[0].startswith("warning: ")
    assert "train with --preprocessing inception (this run: --preprocessing imagenet)" in warned[0]
    assert initialise("timm/tf_efficientnet_lite0", {"init": lite, "preprocessing": "inception"})[0].startswith("initialised from")
    mobilenet = tmp_path / "mobilenetv2.pt"  # the same block names, no 5x5 depthwise convs: no layout of note
    torch.save(timm.create_model("mobilenetv2_100").state_dict(), mobilenet)
    assert initialise("timm/mobilenetv2_100", {"init": mobilenet, "preprocessing": "imagenet"})[0].startswith("initialised from")


@pytest.mark.parametrize("name, preprocessing", [("resnet50_imagenet_keras_stem-layer3.pt", "caffe"),
                                                 ("tf_efficientnet_lite0_imagenet_timm.pt", "inception"),
                                                 ("tf_efficientnet_lite2_imagenet_timm.pt", "inception")])
def test_the_shared_files_are_recognised(name, preprocessing):
    if not (SHARED / name).is_file():
        pytest.skip(f"{SHARED / name} not found")
    assert recognise(torch.load(SHARED / name, weights_only=True)).options["preprocessing"] == preprocessing
