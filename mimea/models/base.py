"""The model interface every aligner (MIMEA and each baseline) implements.

A model is built from a validated :class:`~mimea.data.pair.MMKGPair` and its own typed config
(a dataclass declared as ``Config`` on the class). The trainer only ever calls:

* ``forward()``            -> :class:`Embeddings` over all entities (full-graph forward),
* ``loss(emb, links)``     -> (scalar loss, dict of float logs) on a batch of seed links ``[B, 2]``,
* ``embed()``              -> the evaluation embedding ``[n_ent, d]`` (eval mode, no grad),
* ``protocol()``           -> the protocol flags recorded with every run,
* ``search_space(trial)``  -> (classmethod) Optuna suggestions for the tuner.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from mimea.data.pair import MMKGPair


@dataclass
class Embeddings:
    """What a forward pass returns.

    joint: ``[n_ent, d]`` joint (fused) embedding, used for evaluation.
    modalities: modality name -> ``[n_ent, d_m]`` unimodal embeddings.
    extras: anything else a loss or a figure needs (e.g. ``weights``: ``[n_ent, M]`` modality weights,
        ``weight_names``: the M modality names as a tuple under ``extras_meta``).
    """

    joint: torch.Tensor
    modalities: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Base of every model's config. Subclasses add their own typed fields with defaults."""


class AlignmentModel(nn.Module):
    """Base class: subclasses set ``name`` and ``Config`` and implement forward/loss."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = ModelConfig

    def __init__(self, pair: MMKGPair, config: ModelConfig):
        super().__init__()
        self.config = config

    def forward(self) -> Embeddings:  # pragma: no cover - interface
        raise NotImplementedError

    def loss(self, emb: Embeddings, links: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError  # pragma: no cover - interface

    @torch.no_grad()
    def embed(self) -> torch.Tensor:
        """Evaluation embedding: the joint embedding in eval mode."""
        was = self.training
        self.eval()
        out = self.forward().joint
        self.train(was)
        return out

    def modality_weights(self) -> tuple[tuple[str, ...], torch.Tensor] | None:
        """(names, ``[n_ent, M]`` weights) at evaluation, for figures; None if the model has none."""
        return None

    def protocol(self) -> dict[str, Any]:
        """Protocol flags of this model (names used, attribute values used...). The trainer adds iterative."""
        return {}

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        """Optuna suggestions: a dict of Config field -> suggested value. Empty means not tunable."""
        return {}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
