"""The optimiser a run trains with, by name (``train.optimizer``): the authors' choice is part of their method."""
from __future__ import annotations

from typing import Iterable

import torch

OPTIMIZERS = ("adamw", "adam", "sgd", "adagrad")


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """``adamw`` | ``adam`` | ``sgd`` | ``adagrad`` with ``lr`` and ``weight_decay`` (PyTorch semantics each)."""
    params = list(params)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer={name!r}; choose from {', '.join(OPTIMIZERS)}")
