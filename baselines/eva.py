"""EVA (Liu et al., AAAI 2021, "Visual Pivoting for (Unsupervised) Entity Alignment"), under the shared harness.

What makes the method (the rest is the shared :class:`~mimea.nn.multimodal.MultiModalEncoder`, trainer and
evaluator): a GCN structure view, one learnable softmax weight per modality shared by every entity
(:class:`~mimea.nn.global_fusion.GlobalWeightFusion`), and an NCA-style loss on every unimodal embedding plus
one on the joint embedding, all summed. As in the authors' ``run_dbp15k.py``, the joint embedding is built from
DETACHED unimodal embeddings, so the joint loss trains only the modality weights (``detach_joint``).
Settings and deviations: ``docs/baselines.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from mimea.data.pair import MMKGPair
from mimea.models.base import AlignmentModel, Embeddings, ModelConfig
from mimea.models.registry import AUTHORS_DATA, register
from mimea.nn.global_fusion import GlobalWeightFusion
from mimea.nn.losses import nca_loss
from mimea.nn.multimodal import EncoderConfig, encoder_protocol


class GlobalFusionAligner(AlignmentModel):
    """The shared encoder with EVA's global softmax modality weights (kept by MCLEA): forward, weights, protocol.

    Subclasses add their losses; ``detach_joint`` (read from the config when it has the field) builds the joint
    embedding from detached unimodal embeddings, as EVA does.
    """

    def __init__(self, pair: MMKGPair, config: EncoderConfig):
        super().__init__(pair, config)
        self.encoder = config.build_encoder(pair)
        self.fusion = GlobalWeightFusion(self.encoder.modalities)
        self._protocol = encoder_protocol(pair, self.encoder)

    batch_forward: ClassVar[bool] = True   # row-wise fusion and in-batch losses: see AlignmentModel

    def forward(self, index: Tensor | None = None) -> Embeddings:
        embs = self.encoder(index)
        joint = self.fusion(embs, detach_inputs=getattr(self.config, "detach_joint", False))
        return Embeddings(joint=joint, modalities=embs, extras={"weights": self.fusion.per_entity(joint.size(0)),
                                                                "weight_names": self.encoder.modalities})

    @torch.no_grad()
    def modality_weights(self) -> tuple[tuple[str, ...], Tensor]:
        """The global weights, broadcast to ``[N, M]`` (every entity has the same row)."""
        return self.encoder.modalities, self.fusion.per_entity(self.encoder.n_ent).clone()

    def protocol(self) -> dict[str, Any]:
        return dict(self._protocol)


@register
class EVA(GlobalFusionAligner):
    """GCN + feature encoders, global softmax modality weights, NCA loss per modality and on the joint."""

    name: ClassVar[str] = "eva"
    # Authors' run_dbp15k.sh: lr 5e-4, bsize 7500, 1000 epochs. Their AdamW is built without weight_decay, so
    # PyTorch's default 0.01 applies (the script's --weight_decay 0 is never passed to the optimiser).
    train_defaults: ClassVar[dict] = {"lr": 5e-4, "weight_decay": 0.01, "batch_size": 7500, "epochs": 1000,
                                      "accumulate": "epoch"}   # one forward, slices summed, one step (theirs)
    #: cpu profile: ~3.9 s an epoch on FBDB15K, one core -> 60 epochs (benchmarks/bench_epoch.py).
    #: smoke profile: narrower widths, so a synthetic run takes seconds (the tests and `nox -s reproduce`).
    profile_defaults: ClassVar[dict] = {**AUTHORS_DATA, "cpu": {"train": {"epochs": 60, "eval_every": 6}},
                                         "smoke": {"model_config": {"graph_dim": 64, "graph_widths": (), "relation_dim": 32,
                                                                    "attribute_dim": 32, "image_dim": 32}}}

    @dataclass
    class Config(ModelConfig, EncoderConfig):
        graph_kind: str = "gcn"
        edge_weights: str = "count"   # their get_adjr: triple multiplicities in D^-1/2 (A+I) D^-1/2
        attribute_width: int = 1000   # their load_attr: 1,000 columns, zero-padded (the launch shim's fix)
        graph_dim: int = 300          # used only when graph_widths is empty
        graph_widths: tuple[int, ...] = (400, 400, 200)   # their --hidden_units 400,400,200 (entity 400, out 200)
        relation_dim: int = 100
        attribute_dim: int = 100
        image_dim: int = 200
        alpha_graph: float = 5.0      # NCA alpha of the GCN view
        alpha: float = 15.0           # NCA alpha of the feature views and of the joint
        beta: float = 10.0
        ep: float = 0.0               # the script's NCA_loss(..., ep=0.0)
        detach_joint: bool = True     # joint loss reaches the modality weights only (authors' code)

    def loss(self, emb: Embeddings, links: Tensor) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        a, b = links[:, 0], links[:, 1]
        terms = {m: nca_loss(e[a], e[b], alpha=cfg.alpha_graph if m == "graph" else cfg.alpha, beta=cfg.beta,
                             ep=cfg.ep) for m, e in emb.modalities.items()}
        terms["joint"] = nca_loss(emb.joint[a], emb.joint[b], alpha=cfg.alpha, beta=cfg.beta, ep=cfg.ep)
        total = torch.stack(list(terms.values())).sum()
        return total, {f"loss_{k}": float(v.detach()) for k, v in terms.items()}

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {"alpha": trial.suggest_float("alpha", 5.0, 20.0),
                "alpha_graph": trial.suggest_float("alpha_graph", 2.0, 15.0),
                "beta": trial.suggest_float("beta", 2.0, 15.0)}
