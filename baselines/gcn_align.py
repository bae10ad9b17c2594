"""GCN-Align (Wang et al., EMNLP 2018), as in its authors' code and OpenEA's port.

What follows the authors (``1049451037/GCN-Align``; OpenEA ``approaches/gcn_align.py``,
``run/args/gcnalign_args_15K.json``):

* Adjacency: the paper's relation-functionality weights ``a_ij = sum_(e_i,r,e_j) max(ifun(r), 0.3)
  + sum_(e_j,r,e_i) max(fun(r), 0.3)`` (``fun(r)`` = distinct heads / triples of ``r``, ``ifun`` with
  tails), plus ``I``, symmetrically normalised ``D^-1/2 (A + I) D^-1/2``.
* Structure (SE): a *featureless* 2-layer GCN with no weight matrices: ``SE = Â relu(Â E)`` over a
  learnable entity table ``E`` whose rows are L2-normalised at every forward (the authors'
  ``trunc_normal`` + ``l2_normalize``).
* Attributes (AE): ``AE = Â relu(Â X W)`` over the attribute multi-hot ``X`` (``pair.att_features``),
  ``W`` Glorot-uniform. SE and AE have ``dim`` columns each (OpenEA: 100).
* Loss: margin ranking loss with Manhattan distance, ``gamma`` 3, ``k`` = 5 uniform negatives per
  side of every link drawn from all entities, on SE and on AE (the authors optimise both separately;
  their parameters are disjoint, so summing the two losses is the same optimisation problem).

Deviations (recorded by :meth:`GCNAlign.protocol` via ``deviations``):

* Optimiser: the authors' plain gradient descent, lr 20 (their ``train.py``; OpenEA's port uses 8), on the
  loss averaged over ``2 k t`` terms, one full-batch step per epoch at every ratio, no weight decay
  (``train_defaults``; ``optimizer="sgd"``). Their two optimisers (SE, AE) have disjoint parameters, so one
  SGD step on the summed loss is the same update. Sessions 1-2 trained AdamW lr 1e-3, a value picked by looking
  at test Hits@1: gone.
* Degrees: the authors' ``normalize_adj`` normalises the transpose of the matrix it built with that matrix's row
  sums (``degree="source"``, docs/fidelity-checklists.md line 6); AE weights start truncated-normal and are
  row-normalised at every forward (``att_init="trunc_normal_l2"``, their ``inits.trunc_normal``); SE 200-d,
  AE 100-d (their flags).
* Negatives are redrawn at every loss call (the authors: every 10 epochs) from a ``torch.Generator``
  seeded with ``torch.initial_seed()`` at construction, saved with the model state.
* Attribute features: the shared top-1000 attribute-name multi-hot (``pair.att_features``) rather
  than OpenEA's "70 % most frequent attributes" one-hot.
* Joint embedding: OpenEA concatenates the raw ``beta * SE`` and ``(1 - beta) * AE`` and ranks with
  Manhattan distance. The harness ranks by cosine/CSLS on the L2-normalised joint embedding, so we
  L2-normalise SE and AE *before* weighting: ``joint = [beta * SE/|SE|, (1 - beta) * AE/|AE|]``,
  which keeps ``beta`` the share of each view in the similarity (``joint_normalize=False`` gives
  OpenEA's raw concatenation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimea.data.pair import MMKGPair
from mimea.models.base import AlignmentModel, Embeddings, ModelConfig
from mimea.models.registry import register
from mimea.nn.encoders import EntityEmbedding
from mimea.nn.graph import csr_graph, csr_spmm, gcn_norm_values
from mimea.nn.losses import margin_loss, sample_negatives


def functionality_edges(triples: Tensor, n_ent: int) -> tuple[Tensor, Tensor]:
    """GCN-Align's weighted union graph: ``(edge_index [2, E], weight [E])`` incl. unit self loops.

    An edge ``j -> i`` carries ``a_ij``: each triple ``(h, r, t)`` adds ``max(ifun(r), 0.3)`` to
    ``t -> h`` and ``max(fun(r), 0.3)`` to ``h -> t``; duplicates summed. ``fun``/``ifun`` count every triple,
    self-loop ones included (the authors' ``utils.py:func``/``ifunc``); self-loop triples add no edge (their
    ``get_weighted_adj`` skips them). Checked against their ``preprocess_adj`` on FBDB15K: the same normalised
    operator to 1e-15 in float64, 1e-6 as stored here in float32 (docs/fidelity.md section 5).
    """
    tri = triples.long()
    h, r, t = tri[:, 0], tri[:, 1], tri[:, 2]
    n_rel = int(r.max()) + 1 if r.numel() else 1
    count = torch.bincount(r, minlength=n_rel).clamp(min=1).double()
    heads = torch.bincount(torch.unique(r * n_ent + h) // n_ent, minlength=n_rel).double()
    tails = torch.bincount(torch.unique(r * n_ent + t) // n_ent, minlength=n_rel).double()
    fun = (heads / count).clamp(min=0.3)
    ifun = (tails / count).clamp(min=0.3)
    keep = h != t                                       # self-loop triples: counted above, no edge
    h, r, t = h[keep], r[keep], t[keep]
    loops = torch.arange(n_ent)
    src = torch.cat([t, h, loops])                      # message source j
    dst = torch.cat([h, t, loops])                      # aggregating target i
    w = torch.cat([ifun[r], fun[r], torch.ones(n_ent, dtype=torch.double)])
    key, inverse = torch.unique(dst * n_ent + src, return_inverse=True)
    weight = torch.zeros(key.numel(), dtype=torch.double).index_add_(0, inverse, w)
    return torch.stack([key % n_ent, key // n_ent]), weight.float()


@register
class GCNAlign(AlignmentModel):
    """GCN-Align: structure GCN + attribute GCN, margin loss, SE/AE combined with ``beta``."""

    name: ClassVar[str] = "gcn_align"

    #: 1: relation functionality counts self-loop triples, as the authors' func/ifunc (found side by side with
    #: their code, docs/fidelity.md section 5); runs of revision 0 dropped them first (3,300 on FBDB15K).
    REVISION: ClassVar[int] = 1

    @dataclass
    class Config(ModelConfig):
        dim: int = 200                    # se_dim (the authors' train.py; OpenEA 15K uses 100)
        ae_dim: int = 100                 # ae_dim (the authors' train.py)
        gamma: float = 3.0                # margin
        negatives: int = 5                # uniform negatives per side of each link
        beta: float = 0.9                 # share of SE in the joint embedding
        dropout: float = 0.0              # on the hidden layer of both GCNs (authors: 0)
        p: int = 1                        # distance norm of the margin loss (1: Manhattan)
        weighted_adjacency: bool = True   # functionality weights (authors); False: plain 0/1 graph
        negatives_from: str = "all"       # "all" entities (authors) | "kg": the replaced side's KG
        joint_normalize: bool = True      # L2-normalise SE/AE before the beta weighting (see module doc)
        degree: str = "source"            # "source": the authors' normalize_adj (degrees of the untransposed
                                          # matrix); "target": the textbook D^-1/2 A D^-1/2 of the operator
        att_init: str = "trunc_normal_l2"  # the authors' inits.trunc_normal: truncated normal std 1/sqrt(n_attr),
                                          # rows L2-normalised at every forward | "xavier": Glorot, as is

    #: The authors' train.py: plain gradient descent, lr 20, no weight decay, one full-batch step per epoch at every
    #: ratio (the batch is every seed link), 2000 epochs. (Sessions 1-2 used AdamW lr 1e-3, picked on test links.)
    train_defaults: ClassVar[dict] = {"optimizer": "sgd", "lr": 20.0, "weight_decay": 0.0, "batch_size": 1_000_000,
                                      "epochs": 2000}
    #: cpu profile: ~0.8 s an epoch on FBDB15K, one core -> 300 epochs (benchmarks/bench_epoch.py).
    #: smoke profile: a GCN-Align epoch on the synthetic pair takes milliseconds; 100 epochs to get anywhere.
    profile_defaults: ClassVar[dict] = {"cpu": {"train": {"epochs": 300, "eval_every": 25}},
                                         "smoke": {"train": {"epochs": 100, "eval_every": 10}}}

    def __init__(self, pair: MMKGPair, config: "GCNAlign.Config | None" = None):
        config = config if config is not None else self.Config()
        super().__init__(pair, config)
        c = config
        self._images = "absent" if pair.img_features is None else "unused"   # GCN-Align never reads images
        if c.negatives_from not in ("all", "kg"):
            raise ValueError(f"unknown negatives_from {c.negatives_from!r}; known: all, kg")
        if not 0.0 <= c.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {c.beta}")
        if pair.att_features.dim() != 2 or pair.att_features.size(1) == 0:
            raise ValueError("GCN-Align needs attribute features (pair.att_features has no columns)")
        n = pair.n_ent
        self.n_ent = n
        if c.weighted_adjacency:
            edge_index, weight = functionality_edges(pair.triples.cpu(), n)
        else:
            edge_index = pair.edge_index(self_loops=True).cpu()
            weight = torch.ones(edge_index.size(1))
        graph = csr_graph(edge_index, n)
        norm = torch.empty_like(weight)
        norm[graph.order] = gcn_norm_values(graph, weight[graph.order], degree=c.degree)
        self.register_buffer("edge_index", edge_index)
        self.register_buffer("edge_norm", norm)            # normalised Â values, edge_index order
        self.register_buffer("att_x", pair.att_features.float().cpu(), persistent=False)
        all_ids = torch.arange(n)
        left = all_ids if c.negatives_from == "all" else pair.kg1.long().cpu()
        right = all_ids if c.negatives_from == "all" else pair.kg2.long().cpu()
        self.register_buffer("cand_left", left, persistent=False)
        self.register_buffer("cand_right", right, persistent=False)
        self.entity = EntityEmbedding(n, c.dim)
        n_attr = pair.att_features.size(1)
        self.att_w = nn.Parameter(torch.empty(n_attr, c.ae_dim))
        if c.att_init == "trunc_normal_l2":
            nn.init.trunc_normal_(self.att_w, std=1.0 / n_attr ** 0.5, a=-2.0 / n_attr ** 0.5, b=2.0 / n_attr ** 0.5)
        elif c.att_init == "xavier":
            nn.init.xavier_uniform_(self.att_w)
        else:
            raise ValueError(f"unknown att_init {c.att_init!r}; known: trunc_normal_l2, xavier")
        self._gen = torch.Generator().manual_seed(torch.initial_seed())

    # -- forward / loss -----------------------------------------------------------------------
    def _propagate(self, x: Tensor) -> Tensor:
        """Two weightless GCN layers ``Â relu(Â x)`` (hidden dropout in training)."""
        graph = csr_graph(self.edge_index, self.n_ent)
        norm = self.edge_norm[graph.order]
        hidden = F.dropout(F.relu(csr_spmm(graph, norm, x)), self.config.dropout, training=self.training)
        return csr_spmm(graph, norm, hidden)

    def forward(self) -> Embeddings:
        c = self.config
        se = self._propagate(F.normalize(self.entity(), dim=1))
        w = F.normalize(self.att_w, dim=1) if c.att_init == "trunc_normal_l2" else self.att_w
        ae = self._propagate(self.att_x @ w)
        if c.joint_normalize:
            parts = [c.beta * F.normalize(se, dim=1), (1.0 - c.beta) * F.normalize(ae, dim=1)]
        else:
            parts = [c.beta * se, (1.0 - c.beta) * ae]
        return Embeddings(joint=torch.cat(parts, dim=1), modalities={"graph": se, "attribute": ae})

    def loss(self, emb: Embeddings, links: Tensor) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        neg = sample_negatives(links, self.cand_left, self.cand_right, c.negatives, self._gen)
        l_se = margin_loss(emb.modalities["graph"], links, neg, c.gamma, c.p)
        l_ae = margin_loss(emb.modalities["attribute"], links, neg, c.gamma, c.p)
        total = l_se + l_ae
        return total, {"loss": float(total.detach()), "loss_se": float(l_se.detach()),
                       "loss_ae": float(l_ae.detach())}

    # -- generator state travels with checkpoints ---------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"neg_generator": self._gen.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state and "neg_generator" in state:
            self._gen.set_state(state["neg_generator"])

    # -- protocol / tuning --------------------------------------------------------------------
    def protocol(self) -> dict[str, Any]:
        return {
            "names": False, "attribute_values": False, "images": self._images,
            "deviations": [
                "negatives redrawn every step from a seeded generator (authors: every 10 epochs)",
                "attribute features: shared top-1000 attribute-name multi-hot",
                "joint = [beta*SE/|SE|, (1-beta)*AE/|AE|] ranked by cosine/CSLS"
                if self.config.joint_normalize else "joint = [beta*SE, (1-beta)*AE] ranked by cosine/CSLS",
            ],
        }

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {
            "dim": trial.suggest_categorical("dim", [100, 200, 300]),
            "gamma": trial.suggest_float("gamma", 0.5, 5.0),
            "negatives": trial.suggest_int("negatives", 1, 10),
            "beta": trial.suggest_float("beta", 0.5, 1.0),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        }
