"""Graph encoders: the diagonal GAT against a dense reference, the CSR kernel, GCN, GATConv."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mimea.nn.graph import (DiagGAT, GCNEncoder, build_graph_encoder, csr_graph, csr_spmm,
                            gcn_norm_values)


def _tiny_graph(n: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(n, (12,), generator=g)
    dst = torch.randint(n, (12,), generator=g)
    keep = src != dst
    ei = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    key = torch.unique(ei[0] * n + ei[1])
    return torch.stack([key // n, key % n])


def _dense_adj(edge_index: torch.Tensor, n: int, self_loops: bool = True) -> torch.Tensor:
    """mask[i, j] = True when there is an edge j -> i."""
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[edge_index[1], edge_index[0]] = True
    if self_loops:
        mask |= torch.eye(n, dtype=torch.bool)
    return mask


def _dense_diag_gat(model: DiagGAT, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MCLEA's GAT written densely: exp(-leakyrelu(a.[h_i||h_j])) normalised per row, heads averaged."""
    for li, layer in enumerate(model.layers):
        outs = []
        for k in range(layer.heads):
            h = x * layer.w[k]
            score = (h @ layer.a_dst[k]).unsqueeze(1) + (h @ layer.a_src[k]).unsqueeze(0)
            e = torch.exp(-F.leaky_relu(score, 0.2)) * mask
            outs.append((e / e.sum(1, keepdim=True)) @ h)
        x = torch.stack(outs).mean(0)
        if li < len(model.layers) - 1:
            x = F.elu(x)
    return x


def test_diag_gat_shape_and_grad():
    torch.manual_seed(0)
    n, d = 7, 5
    enc = build_graph_encoder("gat_diag", d)
    x = torch.randn(n, d, requires_grad=True)
    out = enc(x, _tiny_graph(n))
    assert out.shape == (n, d)
    out.pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_diag_gat_attention_normalised_per_node():
    torch.manual_seed(1)
    n, d = 7, 4
    enc = DiagGAT(d, n_layers=1, heads=3)
    graph = csr_graph(_tiny_graph(n), n, self_loops=True)
    alpha = enc.layers[0].attention(torch.randn(n, d), graph)
    assert alpha.shape == (graph.n_edges, 3)
    assert (alpha >= 0).all()
    sums = torch.zeros(n, 3).index_add_(0, graph.row, alpha)
    assert torch.allclose(sums, torch.ones(n, 3), atol=1e-6)


def test_diag_gat_equals_dense_reference():
    torch.manual_seed(2)
    n, d = 7, 6
    enc = DiagGAT(d, n_layers=2, heads=2).double()
    with torch.no_grad():  # move the diagonal weights off their all-ones init so they are tested
        for layer in enc.layers:
            layer.w.uniform_(0.5, 1.5)
    ei = _tiny_graph(n)
    x = torch.randn(n, d, dtype=torch.double, requires_grad=True)
    out = enc(x, ei)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = _dense_diag_gat(enc, x_ref, _dense_adj(ei, n))
    assert torch.allclose(out, ref, atol=1e-10)
    out.sum().backward()
    ref.sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-10)


def test_diag_gat_adds_only_missing_self_loops():
    torch.manual_seed(3)
    n, d = 7, 3
    enc = DiagGAT(d, n_layers=1, heads=1).double()
    ei = _tiny_graph(n)
    with_loops = torch.cat([ei, torch.arange(n).expand(2, -1)], dim=1)
    x = torch.randn(n, d, dtype=torch.double)
    assert torch.allclose(enc(x, ei), enc(x, with_loops), atol=1e-12)


def test_csr_spmm_gradcheck():
    n = 6
    ei = _tiny_graph(n, seed=4)
    graph = csr_graph(ei, n, self_loops=True)
    values = torch.rand(graph.n_edges, dtype=torch.double, requires_grad=True)
    x = torch.randn(n, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, y: csr_spmm(graph, v, y), (values, x))


def test_csr_graph_is_cached_per_tensor_and_version():
    n = 6
    ei = _tiny_graph(n, seed=5)
    g1 = csr_graph(ei, n)
    assert csr_graph(ei, n) is g1
    assert csr_graph(ei.clone(), n) is not g1
    ei[0, 0] = ei[0, 0]  # an in-place write bumps the version: the cache must not serve it
    assert csr_graph(ei, n) is not g1


def test_gcn_equals_dense_reference():
    torch.manual_seed(6)
    n, d = 7, 4
    enc = GCNEncoder(d, n_layers=2).double()
    ei = _tiny_graph(n)
    x = torch.randn(n, d, dtype=torch.double)
    a = _dense_adj(ei, n).double()
    dinv = a.sum(1).pow(-0.5)
    a_hat = dinv.unsqueeze(1) * a * dinv.unsqueeze(0)
    ref = torch.relu(a_hat @ (x @ enc.weights[0]) + enc.biases[0])
    ref = a_hat @ (ref @ enc.weights[1]) + enc.biases[1]
    assert torch.allclose(enc(x, ei), ref, atol=1e-10)


def test_gcn_norm_values_symmetric():
    n = 5
    ei = torch.tensor([[0, 1, 1, 2, 0, 1, 2, 3, 4], [1, 0, 2, 1, 0, 1, 2, 3, 4]])
    graph = csr_graph(ei, n)
    dense = torch.zeros(n, n)
    dense[graph.row, graph.col] = gcn_norm_values(graph)
    assert torch.allclose(dense, dense.t())
    assert dense[3, 3] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["gatconv", "gcn"])
def test_other_kinds_run(kind):
    torch.manual_seed(7)
    n, d = 7, 8
    enc = build_graph_encoder(kind, d, n_layers=2, heads=2, dropout=0.1)
    x = torch.randn(n, d, requires_grad=True)
    out = enc(x, _tiny_graph(n))
    assert out.shape == (n, d)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown graph encoder 'gin'"):
        build_graph_encoder("gin", 4)


def test_gcn_takes_layer_widths_as_eva():
    """EVA's --hidden_units 400,400,200: a GCN whose layers change width (entity table 400-d, output 200-d)."""
    import torch

    from mimea.nn.graph import GCNEncoder, build_graph_encoder

    enc = GCNEncoder(0, widths=(8, 6, 4))
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    assert enc(torch.randn(3, 8), edge_index).shape == (3, 4)
    assert [tuple(w.shape) for w in enc.weights] == [(8, 6), (6, 4)]
    import pytest

    with pytest.raises(ValueError, match="gcn"):
        build_graph_encoder("gat_diag", 8, widths=(8, 4))
