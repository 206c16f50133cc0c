"""Architectures, their checkpoints and what their outputs mean.

A backend (models/backend.py) builds an architecture, loads its starting weights and cuts it at a --freeze
point; models/registry.py finds one by name: the model cards' two (`cnn`, `resnet50`: one module each), every
torchvision classification model by its torchvision name (torchvision_zoo.py) and every timm model as
`timm/NAME` (timm_zoo.py). To add a fixed architecture: write models/NAME.py with a Backend subclass that it
registers, and list NAME in backend._MODULES.
"""
