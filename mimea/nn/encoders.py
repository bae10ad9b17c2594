"""Per-entity encoders: the lineage's feature projections and the learnable entity table."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureEncoder(nn.Module):
    """Project a per-entity feature matrix ``[N, in_dim]`` to ``[N, out_dim]``.

    ``hidden=None``: one ``Linear`` (the relation / attribute / image encoders of EVA, MCLEA and
    MEAformer). ``hidden=h``: a 2-layer MLP ``Linear -> ReLU -> dropout -> Linear``. ``dropout``
    also applies to the input of the single Linear. PyTorch's default Linear init, as the authors.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"in_dim and out_dim must be >= 1, got {in_dim}, {out_dim}")
        self.dropout = dropout
        self.hidden = hidden
        if hidden is None:
            self.net = nn.Linear(in_dim, out_dim)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        if self.hidden is None:
            x = F.dropout(x, self.dropout, training=self.training)
        return self.net(x)


class EntityEmbedding(nn.Module):
    """A learnable ``[n_ent, dim]`` entity table, the input of the structure encoder.

    ``init="normal"``: ``N(0, 1/sqrt(n_ent))`` as MCLEA/MEAformer/EVA (``nn.init.normal_`` with
    ``std = 1 / sqrt(n_ent)``); ``init="xavier"``: Xavier-uniform.
    """

    def __init__(self, n_ent: int, dim: int, init: str = "normal"):
        super().__init__()
        if n_ent < 1 or dim < 1:
            raise ValueError(f"n_ent and dim must be >= 1, got {n_ent}, {dim}")
        if init not in ("normal", "xavier"):
            raise ValueError(f"unknown init {init!r}; known: normal, xavier")
        self.init = init
        self.weight = nn.Parameter(torch.empty(n_ent, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "normal":
            nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.weight.size(0)))
        else:
            nn.init.xavier_uniform_(self.weight)

    def forward(self) -> Tensor:
        return self.weight
