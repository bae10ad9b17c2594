"""Graph encoders over the union graph: the lineage's diagonal GAT, PyG's GATConv, and a GCN.

Every encoder maps ``x: [N, dim]`` and ``edge_index: [2, E]`` to ``[N, dim]``. Edges follow PyG's
convention: a message flows from ``edge_index[0]`` (source ``j``) to ``edge_index[1]`` (target ``i``)
and is aggregated at the target. The KG pair's graph is symmetric, so for it the direction is moot.

The diagonal GAT and the GCN run on a small sparse kernel of our own (:func:`csr_spmm`): a CSR
sparse-dense product whose backward computes the gradient of the edge values with
``torch.sparse.sampled_addmm`` (SDDMM) instead of materialising ``[E, dim]`` messages, which is what
makes PyG's ``GATConv`` (and any ``MessagePassing`` layer) slow and memory-hungry on the 680k-edge
FB graphs. Per-edge structure (CSR order, transpose, self loops, GCN normalisation) is computed once
per ``edge_index`` tensor and cached (keyed to the tensor object and its in-place version).

Measured on FBDB15K's graph (27,793 nodes, 674,599 edges incl. self loops; dim 300, 2 layers,
2 heads), one forward + backward, 2 CPU threads, peak = process RSS incl. graph and inputs
(``benchmarks/bench_gat.py``; the shared 2-core machine ran at load 5-8, so absolute times are
inflated ~2-3x, the ratios are what to read):

* ``gat_diag`` on :func:`csr_spmm` (this file): 7.4 s and 1.1 GB at load 5; 14 s and 1.1 GB at load 8;
* the same diagonal GAT as a PyG ``MessagePassing`` layer (``[E, dim]`` messages, PyG ``softmax``),
  back to back with the line above at load 8: 72 s and 6.4 GB, so it is not used;
* ``gcn`` (:class:`GCNEncoder` on :func:`csr_spmm`): 5.5 s and 0.9 GB at load 5;
* the lead's figure for ``torch_geometric.nn.GATConv`` (2 heads x 300): 25 s and 17 GB.
"""
from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import softmax as segment_softmax

GRAPH_ENCODERS = ("gat_diag", "gatconv", "gcn")



# --------------------------------------------------------------------------------------------
# CSR structure, cached per edge_index tensor
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CSRGraph:
    """A graph's edges in CSR order (rows = targets) plus the transpose, for :func:`csr_spmm`.

    ``order`` maps CSR position -> position in the ``edge_index`` it was built from, so per-edge
    values given in ``edge_index`` order are put in CSR order with ``values[order]``.
    ``t_order`` maps CSR-of-transpose position -> CSR position.
    """

    n_nodes: int
    order: Tensor      # [E]
    row: Tensor        # [E] target of each CSR edge
    col: Tensor        # [E] source of each CSR edge
    crow: Tensor       # [N + 1]
    t_order: Tensor    # [E]
    t_col: Tensor      # [E] targets, in transposed-CSR order
    t_crow: Tensor     # [N + 1]

    @property
    def n_edges(self) -> int:
        return int(self.col.numel())

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, n_nodes: int) -> "CSRGraph":
        """Sort ``edge_index`` into CSR (by target, then source) and build its transpose."""
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must be [2, E], got {tuple(edge_index.shape)}")
        ei = edge_index.long()
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n_nodes):
            raise ValueError(f"edge_index has node ids outside 0..{n_nodes - 1}")
        src, dst = ei[0], ei[1]
        order = torch.argsort(dst * n_nodes + src)
        row, col = dst[order], src[order]
        crow = _ptr(row, n_nodes)
        t_order = torch.argsort(col * n_nodes + row)
        t_col = row[t_order]
        t_crow = _ptr(col[t_order], n_nodes)
        return cls(n_nodes, order, row, col, crow, t_order, t_col, t_crow)


def _ptr(sorted_index: Tensor, n: int) -> Tensor:
    ptr = torch.zeros(n + 1, dtype=torch.long, device=sorted_index.device)
    ptr[1:] = torch.bincount(sorted_index, minlength=n).cumsum(0)
    return ptr


class _TensorKeyedCache:
    """A small cache keyed to a tensor *object* (and its in-place version), not to its values.

    Entries hold only a weak reference to the key tensor, so a freed ``edge_index`` can never be
    mistaken for a new one that reuses its id.
    """

    def __init__(self, size: int = 8):
        self.size = size
        self._entries: dict[tuple, tuple[weakref.ref, object]] = {}

    def get_or_build(self, tensor: Tensor, tag: tuple, build):
        key = (id(tensor), tensor._version) + tag
        hit = self._entries.get(key)
        if hit is not None and hit[0]() is tensor:
            return hit[1]
        self._entries = {k: v for k, v in self._entries.items() if v[0]() is not None}
        while len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        value = build()
        self._entries[key] = (weakref.ref(tensor), value)
        return value


_CACHE = _TensorKeyedCache()


def remaining_self_loops(edge_index: Tensor, n_nodes: int) -> Tensor:
    """``edge_index`` with a self loop added for every node that lacks one (cached per tensor)."""

    def build() -> Tensor:
        has = torch.zeros(n_nodes, dtype=torch.bool, device=edge_index.device)
        loops = edge_index[0] == edge_index[1]
        has[edge_index[0, loops]] = True
        missing = torch.nonzero(~has).flatten()
        return torch.cat([edge_index.long(), missing.expand(2, -1)], dim=1)

    return _CACHE.get_or_build(edge_index, ("loops", n_nodes), build)


def csr_graph(edge_index: Tensor, n_nodes: int, self_loops: bool = False) -> CSRGraph:
    """The cached :class:`CSRGraph` of ``edge_index`` (with remaining self loops if asked)."""
    ei = remaining_self_loops(edge_index, n_nodes) if self_loops else edge_index
    return _CACHE.get_or_build(ei, ("csr", n_nodes), lambda: CSRGraph.from_edge_index(ei, n_nodes))


# --------------------------------------------------------------------------------------------
# The kernel
# --------------------------------------------------------------------------------------------
def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A CSR tensor without torch's once-per-process "beta" warning (the kernel is tested here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _CSRSpMM(torch.autograd.Function):
    """``out = A @ x`` for a sparse ``A`` given by its CSR structure and per-edge ``values``.

    Backward: ``dx = A^T @ dout`` (a second CSR product on the cached transpose) and
    ``dvalues = SDDMM(dout, x)`` at A's sparsity (``torch.sparse.sampled_addmm``); neither
    materialises an ``[E, dim]`` tensor. For one 300-d product on FBDB15K, PyTorch's own backward of
    ``torch.sparse.mm`` on CSR measured 12.7 s and 4.3 GB; this one 0.45 s (spmm 0.15 s, transposed
    spmm 0.19 s, SDDMM 0.13 s).
    """

    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, graph: CSRGraph) -> Tensor:  # type: ignore[override]
        n = graph.n_nodes
        a = _csr(graph.crow, graph.col, values, (n, x.size(0)))
        ctx.graph = graph
        ctx.save_for_backward(values, x)
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        values, x = ctx.saved_tensors
        graph: CSRGraph = ctx.graph
        n = graph.n_nodes
        grad_out = grad_out.contiguous()
        grad_values = grad_x = None
        if ctx.needs_input_grad[1]:
            at = _csr(graph.t_crow, graph.t_col, values[graph.t_order], (x.size(0), n))
            grad_x = torch.sparse.mm(at, grad_out)
        if ctx.needs_input_grad[0]:
            mask = _csr(graph.crow, graph.col, torch.zeros_like(values), (n, x.size(0)))
            grad_values = torch.sparse.sampled_addmm(mask, grad_out, x.t(), beta=0.0).values()
        return grad_values, grad_x, None


def csr_spmm(graph: CSRGraph, values: Tensor, x: Tensor) -> Tensor:
    """``out[i] = sum_j values[(j -> i)] * x[j]`` with ``values`` in the graph's CSR order.

    Differentiable in ``values`` and ``x``. Half-precision inputs are computed in float32 (the
    sparse kernels do not take them everywhere) and returned in the input dtype.
    """
    if values.numel() != graph.n_edges:
        raise ValueError(f"values has {values.numel()} entries, the graph {graph.n_edges} edges")
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    out = _CSRSpMM.apply(values.to(x.dtype), x, graph)
    return out.to(dtype)


def gcn_norm_values(graph: CSRGraph, edge_weight: Tensor | None = None, degree: str = "target") -> Tensor:
    """Symmetric normalisation ``D^-1/2 A D^-1/2`` of the (weighted) adjacency, in CSR order.

    ``edge_weight`` is in CSR order (None: all ones); ``D`` is the row (``degree="target"``) sum, or the column
    (``"source"``) sum: GCN-Align's authors normalise the transpose of the matrix they built with the degrees of
    the matrix itself (``utils.py:normalize_adj``), which on a non-symmetric weighted ``A`` is the source sum.
    """
    if degree not in ("target", "source"):
        raise ValueError(f"unknown degree {degree!r}; known: target, source")
    w = torch.ones(graph.n_edges, device=graph.col.device) if edge_weight is None else edge_weight
    index = graph.row if degree == "target" else graph.col
    deg = torch.zeros(graph.n_nodes, dtype=w.dtype, device=w.device).index_add_(0, index, w)
    dinv = deg.pow(-0.5)
    dinv[torch.isinf(dinv)] = 0.0
    return dinv[graph.row] * w * dinv[graph.col]


# --------------------------------------------------------------------------------------------
# Diagonal GAT (MCLEA / MEAformer)
# --------------------------------------------------------------------------------------------
class DiagGATLayer(nn.Module):
    """One multi-head graph-attention layer with a *diagonal* weight, as in MCLEA/MEAformer.

    Per head ``k``: ``h = x * w_k`` (elementwise, ``w_k`` initialised to ones);
    ``e_ij = -LeakyReLU_0.2(a_k . [h_i || h_j])`` over the edges ``j -> i``;
    ``alpha_ij = softmax_j(e_ij)`` per target ``i``; ``out_i = sum_j alpha_ij h_j``.
    (The minus sign is the authors' ``exp(-leakyrelu(.))``.) Returns ``[heads, N, dim]``; no bias.
    """

    def __init__(self, dim: int, heads: int = 2, attn_dropout: float = 0.0):
        super().__init__()
        self.dim, self.heads, self.attn_dropout = dim, heads, attn_dropout
        self.w = nn.Parameter(torch.ones(heads, dim))
        self.a_dst = nn.Parameter(torch.empty(heads, dim))  # applies to the target h_i
        self.a_src = nn.Parameter(torch.empty(heads, dim))  # applies to the neighbour h_j
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.w)
        bound = 1.0 / math.sqrt(2 * self.dim)
        nn.init.uniform_(self.a_dst, -bound, bound)
        nn.init.uniform_(self.a_src, -bound, bound)

    def attention(self, x: Tensor, graph: CSRGraph) -> Tensor:
        """Attention coefficients ``[E, heads]`` in CSR order (each target's sum is 1)."""
        # a . (x * w) == x @ (w * a): one [N, d] x [d, H] product instead of [H, N, d] temporaries.
        s_dst = x @ (self.w * self.a_dst).t()                         # [N, H]
        s_src = x @ (self.w * self.a_src).t()
        e = -F.leaky_relu(s_dst[graph.row] + s_src[graph.col], 0.2)   # [E, H]
        return segment_softmax(e, graph.row, num_nodes=graph.n_nodes)

    def forward(self, x: Tensor, graph: CSRGraph) -> Tensor:
        alpha = self.attention(x, graph)
        alpha = F.dropout(alpha, self.attn_dropout, training=self.training).t().contiguous()  # [H, E]
        # The weight is diagonal, so sum_j alpha_ij (x_j * w) == (sum_j alpha_ij x_j) * w.
        return torch.stack([csr_spmm(graph, alpha[k], x) * self.w[k] for k in range(self.heads)])


class DiagGAT(nn.Module):
    """MCLEA's structure encoder: ``n_layers`` diagonal GAT layers, heads averaged, ELU between.

    Dropout (``dropout``) is applied to the input of every layer but the last, as in the authors'
    code; ``attn_dropout`` to the attention coefficients. Self loops are added where missing.
    """

    def __init__(self, dim: int, n_layers: int = 2, heads: int = 2, dropout: float = 0.0,
                 attn_dropout: float = 0.0):
        super().__init__()
        if n_layers < 1 or heads < 1:
            raise ValueError(f"n_layers and heads must be >= 1, got {n_layers}, {heads}")
        self.dropout = dropout
        self.layers = nn.ModuleList([DiagGATLayer(dim, heads, attn_dropout) for _ in range(n_layers)])

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        graph = csr_graph(edge_index, x.size(0), self_loops=True)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i < last:
                x = F.dropout(x, self.dropout, training=self.training)
            x = layer(x, graph).mean(0)
            if i < last:
                x = F.elu(x)
        return x


# --------------------------------------------------------------------------------------------
# GATConv (PyG) and GCN
# --------------------------------------------------------------------------------------------
class GATConvEncoder(nn.Module):
    """A stack of ``torch_geometric.nn.GATConv`` (heads averaged, ELU between layers).

    Kept selectable for comparison; on FBDB15K it is ~10x slower and ~10x larger than ``gat_diag``.
    """

    def __init__(self, dim: int, n_layers: int = 2, heads: int = 2, dropout: float = 0.0):
        super().__init__()
        from torch_geometric.nn import GATConv

        self.dropout = dropout
        self.layers = nn.ModuleList(
            [GATConv(dim, dim, heads=heads, concat=False, add_self_loops=True) for _ in range(n_layers)])

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, conv in enumerate(self.layers):
            if i < last:
                x = F.dropout(x, self.dropout, training=self.training)
            x = conv(x, edge_index)
            if i < last:
                x = F.elu(x)
        return x


class GCNEncoder(nn.Module):
    """GCN (Kipf & Welling) as in GCN-Align/EVA/MCLEA: ``D^-1/2 (A+I) D^-1/2 (x W) + b``, ReLU between.

    Weights use the pygcn uniform init ``U(-1/sqrt(out), 1/sqrt(out))`` of the authors' code; dropout
    after every hidden ReLU. ``forward`` optionally takes per-edge weights (in ``edge_index`` order).
    """

    def __init__(self, dim: int, n_layers: int = 2, dropout: float = 0.0, bias: bool = True,
                 widths: tuple[int, ...] | None = None):
        """``widths``: the layer widths ``(in, hidden..., out)`` (EVA's ``400,400,200``); None: ``dim`` square."""
        super().__init__()
        if widths:
            if len(widths) < 2:
                raise ValueError(f"GCN widths need an input and an output width, got {tuple(widths)}")
        elif n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        dims = tuple(widths) if widths else (dim,) * (n_layers + 1)
        self.dropout = dropout
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(a, b)) for a, b in zip(dims, dims[1:])])
        self.biases = nn.ParameterList([nn.Parameter(torch.empty(b)) for b in dims[1:]]) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for i, w in enumerate(self.weights):
            bound = 1.0 / math.sqrt(w.size(1))
            nn.init.uniform_(w, -bound, bound)
            if self.biases is not None:
                nn.init.uniform_(self.biases[i], -bound, bound)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        n = x.size(0)
        if edge_weight is None:
            graph = csr_graph(edge_index, n, self_loops=True)
            norm = _CACHE.get_or_build(graph.crow, ("gcn_norm",), lambda: gcn_norm_values(graph))
        else:
            graph = csr_graph(edge_index, n, self_loops=False)
            norm = gcn_norm_values(graph, edge_weight[graph.order])
        last = len(self.weights) - 1
        for i, w in enumerate(self.weights):
            x = csr_spmm(graph, norm, x @ w)
            if self.biases is not None:
                x = x + self.biases[i]
            if i < last:
                x = F.dropout(F.relu(x), self.dropout, training=self.training)
        return x


def build_graph_encoder(kind: str, dim: int, n_layers: int = 2, heads: int = 2, dropout: float = 0.0,
                        widths: tuple[int, ...] | None = None) -> nn.Module:
    """A structure encoder by name: ``gat_diag`` (default of the lineage), ``gatconv`` or ``gcn``.

    The module's ``forward(x: [N, dim], edge_index: [2, E]) -> [N, dim]``.
    """
    if widths and kind != "gcn":
        raise ValueError(f"graph widths {tuple(widths)} need graph_kind 'gcn' (the GAT layers are square)")
    if kind == "gat_diag":
        return DiagGAT(dim, n_layers=n_layers, heads=heads, dropout=dropout)
    if kind == "gatconv":
        return GATConvEncoder(dim, n_layers=n_layers, heads=heads, dropout=dropout)
    if kind == "gcn":
        return GCNEncoder(dim, n_layers=n_layers, dropout=dropout, widths=widths)
    raise ValueError(f"unknown graph encoder {kind!r}; known: {', '.join(GRAPH_ENCODERS)}")
