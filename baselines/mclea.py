"""MCLEA (Lin et al., COLING 2022, "Multi-modal Contrastive Representation Learning for EA"), shared harness.

What makes the method (encoders, trainer and evaluator are shared): EVA's global softmax modality weights
(:class:`~baselines.eva.GlobalFusionAligner`) over a diagonal-GAT structure view, and three losses on every
batch of seed links:

* ICL on the joint embedding (:func:`~mimea.nn.losses.info_nce`, in-batch and same-KG negatives, ``tau``);
* ICL on every unimodal embedding, combined with learned uncertainty weights (Kendall; ``CustomMultiLossLayer``);
* IAL: each unimodal in-batch distribution pulled toward the DETACHED joint one by a KL term (``tau2``), also
  uncertainty-weighted. ``zoom`` scales each KL term and, as in the authors' ``kl_alignment_loss``, the
  weighted IAL sum once more.

:func:`unimodal_icl` is shared with MEAformer, which inherits these unimodal terms.
Settings and deviations: ``docs/baselines.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from torch import Tensor

from mimea.data.pair import MMKGPair
from mimea.models.base import Embeddings, ModelConfig
from mimea.models.registry import AUTHORS_DATA, register
from mimea.nn.losses import UncertaintyWeighting, ial_loss, info_nce
from mimea.nn.multimodal import EncoderConfig

from baselines.eva import GlobalFusionAligner


def unimodal_icl(embs: Mapping[str, Tensor], links: Tensor, tau: float,
                 weighting: UncertaintyWeighting) -> tuple[Tensor, dict[str, Tensor]]:
    """Uncertainty-weighted ICL over the unimodal embeddings ``embs`` on ``links`` ``[B, 2]``.

    Returns (weighted sum, modality -> unweighted ICL term).
    """
    a, b = links[:, 0], links[:, 1]
    terms = {m: info_nce(e[a], e[b], tau=tau) for m, e in embs.items()}
    return weighting(list(terms.values())), terms


@register
class MCLEA(GlobalFusionAligner):
    """Diagonal GAT + feature encoders, global softmax modality weights, joint ICL + weighted ICL and IAL.

    ``train_defaults`` are the authors' run_mmkb.sh: lr 5e-4, bsize 512, 1000 epochs (IL from 500 when
    ``train.iterative``); their AdamW gets no weight_decay argument, so PyTorch's default 0.01 applies.
    """

    name: ClassVar[str] = "mclea"
    train_defaults: ClassVar[dict] = {"lr": 5e-4, "weight_decay": 0.01, "batch_size": 512, "epochs": 1000,
                                      # their epoch (MCLEA.train): one forward, every 512-link slice's loss
                                      # back-propagated into one gradient (summed), ONE optimiser step
                                      "accumulate": "epoch"}
    #: cpu profile: ~19 s an epoch (5 steps) on FBDB15K, one core -> 12 epochs (benchmarks/bench_epoch.py).
    #: smoke profile: narrower widths, so a synthetic run takes seconds (the tests and `nox -s reproduce`).
    profile_defaults: ClassVar[dict] = {**AUTHORS_DATA, "cpu": {"train": {"epochs": 60, "eval_every": 10}},
                                         "smoke": {"model_config": {"graph_dim": 64, "relation_dim": 32,
                                                                    "attribute_dim": 32, "image_dim": 32}}}

    @dataclass
    class Config(ModelConfig, EncoderConfig):
        # Encoder defaults (EncoderConfig) are MCLEA's run_mmkb.sh: --structure_encoder gat, hidden_units
        # 300,300,300, heads 2,2, --attr_dim 100 (relation and attribute), --img_dim 100.
        attribute_width: int = 1000   # their load_attr: a 1,000-wide bag, zero-padded (341 names on FBDB15K)
        tau: float = 0.1              # ICL temperature
        tau2: float = 4.0             # IAL temperature
        zoom: float = 0.1

    def __init__(self, pair: MMKGPair, config: "MCLEA.Config"):
        super().__init__(pair, config)
        n = len(self.encoder.modalities)
        self.icl_weighting = UncertaintyWeighting(n)
        self.ial_weighting = UncertaintyWeighting(n)

    def ial(self, emb: Embeddings, links: Tensor) -> Tensor:
        """The uncertainty-weighted IAL term (unimodal toward the detached joint), times ``zoom``."""
        cfg = self.config
        a, b = links[:, 0], links[:, 1]
        ja, jb = emb.joint[a], emb.joint[b]
        terms = [ial_loss(e[a], e[b], ja, jb, tau2=cfg.tau2, zoom=cfg.zoom) for e in emb.modalities.values()]
        return cfg.zoom * self.ial_weighting(terms)

    def loss(self, emb: Embeddings, links: Tensor) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        joint = info_nce(emb.joint[links[:, 0]], emb.joint[links[:, 1]], tau=cfg.tau)
        icl, per_modality = unimodal_icl(emb.modalities, links, cfg.tau, self.icl_weighting)
        ial = self.ial(emb, links)
        logs = {"loss_joint": float(joint.detach()), "loss_icl": float(icl.detach()), "loss_ial": float(ial.detach())}
        logs.update({f"icl_{m}": float(v.detach()) for m, v in per_modality.items()})
        return joint + icl + ial, logs

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {"tau": trial.suggest_float("tau", 0.03, 0.3, log=True),
                "tau2": trial.suggest_float("tau2", 1.0, 8.0, log=True),
                "zoom": trial.suggest_float("zoom", 0.03, 1.0, log=True)}
