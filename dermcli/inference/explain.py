"""Where the model looked: class activation maps (torchcam) and input-gradient saliency, for any backbone.

torchcam is used rather than pytorch-grad-cam because it needs nothing dermcli does not already install
(torch, numpy, pillow, matplotlib); pytorch-grad-cam pulls in OpenCV. Saliency (|d score / d pixel|, Simonyan
et al. 2014) is a few lines here, as torchcam has no such method.

Input x gradient (Shrikumar et al. 2016) is the gradient times the preprocessed pixel, summed over colours,
positive part: evidence relative to the preprocessing's zero (black for `unit`, the mean colour otherwise).
Plain saliency is kept because the binary card's repository shows it, but it is noisy: on a model that learned
where a bright patch sits, its peak lay on the patch in 5 of 40 images, input x gradient's in 40 of 40
(tests/test_explain.py).

The map's resolution is that of the explained layer: 3x3 for the 28x28 CNN (each cell covers about a third
of the image, so it can say "upper left", never "this dot"), 7x7 for ResNet50 at 224.
"""

import math

import numpy as np
import torch
from torch import nn

from dermcli.core.errors import DermcliError
from dermcli.data.transforms import normalize
from dermcli.inference.tta import tta_views

CAM_METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMpp", "smoothgradcam++": "SmoothGradCAMpp", "xgradcam": "XGradCAM",
               "layercam": "LayerCAM", "scorecam": "ScoreCAM"}
METHODS = (*CAM_METHODS, "input-x-gradient", "saliency")
TOKEN_NORMS = ("ln_1", "norm1")  # a transformer block's first norm: its tokens still reach the class token
Outputs = list[tuple[str, tuple[int, ...]]]  # (module name, output shape) pairs: layer_outputs


def layer_outputs(model: nn.Module, size: int) -> Outputs:
    """(module name, output shape) of every named module, in the order their forward calls finish."""
    seen, hooks = [], []
    for name, module in model.named_modules():
        if name:
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: seen.append((name, tuple(o.shape))) if isinstance(o, torch.Tensor) else None))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def token_grid(shape: tuple[int, ...]) -> int | None:
    """Side of the square grid of a (N, tokens, dim) output (with or without a class token), else None."""
    if len(shape) != 3:
        return None
    for prefix in (1, 0):
        side = math.isqrt(shape[1] - prefix)
        if side > 1 and side * side == shape[1] - prefix:
            return side
    return None


def default_layer(model: nn.Module, size: int, outputs: Outputs | None = None) -> str:
    """The last spatial map before pooling: the last (N, C, H, W) output with H, W > 1; for a vision
    transformer, the first norm of its last block (tokens after the last block feed only the class token).
    `outputs`: layer_outputs(model, size), when already at hand."""
    outputs = outputs or layer_outputs(model, size)
    maps = [i for i, (_, shape) in enumerate(outputs) if len(shape) == 4 and shape[2] > 1 and shape[3] > 1]
    tokens = [i for i, (name, shape) in enumerate(outputs) if name.rsplit(".", 1)[-1] in TOKEN_NORMS and token_grid(shape)]
    if tokens and (not maps or tokens[-1] > maps[-1]):
        return outputs[tokens[-1]][0]
    if not maps:
        raise DermcliError("found no spatial layer to explain: pass --layer NAME")
    return outputs[maps[-1]][0]


def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """(N, [class +] side*side, D) -> (N, D, side, side), the class token dropped."""
    side = token_grid(tuple(tokens.shape))
    return tokens[:, tokens.shape[1] - side * side:].transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


def _not_inplace(model: nn.Module) -> None:
    # Gradient hooks cannot sit on tensors that an in-place ReLU overwrites later.
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False


def input_gradient_map(model: nn.Module, x: torch.Tensor, target: int, times_input: bool) -> torch.Tensor:
    """|d score / d pixel| (max over colours), or with `times_input` the positive part of gradient x input."""
    x = x.clone().requires_grad_(True)
    model(x)[:, target].sum().backward()
    return (x.grad * x).sum(dim=1)[0].relu() if times_input else x.grad.abs().amax(dim=1)[0]


def explanation_map(model: nn.Module, x: torch.Tensor, method: str, target: int, layer: str | None = None,
                    outputs: Outputs | None = None) -> tuple[np.ndarray, str, tuple[int, int]]:
    """A (H, W) map in [0, 1] at x's resolution of where the evidence for output `target` lies, for one
    preprocessed image x (1, 3, H, W); also the layer explained and its map's size. `outputs`: layer_outputs(model,
    H), when already at hand."""
    if method not in METHODS:
        raise DermcliError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    model.eval()
    _not_inplace(model)
    size = x.shape[-1]
    members = getattr(model, "members", None)  # an ensemble (models.ensemble.Ensemble)
    if members is not None and layer is None and method in CAM_METHODS:
        return ensemble_map(model, members, x, method, target, outputs)
    with torch.enable_grad():
        if method in ("saliency", "input-x-gradient"):
            heat, layer, grid = input_gradient_map(model, x, target, method == "input-x-gradient"), "input", (size, size)
        else:
            import torchcam.methods

            outputs = outputs or layer_outputs(model, size)  # one probing pass serves the choice and the shape check
            layer = layer or default_layer(model, size, outputs)
            if layer not in dict(model.named_modules()):
                raise DermcliError(f"--layer {layer!r}: no such module (e.g. {default_layer(model, size, outputs)})")
            shapes = dict(outputs)
            transform = tokens_to_map if token_grid(shapes.get(layer, ())) else None
            extractor = getattr(torchcam.methods, CAM_METHODS[method])(model, target_layer=layer, input_shape=tuple(x.shape[1:]),
                                                                        reshape_transform=transform)
            try:
                scores = model(x)
                cam = extractor(target, scores)[0]
            finally:
                extractor.remove_hooks()
            grid = tuple(cam.shape[-2:])
            heat = torch.nn.functional.interpolate(cam.detach().float().reshape(1, 1, *grid), size=(size, size), mode="bilinear",
                                                   align_corners=False)[0, 0]
    return unit_range(heat.detach().nan_to_num(0.0).numpy()), layer, grid


def view_averaged_map(model: nn.Module, image: np.ndarray, preprocessing: str, tta: str, method: str, target: int,
                      layer: str | None = None) -> tuple[np.ndarray, str, tuple[int, int]]:
    """explanation_map of each --tta view of one uint8 (S, S, 3) image, turned back to the image's orientation
    and averaged: the evidence for `target` as the views' averaged probabilities weigh it."""

    side = image.shape[0]
    # The same views of the pixel numbers say which pixel of the image each pixel of a view shows.
    sources = tta_views(np.arange(side * side).reshape(1, side, side, 1), tta)
    outputs = layer_outputs(model, side) if method in CAM_METHODS else None  # the views share one probing pass
    heat = np.zeros(side * side)
    for view, source in zip(tta_views(image[None], tta), sources):
        x = torch.from_numpy(normalize(view, preprocessing))
        view_heat, explained, grid = explanation_map(model, x, method, target, layer, outputs)
        heat[source.ravel()] += view_heat.ravel()
    return unit_range(heat.reshape(side, side)), explained, grid


def unit_range(heat: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] (all zeros when flat)."""
    return (heat - heat.min()) / max(float(heat.max() - heat.min()), 1e-12)


def ensemble_map(model: nn.Module, members, x: torch.Tensor, method: str, target: int,
                 outputs: Outputs | None = None) -> tuple[np.ndarray, str, tuple[int, int]]:
    """An ensemble has no single layer: the mean of each member's map at its own last spatial layer, each
    taken for the ensemble's output (so a member weighs as much as it moves the averaged probability)."""
    outputs = outputs or layer_outputs(model, x.shape[-1])  # one probing pass finds every member's layer
    layers = [default_layer(member, x.shape[-1], [o for o in outputs if o[0].startswith(f"members.{i}.")])
              for i, member in enumerate(members)]
    maps = [explanation_map(model, x, method, target, layer, outputs) for layer in layers]
    heat = unit_range(np.mean([m[0] for m in maps], axis=0))
    names = {layer.split(".", 2)[2] for layer in layers}
    return heat, f"each member's {names.pop()}" if len(names) == 1 else ", ".join(layers), maps[0][2]
