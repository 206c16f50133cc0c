"""Any timm model as `--model timm/NAME` (`pip install "dermcli[timm]"`).

Built with `timm.create_model(NAME, num_classes=0)`, which ends in pooled features, followed by dermcli's
head; input size and normalisation come from the model's pretrained config. `--pretrained` lets timm
download its weights; `--init PATH` loads a state dict in timm's key names.
"""

from dataclasses import dataclass, field

from dermcli.core.errors import DermcliError
from dermcli.models import descriptions
from dermcli.models.backend import Backend
from dermcli.models.common import Classifier, init_from_file, load_partial, make_head, preprocessing_for, split_classifier

PREFIX = "timm/"


def _timm():
    try:
        import timm
    except ImportError:
        raise DermcliError('timm models need timm: pip install "dermcli[timm]"') from None
    return timm


@dataclass(frozen=True)
class TimmBackend(Backend):
    freeze_choices: tuple[str, ...] = ("none", "backbone")  # or any module path of the backbone (common.split_at)
    freeze_points: bool = True
    default_options: dict = field(default_factory=lambda: {"pretrained": True, "init": None, "head": "linear", "input_size": 224})

    @property
    def timm_name(self) -> str:
        return self.name.removeprefix(PREFIX)

    def build(self, num_outputs: int, options: dict):
        model = _timm().create_model(self.timm_name, pretrained=False, num_classes=0)
        return Classifier(model, make_head(options.get("head") or "linear", model.num_features, num_outputs))

    def initialise(self, model, options: dict, log) -> None:
        if options.get("init"):
            init_from_file(model, options, log, prefix="backbone.")
        elif options.get("pretrained"):
            timm = _timm()
            try:
                state = timm.create_model(self.timm_name, pretrained=True, num_classes=0).state_dict()
            except Exception as e:  # network, hub and format failures all mean "cannot have them here"
                raise DermcliError(f"timm could not get pretrained weights for {self.timm_name} ({type(e).__name__}: {str(e)[:120]}); "
                                   "use --no-pretrained, or --init PATH to a state dict in timm's key names") from None
            done, random = load_partial(model, state, f"timm {self.timm_name}", prefix="backbone.")
            log(f"initialised from timm's pretrained {self.timm_name}: {', '.join(done)}; random: {', '.join(random)}")
        else:
            log("random initialisation (no pretrained weights)")

    def split_frozen(self, model, freeze: str):
        from timm.layers import get_notrace_functions, get_notrace_modules  # layers fx must not trace into

        return split_classifier(model, freeze, leaf_modules=list(get_notrace_modules()), autowrap_functions=tuple(get_notrace_functions()))


def backend(name: str) -> TimmBackend:
    timm = _timm()
    timm_name = name.removeprefix(PREFIX)
    if not timm.is_model(timm_name):
        import difflib

        close = difflib.get_close_matches(timm_name, timm.list_models(), n=4, cutoff=0.6)
        raise DermcliError(f"unknown timm model {timm_name!r}" + (f" (did you mean {', '.join(PREFIX + c for c in close)}?)" if close else ""))
    config = timm.get_pretrained_cfg(timm_name)
    input_size = config.input_size[-1] if config else 224
    mean, std = (config.mean, config.std) if config else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return TimmBackend(name=name, default_task="multiclass", input_size=int(input_size),
                       default_preprocessing=preprocessing_for(mean, std, f"timm {timm_name}"),
                       description=descriptions.timm_description(timm_name))


def catalogue() -> list[dict]:
    """Every timm model with pretrained weights: name, input size, and whether its default weights are in the
    Hugging Face or torch hub cache already (parameters are only known once built)."""
    from pathlib import Path

    from huggingface_hub import try_to_load_from_cache
    from torch.hub import get_dir

    def cached(config) -> bool:  # where timm looks: the Hugging Face hub if the weights live there, else their URL
        if config.hf_hub_id:
            return any(isinstance(try_to_load_from_cache(config.hf_hub_id, f), str) for f in ("model.safetensors", "pytorch_model.bin"))
        return bool(config.url) and (Path(get_dir()) / "checkpoints" / Path(config.url).name).is_file()

    timm = _timm()
    rows = {}
    for name in timm.list_models(pretrained=True):
        model = name.split(".")[0]
        if PREFIX + model not in rows and (config := timm.get_pretrained_cfg(model)):
            rows[PREFIX + model] = {"model": PREFIX + model, "parameters": None, "input_size": config.input_size[-1], "cached": cached(config)}
    return list(rows.values())
