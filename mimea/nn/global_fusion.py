"""Weighted concatenation of unimodal embeddings, and the lineage's global modality weights (EVA, MCLEA).

The joint embedding of EVA, MCLEA and MEAformer is the same expression, ``concat_m(w_m * normalize(e_m))``; they
differ only in where ``w`` comes from: one learnable softmax over modalities shared by every entity (EVA/MCLEA,
:class:`GlobalWeightFusion`) or per-entity weights from an attention layer (MEAformer). :func:`weighted_concat`
is that one expression, for both.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def weighted_concat(embs: Sequence[Tensor], weights: Tensor) -> Tensor:
    """``concat_m(w_m * normalize(e_m))`` over the M embeddings ``embs`` (each ``[N, d_m]``).

    ``weights`` is ``[M]`` (one weight per modality, shared by all entities) or ``[N, M]`` (per entity).
    Returns ``[N, sum_m d_m]``.
    """
    if weights.dim() not in (1, 2) or weights.size(-1) != len(embs):
        raise ValueError(f"weights must be [M] or [N, M] with M={len(embs)}, got {tuple(weights.shape)}")
    parts = []
    for m, e in enumerate(embs):
        w = weights[m] if weights.dim() == 1 else weights[:, m:m + 1]
        parts.append(w * F.normalize(e, dim=-1))
    return torch.cat(parts, dim=-1)


class GlobalWeightFusion(nn.Module):
    """Learnable global (per-modality, not per-entity) softmax weights; joint = concat of ``w_m * normalize(e_m)``.

    The raw weights start at 1 (uniform softmax), as in EVA's ``weight_raw`` and MCLEA's ``MultiModalFusion``.
    """

    def __init__(self, modalities: Sequence[str]):
        super().__init__()
        if not modalities:
            raise ValueError("GlobalWeightFusion needs at least one modality")
        self.modalities = tuple(modalities)
        self.raw = nn.Parameter(torch.ones(len(self.modalities)))

    def weights(self) -> Tensor:
        """The softmax-normalised modality weights ``[M]`` (they sum to 1)."""
        return F.softmax(self.raw, dim=0)

    def per_entity(self, n: int) -> Tensor:
        """The weights as ``[n, M]``: the same row for every entity (the form per-entity fusions report)."""
        return self.weights().expand(n, -1)

    def forward(self, embs: Mapping[str, Tensor], *, detach_inputs: bool = False) -> Tensor:
        """The joint embedding ``[N, sum_m d_m]`` from ``embs`` (modality name -> ``[N, d_m]``).

        ``detach_inputs``: the joint passes gradient to the weights only, not to the unimodal embeddings (EVA).
        """
        missing = [m for m in self.modalities if m not in embs]
        if missing:
            raise KeyError(f"GlobalWeightFusion: no embedding for modalities {missing}")
        parts = [embs[m].detach() if detach_inputs else embs[m] for m in self.modalities]
        return weighted_concat(parts, self.weights())
