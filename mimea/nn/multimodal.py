"""The lineage's multi-modal knowledge embedding, assembled in one place (EVA, MCLEA, MEAformer, MSNEA, MIMEA).

One :class:`MultiModalEncoder` turns an :class:`~mimea.data.pair.MMKGPair` into per-modality entity embeddings:

* ``graph``: a learnable entity embedding through a graph encoder over the union graph
  (``gat_diag`` / ``gatconv`` / ``gcn`` from :mod:`mimea.nn.graph`, or ``none``: the entity embedding itself,
  for translation models such as MSNEA's TransE part);
* ``relation``, ``attribute``, ``image``, ``name``: the pair's fixed feature matrix through a
  :class:`~mimea.nn.encoders.FeatureEncoder` (a Linear layer by default, as in every method of the lineage).

No model assembles these itself; models add only what makes their method (fusion, losses, method heads).
Feature matrices and the graph are non-persistent buffers: they move with ``.to(device)`` and stay out of
checkpoints (they are data, rebuilt from the pair).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from mimea.data.pair import MODALITIES, MMKGPair
from mimea.nn.encoders import EntityEmbedding, FeatureEncoder
from mimea.nn.graph import build_graph_encoder

#: Which MMKGPair field feeds each feature modality.
FEATURE_FIELDS = {"relation": "rel_features", "attribute": "att_features", "image": "img_features",
                  "name": "name_features"}
#: ``graph_kind`` values: the graph encoders of :mod:`mimea.nn.graph`, or ``none`` (entity embedding only).
GRAPH_KINDS = ("gat_diag", "gatconv", "gcn", "none")


class MultiModalEncoder(nn.Module):
    """Per-modality entity embeddings of a KG pair.

    Args:
        pair: the validated pair (its tensors become buffers; the device follows ``.to``).
        modalities: the modalities wanted, any of ``graph, relation, attribute, image, name``. Those the pair
            cannot feed (no image features, names not built) are skipped; ``self.modalities`` lists the ones
            built, in the order given.
        graph_kind: ``gat_diag`` | ``gatconv`` | ``gcn`` | ``none``.
        graph_dim: width of the entity embedding and of the graph encoder.
        feature_dims: output width of every feature encoder (an int), or one per feature modality (a dict that
            must name each feature modality built).
        n_layers, heads, dropout: of the graph encoder.
        feature_hidden: hidden width of the feature encoders (None: one Linear layer, the lineage's choice).
        entity_init: init of the entity table (``normal``: N(0, 1/sqrt(N)) as the lineage; ``xavier``).
        edge_weights: ``binary`` (each edge once) | ``count`` (triple multiplicities, EVA's normalised adjacency;
            only the ``gcn`` encoder reads values: the GAT uses the edge set).
        attribute_width: zero-pad the attribute bag to this many columns (EVA/MCLEA build it 1,000 wide however
            many attribute names the data has, which sets their Linear layer's init scale); 0: as loaded.
        graph_widths: the ``gcn`` layers' widths ``(entity table, hidden..., output)`` (EVA: 400, 400, 200);
            empty: ``graph_dim`` square, ``n_layers`` layers.
    """

    def __init__(self, pair: MMKGPair, modalities: Sequence[str], *, graph_kind: str = "gat_diag",
                 graph_dim: int = 300, feature_dims: Mapping[str, int] | int = 300, n_layers: int = 2,
                 heads: int = 2, dropout: float = 0.0, feature_hidden: int | None = None,
                 entity_init: str = "normal", edge_weights: str = "binary", attribute_width: int = 0,
                 graph_widths: tuple[int, ...] = ()):
        super().__init__()
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; known: {', '.join(MODALITIES)}")
        if graph_kind not in GRAPH_KINDS:
            raise ValueError(f"unknown graph_kind {graph_kind!r}; known: {', '.join(GRAPH_KINDS)}")
        available = set(pair.modalities_available())
        self.modalities: tuple[str, ...] = tuple(dict.fromkeys(m for m in modalities if m in available))
        self.skipped: tuple[str, ...] = tuple(m for m in modalities if m not in available)
        if not self.modalities:
            raise ValueError(f"none of the modalities {list(modalities)} is available in pair {pair.name!r}")
        self.n_ent = pair.n_ent
        self.graph_kind = graph_kind
        self.dims: dict[str, int] = {}
        self.features = nn.ModuleDict()
        if "graph" in self.modalities:
            widths = tuple(int(w) for w in graph_widths)
            self.entity = EntityEmbedding(pair.n_ent, widths[0] if widths else graph_dim, init=entity_init)
            self.graph = None if graph_kind == "none" else build_graph_encoder(
                graph_kind, graph_dim, n_layers=n_layers, heads=heads, dropout=dropout, widths=widths or None)
            if edge_weights not in ("binary", "count"):
                raise ValueError(f"unknown edge_weights {edge_weights!r}; known: binary, count")
            if edge_weights == "count":
                edges, weight = pair.edge_index_counts()
                self.register_buffer("edge_index", edges, persistent=False)
                self.register_buffer("edge_weight", weight, persistent=False)
            else:
                self.register_buffer("edge_index", pair.edge_index(), persistent=False)
                self.edge_weight = None
            self.dims["graph"] = widths[-1] if widths else graph_dim
        for m in self.modalities:
            if m == "graph":
                continue
            x = getattr(pair, FEATURE_FIELDS[m]).float()
            if m == "attribute" and attribute_width > x.size(1):
                x = torch.cat([x, x.new_zeros(x.size(0), attribute_width - x.size(1))], dim=1)
            out = _dim_for(feature_dims, m)
            self.register_buffer(f"x_{m}", x, persistent=False)
            self.features[m] = FeatureEncoder(x.size(1), out, hidden=feature_hidden, dropout=dropout)
            self.dims[m] = out
        mask = pair.img_mask
        if mask is None:
            mask = torch.zeros(pair.n_ent, dtype=torch.bool, device=pair.triples.device)
        self.register_buffer("img_mask", mask.bool(), persistent=False)

    # ------------------------------------------------------------------------------------------------
    def feature(self, modality: str) -> Tensor:
        """The fixed input matrix ``[N, D_m]`` of a feature modality (a buffer)."""
        if modality not in self.features:
            raise KeyError(f"{modality!r} is not a feature modality of this encoder ({', '.join(self.features)})")
        return getattr(self, f"x_{modality}")

    def encode(self, modality: str, x: Tensor) -> Tensor:
        """Modality ``modality``'s feature encoder applied to any input ``x: [*, D_m]`` (e.g. one-hot rows)."""
        if modality not in self.features:
            raise KeyError(f"{modality!r} is not a feature modality of this encoder ({', '.join(self.features)})")
        return self.features[modality](x)

    def structure(self) -> Tensor:
        """The ``graph`` embedding ``[N, graph_dim]``: entity embedding, through the graph encoder if any."""
        x = self.entity()
        if self.graph is None:
            return x
        if self.edge_weight is not None and self.graph_kind == "gcn":
            return self.graph(x, self.edge_index, self.edge_weight)
        return self.graph(x, self.edge_index)

    def forward(self, index: Tensor | None = None, only: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        """Modality name -> ``[N, d_m]`` for every modality in ``self.modalities`` (in that order), or for those
        of them named in ``only`` (a model that reads some modalities through its own layers).

        With ``index`` (entity ids ``[K]``), only those rows ``[K, d_m]``: the graph encoder still runs on the whole
        graph (a row depends on its neighbours), the feature encoders only on the K rows they are asked for.
        """
        out = {}
        for m in self.modalities:
            if only is not None and m not in only:
                continue
            if m == "graph":
                g = self.structure()
                out[m] = g if index is None else g[index]
            else:
                x = self.feature(m)
                out[m] = self.encode(m, x if index is None else x[index])
        return out

    @torch.no_grad()
    def presence(self) -> Tensor:
        """BoolTensor ``[N, M]``: whether each entity really has each modality (columns as ``self.modalities``).

        graph: always; image: the pair's ``img_mask`` (a real image feature, not a fill); the other feature
        modalities: a non-zero feature row.
        """
        cols = []
        for m in self.modalities:
            if m == "graph":
                cols.append(torch.ones(self.n_ent, dtype=torch.bool, device=self.img_mask.device))
            elif m == "image":
                cols.append(self.img_mask)
            else:
                cols.append(self.feature(m).ne(0).any(dim=1))
        return torch.stack(cols, dim=1)


def _dim_for(feature_dims: Mapping[str, int] | int, modality: str) -> int:
    if isinstance(feature_dims, int):
        return feature_dims
    if modality not in feature_dims:
        raise ValueError(f"feature_dims has no width for modality {modality!r} (given: {dict(feature_dims)})")
    return int(feature_dims[modality])


def encoder_protocol(pair: MMKGPair, encoder: MultiModalEncoder, *, attribute_values: bool = False) -> dict[str, Any]:
    """Protocol flags of the data a model's encoder really uses (recorded with every run).

    ``names``: the name modality is built; ``attribute_values``: numeric attribute values are read;
    ``images``: the pair's image provenance (``real`` / ``synthetic`` / ``absent``) when the image modality is
    built, ``absent`` when the pair has none, ``unused`` when it has some but the model leaves them out.
    """
    label = pair.provenance.get("image_features", "unknown" if pair.img_features is not None else "absent")
    if "image" not in encoder.modalities:
        label = "absent" if pair.img_features is None else "unused"
    return {"names": "name" in encoder.modalities, "attribute_values": bool(attribute_values), "images": label,
            "modalities": list(encoder.modalities)}


@dataclass
class EncoderConfig:
    """The encoder fields a model's ``Config`` shares (mixed into EVA's, MCLEA's and MEAformer's configs).

    ``modalities`` lists what the model may use; ``name`` enters only when the data was loaded with names
    (``data.use_names``), images only when the pair has image features. The defaults are MCLEA's FB script
    (diagonal GAT 300-d, 2 layers, 2 heads; relation, attribute and image encoders to 100-d).
    """

    modalities: tuple[str, ...] = ("graph", "relation", "attribute", "image", "name")
    graph_kind: str = "gat_diag"
    graph_dim: int = 300
    relation_dim: int = 100
    attribute_dim: int = 100
    image_dim: int = 100
    name_dim: int = 100
    n_layers: int = 2
    heads: int = 2
    dropout: float = 0.0
    edge_weights: str = "binary"     # "count": triple multiplicities in the (GCN's) normalised adjacency
    attribute_width: int = 0         # zero-pad the attribute bag to this width (EVA/MCLEA: 1000); 0: as loaded
    graph_widths: tuple[int, ...] = ()   # gcn layer widths (entity, hidden..., out); (): graph_dim square

    def feature_dims(self) -> dict[str, int]:
        return {"relation": self.relation_dim, "attribute": self.attribute_dim, "image": self.image_dim,
                "name": self.name_dim}

    def build_encoder(self, pair: MMKGPair, **kwargs: Any) -> MultiModalEncoder:
        """The :class:`MultiModalEncoder` these fields describe (``kwargs`` pass through, e.g. ``entity_init``)."""
        return MultiModalEncoder(pair, self.modalities, graph_kind=self.graph_kind, graph_dim=self.graph_dim,
                                 feature_dims=self.feature_dims(), n_layers=self.n_layers, heads=self.heads,
                                 dropout=self.dropout, edge_weights=self.edge_weights,
                                 attribute_width=self.attribute_width, graph_widths=tuple(self.graph_widths),
                                 **kwargs)


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``with evaluating(model):`` eval mode inside, the previous train/eval mode restored after."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)
