"""MEAformer (Chen et al., ACM MM 2023, "Multi-modal Entity Alignment Transformer for Meta Modality Hybrid").

What makes the method (encoders, trainer and evaluator are shared):

* "meta modality hybrid": each entity's unimodal embeddings form a short token sequence that goes through a
  BERT-style Transformer layer (self-attention, residual + LayerNorm; FFN off on FB datasets). The layer's
  attention probabilities are summed over heads and queries, scaled by ``1/sqrt(M * heads)`` and softmaxed over
  the M modalities: ENTITY-LEVEL modality weights. joint = concat(w_m * normalize(e_m));
* losses: ICL on the joint embedding, plus unimodal ICL on the encoder outputs and on the Transformer's hidden
  states, both through ONE shared uncertainty weighting (as the authors' single ``multi_loss_layer``).

The attention uses :class:`torch.nn.MultiheadAttention` (its in-projection and out-projection are BERT's
query/key/value and ``BertSelfOutput.dense``; its returned per-head probabilities are BERT's, dropout included).
Settings and deviations: ``docs/baselines.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimea.data.pair import MMKGPair
from mimea.models.base import AlignmentModel, Embeddings, ModelConfig
from mimea.models.registry import AUTHORS_DATA, register
from mimea.nn.global_fusion import weighted_concat
from mimea.nn.losses import UncertaintyWeighting, info_nce
from mimea.nn.multimodal import EncoderConfig, encoder_protocol, evaluating

from baselines.mclea import unimodal_icl


class ModalityTransformerLayer(nn.Module):
    """One BERT layer over modality tokens ``[N, M, d]``: returns hidden states and attention ``[N, H, M, M]``."""

    def __init__(self, dim: int, heads: int = 1, attn_dropout: float = 0.1, hidden_dropout: float = 0.1,
                 ffn_dim: int | None = None, init: str = "linear"):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        if init == "linear":
            linear_init_(self.attn)
        elif init != "xavier":
            raise ValueError(f"unknown attn_init {init!r}; known: linear, xavier")
        self.drop = nn.Dropout(hidden_dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.ffn = None
        if ffn_dim:
            self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim),
                                     nn.Dropout(hidden_dropout))
            self.ffn_norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        out, probs = self.attn(tokens, tokens, tokens, need_weights=True, average_attn_weights=False)
        hidden = self.norm(tokens + self.drop(out))
        if self.ffn is not None:
            hidden = self.ffn_norm(hidden + self.ffn(hidden))
        return hidden, probs

    def attention_probs(self, tokens: Tensor) -> Tensor:
        """The probabilities :meth:`forward` returns, ``[N, H, M, M]``, without the values, the output projection
        and the LayerNorm (what an evaluation that only needs the modality weights reads).

        The query and key rows of the same in-projection and the same ``bmm(q * sqrt(1 / d_head), k^T)`` and softmax
        as :func:`torch.nn.functional.multi_head_attention_forward`; with one head the probabilities are those of
        :meth:`forward` to the bit (tested), with more the per-head layout may round differently in the last bit.
        Dropout follows ``self.training`` as in :meth:`forward`.
        """
        n, m, e = tokens.shape
        heads = self.attn.num_heads
        d_head = e // heads
        proj = F.linear(tokens, self.attn.in_proj_weight[: 2 * e], self.attn.in_proj_bias[: 2 * e])
        q, k = proj.unflatten(-1, (2, heads, d_head)).permute(2, 0, 3, 1, 4)      # each [N, H, M, d_head]
        probs = torch.matmul(q * math.sqrt(1.0 / float(d_head)), k.transpose(-1, -2)).softmax(dim=-1)
        return F.dropout(probs, self.attn.dropout, self.training)


def linear_init_(attn: nn.MultiheadAttention) -> None:
    """Re-initialise ``attn`` as the authors' separate ``nn.Linear`` query/key/value/dense layers start (PyTorch's
    default Linear init, kaiming-uniform a=sqrt(5) and bias U(+-1/sqrt(fan_in)): nothing in their repository
    re-initialises them; ``nn.MultiheadAttention`` would start xavier-uniform with zero biases)."""
    dim = attn.embed_dim
    with torch.no_grad():
        for block in attn.in_proj_weight.view(3, dim, dim):
            nn.init.kaiming_uniform_(block, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(attn.in_proj_bias, -bound, bound)
        nn.init.kaiming_uniform_(attn.out_proj.weight, a=math.sqrt(5))
        nn.init.uniform_(attn.out_proj.bias, -bound, bound)


def attention_weights(probs: Tensor) -> Tensor:
    """MEAformer's entity-level modality weights from attention ``[N, H, M, M]``: ``[N, M]``, rows sum to 1.

    Sum over heads and over query tokens (how much attention each modality token RECEIVES), divided by
    ``sqrt(M * H)``, softmax over modalities.
    """
    n_heads, m = probs.size(1), probs.size(-1)
    received = probs.sum(dim=1).sum(dim=-2) / math.sqrt(m * n_heads)
    return F.softmax(received, dim=-1)


@register
class MEAformer(AlignmentModel):
    """MCLEA encoders (all widths equal) + a modality-token Transformer giving per-entity modality weights."""

    name: ClassVar[str] = "meaformer"
    batch_forward: ClassVar[bool] = True   # per-entity transformer and in-batch losses: see AlignmentModel
    # Authors' run_meaformer.sh / config.py: lr 5e-4, AdamW weight_decay 1e-4, batch 3500, 500 epochs
    # (non-iterative), gradient clipping 1.0.
    # Their schedule (main.py:Runner.optim_init): transformers' cosine schedule with warm-up over 15 % of the
    # steps, the first step at lr 0 (docs/fidelity.md).
    train_defaults: ClassVar[dict] = {"lr": 5e-4, "weight_decay": 1e-4, "batch_size": 3500, "epochs": 500,
                                      "grad_clip": 1.0, "schedule": "cosine_warmup", "warmup": 0.15}
    #: cpu profile: ~15 s an epoch (one step) on FBDB15K, one core -> 16 epochs (benchmarks/bench_epoch.py).
    #: smoke profile: narrower widths, so a synthetic run takes seconds (the tests and `nox -s reproduce`).
    profile_defaults: ClassVar[dict] = {**AUTHORS_DATA, "cpu": {"train": {"epochs": 16, "eval_every": 4}},
                                         "smoke": {"model_config": {"graph_dim": 64, "relation_dim": 64,
                                                                    "attribute_dim": 64, "image_dim": 64,
                                                                    "name_dim": 64}}}

    @dataclass
    class Config(ModelConfig, EncoderConfig):
        graph_kind: str = "gat_diag"  # hidden_units 300,300,300, heads 2,2
        graph_dim: int = 300          # every token has this width (hidden_size = attr_dim = img_dim = 300)
        relation_dim: int = 300
        attribute_dim: int = 300
        image_dim: int = 300
        name_dim: int = 300
        attention_heads: int = 1      # --num_attention_heads 1
        fusion_layers: int = 1        # --num_hidden_layers 1
        ffn_dim: int = 0              # 0: FFN off (config.py forces use_intermediate=0 on FB); else its width
        attn_dropout: float = 0.1     # BertSelfAttention's hard-coded dropout
        hidden_dropout: float = 0.1   # BertSelfOutput's hard-coded dropout
        tau: float = 0.1
        attn_init: str = "linear"     # "linear": the authors' default nn.Linear init | "xavier": nn.MultiheadAttention's
        # "authors": the shared uncertainty weight of slot i multiplies the encoder ICL of modality i AND the hidden
        # ICL of the token at the REVERSED position (their stacking order [img, att, rel, gph] read back as
        # [gph, rel, att, img] in MEAformer.generate_hidden_emb); "matched": each modality with its own token.
        hidden_slot_pairing: str = "authors"

    def __init__(self, pair: MMKGPair, config: "MEAformer.Config"):
        super().__init__(pair, config)
        self.encoder = config.build_encoder(pair)
        widths = set(self.encoder.dims.values())
        if len(widths) != 1:
            raise ValueError(f"MEAformer needs every modality at the same width (tokens), got {self.encoder.dims}")
        dim = widths.pop()
        if config.fusion_layers < 1:
            raise ValueError(f"fusion_layers must be >= 1, got {config.fusion_layers}")
        self.layers = nn.ModuleList([
            ModalityTransformerLayer(dim, config.attention_heads, config.attn_dropout, config.hidden_dropout,
                                     config.ffn_dim or None, config.attn_init)
            for _ in range(config.fusion_layers)])
        if config.hidden_slot_pairing not in ("authors", "matched"):
            raise ValueError(f"unknown hidden_slot_pairing {config.hidden_slot_pairing!r}; known: authors, matched")
        self.weighting = UncertaintyWeighting(len(self.encoder.modalities))
        self._protocol = encoder_protocol(pair, self.encoder)

    def forward(self, index: Tensor | None = None) -> Embeddings:
        embs = self.encoder(index)
        names = self.encoder.modalities
        hidden = torch.stack([embs[m] for m in names], dim=1)          # [N, M, d]
        probs = None
        for layer in self.layers:
            hidden, probs = layer(hidden)
        weights = attention_weights(probs)                               # [N, M]
        joint = weighted_concat([embs[m] for m in names], weights)
        return Embeddings(joint=joint, modalities=embs,
                          extras={"weights": weights, "weight_names": names,
                                  "hidden": {m: hidden[:, i] for i, m in enumerate(names)}})

    @torch.no_grad()
    def embed(self) -> Tensor:
        """The evaluation joint embedding: :meth:`forward`'s in eval mode, without the last layer's hidden states
        (only its attention probabilities make the weights; the hidden states feed the training loss alone)."""
        with evaluating(self):
            embs = self.encoder()
            names = self.encoder.modalities
            hidden = torch.stack([embs[m] for m in names], dim=1)
            for layer in self.layers[:-1]:
                hidden, _ = layer(hidden)
            weights = attention_weights(self.layers[-1].attention_probs(hidden))
            return weighted_concat([embs[m] for m in names], weights)

    def loss(self, emb: Embeddings, links: Tensor) -> tuple[Tensor, dict[str, float]]:
        tau = self.config.tau
        joint = info_nce(emb.joint[links[:, 0]], emb.joint[links[:, 1]], tau=tau)
        icl_in, _ = unimodal_icl(emb.modalities, links, tau, self.weighting)
        hidden = emb.extras["hidden"]
        if self.config.hidden_slot_pairing == "authors":   # slot i <- the token at position M-1-i
            names = list(hidden)
            hidden = {m: hidden[n] for m, n in zip(names, reversed(names))}
        icl_out, _ = unimodal_icl(hidden, links, tau, self.weighting)
        logs = {"loss_joint": float(joint.detach()), "loss_icl_encoder": float(icl_in.detach()),
                "loss_icl_hidden": float(icl_out.detach())}
        return joint + icl_in + icl_out, logs

    @torch.no_grad()
    def modality_weights(self) -> tuple[tuple[str, ...], Tensor]:
        """Per-entity weights ``[N, M]`` at evaluation (each row sums to 1)."""
        with evaluating(self):
            return self.encoder.modalities, self.forward().extras["weights"]

    def protocol(self) -> dict[str, Any]:
        return dict(self._protocol)

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {"tau": trial.suggest_float("tau", 0.03, 0.3, log=True),
                "attn_dropout": trial.suggest_float("attn_dropout", 0.0, 0.3),
                "hidden_dropout": trial.suggest_float("hidden_dropout", 0.0, 0.3)}
