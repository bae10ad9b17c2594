"""Per-entity modality fusion over a short sequence of modality tokens (MIMEA's fusion and its alternatives).

Every fusion module maps ``tokens: [N, M, d]`` (the L2-normalised unimodal embeddings, one token per
modality) and ``present: [N, M]`` (BoolTensor: the entity really has the modality) to a
:class:`FusionOutput` whose ``weights: [N, M]`` are exactly 0 where a modality is missing and sum to 1 over the
present ones. The joint embedding is then :func:`joint_embedding` = ``concat_m(w_m * e_m)`` (the EVA / MCLEA /
MEAformer form) and the joint space seen from one modality is :func:`block_sum` = ``sum_m w_m e_m``.

* :class:`BetaFusion` (``fusion="beta"``, MIMEA's default, our reading of "probability-guided fusion"): an MLP
  on each token gives the two concentrations of a Beta distribution; the weight is a reparameterised Beta sample
  in training and the Beta mean at evaluation; a KL to a Beta prior regularises it.
* :class:`SoftmaxFusion` (``fusion="softmax"``): a deterministic masked softmax over one score per token
  (MEAformer-like; MEAformer takes its scores from the attention probabilities instead).
* :class:`MeanFusion` (``fusion="mean"``): uniform weights over the present modalities, no parameters.

:class:`ModalInteraction` (used when ``interaction=True``) is one self-attention layer over the M tokens with a
key-padding mask for missing modalities (MEAformer's idea: 1 layer, 1 head, residual + LayerNorm, no FFN).
It only shapes the weights; the joint embedding is built from the un-interacted tokens, as MEAformer does.
All equations are documented in ``docs/method.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Beta, kl_divergence

FUSIONS = ("beta", "softmax", "mean")


@dataclass
class FusionOutput:
    """What a fusion module returns.

    weights: ``[N, M]`` modality weights: 0 where missing, sum 1 over the present modalities.
    tokens: ``[N, M, d]`` the tokens after the interaction layer (the input tokens when there is none).
    alpha, beta: ``[N, M]`` Beta concentrations (``None`` for the non-Beta fusions).
    kl: scalar mean ``KL(Beta(alpha, beta) || prior)`` over present entries (0 for the non-Beta fusions).
    """

    weights: Tensor
    tokens: Tensor
    alpha: Tensor | None
    beta: Tensor | None
    kl: Tensor


def _check(tokens: Tensor, present: Tensor, n_modalities: int | None = None) -> None:
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be [N, M, d], got {tuple(tokens.shape)}")
    if present.shape != tokens.shape[:2] or present.dtype != torch.bool:
        raise ValueError(f"present must be a bool [N, M] = {tuple(tokens.shape[:2])}, got "
                         f"{present.dtype} {tuple(present.shape)}")
    if n_modalities is not None and tokens.size(1) != n_modalities:
        raise ValueError(f"expected {n_modalities} modality tokens, got {tokens.size(1)}")


def masked_normalize(raw: Tensor, present: Tensor) -> Tensor:
    """``raw * present / sum_present(raw)`` per row: missing -> exactly 0, present sum to 1.

    ``raw`` must be positive. A row with no present modality gets all-zero weights (never NaN).
    """
    # where, not a product, and a denominator of 1 on all-missing rows: their joint embedding is zero, whose
    # normalisation has a huge (1/eps) gradient; through raw * 0 and a 1/tiny denominator that became inf * 0 = NaN
    # (MIMEA on FBDB15K without the graph modality: 13 entities of a batch have no modality at all).
    w = torch.where(present, raw, torch.zeros_like(raw))
    total = w.sum(dim=-1, keepdim=True)
    return w / torch.where(total > 0, total, torch.ones_like(total))


def joint_embedding(weights: Tensor, tokens: Tensor) -> Tensor:
    """``concat_m(w_m * e_m)``: ``[N, M, d]`` tokens and ``[N, M]`` weights -> ``[N, M * d]``."""
    return (weights.unsqueeze(-1) * tokens).flatten(1)


def block_sum(weights: Tensor, tokens: Tensor) -> Tensor:
    """``sum_m w_m * e_m`` -> ``[N, d]``: the concat joint under the fixed linear map that sums its M blocks."""
    return (weights.unsqueeze(-1) * tokens).sum(dim=1)


class ModalInteraction(nn.Module):
    """One self-attention layer over the M modality tokens of each entity (1 head).

    ``out = LayerNorm(x + Dropout(Attn(x, x, x)))``; a missing modality is never a key (key-padding mask).
    A row with no present modality attends to all tokens instead of to none (its weights are 0 anyway).
    """

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads=1, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, present: Tensor) -> Tensor:
        _check(tokens, present)
        pad = ~present
        pad = pad & present.any(dim=1, keepdim=True)    # all-missing row: attend everywhere (no NaN)
        h, _ = self.attn(tokens, tokens, tokens, key_padding_mask=pad, need_weights=False)
        return self.norm(tokens + self.dropout(h))


class BetaFusion(nn.Module):
    """Probability-guided fusion: per-(entity, modality) weights drawn from a learned Beta distribution.

    For each (interacted) token ``h_m``: ``(a_m, b_m) = softplus(MLP(h_m) + c_m) + floor`` with a shared MLP
    ``d -> hidden -> 2`` and a learnable per-modality offset ``c_m``; ``u_m ~ Beta(a_m, b_m)`` by
    reparameterisation in training, ``u_m = a_m / (a_m + b_m)`` in eval; ``w = u * present / sum_present(u)``.
    ``kl`` = mean over present entries of ``KL(Beta(a_m, b_m) || Beta(prior_alpha, prior_beta))``.

    Args:
        n_modalities: M. dim: token width d. interaction: add a :class:`ModalInteraction` layer.
        hidden: MLP hidden width. floor: lower bound of both concentrations (keeps samples off 0/1).
        prior_alpha, prior_beta: the Beta prior of the KL. dropout: of the interaction layer.
        span: ``None`` (default): ``w ∝ u`` (a modality can take all the weight); a number ``0 < span <= 1``:
            ``w ∝ 1 + span * (2u - 1)``, a bounded move around the uniform weights (a modality's weight stays
            within ``(1 - span) / (1 + span)`` and ``(1 + span) / (1 - span)`` times another's).
    """

    #: Samples are clamped to at least this before normalisation (a Beta draw can underflow to 0 in float32).
    MIN_SAMPLE = 1e-6

    def __init__(self, n_modalities: int, dim: int, *, interaction: bool = True, hidden: int = 64,
                 floor: float = 0.1, prior_alpha: float = 1.0, prior_beta: float = 1.0, dropout: float = 0.0,
                 span: float | None = None):
        super().__init__()
        if span is not None and not 0 < span <= 1:
            raise ValueError(f"BetaFusion span must be None or in (0, 1], got {span}")
        self.span = span
        if n_modalities < 1 or dim < 1 or hidden < 1:
            raise ValueError(f"BetaFusion needs n_modalities, dim, hidden >= 1, got {n_modalities}, {dim}, {hidden}")
        if floor <= 0 or prior_alpha <= 0 or prior_beta <= 0:
            raise ValueError(f"BetaFusion needs a positive floor and positive priors, got floor={floor}, "
                             f"prior=({prior_alpha}, {prior_beta})")
        self.n_modalities = n_modalities
        self.floor = float(floor)
        self.interaction = ModalInteraction(dim, dropout) if interaction else None
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.modality_bias = nn.Parameter(torch.zeros(n_modalities, 2))
        self.register_buffer("prior", torch.tensor([float(prior_alpha), float(prior_beta)]), persistent=False)

    def concentrations(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha, beta)``, each ``[N, M]``, from the (interacted) tokens."""
        raw = F.softplus(self.head(tokens) + self.modality_bias) + self.floor
        return raw[..., 0], raw[..., 1]

    def forward(self, tokens: Tensor, present: Tensor) -> FusionOutput:
        _check(tokens, present, self.n_modalities)
        h = tokens if self.interaction is None else self.interaction(tokens, present)
        alpha, beta = self.concentrations(h)
        dist = Beta(alpha, beta, validate_args=False)     # alpha, beta >= floor > 0 by construction
        u = dist.rsample() if self.training else dist.mean
        raw = u.clamp_min(self.MIN_SAMPLE) if self.span is None else 1.0 + self.span * (2.0 * u - 1.0)
        weights = masked_normalize(raw.clamp_min(self.MIN_SAMPLE), present)
        prior = Beta(self.prior[0].to(alpha.dtype).expand_as(alpha), self.prior[1].to(alpha.dtype).expand_as(beta),
                     validate_args=False)
        kl_all = kl_divergence(dist, prior)
        n_present = present.sum().clamp_min(1)
        kl = (kl_all * present.to(kl_all.dtype)).sum() / n_present
        return FusionOutput(weights, h, alpha, beta, kl)


class SoftmaxFusion(nn.Module):
    """Deterministic per-entity fusion: ``w = softmax over present m of (v^T h_m + c_m)`` (MEAformer-like).

    ``v`` is a ``Linear(d, 1)``, ``c_m`` a learnable per-modality offset; missing modalities get exactly 0.
    """

    def __init__(self, n_modalities: int, dim: int, *, interaction: bool = True, dropout: float = 0.0):
        super().__init__()
        if n_modalities < 1 or dim < 1:
            raise ValueError(f"SoftmaxFusion needs n_modalities, dim >= 1, got {n_modalities}, {dim}")
        self.n_modalities = n_modalities
        self.interaction = ModalInteraction(dim, dropout) if interaction else None
        self.score = nn.Linear(dim, 1)
        self.modality_bias = nn.Parameter(torch.zeros(n_modalities))

    def forward(self, tokens: Tensor, present: Tensor) -> FusionOutput:
        _check(tokens, present, self.n_modalities)
        h = tokens if self.interaction is None else self.interaction(tokens, present)
        s = self.score(h).squeeze(-1) + self.modality_bias
        any_present = present.any(dim=1, keepdim=True)
        s = s.masked_fill(~present & any_present, float("-inf"))     # an all-missing row stays finite (no NaN) ...
        w = torch.softmax(s, dim=-1)
        w = torch.where(any_present, w, torch.zeros_like(w))           # ... and gets weights 0
        return FusionOutput(w, h, None, None, tokens.new_zeros(()))


class MeanFusion(nn.Module):
    """Uniform weights over the present modalities; no parameters (the "w/o probability-guided fusion" row)."""

    def __init__(self, n_modalities: int):
        super().__init__()
        self.n_modalities = n_modalities

    def forward(self, tokens: Tensor, present: Tensor) -> FusionOutput:
        _check(tokens, present, self.n_modalities)
        w = masked_normalize(torch.ones_like(present, dtype=tokens.dtype), present)
        return FusionOutput(w, tokens, None, None, tokens.new_zeros(()))


def build_fusion(kind: str, n_modalities: int, dim: int, *, interaction: bool = True, hidden: int = 64,
                 floor: float = 0.1, prior_alpha: float = 1.0, prior_beta: float = 1.0,
                 dropout: float = 0.0, span: float | None = None) -> nn.Module:
    """A fusion module by name: ``beta`` | ``softmax`` | ``mean``.

    ``mean`` has token-independent weights, so an interaction layer would train nothing: asking for both is an
    error rather than a silently dropped layer.
    """
    if kind == "beta":
        return BetaFusion(n_modalities, dim, interaction=interaction, hidden=hidden, floor=floor,
                          prior_alpha=prior_alpha, prior_beta=prior_beta, dropout=dropout, span=span)
    if kind == "softmax":
        return SoftmaxFusion(n_modalities, dim, interaction=interaction, dropout=dropout)
    if kind == "mean":
        if interaction:
            raise ValueError("fusion='mean' has token-independent weights, so interaction=True would train "
                             "nothing; set interaction=False")
        return MeanFusion(n_modalities)
    raise ValueError(f"unknown fusion {kind!r}; known: {', '.join(FUSIONS)}")
