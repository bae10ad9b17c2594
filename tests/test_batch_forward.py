"""Models that encode only the batch's entities in training (``batch_forward``) get the loss and gradients of the
full forward: the speed-up may not change the method."""
from __future__ import annotations

import pytest
import torch

from mimea.models import registry

#: Narrow widths so each model builds in milliseconds on the synthetic pair; kl_weight 0 for MIMEA because its KL
#: is averaged over the entities encoded (all of them vs the batch's), the one term that differs by design.
SMALL = {
    "eva": dict(graph_dim=24, graph_widths=(), relation_dim=16, attribute_dim=16, image_dim=16),
    "mclea": dict(graph_dim=24, relation_dim=16, attribute_dim=16, image_dim=16),
    "meaformer": dict(graph_dim=24, relation_dim=24, attribute_dim=24, image_dim=24, name_dim=24),
    "mimea": dict(dim=24, kl_weight=0.0),
}


def test_every_batch_forward_model_is_covered():
    opted = {name for name in registry.available() if registry.get(name).batch_forward}
    assert opted == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_batch_loss_equals_full_forward_loss(name, synthetic_pair):
    cls = registry.get(name)
    torch.manual_seed(0)
    model = cls(synthetic_pair, cls.Config(**SMALL[name])).eval()   # eval: no dropout, Beta means, no sampling
    links = synthetic_pair.links[torch.randperm(len(synthetic_pair.links))[:64]]

    full, _ = model.loss(model(), links)
    full_grads = torch.autograd.grad(full, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    batch, _ = model.batch_loss(links)
    batch_grads = torch.autograd.grad(batch, [p for p in model.parameters() if p.requires_grad], allow_unused=True)

    _assert_same_loss_and_grads(batch, full, batch_grads, full_grads)


def _assert_same_loss_and_grads(batch, full, batch_grads, full_grads) -> None:
    torch.testing.assert_close(batch, full, rtol=1e-5, atol=1e-6)
    for g_full, g_batch in zip(full_grads, batch_grads):
        if g_full is None or g_batch is None:
            assert g_full is None and g_batch is None
        else:
            torch.testing.assert_close(g_batch, g_full, rtol=1e-4, atol=1e-6)


def test_batch_forward_encodes_only_the_rows_asked_for(synthetic_pair):
    cls = registry.get("mimea")
    torch.manual_seed(0)
    model = cls(synthetic_pair, cls.Config(**SMALL["mimea"])).eval()
    index = torch.tensor([5, 2, 40])
    part, whole = model(index), model()
    assert part.joint.shape[0] == 3
    torch.testing.assert_close(part.joint, whole.joint[index])


@pytest.mark.parametrize("train", [False, True])
def test_msnea_batch_step_equals_the_full_forward(synthetic_pair, train):
    """MSNEA's step encodes the image and attribute views of the batch's entities only, and TransE normalises
    only the rows of its triples' entities. Same loss, same gradients (the same triples drawn: the RNG reseeded
    for both; the step draws them before its forward, the full loss after: in train mode too, the forward
    draws no random numbers)."""
    cls = registry.get("msnea")
    torch.manual_seed(0)
    model = cls(synthetic_pair, cls.Config(dim=16, triple_batch_size=200)).train(train)
    links = synthetic_pair.links[torch.randperm(len(synthetic_pair.links))[:64]]
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(1)
    model._pass = None   # the triple pass starts afresh: the same shuffle, the same first chunk
    full, _ = model.loss(model(), links)
    g_full = torch.autograd.grad(full, params, allow_unused=True)
    torch.manual_seed(1)
    model._pass = None
    batch, _ = model.batch_loss(links)
    g_batch = torch.autograd.grad(batch, params, allow_unused=True)
    _assert_same_loss_and_grads(batch, full, g_batch, g_full)


def test_msnea_relational_rows_are_the_rows_of_the_whole_table(synthetic_pair):
    cls = registry.get("msnea")
    torch.manual_seed(0)
    model = cls(synthetic_pair, cls.Config(dim=16))
    ids = torch.tensor([7, 0, 7, 31])
    torch.testing.assert_close(model.relational_rows(ids), model.relational()[ids])


def test_encoder_only_encodes_the_modalities_named(synthetic_pair):
    cls = registry.get("mclea")
    torch.manual_seed(0)
    enc = cls(synthetic_pair, cls.Config(**SMALL["mclea"])).encoder
    index = torch.tensor([3, 1])
    part, whole = enc(index, only=("graph", "image")), enc(index)
    assert set(part) == {"graph", "image"} and set(whole) == set(enc.modalities)
    torch.testing.assert_close(part["image"], whole["image"])


@pytest.mark.parametrize("values", [False, True])
def test_msnea_attention_rows_follow_the_index_and_the_seed_union(synthetic_pair, values):
    """The padded attention's constant tables are built once and their rows kept for the last index: asking for
    another index, or changing the attribute sets (prepare_training's seed union), must give the rows of the
    whole-table attention computed afresh."""
    import dataclasses
    cls = registry.get("msnea")
    pair = dataclasses.replace(synthetic_pair)
    if values:
        pair.att_values = torch.randn(pair.att_features.shape) * pair.att_features
    torch.manual_seed(0)
    model = cls(pair, cls.Config(dim=16, attribute_values=values)).eval()
    guide = torch.randn(pair.n_ent, 16)
    with torch.no_grad():
        for links in (pair.links[:40], pair.links[40:90], pair.links[:40]):
            index = torch.unique(links)
            whole, alpha = model.attribute_attention(guide)
            rows, alpha_rows = model.attribute_attention(guide[index], index)
            torch.testing.assert_close(rows, whole[index])
            torch.testing.assert_close(alpha_rows, alpha[index])
        before, _ = model.attribute_attention(guide)
        model.prepare_training(pair.links[:60])
        after, alpha = model.attribute_attention(guide)
        fresh = cls(pair, cls.Config(dim=16, attribute_values=values)).eval()
        fresh.load_state_dict(model.state_dict())
        fresh.prepare_training(pair.links[:60])
        expected, expected_alpha = fresh.attribute_attention(guide)
    torch.testing.assert_close(after, expected)
    torch.testing.assert_close(alpha, expected_alpha)
    assert not torch.allclose(before, after)       # the union changed some entity's attribute set
