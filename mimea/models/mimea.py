"""MIMEA (Hu et al., arXiv 2404.17590): multi-grained intra-/inter-modal interaction for multi-modal EA.

Only the paper's abstract is available. It names four modules; every equation below is OUR choice, made from
the EVA -> MCLEA -> MEAformer lineage and written down, with the alternative not taken, in ``docs/method.md``:

(i)   multi-modal knowledge embedding: the lineage's encoders (:class:`~mimea.nn.multimodal.MultiModalEncoder`),
      every modality at the same width ``dim`` so the modality tokens can interact; a presence mask ``[N, M]``;
(ii)  probability-guided modal fusion: :class:`~mimea.nn.fusion.BetaFusion` (Beta-distributed per-entity
      weights after one self-attention layer over the modality tokens); joint = ``concat_m(w_m e_m)``;
(iii) optimal-transport modal alignment: per modality, entropic OT between the modality's embeddings and the
      (detached) joint space ``s = sum_m w_m e_m`` of the batch's entities (:mod:`mimea.nn.transport`);
(iv)  modal-adaptive contrastive learning: ICL on the joint plus per-modality ICL, each pair weighted by the
      fusion's (detached) confidence ``M * min(w_m(a), w_m(b))``.

``loss = cl + ot_weight * sum_m ot_m + kl_weight * kl``. Every ablation is one Config value (``docs/method.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from mimea.data.pair import MODALITIES, MMKGPair
from mimea.models.base import AlignmentModel, Embeddings, ModelConfig
from mimea.models.registry import register
from mimea.nn.fusion import FUSIONS, block_sum, build_fusion, joint_embedding
from mimea.nn.losses import UncertaintyWeighting, info_nce
from mimea.nn.multimodal import MultiModalEncoder, encoder_protocol
from mimea.nn.transport import GRADS, METHODS, transport_loss

TRANSPORTS = ("sinkhorn", "identity", "none")
CL_WEIGHTINGS = ("adaptive", "balanced", "uncertainty", "uniform")
OT_TARGETS = ("joint", "others")
GRAPH_ENCODERS = ("gat_diag", "gatconv", "gcn")


def _choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"MIMEA config {field}={value!r}; choose one of {', '.join(allowed)}")


def _positive(field: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"MIMEA config {field}={value}: must be > 0")


def interleave_unique(links: Tensor) -> Tensor:
    """Entity ids of a ``[B, 2]`` batch as ``a0, b0, a1, b1, ...`` with repeats removed (first kept)."""
    flat = links.reshape(-1)
    uniq, inv = torch.unique(flat, return_inverse=True)
    pos = torch.arange(flat.numel(), device=flat.device)
    first = torch.full((uniq.numel(),), flat.numel(), dtype=pos.dtype, device=flat.device)
    first = first.scatter_reduce(0, inv, pos, reduce="amin")
    return flat[first.sort().values]


@register
class MIMEA(AlignmentModel):
    """Our reconstruction of MIMEA from its abstract (see the module docstring and ``docs/method.md``)."""

    name: ClassVar[str] = "mimea"
    batch_forward: ClassVar[bool] = True   # training encodes the batch's entities only (the GAT still sees all)
    # Lineage MEAformer (run_meaformer.sh / config.py): AdamW lr 5e-4, weight_decay 1e-4, batch 3500, 500 epochs.
    # MIMEA's own training settings are not public.
    train_defaults: ClassVar[dict] = {"lr": 5e-4, "weight_decay": 1e-4, "batch_size": 3500, "epochs": 500}
    #: cpu profile: ~12 s an epoch (one step) on FBDB15K, one core -> 20 epochs (benchmarks/bench_epoch.py).
    #: smoke profile: narrower widths, so a synthetic run takes seconds (the tests and `nox -s reproduce`).
    profile_defaults: ClassVar[dict] = {"cpu": {"train": {"epochs": 20, "eval_every": 4}},
                                         "smoke": {"model_config": {"dim": 64}}}

    @dataclass
    class Config(ModelConfig):
        # (i) multi-modal knowledge embedding
        modalities: tuple[str, ...] = ("graph", "relation", "attribute", "image")  # "name" only on request
        dim: int = 300                  # width of every modality token (MEAformer: hidden 300)
        graph_encoder: str = "gat_diag"  # gat_diag | gatconv | gcn
        graph_layers: int = 2
        graph_heads: int = 2
        feature_hidden: int | None = None  # None: one Linear per feature modality (lineage)
        dropout: float = 0.0            # encoders and the interaction layer
        # (ii) probability-guided modal fusion
        fusion: str = "beta"            # beta | softmax | mean ("mean" = w/o probability-guided fusion)
        interaction: bool = True        # False = w/o interaction (removes the attention layer)
        fusion_hidden: int = 64         # hidden width of the alpha/beta MLP
        beta_floor: float = 0.1         # alpha, beta >= floor (> 0)
        fusion_span: float | None = 0.25  # 0 < s <= 1: w ∝ 1 + s (2u - 1), bounded around uniform (design study,
                                          # docs/design-log.md) | None: w ∝ u (session 2's design; collapsed)
        prior_alpha: float = 1.0        # Beta prior of the KL (1, 1 = uniform)
        prior_beta: float = 1.0
        kl_weight: float = 0.01
        fusion_holdout: float = 0.0     # share of the training links that train ONLY the fusion weights (their
                                        # entities' encoders never see their own pair): 0 = every link trains all
        # (iii) optimal-transport modal alignment
        transport: str = "sinkhorn"     # sinkhorn | identity | none ("none" = w/o OT)
        ot_weight: float = 1.0
        ot_eps: float = 0.05            # entropic regularisation (cost 1 - cos in [0, 2])
        ot_iters: int = 200             # Sinkhorn iteration cap
        ot_tol: float = 1e-6            # POT stopThr
        ot_method: str = "auto"         # auto (POT Knopp, log-domain rerun if broken) | sinkhorn | log
        ot_grad: str = "envelope"       # envelope (plan fixed; Danskin) | unroll (through the iterations)
        ot_block: int = 512             # max entities per OT problem
        ot_target: str = "joint"        # joint (the fusion-weighted sum s) | others (the mean of the OTHER present
                                        # modalities' tokens: each modality moved towards the rest, not the fused one)
        # (iv) modal-adaptive contrastive learning
        cl_weighting: str = "balanced"  # balanced | adaptive | uncertainty | uniform ("uniform" = w/o modal-adaptive
                                        # CL); balanced: the confidence over its batch mean per modality (design
                                        # study); adaptive: M times the confidence (session 2's design)
        tau: float = 0.1
        intra_negatives: bool = True    # MCLEA's same-KG in-batch negatives

        def __post_init__(self) -> None:
            self.modalities = tuple(self.modalities)
            unknown = [m for m in self.modalities if m not in MODALITIES]
            if unknown or not self.modalities:
                raise ValueError(f"MIMEA config modalities={list(self.modalities)}; "
                                 f"choose from {', '.join(MODALITIES)}")
            _choice("graph_encoder", self.graph_encoder, GRAPH_ENCODERS)
            _choice("fusion", self.fusion, FUSIONS)
            _choice("transport", self.transport, TRANSPORTS)
            _choice("ot_method", self.ot_method, METHODS)
            _choice("ot_grad", self.ot_grad, GRADS)
            _choice("cl_weighting", self.cl_weighting, CL_WEIGHTINGS)
            _choice("ot_target", self.ot_target, OT_TARGETS)
            for f in ("dim", "tau", "ot_eps", "ot_block", "ot_iters", "fusion_hidden", "prior_alpha", "prior_beta",
                      "beta_floor", "graph_layers", "graph_heads"):
                _positive(f, getattr(self, f))
            if not 0.0 <= self.fusion_holdout < 1.0:
                raise ValueError(f"MIMEA config fusion_holdout={self.fusion_holdout}: must be in [0, 1)")
            if self.fusion_holdout > 0 and self.fusion == "mean":
                raise ValueError("MIMEA config fusion_holdout trains the fusion weights, and fusion='mean' has none; "
                                 "set fusion_holdout=0")
            for f in ("kl_weight", "ot_weight", "dropout"):
                if getattr(self, f) < 0:
                    raise ValueError(f"MIMEA config {f}={getattr(self, f)}: must be >= 0")
            if self.fusion_span is not None and not 0 < self.fusion_span <= 1:
                raise ValueError(f"MIMEA config fusion_span={self.fusion_span}: must be None or in (0, 1]")
            if self.fusion == "mean" and (self.interaction or self.fusion_span is not None):
                need = [f for f, bad in (("interaction=False", self.interaction),
                                         ("fusion_span=None", self.fusion_span is not None)) if bad]
                raise ValueError("MIMEA config fusion='mean' has token-independent weights (interaction=True would "
                                 "train nothing; fusion_span bounds Beta weights only): set "
                                 + " and ".join(need) + " as well")
            if self.fusion_span is not None and self.fusion != "beta":
                raise ValueError(f"MIMEA config fusion_span={self.fusion_span} applies to fusion='beta' only, not "
                                 f"{self.fusion!r}; set fusion_span=None as well")

    def __init__(self, pair: MMKGPair, config: "MIMEA.Config"):
        super().__init__(pair, config)
        c = config
        self.encoder = MultiModalEncoder(pair, c.modalities, graph_kind=c.graph_encoder, graph_dim=c.dim,
                                         feature_dims=c.dim, n_layers=c.graph_layers, heads=c.graph_heads,
                                         dropout=c.dropout, feature_hidden=c.feature_hidden)
        self.modality_names: tuple[str, ...] = self.encoder.modalities
        m = len(self.modality_names)
        self.register_buffer("present", self.encoder.presence(), persistent=False)   # [N, M]
        self.fusion = build_fusion(c.fusion, m, c.dim, interaction=c.interaction, hidden=c.fusion_hidden,
                                   floor=c.beta_floor, prior_alpha=c.prior_alpha, prior_beta=c.prior_beta,
                                   dropout=c.dropout, span=c.fusion_span)
        self.cl_uncertainty = UncertaintyWeighting(m) if c.cl_weighting == "uncertainty" else None
        # entity -> its link is held out for the fusion (prepare_training); all False = no hold-out
        self.register_buffer("fusion_rows", torch.zeros(pair.n_ent, dtype=torch.bool), persistent=False)
        self._protocol = {**encoder_protocol(pair, self.encoder),
                          "modalities_skipped": list(self.encoder.skipped),
                          "missing_modality": "masked (weight 0)"}

    # ------------------------------------------------------------------------------------------------
    def forward(self, index: Tensor | None = None) -> Embeddings:
        embs = self.encoder(index)
        names = self.modality_names
        present = self.present if index is None else self.present[index]
        tokens = torch.nn.functional.normalize(torch.stack([embs[n] for n in names], dim=1), dim=-1)  # [N, M, d]
        out = self.fusion(tokens, present)
        joint = joint_embedding(out.weights, tokens)
        return Embeddings(
            joint=joint,
            modalities={n: tokens[:, i] for i, n in enumerate(names)},
            extras={"weights": out.weights, "weight_names": names, "alpha": out.alpha, "beta": out.beta,
                    "kl": out.kl, "present": present, "tokens": tokens, "index": index})

    def prepare_training(self, train_links: Tensor) -> None:
        """``fusion_holdout > 0``: mark that share of the training links (by their KG1 entity) as fusion-only.

        A deterministic function of the links (a generator seeded by their content), so a resumed run marks the same.
        """
        self.fusion_rows.zero_()
        share = self.config.fusion_holdout
        if share <= 0 or len(train_links) < 2:
            return
        seed = int(torch.as_tensor(train_links).long().cpu().mul(torch.tensor([31, 17])).sum()) % (2**31)
        gen = torch.Generator().manual_seed(seed)
        n_out = max(1, int(round(share * len(train_links))))
        rows = torch.randperm(len(train_links), generator=gen)[:n_out]
        self.fusion_rows[train_links[rows.to(train_links.device), 0]] = True

    def _contrastive(self, emb: Embeddings, links: Tensor, logs: dict[str, float]) -> Tensor:
        c = self.config
        a, b = links[:, 0], links[:, 1]
        joint = info_nce(emb.joint[a], emb.joint[b], tau=c.tau, intra_negatives=c.intra_negatives)
        logs["loss_cl_joint"] = float(joint.detach())
        w = emb.extras["weights"]
        m = len(self.modality_names)
        terms = []
        for i, name in enumerate(self.modality_names):
            e = emb.modalities[name]
            per_pair = info_nce(e[a], e[b], tau=c.tau, intra_negatives=c.intra_negatives, reduction="none")
            if c.cl_weighting in ("adaptive", "balanced"):
                conf = torch.minimum(w[a, i], w[b, i]).detach()
                # adaptive: M * min(w) (a modality the fusion trusts less trains less, the whole modality too);
                # balanced: min(w) / its batch mean (adapts across the batch's pairs, every modality's mean weight 1)
                conf = conf * m if c.cl_weighting == "adaptive" else conf / conf.mean().clamp_min(1e-12)
                term = (conf * per_pair).mean()
            else:
                term = per_pair.mean()
            logs[f"loss_cl_{name}"] = float(term.detach())
            terms.append(term)
        if self.cl_uncertainty is not None:
            uni = self.cl_uncertainty(terms)
        else:
            uni = torch.stack(terms).sum()
        return joint + uni

    def _transport(self, emb: Embeddings, links: Tensor, logs: dict[str, float]) -> Tensor:
        c = self.config
        ents = interleave_unique(links)
        tokens = emb.extras["tokens"]
        present = emb.extras["present"]
        if c.ot_target == "joint":
            s = block_sum(emb.extras["weights"], tokens).detach()         # [N, d] joint seen from a modality

        plan = "identity" if c.transport == "identity" else "sinkhorn"
        total = tokens.new_zeros(())
        worst, fallbacks = 0.0, 0.0
        for i, name in enumerate(self.modality_names):
            idx = ents[present[ents, i]]
            if c.ot_target == "others":             # mean of the other present modalities (detached)
                pres = present[idx].clone()
                pres[:, i] = False
                idx = idx[pres.any(dim=1)]
                pres = pres[pres.any(dim=1)].to(tokens.dtype)
                target = ((pres.unsqueeze(-1) * tokens[idx]).sum(1) / pres.sum(1, keepdim=True)).detach()
            else:
                target = s[idx]
            loss_m, info = transport_loss(tokens[idx, i], target, c.ot_eps, plan=plan, block=c.ot_block,
                                          n_iter=c.ot_iters, tol=c.ot_tol, method=c.ot_method, grad=c.ot_grad)
            logs[f"loss_ot_{name}"] = float(loss_m.detach())
            worst, fallbacks = max(worst, info["marginal_error"]), fallbacks + info["fallbacks"]
            total = total + loss_m
        if plan == "sinkhorn":
            logs["ot_marginal_error"], logs["ot_fallbacks"] = worst, fallbacks
        return total

    def loss(self, emb: Embeddings, links: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``cl + ot_weight * sum_m ot_m + kl_weight * kl`` on a batch of seed links ``[B, 2]``."""
        if links.dim() != 2 or links.size(1) != 2:
            raise ValueError(f"links must be [B, 2], got {tuple(links.shape)}")
        c = self.config
        logs: dict[str, float] = {}
        held = None
        if self.training and c.fusion_holdout > 0:
            index = emb.extras.get("index")          # batch forward: links are renumbered into these rows
            held = self.fusion_rows[links[:, 0] if index is None else index[links[:, 0]]]
        if held is not None:
            # the encoders learn from the other links with the weights fixed; the weights learn from the held-out
            # links with the embeddings, and the fusion's inputs, fixed (docs/method.md, fusion hold-out)
            w, tokens = emb.extras["weights"], emb.extras["tokens"]
            enc_view = Embeddings(joint=joint_embedding(w.detach(), tokens), modalities=emb.modalities,
                                  extras=emb.extras)
            total = self._contrastive(enc_view, links[~held], logs) if bool((~held).any()) else w.new_zeros(())
            if bool(held.any()):
                fus_w = self.fusion(tokens.detach(), emb.extras["present"]).weights
                fus_joint = joint_embedding(fus_w, tokens.detach())
                a, b = links[held, 0], links[held, 1]
                fusion = info_nce(fus_joint[a], fus_joint[b], tau=c.tau, intra_negatives=c.intra_negatives)
                logs["loss_fusion_holdout"] = float(fusion.detach())
                total = total + fusion
        else:
            total = self._contrastive(emb, links, logs)
        logs["loss_cl"] = float(total.detach())
        if c.transport != "none":
            ot_sum = self._transport(emb, links, logs)
            logs["loss_ot"] = float(ot_sum.detach())
            total = total + c.ot_weight * ot_sum
        if c.fusion == "beta":
            kl = emb.extras["kl"]
            logs["loss_kl"] = float(kl.detach())
            total = total + c.kl_weight * kl
        with torch.no_grad():
            w = emb.extras["weights"][links.reshape(-1)].mean(dim=0)
        for i, name in enumerate(self.modality_names):
            logs[f"w_{name}"] = float(w[i])
        return total, logs

    # ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def modality_weights(self) -> tuple[tuple[str, ...], Tensor]:
        """Per-entity weights ``[N, M]`` at evaluation (the Beta means, renormalised over present modalities)."""
        was = self.training
        self.eval()
        w = self.forward().extras["weights"]
        self.train(was)
        return self.modality_names, w

    def protocol(self) -> dict[str, Any]:
        """names, attribute_values, modalities used (and skipped), images (real|synthetic|absent|unused), and how
        missing modalities are treated (masked: weight 0, whatever the data's missing-image fill)."""
        return dict(self._protocol)

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {
            "dim": trial.suggest_categorical("dim", [100, 200, 300]),
            "tau": trial.suggest_float("tau", 0.03, 0.3, log=True),
            "ot_eps": trial.suggest_float("ot_eps", 0.01, 0.5, log=True),
            "ot_weight": trial.suggest_float("ot_weight", 0.01, 3.0, log=True),
            "kl_weight": trial.suggest_float("kl_weight", 1e-4, 0.1, log=True),
            "prior_alpha": trial.suggest_float("prior_alpha", 0.5, 5.0, log=True),
            "prior_beta": trial.suggest_float("prior_beta", 0.5, 5.0, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        }
