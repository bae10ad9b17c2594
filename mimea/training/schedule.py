"""Learning-rate schedules over the run's optimiser steps (``train.schedule``), a part the trainer composes.

* ``constant``: the configured lr at every step;
* ``cosine_warmup``: linear warm-up from 0 over ``warmup`` (a share of all steps), then cosine decay to 0 at the
  last step: the multiplier of ``transformers.get_cosine_schedule_with_warmup`` (MEAformer's), so the first
  step runs at lr 0;
* ``linear_warmup``: the same warm-up, then linear decay to 0 (``get_linear_schedule_with_warmup``).

The total is ``epochs x optimiser steps per epoch`` of the epoch plan; the scheduler's state is checkpointed.
"""
from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "cosine_warmup", "linear_warmup")


def lr_multiplier(name: str, step: int, total: int, warmup: float) -> float:
    """The lr multiplier before optimiser step ``step`` (0-based) of ``total``."""
    if name == "constant":
        return 1.0
    n_warm = int(warmup * total)
    if step < n_warm:
        return step / max(1, n_warm)
    progress = min(1.0, (step - n_warm) / max(1, total - n_warm))
    if name == "cosine_warmup":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    if name == "linear_warmup":
        return max(0.0, 1.0 - progress)
    raise ValueError(f"train.schedule={name!r}; choose from {', '.join(SCHEDULES)}")


def build_schedule(optimizer: torch.optim.Optimizer, name: str, total_steps: int,
                   warmup: float) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A ``LambdaLR`` for ``name`` over ``total_steps``; None for ``constant`` (nothing to step)."""
    if name not in SCHEDULES:
        raise ValueError(f"train.schedule={name!r}; choose from {', '.join(SCHEDULES)}")
    if name == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(name, step, total_steps, warmup))
