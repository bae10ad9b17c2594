"""Modality fusion (mimea.nn.fusion): weights, masking, gradients, Beta sampling, KL, alternatives."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Beta, kl_divergence

from mimea.nn.fusion import (BetaFusion, MeanFusion, ModalInteraction, SoftmaxFusion, block_sum, build_fusion,
                             joint_embedding, masked_normalize)

N, M, D = 7, 4, 8


def _tokens(seed: int = 0, requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(N, M, D, generator=g).requires_grad_(requires_grad)
    present = torch.ones(N, M, dtype=torch.bool)
    present[0, 3] = False          # one missing image
    present[1, 1:] = False         # only the graph
    present[2, 2] = False
    return raw, present


def _all_fusions() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [BetaFusion(M, D, interaction=True), BetaFusion(M, D, interaction=False),
            SoftmaxFusion(M, D, interaction=True), SoftmaxFusion(M, D, interaction=False), MeanFusion(M)]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("idx", range(5))
def test_weights_positive_sum_to_one_zero_when_missing(idx, train):
    fusion = _all_fusions()[idx].train(train)
    raw, present = _tokens()
    out = fusion(F.normalize(raw, dim=-1), present)
    w = out.weights
    assert w.shape == (N, M)
    assert torch.all(w[~present] == 0)                      # exactly 0, not merely small
    assert torch.all(w[present] > 0)
    torch.testing.assert_close(w.sum(1), torch.ones(N))
    assert torch.equal(w[1], torch.tensor([1.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("idx", range(4))
def test_missing_tokens_do_not_influence_weights(idx):
    fusion = _all_fusions()[idx].eval()
    raw, present = _tokens()
    tokens = F.normalize(raw, dim=-1)
    w1 = fusion(tokens, present).weights
    changed = tokens.clone()
    changed[~present] = F.normalize(torch.randn(int((~present).sum()), D), dim=-1)
    w2 = fusion(changed, present).weights
    torch.testing.assert_close(w1, w2)


@pytest.mark.parametrize("idx", range(4))
def test_weights_carry_gradient_to_fusion_and_encoders(idx):
    fusion = _all_fusions()[idx].train()
    raw, present = _tokens(requires_grad=True)
    out = fusion(F.normalize(raw, dim=-1), present)
    target = torch.randn(N, M, generator=torch.Generator().manual_seed(1))
    (out.weights * target).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # The alpha/beta (or score) head receives gradient, and so do the encoder outputs of PRESENT modalities only.
    head = fusion.head[0].weight if isinstance(fusion, BetaFusion) else fusion.score.weight
    assert float(head.grad.abs().sum()) > 0
    assert float(raw.grad[present].abs().sum()) > 0
    assert torch.all(raw.grad[~present] == 0)


def test_interaction_layer_gets_gradient():
    torch.manual_seed(0)
    fusion = BetaFusion(M, D, interaction=True).train()
    raw, present = _tokens()
    out = fusion(F.normalize(raw, dim=-1), present)
    (out.weights * torch.randn(N, M)).sum().backward()
    assert float(fusion.interaction.attn.in_proj_weight.grad.abs().sum()) > 0


def test_beta_eval_is_the_mean_and_train_is_a_reparameterised_sample():
    torch.manual_seed(0)
    fusion = BetaFusion(M, D, interaction=False)
    raw, present = _tokens()
    tokens = F.normalize(raw, dim=-1)
    fusion.eval()
    out = fusion(tokens, present)
    mean = out.alpha / (out.alpha + out.beta)
    torch.testing.assert_close(out.weights, masked_normalize(mean, present))
    torch.testing.assert_close(fusion(tokens, present).weights, out.weights)       # deterministic

    fusion.train()
    torch.manual_seed(123)
    out_t = fusion(tokens, present)
    torch.manual_seed(123)
    u = Beta(out_t.alpha.detach(), out_t.beta.detach()).rsample()
    torch.testing.assert_close(out_t.weights, masked_normalize(u.clamp_min(BetaFusion.MIN_SAMPLE), present))
    assert not torch.allclose(fusion(tokens, present).weights, out_t.weights)      # a new draw
    assert out_t.weights.requires_grad


def test_beta_sample_average_approaches_the_mean():
    torch.manual_seed(0)
    fusion = BetaFusion(2, D, interaction=False).train()
    tokens = F.normalize(torch.randn(1, 2, D), dim=-1)
    present = torch.tensor([[True, False]])
    out = fusion(tokens, present)
    assert float(out.weights[0, 0].detach()) == 1.0                # one present modality: weight 1 whatever the draw
    a, b = out.alpha[0, 0].detach(), out.beta[0, 0].detach()
    draws = Beta(a.expand(20000), b.expand(20000)).rsample()
    assert abs(float(draws.mean()) - float(a / (a + b))) < 0.01


def test_alpha_beta_above_floor_and_kl_matches_direct_computation():
    torch.manual_seed(0)
    fusion = BetaFusion(M, D, interaction=True, floor=0.3, prior_alpha=2.0, prior_beta=3.0).eval()
    raw, present = _tokens()
    out = fusion(F.normalize(raw, dim=-1), present)
    assert torch.all(out.alpha >= 0.3) and torch.all(out.beta >= 0.3)
    kl = kl_divergence(Beta(out.alpha, out.beta), Beta(torch.tensor(2.0), torch.tensor(3.0)))
    torch.testing.assert_close(out.kl, kl[present].mean())
    assert float(out.kl) > 0


def test_kl_gradient_reaches_the_head():
    torch.manual_seed(0)
    fusion = BetaFusion(M, D, interaction=False, prior_alpha=5.0, prior_beta=5.0)
    raw, present = _tokens()
    fusion(F.normalize(raw, dim=-1), present).kl.backward()
    assert float(fusion.head[2].weight.grad.abs().sum()) > 0


def test_mean_fusion_is_uniform_and_parameter_free():
    fusion = MeanFusion(M)
    raw, present = _tokens()
    out = fusion(F.normalize(raw, dim=-1), present)
    expected = present.float() / present.sum(1, keepdim=True)
    torch.testing.assert_close(out.weights, expected)
    assert list(fusion.parameters()) == []
    assert out.alpha is None and float(out.kl) == 0.0


def test_all_missing_row_gives_zero_weights_not_nan():
    raw, present = _tokens(requires_grad=True)
    present[4] = False
    for fusion in _all_fusions():
        raw.grad = None
        out = fusion.train()(F.normalize(raw, dim=-1), present)
        assert torch.isfinite(out.weights).all()
        assert torch.all(out.weights[4] == 0)
        if isinstance(fusion, MeanFusion):
            continue                                           # no parameters, nothing to back-propagate
        (out.weights * torch.arange(M, dtype=torch.float)).sum().add(out.kl).backward()
        assert raw.grad is None or torch.isfinite(raw.grad).all()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in fusion.parameters())


def test_interaction_masks_missing_keys():
    torch.manual_seed(0)
    layer = ModalInteraction(D).eval()
    raw, present = _tokens()
    tokens = F.normalize(raw, dim=-1)
    out1 = layer(tokens, present)
    changed = tokens.clone()
    changed[0, 3] = 5.0                                       # a missing token changes ...
    out2 = layer(changed, present)
    torch.testing.assert_close(out1[0, :3], out2[0, :3])    # ... nothing the present tokens see


def test_joint_and_block_sum():
    raw, present = _tokens()
    tokens = F.normalize(raw, dim=-1)
    w = MeanFusion(M)(tokens, present).weights
    joint = joint_embedding(w, tokens)
    assert joint.shape == (N, M * D)
    torch.testing.assert_close(joint.view(N, M, D).sum(1), block_sum(w, tokens))
    torch.testing.assert_close(joint[:, :D], w[:, :1] * tokens[:, 0])


def test_build_fusion_choices_and_errors():
    assert isinstance(build_fusion("beta", M, D), BetaFusion)
    assert isinstance(build_fusion("softmax", M, D, interaction=False), SoftmaxFusion)
    assert isinstance(build_fusion("mean", M, D, interaction=False), MeanFusion)
    with pytest.raises(ValueError, match="interaction"):
        build_fusion("mean", M, D, interaction=True)
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("max", M, D)
    with pytest.raises(ValueError, match="present must be"):
        MeanFusion(M)(torch.zeros(N, M, D), torch.ones(N, M))


def test_interaction_switch_removes_exactly_the_attention_parameters():
    with_i = {n for n, _ in BetaFusion(M, D, interaction=True).named_parameters()}
    without = {n for n, _ in BetaFusion(M, D, interaction=False).named_parameters()}
    assert without < with_i
    assert all(n.startswith("interaction.") for n in with_i - without)
    assert not any(n.startswith("interaction.") for n in without)


@pytest.mark.parametrize("kind", ["beta", "softmax", "mean"])
def test_an_entity_with_no_modality_gets_zero_weights_and_finite_gradients(kind):
    """An entity with no modality at all (MIMEA without the graph modality on FBDB15K) has a zero joint embedding;
    normalising it in a loss must not send NaN back into the fusion (it did: inf * 0 in the weight mask)."""
    torch.manual_seed(0)
    fusion = build_fusion(kind, 2, 8, interaction=kind != "mean")
    tokens = torch.nn.functional.normalize(torch.randn(4, 2, 8), dim=-1).requires_grad_(True)
    present = torch.tensor([[True, True], [True, False], [False, False], [False, True]])
    out = fusion(tokens, present)
    assert torch.equal(out.weights[2], torch.zeros(2))
    joint = torch.nn.functional.normalize(joint_embedding(out.weights, tokens), dim=-1)
    (joint @ joint.t()).sum().backward()
    assert torch.isfinite(tokens.grad).all()
    for p in fusion.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_beta_span_bounds_the_weights_around_uniform():
    from mimea.nn.fusion import BetaFusion

    torch.manual_seed(0)
    tokens = torch.nn.functional.normalize(torch.randn(50, 3, 8), dim=-1)
    present = torch.ones(50, 3, dtype=torch.bool)
    present[0, 2] = False
    fusion = BetaFusion(3, 8, span=0.5).eval()
    with torch.no_grad():                            # push the concentrations far apart: u near 0 or 1
        fusion.modality_bias.copy_(torch.tensor([[8.0, -8.0], [-8.0, 8.0], [0.0, 0.0]]))
    w = fusion(tokens, present).weights
    ratio = w[1:, 0] / w[1:, 1]
    assert torch.all(ratio <= 3.0 + 1e-4) and torch.all(ratio > 2.5)      # (1 + 0.5) / (1 - 0.5) at most
    assert w[0, 2] == 0 and torch.allclose(w.sum(1), torch.ones(50))
    free = BetaFusion(3, 8).eval()
    free.load_state_dict(fusion.state_dict())
    assert float((free(tokens, present).weights[1:, 0] / free(tokens, present).weights[1:, 1]).min()) > 10
    with pytest.raises(ValueError, match="span"):
        BetaFusion(3, 8, span=1.5)
