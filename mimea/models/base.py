"""The model interface every aligner (MIMEA and each baseline) implements.

A model is built from a validated :class:`~mimea.data.pair.MMKGPair` and its own typed config
(a dataclass declared as ``Config`` on the class). The trainer only ever calls:

* ``forward()``            -> :class:`Embeddings` over all entities (full-graph forward),
* ``loss(emb, links)``     -> (scalar loss, dict of float logs) on a batch of seed links ``[B, 2]``,
* ``forward(index)``       -> the rows ``index`` only, when the class sets ``batch_forward = True``: its loss reads
  nothing but the batch entities' rows, so the trainer passes ``index = unique(batch)`` and the batch's links
  renumbered into it. Same loss, same gradients; the feature encoders and fusion run on ~2B rows, not all N.
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
    #: Profile name -> what that profile sets for this model only, a nested override of the run config:
    #: ``{"train": {...}, "model_config": {...}}`` (e.g. the cpu profile's epochs, the smoke profile's widths).
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: True when ``forward(index)`` returns rows ``index`` only and ``loss`` reads only the rows of its links.
    batch_forward: ClassVar[bool] = False
    #: The code revision: bump it (with a line saying why) when a change alters what the model computes for the
    #: same config, so the run store never reuses, resumes or tabulates a run of the earlier code as this one's.
    REVISION: ClassVar[int] = 0

    def __init__(self, pair: MMKGPair, config: ModelConfig):
        super().__init__()
        self.config = config

    def forward(self, index: torch.Tensor | None = None) -> Embeddings:  # pragma: no cover - interface
        raise NotImplementedError

    def loss(self, emb: Embeddings, links: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError  # pragma: no cover - interface

    def prepare_training(self, train_links: torch.Tensor) -> None:
        """Data-side parts that need the training links, called once before training (default: none).

        A method whose authors build training data from the seeds (MSNEA: triples swapped across seed pairs,
        attribute sets shared by seed pairs) does it here; it must be a deterministic function of the links, so a
        resumed run rebuilds the same data. Never sees validation or test links.
        """

    def steps_per_epoch(self, n_links: int, batch_size: int) -> int | None:
        """Optimisation steps in one epoch; None (default): one pass over the links in batches of ``batch_size``.
        A model whose authors define the epoch otherwise (MSNEA: a pass over the triples) returns its count."""
        return None

    def batch_loss(self, links: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """One training step's loss on seed links ``[B, 2]``: the forward the class allows, then ``loss``.

        With ``batch_forward`` only the batch's entities are encoded and the links are renumbered into them.
        """
        if self.batch_forward:
            index, local = torch.unique(links, return_inverse=True)
            return self.loss(self(index), local)
        return self.loss(self(), links)

    def summed_loss(self, batches: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The sum of ``loss`` over several link batches from ONE forward (an accumulated optimiser step).

        One batch: exactly :meth:`batch_loss`. Logs are the mean over the batches.
        """
        if len(batches) == 1:
            return self.batch_loss(batches[0])
        if self.batch_forward:
            index, local = torch.unique(torch.cat(batches), return_inverse=True)
            emb = self(index)
            parts = torch.split(local, [len(b) for b in batches])
        else:
            emb = self()
            parts = batches
        total, logs = None, {}
        for part in parts:
            loss, lg = self.loss(emb, part)
            total = loss if total is None else total + loss
            for k, v in lg.items():
                logs[k] = logs.get(k, 0.0) + float(v) / len(parts)
        return total, logs

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
