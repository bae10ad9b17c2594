"""Reusable neural parts shared by MIMEA and every baseline.

* :mod:`mimea.nn.graph`: structure encoders (diagonal GAT, PyG GATConv, GCN) and the CSR kernel;
* :mod:`mimea.nn.encoders`: feature projections and the learnable entity table;
* :mod:`mimea.nn.losses`: InfoNCE/ICL, IAL, NCA, margin loss, uncertainty weighting;
* :mod:`mimea.nn.fusion`, :mod:`mimea.nn.transport`: modality fusion and Sinkhorn transport.
"""
from mimea.nn.encoders import EntityEmbedding, FeatureEncoder
from mimea.nn.graph import GRAPH_ENCODERS, build_graph_encoder
from mimea.nn.losses import (UncertaintyWeighting, ial_loss, info_nce, margin_loss, nca_loss,
                             sample_negatives)

__all__ = [
    "GRAPH_ENCODERS", "build_graph_encoder", "FeatureEncoder", "EntityEmbedding", "info_nce", "ial_loss",
    "nca_loss", "margin_loss", "sample_negatives", "UncertaintyWeighting",
]
