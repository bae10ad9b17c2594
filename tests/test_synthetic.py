"""The synthetic default: layout, determinism, cache, sizes, and a partial signal in every modality.

The signal test uses training-free probes (no model): for each modality, a similarity between the test links'
KG1 and KG2 entities, and Hits@1 over the test candidates:
* graph: cosine of the entities' adjacency to the train links (anchors);
* relation / attribute: the KGs use different ids and names, so a ridge map from KG1 to KG2 features is fitted
  on the train links, then cosine;
* image: cosine of the (shared-space) image features;
* combined: the sum of the z-scored similarities of the four.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mimea.data import synthetic
from mimea.data.loader import load_pair
from mimea.data.splits import make_split
from mimea.data.synthetic import SyntheticParams, ensure_synthetic, generate


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def _hits1(sim: np.ndarray) -> float:
    return float((sim.argmax(axis=1) == np.arange(len(sim))).mean())


def modality_probe(pair, ratio: float = 0.3) -> dict[str, float]:
    """Hits@1 on the test links of each modality alone and of their combination (see the module docstring)."""
    split = make_split(pair.links, ratio, val_fraction=0.0)
    tr, te = split.train.numpy(), split.test.numpy()
    n = pair.n_ent
    edges = pair.edge_index(self_loops=False).numpy()
    anchor = np.full(n, -1)
    anchor[tr[:, 0]] = anchor[tr[:, 1]] = np.arange(len(tr))
    adj = np.zeros((n, len(tr)), dtype=np.float32)
    hit = anchor[edges[1]] >= 0
    adj[edges[0][hit], anchor[edges[1][hit]]] = 1.0
    sims = {"graph": _cos(adj[te[:, 0]], adj[te[:, 1]])}
    for name, x in (("relation", np.log1p(pair.rel_features.numpy())), ("attribute", pair.att_features.numpy())):
        a, b = x[tr[:, 0]], x[tr[:, 1]]
        w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ b)
        sims[name] = _cos(x[te[:, 0]] @ w, x[te[:, 1]])
    img = pair.img_features.numpy()
    sims["image"] = _cos(img[te[:, 0]], img[te[:, 1]])
    out = {k: _hits1(s) for k, s in sims.items()}
    out["combined"] = _hits1(sum((s - s.mean()) / s.std() for s in sims.values()))
    return out


def _digest(folder_root) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder_root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder_root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


SMALL = {"n_latent": 300}


def test_deterministic_by_seed(tmp_path):
    generate(tmp_path / "a", "s", seed=5, **SMALL)
    generate(tmp_path / "b", "s", seed=5, **SMALL)
    generate(tmp_path / "c", "s", seed=6, **SMALL)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_ensure_synthetic_caches_and_is_atomic(tmp_path, monkeypatch):
    root, name = ensure_synthetic(tmp_path, seed=1, **SMALL)
    assert name == "synthetic" and root.parent == tmp_path and root.name.startswith("synthetic-")
    calls = []
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: calls.append(a))
    assert ensure_synthetic(tmp_path, seed=1, **SMALL) == (root, name)
    assert not calls                                               # cached: no second generation
    assert [p.name for p in tmp_path.iterdir()] == [root.name]     # no temp folder left behind
    monkeypatch.undo()
    other, _ = ensure_synthetic(tmp_path, seed=2, **SMALL)
    assert other != root                                           # keyed by the parameters
    with pytest.raises(TypeError, match="unknown synthetic parameter"):
        ensure_synthetic(tmp_path, n_entities=5)


def test_bad_parameters():
    with pytest.raises(ValueError, match="edge_keep"):
        SyntheticParams(edge_keep=1.5)
    with pytest.raises(ValueError, match="overlap=0"):
        SyntheticParams(overlap=0.0)


def test_default_size_and_shape(synthetic_pair):
    pair = synthetic_pair
    n1, n2, n_links = len(pair.kg1), len(pair.kg2), len(pair.links)
    assert 1000 <= n_links <= 1500 and n1 <= 3000 and n2 <= 3000
    assert n_links < min(n1, n2)                                   # some entities have no counterpart
    # KG2 relation ids follow KG1's and are disjoint from them
    kg_of_head = np.isin(pair.triples[:, 0].numpy(), pair.kg1.numpy())
    r1, r2 = set(pair.triples[kg_of_head, 1].tolist()), set(pair.triples[~kg_of_head, 1].tolist())
    assert not r1 & r2 and max(r1) < min(r2) and len(r2) < len(r1)  # KG2 merged some relations
    # missing modalities on both sides
    for kg in (pair.kg1, pair.kg2):
        has_img = pair.img_mask[kg]
        has_att = pair.att_features[kg].sum(1) > 0
        assert 0.5 < has_img.float().mean() < 0.9 and 0.5 < has_att.float().mean() < 0.95
    # no leak through ids: aligned ids are not a fixed offset apart
    assert len(set((pair.links[:, 1] - pair.links[:, 0]).tolist())) > 100
    assert pair.provenance["image_features"] == "synthetic"
    assert pair.provenance["dataset_meta"]["params"] == vars(SyntheticParams())
    assert pair.provenance["deviations"][0] == "Synthetic data, not a benchmark"


def test_every_modality_partial_and_combination_wins(synthetic_pair):
    scores = modality_probe(synthetic_pair)
    singles = {k: v for k, v in scores.items() if k != "combined"}
    chance = 1.0 / (0.7 * len(synthetic_pair.links))
    for name, h1 in singles.items():
        assert 20 * chance < h1 < 0.6, (name, scores)              # a real signal, clearly imperfect
    assert scores["combined"] > max(singles.values()) + 0.1, scores


def test_names_are_strong_but_imperfect(synthetic_root):
    pair = load_pair(*synthetic_root, use_names=True)
    te = make_split(pair.links, 0.3).test.numpy()
    nf = pair.name_features.numpy()
    h1 = _hits1(_cos(nf[te[:, 0]], nf[te[:, 1]]))
    assert 0.3 < h1 < 0.95
