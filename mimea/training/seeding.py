"""Deterministic seeding and device choice (``cuda`` when present, never hard-coded)."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # Same seed, same numbers: scatter-based message passing otherwise differs in the last digits between runs
    # (measured: MRR 0.2068485803 vs 0.2068485521 on the synthetic default). warn_only keeps ops without a
    # deterministic kernel usable (they warn instead of raising).
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)
