"""Model backends by name: the cards' fixed architectures, torchvision's registry and timm/NAME."""

import importlib

from dermcli.models import descriptions
from dermcli.models.backend import _MODULES, _REGISTRY, Backend, register


def get_backend(name: str) -> Backend:
    if name not in _REGISTRY:
        if name in _MODULES:
            importlib.import_module(f"dermcli.models.{name}")
        elif name.startswith("timm/"):
            from dermcli.models.timm_zoo import backend

            register(backend(name))
        else:
            from dermcli.models.torchvision_zoo import backend

            register(backend(name))
    return _REGISTRY[name]


def describe(name: str) -> str:
    """The model-card paragraph of backend `name`; only a torchvision model's needs torch (its parameter count)."""
    if name in descriptions.FIXED:
        return descriptions.FIXED[name]
    if name.startswith("timm/"):
        return descriptions.timm_description(name.removeprefix("timm/"))
    return get_backend(name).description
