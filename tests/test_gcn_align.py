"""GCN-Align on a hand-built tiny pair: it trains, aligns above chance, and is deterministic."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from baselines.gcn_align import GCNAlign, functionality_edges
from mimea.data.pair import MMKGPair
from mimea.models import registry


def _tiny_pair(n1: int = 60, n_att: int = 40, seed: int = 0) -> MMKGPair:
    """KG2 is a relabelled copy of KG1 with 15% of triples dropped and noisy attributes."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n1, generator=g)
    h = torch.randint(n1, (240,), generator=g)
    t = torch.randint(n1, (240,), generator=g)
    r = torch.randint(6, (240,), generator=g)
    tri1 = torch.stack([h, r, t], dim=1)
    keep = torch.rand(240, generator=g) > 0.15
    tri2 = torch.stack([n1 + perm[h[keep]], r[keep] + 6, n1 + perm[t[keep]]], dim=1)
    att1 = (torch.rand(n1, n_att, generator=g) < 0.2).float()
    flip = (torch.rand(n1, n_att, generator=g) < 0.05).float()
    att = torch.zeros(2 * n1, n_att)
    att[:n1] = att1
    att[n1 + perm] = (att1 + flip) % 2
    links = torch.stack([torch.arange(n1), n1 + perm], dim=1)
    return MMKGPair(
        name="tiny", n_ent=2 * n1, kg1=torch.arange(n1), kg2=torch.arange(n1, 2 * n1),
        triples=torch.cat([tri1, tri2]), links=links, rel_features=torch.zeros(2 * n1, 12),
        att_features=att, img_features=None, img_mask=torch.zeros(2 * n1, dtype=torch.bool),
    )


def _hits1(model: GCNAlign, test: torch.Tensor) -> float:
    emb = F.normalize(model.embed(), dim=1)
    sim = emb[test[:, 0]] @ emb[test[:, 1]].t()
    return float((sim.argmax(1) == torch.arange(len(test))).float().mean())


def test_registered_with_protocol_and_search_space():
    assert registry.get("gcn_align") is GCNAlign
    proto = GCNAlign(_tiny_pair()).protocol()
    assert proto["names"] is False and proto["attribute_values"] is False
    pair = _tiny_pair()
    assert GCNAlign(pair).protocol()["images"] == ("absent" if pair.img_features is None else "unused")
    if pair.img_features is None:      # the same pair with images: GCN-Align has them and does not read them
        import dataclasses
        with_img = dataclasses.replace(pair, img_features=torch.zeros(pair.n_ent, 4),
                                       img_mask=torch.ones(pair.n_ent, dtype=torch.bool))
        assert GCNAlign(with_img).protocol()["images"] == "unused"
    else:
        import dataclasses
        assert GCNAlign(dataclasses.replace(pair, img_features=None)).protocol()["images"] == "absent"
    optuna = pytest.importorskip("optuna")
    trial = optuna.trial.FixedTrial({"dim": 200, "gamma": 2.0, "negatives": 3, "beta": 0.8, "dropout": 0.1})
    space = GCNAlign.search_space(trial)
    fields = {f.name for f in dataclasses.fields(GCNAlign.Config)}
    assert space and set(space) <= fields
    assert {"lr", "weight_decay"} <= set(GCNAlign.train_defaults)


def test_trains_and_aligns_better_than_chance():
    torch.manual_seed(0)
    pair = _tiny_pair()
    train, test = pair.links[:30], pair.links[30:]
    model = GCNAlign(pair, GCNAlign.Config(dim=32))
    chance = 1.0 / len(test)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss, logs = model.loss(model(), train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert set(logs) >= {"loss_se", "loss_ae"}
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert _hits1(model, test) > 5 * chance


def test_embeddings_shapes():
    torch.manual_seed(0)
    pair = _tiny_pair()
    emb = GCNAlign(pair, GCNAlign.Config(dim=16, ae_dim=16))()
    assert emb.joint.shape == (pair.n_ent, 32)
    assert emb.modalities["graph"].shape == emb.modalities["attribute"].shape == (pair.n_ent, 16)


def test_deterministic_given_seed_and_generator_state_saved():
    pair = _tiny_pair()
    out = []
    for _ in range(2):
        torch.manual_seed(5)
        model = GCNAlign(pair, GCNAlign.Config(dim=8))
        out.append([model.loss(model(), pair.links[:10])[0].item() for _ in range(3)])
    assert out[0] == out[1]
    # The negative sampler's state travels with state_dict: a restored model draws the same negatives.
    torch.manual_seed(5)
    a = GCNAlign(pair, GCNAlign.Config(dim=8))
    a.loss(a(), pair.links[:10])
    state = a.state_dict()
    b = GCNAlign(pair, GCNAlign.Config(dim=8))
    b.load_state_dict(state)
    assert a.loss(a(), pair.links[:10])[0].item() == b.loss(b(), pair.links[:10])[0].item()


def test_functionality_weights_by_hand():
    # r0: 0->1, 0->2 (1 distinct head / 2 triples: fun 0.5, 2 tails: ifun 1.0); r1: 3->2 (fun = ifun = 1)
    ei, w = functionality_edges(torch.tensor([[0, 0, 1], [0, 0, 2], [3, 1, 2]]), 4)
    weight = {(int(s), int(d)): float(x) for s, d, x in zip(ei[0], ei[1], w)}
    assert weight[(1, 0)] == pytest.approx(1.0)   # t -> h carries ifun(r0)
    assert weight[(0, 1)] == pytest.approx(0.5)   # h -> t carries fun(r0)
    assert weight[(2, 3)] == pytest.approx(1.0) and weight[(3, 2)] == pytest.approx(1.0)
    assert all(weight[(i, i)] == pytest.approx(1.0) for i in range(4))
    assert len(weight) == 2 * 3 + 4
    # a self-loop triple (1, r0, 1) adds no edge but counts in fun/ifun, as the authors' func/ifunc:
    # r0 now has 3 triples, heads {0, 1}, tails {1, 2}: fun = ifun = 2/3
    ei, w = functionality_edges(torch.tensor([[0, 0, 1], [0, 0, 2], [3, 1, 2], [1, 0, 1]]), 4)
    weight = {(int(s), int(d)): float(x) for s, d, x in zip(ei[0], ei[1], w)}
    assert len(weight) == 2 * 3 + 4 and weight[(1, 1)] == pytest.approx(1.0)
    assert weight[(1, 0)] == pytest.approx(2 / 3) and weight[(0, 1)] == pytest.approx(2 / 3)


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="negatives_from"):
        GCNAlign(_tiny_pair(), GCNAlign.Config(negatives_from="random"))


def test_authors_degree_orientation_and_attribute_weight_norm():
    """``degree="source"`` takes D from the column sums (the authors' normalize_adj); the AE weight rows are
    L2-normalised in the forward under ``att_init="trunc_normal_l2"``; the optimiser is their plain SGD."""
    from mimea.nn.graph import csr_graph, gcn_norm_values
    from mimea.training.config import resolve

    ei, w = functionality_edges(torch.tensor([[0, 0, 1], [0, 0, 2], [3, 1, 2]]), 4)
    g = csr_graph(ei, 4)
    wt = w[g.order]
    src = gcn_norm_values(g, wt, degree="source")
    deg = torch.zeros(4).index_add_(0, g.col, wt)
    assert torch.allclose(src, wt * deg[g.row].rsqrt() * deg[g.col].rsqrt())
    assert not torch.allclose(src, gcn_norm_values(g, wt, degree="target"))
    model = GCNAlign(_tiny_pair(), GCNAlign.Config(dim=8, ae_dim=4))
    with torch.no_grad():
        model.att_w.mul_(7.0)
    before = model().modalities["attribute"]
    with torch.no_grad():
        model.att_w.mul_(3.0)            # a row scale does not change the forward: rows are normalised
    assert torch.allclose(model().modalities["attribute"], before, atol=1e-6)
    cfg = resolve("gcn_align", "paper")
    assert cfg.train.optimizer == "sgd" and cfg.train.lr == 20.0 and cfg.train.batch_size >= 10_000
