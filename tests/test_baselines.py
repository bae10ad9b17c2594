"""EVA, MCLEA, MEAformer and MSNEA under the shared harness: they train, and each keeps its defining property."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from baselines.eva import EVA
from baselines.mclea import MCLEA
from baselines.meaformer import MEAformer
from baselines.msnea import MSNEA
from mimea.data.pair import MMKGPair
from mimea.models import registry
from mimea.models.base import Embeddings
from mimea.nn.encoders import EntityEmbedding, FeatureEncoder
from mimea.nn.global_fusion import GlobalWeightFusion, weighted_concat
from mimea.nn.graph import DiagGAT, GATConvEncoder, GCNEncoder
from mimea.nn.multimodal import MultiModalEncoder

BASELINES = (EVA, MCLEA, MEAformer, MSNEA)
#: Narrow widths so every step takes milliseconds on the synthetic pair.
SMALL = {
    EVA: dict(graph_dim=24, graph_widths=(), relation_dim=16, attribute_dim=16, image_dim=16),
    MCLEA: dict(graph_dim=24, relation_dim=16, attribute_dim=16, image_dim=16),
    MEAformer: dict(graph_dim=24, relation_dim=24, attribute_dim=24, image_dim=24, name_dim=24),
    MSNEA: dict(dim=24, triple_batch_size=512),
}


def _model(cls, pair, **over):
    torch.manual_seed(0)
    return cls(pair, cls.Config(**{**SMALL[cls], **over}))


def _train(model, links, steps=15, lr=1e-2):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, logs = model.loss(model(), links)
        assert all(isinstance(v, float) for v in logs.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _no_image(pair: MMKGPair) -> MMKGPair:
    return dataclasses.replace(pair, img_features=None, img_mask=torch.zeros(pair.n_ent, dtype=torch.bool),
                               provenance={**pair.provenance, "image_features": "absent"})


@pytest.fixture(scope="module")
def pair(synthetic_pair) -> MMKGPair:
    return synthetic_pair


@pytest.fixture(scope="module")
def links(pair) -> torch.Tensor:
    return pair.links[:128]


# ---------------------------------------------------------------------------------------------------------------
# Every baseline
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
def test_trains_and_loss_decreases(cls, pair, links):
    # MSNEA's step reads the next chunk of a pass over the triples: a triple's TransE term can only fall once the
    # pass comes back to it, so its head and tail are a pass or more apart (~27 steps of 512 a pass here)
    losses = _train(_model(cls, pair), links, steps=45 if cls is MSNEA else 15)
    assert all(torch.isfinite(torch.tensor(losses)))
    head, tail = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert tail < head - 0.1 * abs(head), (head, tail)


@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
def test_registered_config_round_trips_and_defaults(cls, pair):
    assert registry.get(cls.name) is cls
    cfg = cls.Config(**SMALL[cls])
    again = cls.Config(**json.loads(json.dumps(dataclasses.asdict(cfg))))    # as the run store reloads it
    model = cls(pair, again)
    emb = model()
    assert emb.joint.shape[0] == pair.n_ent and torch.isfinite(emb.joint).all()
    assert {"lr", "weight_decay", "batch_size", "epochs"} <= set(cls.train_defaults)
    proto = model.protocol()
    values = cls is MSNEA and pair.att_values is not None      # MSNEA reads values when the data has them
    assert proto["names"] is False and proto["attribute_values"] is values and proto["images"] == "synthetic"
    space = cls.search_space(_AnyTrial())
    assert space and set(space) <= {f.name for f in dataclasses.fields(cls.Config)}


class _AnyTrial:
    """Answers every suggestion with its lower bound (enough to check the keys a search space returns)."""

    def suggest_float(self, name, low, high, **kw):
        return low

    def suggest_int(self, name, low, high, **kw):
        return low

    def suggest_categorical(self, name, choices):
        return choices[0]


@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
def test_no_baseline_builds_its_own_encoders(cls, pair):
    model = _model(cls, pair)
    encoders = [m for m in model.modules() if isinstance(m, MultiModalEncoder)]
    assert encoders == [model.encoder]
    inside = {id(m) for m in model.encoder.modules()}
    own = [type(m).__name__ for m in model.modules()
           if isinstance(m, (EntityEmbedding, FeatureEncoder, DiagGAT, GATConvEncoder, GCNEncoder))
           and id(m) not in inside]
    assert own == []


@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
def test_without_images_the_visual_parts_are_absent(cls, pair, links):
    model = _model(cls, _no_image(pair))
    emb = model()
    assert "image" not in emb.modalities and "image" not in model.encoder.modalities
    assert model.protocol()["images"] == "absent"
    loss, _ = model.loss(emb, links)
    assert torch.isfinite(loss)


def test_default_train_settings_are_the_authors():
    assert EVA.train_defaults == {"lr": 5e-4, "weight_decay": 0.01, "batch_size": 7500, "epochs": 1000,
                                  "accumulate": "epoch"}
    assert MCLEA.train_defaults == {"lr": 5e-4, "weight_decay": 0.01, "batch_size": 512, "epochs": 1000,
                                    "accumulate": "epoch"}
    assert MEAformer.train_defaults["grad_clip"] == 1.0 and MEAformer.train_defaults["batch_size"] == 3500
    assert MEAformer.train_defaults["schedule"] == "cosine_warmup" and MEAformer.train_defaults["warmup"] == 0.15
    assert MSNEA.train_defaults["lr"] == 1e-3 and MSNEA.train_defaults["epochs"] == 200
    from mimea.training.config import resolve

    assert resolve("meaformer", "paper").train.grad_clip == 1.0
    assert resolve("mclea", "paper").train.batch_size == 512
    assert EVA.Config().edge_weights == "count" and EVA.Config().attribute_width == 1000
    assert MCLEA.Config().attribute_width == 1000
    assert resolve("eva", "authors").data.missing_image == "random"


def test_edge_counts_are_triple_multiplicities():
    """EVA's adjacency: A[h,t] = c(h,t) + c(t,h), self loops weight 1, duplicate triples counted."""
    from types import SimpleNamespace

    from mimea.data.pair import MMKGPair

    fake = SimpleNamespace(triples=torch.tensor([[0, 0, 1], [0, 1, 1], [1, 0, 0], [2, 0, 2], [1, 0, 2]]), n_ent=3)
    edges, w = MMKGPair.edge_index_counts(fake)
    got = {(int(a), int(b)): float(x) for a, b, x in zip(edges[0], edges[1], w)}
    assert got == {(0, 1): 3.0, (1, 0): 3.0, (1, 2): 1.0, (2, 1): 1.0, (0, 0): 1.0, (1, 1): 1.0, (2, 2): 1.0}


# ---------------------------------------------------------------------------------------------------------------
# What makes each method
# ---------------------------------------------------------------------------------------------------------------
def test_eva_weights_are_global_and_learned(pair, links):
    model = _model(EVA, pair)
    before = model.modality_weights()[1][0].clone()
    _train(model, links, steps=5)
    names, w = model.modality_weights()
    assert names == model.encoder.modalities and w.shape == (pair.n_ent, len(names))
    assert torch.equal(w, w[:1].expand_as(w))                       # identical for every entity
    assert torch.allclose(w.sum(1), torch.ones(pair.n_ent))
    assert not torch.allclose(w[0], before)                          # the weights did train


def test_eva_joint_loss_reaches_only_the_weights(pair, links):
    model = _model(EVA, pair)
    emb = model()
    joint_only = torch.autograd.grad(_joint_nca(model, emb, links), [model.fusion.raw, model.encoder.entity.weight],
                                     allow_unused=True)
    assert joint_only[0] is not None and joint_only[0].abs().sum() > 0
    assert joint_only[1] is None or joint_only[1].abs().sum() == 0


def _joint_nca(model, emb, links):
    from mimea.nn.losses import nca_loss

    c = model.config
    return nca_loss(emb.joint[links[:, 0]], emb.joint[links[:, 1]], alpha=c.alpha, beta=c.beta, ep=c.ep)


def test_mclea_ial_gradient_does_not_reach_the_joint(pair, links):
    model = _model(MCLEA, pair)
    emb = model()
    joint = emb.joint.detach().requires_grad_()
    uni = {m: e.detach().requires_grad_() for m, e in emb.modalities.items()}
    model.ial(Embeddings(joint=joint, modalities=uni), links).backward()
    assert joint.grad is None or joint.grad.abs().sum() == 0
    assert all(u.grad is not None and u.grad.abs().sum() > 0 for u in uni.values())
    # and through the real graph: IAL leaves the fusion weights untouched
    model.zero_grad()
    model.ial(model(), links).backward()
    assert model.fusion.raw.grad is None or model.fusion.raw.grad.abs().sum() == 0
    assert model.ial_weighting.log_vars.grad is not None


def test_meaformer_weights_are_per_entity_and_sum_to_one(pair, links):
    model = _model(MEAformer, pair)
    _train(model, links, steps=3)
    names, w = model.modality_weights()
    assert names == model.encoder.modalities and w.shape == (pair.n_ent, len(names))
    assert torch.allclose(w.sum(1), torch.ones(pair.n_ent), atol=1e-5)
    assert (w >= 0).all()
    assert (w - w.mean(0)).abs().max() > 1e-4                       # entity-level, not one global row
    emb = model()
    assert set(emb.extras["hidden"]) == set(names)


def test_meaformer_joint_is_weighted_concat_of_normalised_unimodal(pair):
    model = _model(MEAformer, pair).eval()
    emb = model()
    names = model.encoder.modalities
    expected = weighted_concat([emb.modalities[m] for m in names], emb.extras["weights"])
    assert torch.allclose(emb.joint, expected)


@pytest.mark.parametrize("heads,layers", [(1, 1), (2, 1), (1, 2)])
def test_meaformer_embed_is_the_eval_forward_joint(pair, links, heads, layers):
    """embed() skips the last layer's values and output projection; the weights it reads are forward()'s."""
    model = _model(MEAformer, pair, attention_heads=heads, fusion_layers=layers)
    _train(model, links, steps=2)
    assert model.training
    got = model.embed()
    assert model.training                                          # the mode is restored
    with torch.no_grad():
        want = model.eval()().joint
    if heads == 1:
        assert torch.equal(got, want)
    else:
        assert torch.allclose(got, want, rtol=0, atol=1e-6)


def test_msnea_attention_sums_to_one_and_follows_the_visual_embedding(pair):
    model = _model(MSNEA, pair, attention_padding="own", missing_visual="fallback").eval()
    has_att = model.encoder.feature("attribute").gt(0)
    real = model.encoder.img_mask
    emb = model()
    alpha = emb.extras["attribute_attention"]
    some = has_att.any(1)
    assert torch.allclose(alpha[some].sum(1), torch.ones(int(some.sum())), atol=1e-5)
    assert (alpha[~some] == 0).all() and (alpha[~has_att] == 0).all()
    with torch.no_grad():                                            # change only the visual encoder
        model.encoder.features["image"].net.weight.mul_(-1.0)
    alpha2 = model().extras["attribute_attention"]
    several = has_att.sum(1) >= 2
    moved = (alpha2 - alpha).abs().sum(1)
    assert moved[several & real].min() > 0                           # guided by the visual embedding
    assert moved[~real].max() == 0                                   # no real image: relational guide


def _authors_attr_encoder(model, guide, x, values):
    """Their model.py:AttrEncoder.forward, slot by slot: max_num slots per entity, own (name, value) pairs first,
    pad slots (name row 0, value 0) after; logits sum(e * i) * mask; softmax over all max_num slots."""
    d = model.config.dim
    w, b = model.attr_fc.weight, model.attr_fc.bias
    names = model.encoder.encode("attribute", torch.cat([x.new_zeros(1, x.size(1)), torch.eye(x.size(1))]))
    has = x > 0
    max_num = int(has.sum(1).max())
    out = []
    for n in range(x.size(0)):
        own = torch.nonzero(has[n]).flatten().tolist()
        a = [j + 1 for j in own] + [0] * (max_num - len(own))
        v = [float(values[n, j]) if values is not None else 0.0 for j in own] + [0.0] * (max_num - len(own))
        mask = torch.tensor([1.0] * len(own) + [0.0] * (max_num - len(own)))
        e_v = torch.sigmoid(torch.tensor(v)).unsqueeze(1).repeat(1, d)
        # fc2([fc1(name); sigmoid(v)]); without values (protocol B) ours is fc2(fc1(name))
        e = (torch.cat([names[a], e_v], dim=1) if values is not None else names[a]) @ w.t() + b
        alpha = torch.softmax((e * guide[n]).sum(-1) * mask, dim=0)
        out.append((alpha.unsqueeze(1) * e).sum(0))
    return torch.stack(out)


@pytest.mark.parametrize("with_values", [False, True])
def test_msnea_authors_attention_padding_equals_their_slot_by_slot_encoder(pair, with_values):
    p = dataclasses.replace(pair)
    if with_values:
        p.att_values = torch.randn(pair.att_features.shape) * pair.att_features
    model = _model(MSNEA, p, attribute_values=with_values).eval()   # defaults: the authors' padding and guide
    x = model.encoder.feature("attribute")
    guide = torch.randn(x.size(0), model.config.dim)
    with torch.no_grad():
        out, alpha = model.attribute_attention(guide)
        values = model.att_values if with_values else None
        # their values enter as sigmoid(v); ours holds sigmoid(v) already: undo it for the reference
        raw = torch.logit(values.clamp(1e-6, 1 - 1e-6)) if values is not None else None
        expected = _authors_attr_encoder(model, guide, x, raw)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(alpha.sum(1), torch.ones(x.size(0)), atol=1e-5)
    none = ~(x > 0).any(1)
    if none.any():                                                    # no attribute: the pad key alone
        assert torch.allclose(alpha[none, -1], torch.ones(int(none.sum())))


def test_msnea_authors_missing_visual_reads_the_zero_image_row(pair):
    model = _model(MSNEA, pair).eval()
    real = model.encoder.img_mask
    assert (~real).any()
    emb = model()
    bias = torch.nn.functional.normalize(model.encoder.features["image"].net.bias, dim=0)
    assert torch.allclose(emb.modalities["image"][~real], bias.expand(int((~real).sum()), -1), atol=1e-6)
    fallback = _model(MSNEA, pair, missing_visual="fallback").eval()()
    assert (fallback.modalities["image"][~real] == 0).all()
    with pytest.raises(ValueError, match="missing_visual"):
        _model(MSNEA, pair, missing_visual="zero")


def test_msnea_authors_init_is_xavier_normal_as_their_model_py(pair):
    def std_ratio(lin):   # sample std over the Xavier std sqrt(2 / (fan_in + fan_out))
        w = lin.weight
        return float(w.std()) / (2.0 / (w.size(0) + w.size(1))) ** 0.5

    authors = _model(MSNEA, pair)
    assert abs(std_ratio(authors.encoder.features["image"].net) - 1) < 0.15
    assert abs(std_ratio(authors.visual_head) - 1) < 0.15
    assert abs(std_ratio(authors.encoder.entity) - 1) < 0.15
    w = authors.encoder.entity.weight                 # normal, not uniform: tails beyond the uniform bound
    bound = (6.0 / (w.size(0) + w.size(1))) ** 0.5
    assert (w.abs() > bound).any()
    default = _model(MSNEA, pair, init="default")
    assert abs(std_ratio(default.visual_head) - 1) > 0.2     # nn.Linear's own init
    assert (default.encoder.entity.weight.abs() <= bound + 1e-6).all()   # Xavier-uniform


def test_msnea_negatives_come_from_the_triples_relation_kg(pair):
    """A swapped triple (e2, r, t) of KG1's relation r is corrupted with KG1 entities, as their per-KG lists."""
    p = pair
    model = _model(MSNEA, p)
    model.prepare_training(p.links[:10])
    kg_of = model.kg_of
    tri = model.triples
    swapped = kg_of[tri[:, 0]] != kg_of[tri[:, 2]]                    # head and tail from different KGs
    assert swapped.any()
    torch.manual_seed(0)
    h_neg, t_neg = model._corrupt(tri)
    changed = torch.where(h_neg != tri[:, 0], h_neg, t_neg)
    assert (kg_of[changed] == model.rel_kg[tri[:, 1]]).all()
    head = _model(MSNEA, p, negative_kg="head")
    head.prepare_training(p.links[:10])
    h2, t2 = head._corrupt(head.triples)
    changed2 = torch.where(h2 != head.triples[:, 0], h2, t2)
    assert (kg_of[changed2] == kg_of[head.triples[:, 0]]).all()


def test_msnea_attribute_values_need_values_and_change_the_embedding(pair):
    without = dataclasses.replace(pair, att_values=None)
    with pytest.raises(ValueError, match="att_values"):
        _model(MSNEA, without, attribute_values=True)
    assert _model(MSNEA, without).protocol()["attribute_values"] is False      # None: only when the data has them
    with_values = dataclasses.replace(pair)
    with_values.att_values = torch.randn(pair.att_features.shape) * pair.att_features
    a = _model(MSNEA, with_values, attribute_values=True)
    assert a.protocol()["attribute_values"] is True
    att1 = a().modalities["attribute"]
    with_values.att_values = with_values.att_values + 3.0 * pair.att_features
    att2 = _model(MSNEA, with_values, attribute_values=True)().modalities["attribute"]
    assert not torch.allclose(att1, att2)


def test_msnea_relation_table_covers_max_relation_id(pair):
    model = _model(MSNEA, pair)
    assert model.relations.num_embeddings == int(pair.triples[:, 1].max()) + 1


def test_global_weight_fusion_concat():
    fusion = GlobalWeightFusion(("x", "y"))
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    joint = fusion({"x": x, "y": y})
    assert joint.shape == (5, 5)
    assert torch.allclose(joint[:, :3].norm(dim=1), torch.full((5,), 0.5))
    with pytest.raises(KeyError):
        fusion({"x": x})


@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
def test_pipeline_run_records_the_protocol(cls, tmp_path, synthetic_root):
    from mimea.pipeline import run
    from mimea.training.config import resolve

    root, name = synthetic_root
    over = {"data": {"dataset": name, "data_dir": str(root)},
            "train": {"epochs": 2, "eval_every": 1, "patience": 0, "progress": False}}
    out = run(resolve(cls.name, "smoke", over, model_overrides=SMALL[cls]), tmp_path)
    proto = out["metadata"]["protocol"]
    assert proto["iterative"] is False and proto["names"] is False
    assert proto["attribute_values"] is (cls is MSNEA)    # the synthetic data has attr_values; MSNEA reads them
    assert proto["images"] == "synthetic" and "image" in proto["modalities"]
    assert out["metadata"]["n_parameters"] > 0 and 0.0 <= out["results"]["test"]["mean"]["hits@1"] <= 1.0
    assert (out["path"] / "modality_weights.pt").is_file() == (cls is not MSNEA)


def test_msnea_epoch_is_a_pass_over_the_triples(pair):
    """The trainer takes as many steps per epoch as MSNEA's authors (ceil(triples / triple batch)), each on the
    link batch, where every other model takes one pass over the link batches."""
    from mimea.training.config import TrainConfig
    from mimea.training.trainer import Trainer

    model = _model(MSNEA, pair, triple_batch_size=256)
    kg2_own = int(torch.isin(pair.triples[:, 0], pair.kg2).sum())   # their KG1 list holds KG2's triples too
    want = -(-(len(pair.triples) + kg2_own) // 256)
    assert want > 1 and model.steps_per_epoch(100, 5000) == want
    calls = []
    original = model._loss

    def counting(emb, links, rel):
        calls.append(len(links))
        return original(emb, links, rel)

    model._loss = counting
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=5000, eval_every=1, progress=False),
                      lambda m: {"mean": {"mrr": 0.0}})
    trainer.fit(pair.links[:100])
    assert len(calls) == want and set(calls) == {100}
    # a model without its own epoch: one pass over the links
    eva = _model(EVA, pair)
    assert eva.steps_per_epoch(100, 30) is None


def test_msnea_swaps_triples_and_shares_attributes_across_seed_pairs():
    """The authors' kgs.py: each seed entity's triples copied with its counterpart substituted (as a set), and the
    union of both attribute sets for each seed pair; the epoch then counts the swapped triples."""
    from baselines.msnea import swapped_triples

    tri = torch.tensor([[0, 0, 1], [1, 1, 2], [5, 2, 6], [0, 0, 1]])
    out = {tuple(x) for x in swapped_triples(tri, torch.tensor([[0, 5]]), 8).tolist()}
    assert out == {(0, 0, 1), (1, 1, 2), (5, 2, 6), (5, 0, 1), (0, 2, 6)}
    pair = _synthetic_pair_for_msnea()
    model = MSNEA(pair, MSNEA.Config(dim=16, triple_batch_size=50))
    links = pair.links[:20]
    before_steps = model.steps_per_epoch(len(links), 50)
    x0 = model.encoder.feature("attribute").clone()
    model.prepare_training(links)
    x1 = model.encoder.feature("attribute")
    a, b = links[:, 0], links[:, 1]
    assert torch.equal(x1[a], torch.maximum(x0[a], x0[b])) and torch.equal(x1[a], x1[b])
    assert model.triples.size(0) > pair.triples.unique(dim=0).size(0)
    assert model.steps_per_epoch(len(links), 50) > before_steps
    assert model.protocol()["triple_swap"] is True


def _synthetic_pair_for_msnea():
    from mimea.data.loader import load_pair
    from mimea.data.synthetic import ensure_synthetic
    import tempfile

    return load_pair(*ensure_synthetic(Path(tempfile.mkdtemp()), n_latent=200))


def test_msnea_siamese_loss_equals_the_explicit_matrix_form():
    from baselines.msnea import siamese_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(23, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(23, 7, generator=g, dtype=torch.float64, requires_grad=True)
    s = x @ y.t()
    eye = torch.eye(23, dtype=torch.bool)
    ref = torch.where(eye, torch.relu(2.0 - s).square(), s.square()).mean()
    ours = siamese_loss(x, y, 2.0)
    assert torch.allclose(ours, ref, rtol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, (x, y)), torch.autograd.grad(ref, (x, y))):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_msnea_triple_pass_is_their_per_kg_proportional_chunks():
    """utils.py:generate_relation_triple_batch: ceil(n / B) steps a pass, step s the s-th chunk of
    int(n1 / n * B) triples of KG1's shuffled list and of B - that of KG2's; no triple twice in a pass (their
    flooring leaves KG1's last n1 - steps * b1 triples out of that pass); a new shuffle each pass."""
    from baselines.msnea import TriplePass

    kg = torch.tensor([0] * 70 + [1] * 30)
    torch.manual_seed(0)
    tp = TriplePass(kg, 25)
    assert tp.steps == 4 and tp.sizes == (17, 8)
    first = [tp.next()[0] for _ in range(4)]
    assert [len(c) for c in first] == [25, 25, 25, 23]
    seen = torch.cat(first)
    assert seen.unique().numel() == seen.numel() == 98
    assert int((kg[seen] == 0).sum()) == 68 and int((kg[seen] == 1).sum()) == 30
    assert all(int((kg[c] == 0).sum()) == 17 for c in first)
    second = torch.cat([tp.next()[0] for _ in range(4)])
    assert not torch.equal(second, seen) and (kg[second] == 1).sum() == 30


def test_msnea_negative_filter_redraws_known_triples(pair):
    """generate_neg_triples_fast: a corruption that is a known triple is drawn again (10 draws at most). On a
    graph where nearly every corruption is a known triple the filter leaves far fewer of them than no filter."""
    model = _model(MSNEA, pair)
    tri = model.triples
    assert model._known(tri[:, 0], tri[:, 1], tri[:, 2]).all()
    assert not model._known(tri[:, 0], tri[:, 1], tri[:, 0]).all()   # (h, r, h): not every one is a triple
    # a dense toy: KG1 = {0, 1, 2}, every (h, 0, t) with h != t is a triple: only (x, 0, x) corruptions are new
    ents = torch.tensor([0, 1, 2])
    dense = torch.tensor([[a, 0, b] for a in range(3) for b in range(3) if a != b])
    model.triples, model._triple_keys = dense, None
    model.kg1, model.kg_of, model.rel_kg = ents, torch.zeros(3, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    batch = dense.repeat(200, 1)
    torch.manual_seed(0)
    for flag, most in ((False, None), (True, 0.05)):
        model.config.negative_filter = flag
        h, t = model._corrupt(batch)
        known = float(model._known(h, batch[:, 1], t).float().mean())
        if most is None:
            assert known > 0.5          # 2 of 3 draws hit a triple
        else:
            assert known < most         # (2/3)^10 = 1.7 % left after ten draws


def test_msnea_authors_triple_lists_hold_kg2_triples_twice(pair):
    """Their kgs.py extends KG1's triple list with KG2's in place before the per-KG lists are built: a pass
    visits each KG2 triple twice, once in KG1's list (corrupted with KG1 entities); "disjoint" visits it once."""
    model = _model(MSNEA, pair)
    idx, kg = model._lists()
    own = torch.isin(model.triples[:, 0], pair.kg2)
    counts = torch.bincount(idx, minlength=model.triples.size(0))
    assert torch.equal(counts, 1 + own.long())
    twice = idx[len(model.triples):]
    assert bool(own[twice].all()) and bool((kg[len(model.triples):] == 0).all())
    assert torch.equal(kg[:len(model.triples)], model.rel_kg[model.triples[:, 1]])
    disjoint = _model(MSNEA, pair, triple_lists="disjoint")
    assert disjoint._lists()[0].numel() == model.triples.size(0)
    assert model.steps_per_epoch(0, 0) > disjoint.steps_per_epoch(0, 0)
    # corruptions come from the list's KG, and only from entities that occur in a triple
    torch.manual_seed(0)
    tri = model.triples[twice[:200]]
    h, t = model._corrupt(tri, torch.zeros(len(tri), dtype=torch.long))
    changed = torch.where(h != tri[:, 0], h, t)
    assert bool(torch.isin(changed[(h != tri[:, 0]) | (t != tri[:, 2])], model.kg1).all())
    in_triples = torch.isin(torch.arange(pair.n_ent), torch.cat([pair.triples[:, 0], pair.triples[:, 2]]))
    assert bool(in_triples[model.kg1].all() and in_triples[model.kg2].all())
