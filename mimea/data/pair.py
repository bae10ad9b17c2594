"""The multi-modal KG pair as tensors: the one object every later layer reads.

Everything here is already validated by the loader (``mimea.data.loader``); models and the trainer
never touch files. Entity ids are global and contiguous: KG1 and KG2 together cover ``0..n_ent-1``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: The modalities a model may use, in a fixed order (names is optional and off by default).
MODALITIES = ("graph", "relation", "attribute", "image", "name")


@dataclass
class MMKGPair:
    """Two KGs with their alignment links and per-entity features.

    Attributes:
        name: dataset name (``FBDB15K``, ``synthetic``...).
        n_ent: number of entities over both KGs (ids are ``0..n_ent-1``).
        kg1, kg2: LongTensor of the global ids of each KG's entities (disjoint, union = all ids).
        triples: LongTensor ``[T, 3]`` of (head, relation, tail), both KGs, relation ids as in the files.
        links: LongTensor ``[L, 2]`` of (kg1 id, kg2 id) in ``ill_ent_ids`` file order.
        rel_features: FloatTensor ``[n_ent, R]``: bag of the top-R relations (as head or tail).
        att_features: FloatTensor ``[n_ent, A]``: multi-hot of the top-A attribute names.
        img_features: FloatTensor ``[n_ent, D]`` or None when no image features exist.
        img_mask: BoolTensor ``[n_ent]``: True where the entity has a *real* image feature.
        name_features: FloatTensor ``[n_ent, K]`` or None (names are used only on request).
        att_values: FloatTensor ``[n_ent, A]`` of numeric attribute values (``extra/attr_values_*``: floats,
            dates cut to the year; 0 where none), columns as ``att_features``; None without those files.
        entity_names: raw entity strings by global id (from ``ent_ids_*``).
        provenance: facts about how the data was built, recorded in every run's metadata
            (``image_features``: ``real`` | ``absent`` | ``synthetic``; ``missing_image_policy``;
            ``names_used``; ``deviations``: list of strings, e.g. from PROVENANCE.md).
    """

    name: str
    n_ent: int
    kg1: torch.Tensor
    kg2: torch.Tensor
    triples: torch.Tensor
    links: torch.Tensor
    rel_features: torch.Tensor
    att_features: torch.Tensor
    img_features: torch.Tensor | None
    img_mask: torch.Tensor
    name_features: torch.Tensor | None = None
    att_values: torch.Tensor | None = None    # [n_ent, A] numeric attribute values (columns as att_features)
    entity_names: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    @property
    def n_rel(self) -> int:
        """Size of a relation table: ``max id + 1`` (relation ids have gaps in the real data)."""
        return int(self.triples[:, 1].max().item()) + 1 if len(self.triples) else 0

    def modalities_available(self) -> tuple[str, ...]:
        """Modalities this pair can feed (graph always; image only with features; name only if built)."""
        out = ["graph", "relation", "attribute"]
        if self.img_features is not None:
            out.append("image")
        if self.name_features is not None:
            out.append("name")
        return tuple(out)

    def edge_index(self, self_loops: bool = True) -> torch.Tensor:
        """Undirected, de-duplicated union graph as ``[2, E]`` (both directions), optionally with self loops."""
        h, t = self.triples[:, 0], self.triples[:, 2]
        src = torch.cat([h, t])
        dst = torch.cat([t, h])
        keep = src != dst
        src, dst = src[keep], dst[keep]
        if self_loops:
            loop = torch.arange(self.n_ent, device=src.device)
            src, dst = torch.cat([src, loop]), torch.cat([dst, loop])
        key = torch.unique(src * self.n_ent + dst)
        return torch.stack([key // self.n_ent, key % self.n_ent])

    def edge_index_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The union graph with triple multiplicities: ``([2, E], weight [E])``, self loops (weight 1) included.

        ``A[h, t] = c(h, t) + c(t, h)`` for ``h != t`` (c: the number of triples between them, duplicates
        counted), as EVA/MCLEA/MEAformer's ``get_adjr`` builds it before ``D^-1/2 A D^-1/2``.
        """
        h, t = self.triples[:, 0], self.triples[:, 2]
        keep = h != t
        h, t = h[keep], t[keep]
        key = torch.cat([h, t]) * self.n_ent + torch.cat([t, h])
        loop = torch.arange(self.n_ent, device=key.device)
        uniq, counts = torch.unique(key, return_counts=True)
        key = torch.cat([uniq, loop * self.n_ent + loop])
        weight = torch.cat([counts.float(), torch.ones(self.n_ent, device=key.device)])
        return torch.stack([key // self.n_ent, key % self.n_ent]), weight

    def to(self, device: torch.device | str) -> "MMKGPair":
        """A copy with every tensor on ``device``."""
        kw = {}
        for k, v in self.__dict__.items():
            kw[k] = v.to(device) if isinstance(v, torch.Tensor) else v
        return MMKGPair(**kw)
