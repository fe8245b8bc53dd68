"""Architectures of the paper as Z2, p4 and p4m networks, built by name.

>>> model = build_model("allcnnc", "p4m")          # (B, 3, H, W) -> (B, 10) logits
>>> count_parameters(model), count_macs(model, (3, 32, 32))

Families: :mod:`models.allcnnc` (All-CNN-C), :mod:`models.resnet`
(pre-activation ResNet44/26, ``head="invariant"|"reference"``), :mod:`models.rotmnist`
(the rotated-MNIST CNNs of Table 1, ``rotmnist_cnn`` and ``rotmnist_cnn_rp``, and the
demo's ``rotmnist``); the registry in :mod:`models.registry`; costs and invariance in
:mod:`models.complexity`; the model table in :mod:`repro.models_table`
(``scripts/models_table.py``).
"""
from .allcnnc import AllCNNC
from .complexity import count_macs, count_parameters, evaluating, invariance_error
from .registry import (build_model, default_input_shape, get_spec, list_models, paper_name, reference_params,
                       scale_widths)
from .resnet import PreActResNet
from .rotmnist import RotMNISTNet

__all__ = [
    "build_model", "list_models", "get_spec", "default_input_shape", "reference_params", "paper_name", "scale_widths",
    "count_parameters", "count_macs", "invariance_error", "evaluating",
    "AllCNNC", "PreActResNet", "RotMNISTNet",
]
