"""Evaluator tests: chunked ranking against a brute-force reference, mutual NN, top-k, CSV export."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mimea.evaluation import evaluate, export_predictions, mutual_nearest_neighbours, nearest_neighbours
from mimea.evaluation.ranking import topk_values

CHUNKS = (5, 16, 1000)  # smaller than n and not dividing it (n is 37, 53 or 35 here), and larger than n
#: keep_bytes values: 0 (always the chunked two-product passes) and the default (small matrices kept whole)
KEEP = (0, None)


# ------------------------------------------------------------------------------------------ reference
def _reference_scores(emb: np.ndarray, left: np.ndarray, right: np.ndarray, similarity: str, k: int) -> np.ndarray:
    """Full ``len(left) x len(right)`` score matrix in float64 with the full CSLS formula."""
    x = emb.astype(np.float64)
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    x = x / np.maximum(norm, 1e-12)
    cos = x[left] @ x[right].T
    if similarity == "cosine":
        return cos
    kl, kr = min(k, cos.shape[1]), min(k, cos.shape[0])
    r_left = np.array([np.sort(row)[::-1][:kl].mean() for row in cos])
    r_right = np.array([np.sort(col)[::-1][:kr].mean() for col in cos.T])
    return 2 * cos - r_left[:, None] - r_right[None, :]


def _reference(emb: torch.Tensor, pairs: torch.Tensor, similarity: str, k: int, hits=(1, 5, 10)) -> dict:
    """Brute force: candidates = distinct ids of the other column; realistic rank by counting, pair by pair."""
    e, p = emb.numpy(), pairs.numpy()
    left, right = np.unique(p[:, 0]), np.unique(p[:, 1])
    scores = _reference_scores(e, left, right, similarity, k)
    row_of = {int(v): i for i, v in enumerate(left)}
    col_of = {int(v): j for j, v in enumerate(right)}
    ranks = {"l2r": [], "r2l": []}
    for a, b in p:
        i, j = row_of[int(a)], col_of[int(b)]
        for direction, line in (("l2r", scores[i, :]), ("r2l", scores[:, j])):
            gold = scores[i, j]
            greater = sum(1 for v in line if v > gold)
            equal_others = sum(1 for v in line if v == gold) - 1
            ranks[direction].append(1 + greater + equal_others / 2)
    out = {"n": len(p)}
    for direction, r in ranks.items():
        r = np.array(r)
        m = {f"hits@{h}": float(np.mean(r <= h)) for h in hits}
        m["mrr"], m["mr"] = float(np.mean(1 / r)), float(np.mean(r))
        out[direction], out["ranks_" + direction] = m, r
    return out


# ------------------------------------------------------------------------------------------ data
def _tied_embedding(n_ent: int, dim: int = 32, nonzero: int = 16, seed: int = 0) -> torch.Tensor:
    """Integer rows of exactly ``nonzero`` entries in {-1, +1}: unit rows have entries +-1/4, so every cosine is
    a multiple of 1/16, every CSLS value with k in {1, 2, 4} a multiple of 1/64, all exact in float32: many
    exact ties that no summation order can break."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(n_ent, dim, generator=g).argsort(dim=1)[:, :nonzero]
    signs = torch.randint(0, 2, (n_ent, nonzero), generator=g).float() * 2 - 1
    return torch.zeros(n_ent, dim).scatter_(1, idx, signs)


def _pairs(n_left: int, n_pairs: int, n_ent: int, seed: int = 0, duplicates: bool = False) -> torch.Tensor:
    """Random test links (left ids < n_left <= right ids); with ``duplicates``, some ids linked twice."""
    g = torch.Generator().manual_seed(seed)
    left = torch.randperm(n_left, generator=g)[:n_pairs]
    right = n_left + torch.randperm(n_ent - n_left, generator=g)[:n_pairs]
    pairs = torch.stack([left, right], dim=1)
    if duplicates:
        extra = torch.stack([left[0:3], right[5:8]], dim=1)  # left ids of pairs 0-2 with right ids of pairs 5-7
        pairs = torch.cat([pairs, extra, pairs[3:4]])        # ... and pair 3 repeated verbatim
    return pairs


def _assert_matches(got: dict, ref: dict) -> None:
    assert got["n"] == ref["n"]
    for direction in ("l2r", "r2l"):
        np.testing.assert_array_equal(got["ranks_" + direction].numpy(), ref["ranks_" + direction])
        for key, value in ref[direction].items():
            assert got[direction][key] == pytest.approx(value, abs=1e-12), (direction, key)
    for key in ref["l2r"]:
        assert got["mean"][key] == pytest.approx((ref["l2r"][key] + ref["r2l"][key]) / 2, abs=1e-12)


# ------------------------------------------------------------------------------------------ ranking
@pytest.mark.parametrize("similarity,k", [("cosine", 3), ("csls", 1), ("csls", 2), ("csls", 4)])
@pytest.mark.parametrize("duplicates", [False, True])
def test_ranks_match_brute_force_with_ties(similarity, k, duplicates):
    emb = _tied_embedding(90)
    pairs = _pairs(45, 37, 90, seed=1, duplicates=duplicates)
    ref = _reference(emb, pairs, similarity, k)
    ranks = np.concatenate([ref["ranks_l2r"], ref["ranks_r2l"]])
    assert (ranks != np.round(ranks)).any(), "the data must contain ties with the gold"
    for chunk in CHUNKS:
        for keep in KEEP:
            _assert_matches(evaluate(emb, pairs, similarity=similarity, csls_k=k, chunk_size=chunk,
                                     return_ranks=True, keep_bytes=keep), ref)


@pytest.mark.parametrize("chunk", (1,) + CHUNKS)
def test_csls3_matches_brute_force_on_continuous_embedding(chunk):
    emb = torch.randn(120, 24, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    pairs = _pairs(60, 53, 120, seed=4, duplicates=True)
    ref = _reference(emb, pairs, "csls", 3)
    assert 0.0 < ref["l2r"]["hits@1"] < 1.0 and ref["l2r"]["mr"] > 2
    for keep in KEEP:
        _assert_matches(evaluate(emb, pairs, similarity="csls", csls_k=3, chunk_size=chunk, return_ranks=True,
                                 keep_bytes=keep), ref)


@pytest.mark.parametrize("similarity", ["cosine", "csls"])
def test_kept_matrix_gives_the_chunked_ranks_to_the_bit(similarity):
    """Keeping the whole similarity matrix between the passes (one product) ranks exactly as recomputing it."""
    emb = torch.randn(700, 48, generator=torch.Generator().manual_seed(5))   # float32: rounding is live
    pairs = _pairs(350, 301, 700, seed=6, duplicates=True)
    for chunk in (64, 97, 4096):
        two = evaluate(emb, pairs, similarity=similarity, chunk_size=chunk, return_ranks=True, keep_bytes=0)
        one = evaluate(emb, pairs, similarity=similarity, chunk_size=chunk, return_ranks=True, keep_bytes=2**30)
        for direction in ("ranks_l2r", "ranks_r2l"):
            assert torch.equal(one[direction], two[direction]), (chunk, direction)
        assert one["l2r"] == two["l2r"] and one["r2l"] == two["r2l"]


def test_directions_are_symmetric():
    emb = _tied_embedding(60, seed=5)
    pairs = _pairs(30, 25, 60, seed=6)
    fwd = evaluate(emb, pairs, chunk_size=4, return_ranks=True)
    back = evaluate(emb, pairs.flip(1), chunk_size=9, return_ranks=True)
    assert torch.equal(fwd["ranks_l2r"], back["ranks_r2l"]) and torch.equal(fwd["ranks_r2l"], back["ranks_l2r"])
    assert fwd["l2r"] == back["r2l"]


@pytest.mark.parametrize("similarity", ["cosine", "csls"])
def test_perfect_embedding_scores_one(similarity):
    left = torch.randn(300, 16, generator=torch.Generator().manual_seed(7))
    emb = torch.cat([left, left * 3.0])            # right entity i+300 is left i, scaled
    pairs = torch.stack([torch.arange(300), torch.arange(300) + 300], 1)
    out = evaluate(emb, pairs, similarity=similarity, chunk_size=64)
    for direction in ("l2r", "r2l", "mean"):
        assert out[direction]["hits@1"] == 1.0 and out[direction]["mrr"] == 1.0 and out[direction]["mr"] == 1.0


@pytest.mark.parametrize("similarity", ["cosine", "csls"])
def test_all_tied_gives_middle_rank(similarity):
    emb = torch.ones(20, 4)
    pairs = torch.stack([torch.arange(10), torch.arange(10) + 10], 1)
    out = evaluate(emb, pairs, similarity=similarity, chunk_size=3, hits=(1, 5, 6), return_ranks=True)
    assert torch.equal(out["ranks_l2r"], torch.full((10,), 5.5, dtype=torch.float64))
    assert out["r2l"] == {"hits@1": 0.0, "hits@5": 0.0, "hits@6": 1.0, "mrr": pytest.approx(1 / 5.5), "mr": 5.5}


@pytest.mark.parametrize("rows,cols,k", [(1, 23, 3), (5, 23, 3), (40, 600, 1), (97, 501, 3), (300, 23, 4),
                                         (64, 23, 70), (23, 1, 3)])
@pytest.mark.parametrize("dim", [0, 1])
def test_topk_values_keeps_tied_values(rows, cols, k, dim):
    x = torch.randint(0, 4, (rows, cols), generator=torch.Generator().manual_seed(rows)).float()
    want = x.topk(min(k, x.shape[dim]), dim=dim).values
    want = (want.t() if dim == 0 else want).sort(dim=1).values
    assert torch.equal(topk_values(x, k, dim).sort(dim=1).values, want)


def test_input_errors_are_one_line():
    emb, pairs = torch.randn(6, 3), torch.tensor([[0, 3], [1, 4]])
    for kwargs, match in [({"similarity": "dot"}, "similarity"), ({"csls_k": 0}, "csls_k"),
                          ({"chunk_size": 0}, "chunk_size"), ({"hits": (0,)}, "hits")]:
        with pytest.raises(ValueError, match=match):
            evaluate(emb, pairs, **kwargs)
    with pytest.raises(ValueError, match="outside"):
        evaluate(emb, torch.tensor([[0, 6]]))
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        evaluate(emb, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer"):
        evaluate(emb, pairs.float())
    bad = emb.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluate(bad, pairs)


@pytest.mark.real_data
def test_real_fbdb15k_test_split_with_duplicate_links(shared_data_dir):
    from mimea.data.splits import make_split

    links = torch.from_numpy(np.loadtxt(shared_data_dir / "FBDB15K" / "norm" / "ill_ent_ids", dtype=np.int64))
    test = make_split(links, 0.2).test
    assert len(test) == 10277
    right, counts = torch.unique(test[:, 1], return_counts=True)
    dup = torch.isin(test[:, 1], right[counts > 1])
    assert dup.sum() >= 2, "expected a KG2 entity linked twice in the FBDB15K test split"
    pairs = torch.cat([test[:300], test[dup]])          # real ids, real duplicate structure, brute-forceable
    emb = _tied_embedding(int(links.max()) + 1, seed=12)
    ref = _reference(emb, pairs, "csls", 2)
    _assert_matches(evaluate(emb, pairs, similarity="csls", csls_k=2, chunk_size=64, return_ranks=True), ref)


# ------------------------------------------------------------------------------------------ neighbours
@pytest.mark.parametrize("similarity", ["cosine", "csls"])
def test_mutual_nearest_neighbours_tiny(similarity):
    # left 0,1,2 and right 3,4,5: 0<->3 and 1<->4 are mutual; 2's best is 4, but 4 prefers 1.
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 1.0], [1.0, 0.05], [0.05, 1.0], [-1.0, -0.2]])
    got = mutual_nearest_neighbours(emb, torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]),
                                    similarity=similarity, csls_k=1, chunk_size=2)
    assert got.tolist() == [[0, 3], [1, 4]]


def test_mutual_nearest_neighbours_of_an_empty_set_is_empty():
    emb = torch.randn(6, 3)
    got = mutual_nearest_neighbours(emb, torch.tensor([], dtype=torch.long), torch.tensor([3, 4]))
    assert got.shape == (0, 2) and got.dtype == torch.long
    with pytest.raises(ValueError, match="duplicate"):
        mutual_nearest_neighbours(emb, torch.tensor([0, 0]), torch.tensor([3, 4]))


@pytest.mark.parametrize("chunk", (1,) + CHUNKS)
def test_mutual_nearest_neighbours_match_brute_force(chunk):
    emb = torch.randn(80, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    left, right = torch.arange(0, 35), torch.arange(40, 80)
    scores = _reference_scores(emb.numpy(), left.numpy(), right.numpy(), "csls", 3)
    best_r, best_l = scores.argmax(axis=1), scores.argmax(axis=0)
    expected = [[int(left[i]), int(right[j])] for i, j in enumerate(best_r) if best_l[j] == i]
    assert len(expected) >= 5
    got = mutual_nearest_neighbours(emb, left, right, similarity="csls", csls_k=3, chunk_size=chunk)
    assert got.tolist() == expected


def test_nearest_neighbours_match_brute_force():
    emb = torch.randn(50, 6, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    left, right = torch.arange(0, 20), torch.arange(20, 50)
    scores = _reference_scores(emb.numpy(), left.numpy(), right.numpy(), "csls", 2)
    top_scores, top_ids = nearest_neighbours(emb, left, right, k=4, similarity="csls", csls_k=2, chunk_size=7)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :4]
    assert top_ids.tolist() == right.numpy()[expected].tolist()
    np.testing.assert_allclose(top_scores.numpy(), np.take_along_axis(scores, expected, 1), atol=1e-12)


# ------------------------------------------------------------------------------------------ export
def test_export_writes_expected_rows(tmp_path):
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.1], [0.1, 1.0], [0.6, 0.8]])
    pairs = torch.tensor([[0, 3], [1, 4], [2, 4]])  # right 4 linked twice; candidates are 3 and 4
    names = ["a", "b", "c", "A", "B", "C"]
    path = tmp_path / "sub" / "pred.csv"
    path.parent.mkdir()
    export_predictions(emb, pairs, path, names=names, similarity="cosine", csls_k=3, top_k=5)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["left_id", "right_id", "left_name", "right_name", "rank_l2r", "top_ids", "top_names"]
    assert [(r["left_id"], r["right_id"], r["left_name"], r["right_name"]) for r in rows] == [
        ("0", "3", "a", "A"), ("1", "4", "b", "B"), ("2", "4", "c", "B")]
    assert [float(r["rank_l2r"]) for r in rows] == [1.0, 1.0, 1.0]
    assert [r["top_ids"] for r in rows] == ["3|4", "4|3", "4|3"]   # top_k clipped to the 2 candidates
    assert rows[0]["top_names"] == "A|B"
    assert [p.name for p in path.parent.iterdir()] == ["pred.csv"]  # no temporary file left behind


def test_export_without_names_and_rejects_short_names(tmp_path):
    emb = torch.randn(4, 3, generator=torch.Generator().manual_seed(11))
    pairs = torch.tensor([[0, 2], [1, 3]])
    path = tmp_path / "p.csv"
    export_predictions(emb, pairs, path, names=None, similarity="csls", csls_k=1, top_k=1)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["left_name"] for r in rows] == ["", ""] and all(r["top_names"] == "" for r in rows)
    assert all(r["top_ids"] in ("2", "3") for r in rows)
    with pytest.raises(ValueError, match="names"):
        export_predictions(emb, pairs, tmp_path / "q.csv", names=["x"], similarity="csls", csls_k=1)
    assert not (tmp_path / "q.csv").exists()


# -- candidate pools (validation with a test-sized pool) ------------------------------------------------------------
def test_pool_of_exactly_the_links_gives_evaluate_numbers():
    from mimea.evaluation.pool import evaluate_in_pool

    torch.manual_seed(0)
    emb = torch.randn(300, 16)
    emb[5] = emb[6]                                    # a tie among the candidates
    pairs = torch.stack([torch.randperm(150)[:100], 150 + torch.randperm(150)[:100]], 1)
    for sim in ("cosine", "csls"):
        a = evaluate(emb, pairs, similarity=sim)
        b = evaluate_in_pool(emb, pairs, pairs[:, 0], pairs[:, 1], similarity=sim)
        for d in ("l2r", "r2l"):
            assert a[d] == pytest.approx(b[d], abs=1e-12)


def test_pool_ranks_are_brute_force_ranks_among_the_pool():
    from mimea.evaluation.pool import evaluate_in_pool

    torch.manual_seed(1)
    emb = torch.randn(200, 8)
    pairs = torch.tensor([[0, 100], [1, 101], [2, 102]])
    left_pool, right_pool = torch.arange(0, 60), torch.arange(100, 190)
    out = evaluate_in_pool(emb, pairs, left_pool, right_pool, similarity="cosine", hits=(1,))
    e = torch.nn.functional.normalize(emb, dim=1)
    ranks = []
    for a, b in pairs.tolist():
        s = e[a] @ e[right_pool].T
        g = e[a] @ e[b]
        ranks.append(1 + float((s > g).sum()) + 0.5 * (float((s == g).sum()) - 1))
    assert out["l2r"]["mr"] == pytest.approx(sum(ranks) / 3)
    assert out["pool"] == [60, 90]
    with pytest.raises(ValueError, match="not in the candidate pool"):
        evaluate_in_pool(emb, pairs, left_pool, torch.arange(101, 190))


def test_unseen_pool_keeps_an_evaluated_entity_that_a_training_link_shares():
    """A duplicate alignment (one KG2 entity linked to two KG1 entities) can put one link in train and the other in
    validation: the shared entity is then in a training link and is still the validation link's gold answer. The
    pool drops every other training entity (FBDB15K at 50 % raised "not in the candidate pool" before)."""
    from mimea.evaluation.pool import evaluate_in_pool, unseen_pool

    kg2 = torch.arange(100, 110)
    train_r = torch.tensor([100, 101, 105])       # 105 is also the gold answer of a validation link
    valid = torch.tensor([[0, 105], [1, 107]])
    pool = unseen_pool(kg2, train_r, valid[:, 1])
    assert pool.tolist() == [102, 103, 104, 105, 106, 107, 108, 109]
    assert unseen_pool(kg2, train_r, valid[:0, 1]).tolist() == [102, 103, 104, 106, 107, 108, 109]
    emb = torch.randn(110, 8, generator=torch.Generator().manual_seed(0))
    out = evaluate_in_pool(emb, valid, torch.arange(0, 10), pool, similarity="cosine", hits=(1,))
    assert out["pool"] == [10, 8]
