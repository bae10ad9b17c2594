"""A third-party model for mimea: GCN + attribute projection, InfoNCE (docs/extending.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mimea.data.pair import MMKGPair
from mimea.models.base import AlignmentModel, Embeddings, ModelConfig
from mimea.models.registry import register
from mimea.nn.encoders import EntityEmbedding, FeatureEncoder
from mimea.nn.graph import GCNEncoder
from mimea.nn.losses import info_nce


@register
class ExampleGCN(AlignmentModel):
    """Structure (GCN) + attributes (Linear), joint = [graph, attribute], InfoNCE on the joint."""

    name: ClassVar[str] = "example_gcn"

    @dataclass
    class Config(ModelConfig):
        dim: int = 64           # width of each modality
        layers: int = 2         # GCN layers
        tau: float = 0.1        # InfoNCE temperature
        dropout: float = 0.0

    #: the model's own settings (its "authors' settings"), then per-profile ones
    train_defaults: ClassVar[dict] = {"lr": 5e-3, "batch_size": 512, "epochs": 200}
    profile_defaults: ClassVar[dict] = {"smoke": {"train": {"epochs": 20, "eval_every": 5}}}

    def __init__(self, pair: MMKGPair, config: "ExampleGCN.Config | None" = None):
        config = config if config is not None else self.Config()
        super().__init__(pair, config)
        self.register_buffer("edge_index", pair.edge_index(self_loops=False).cpu())
        self.register_buffer("att_x", pair.att_features.float().cpu(), persistent=False)
        self.entity = EntityEmbedding(pair.n_ent, config.dim)
        self.gcn = GCNEncoder(config.dim, n_layers=config.layers, dropout=config.dropout)
        self.att = FeatureEncoder(pair.att_features.size(1), config.dim)

    def forward(self, index: Tensor | None = None) -> Embeddings:
        graph = self.gcn(self.entity(), self.edge_index)
        att = self.att(self.att_x)
        joint = torch.cat([F.normalize(graph, dim=1), F.normalize(att, dim=1)], dim=1)
        return Embeddings(joint=joint, modalities={"graph": graph, "attribute": att})

    def loss(self, emb: Embeddings, links: Tensor) -> tuple[Tensor, dict[str, float]]:
        total = info_nce(emb.joint[links[:, 0]], emb.joint[links[:, 1]], self.config.tau)
        return total, {"loss": float(total.detach())}

    def protocol(self) -> dict[str, Any]:  # recorded with every run and printed under the tables
        return {"names": False, "attribute_values": False, "images": "unused"}

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:  # what `mimea tune` searches besides lr, weight decay
        return {"tau": trial.suggest_float("tau", 0.02, 0.5, log=True)}
