"""The loader on valid data: layout, line ends, features as the lineage builds them, image policies, statistics."""
from __future__ import annotations

import logging
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import TINY_FILES
from mimea.data.features import attribute_features, name_features, relation_features
from mimea.data.images import read_image_features, write_image_npz, write_image_pickle
from mimea.data.loader import load_folder, load_pair, read_folder
from mimea.data.readers import read_attr_values
from mimea.data.stats import dataset_statistics, format_statistics


def _same(a, b) -> None:
    for key in ("n_ent", "entity_names", "provenance"):
        assert getattr(a, key) == getattr(b, key), key
    for key in ("kg1", "kg2", "triples", "links", "rel_features", "att_features", "img_mask"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert (a.img_features is None) == (b.img_features is None)
    if a.img_features is not None:
        assert torch.equal(a.img_features, b.img_features)


def test_tiny_pair(tiny):
    pair = load_folder(tiny())
    assert pair.name == "tiny" and pair.n_ent == 10
    assert pair.kg1.tolist() == [0, 1, 2, 3, 4] and pair.kg2.tolist() == [5, 6, 7, 8, 9]
    assert pair.triples.shape == (9, 3) and pair.triples.dtype == torch.long
    assert pair.links.tolist() == [[0, 5], [1, 6], [2, 7], [3, 8]]
    assert pair.entity_names[:2] == ["a0", "a1"] and pair.entity_names[9] == "b4"
    assert pair.img_features is None and not pair.img_mask.any()
    assert pair.name_features is None
    prov = pair.provenance
    assert prov["image_features"] == "absent" and prov["n_images"] == 0
    assert prov["missing_image_policy"] == "mask" and prov["names_used"] is False
    assert prov["deviations"] == ["First thing", "Second thing"]
    assert prov["image_index"] == {"kg1": 3, "kg2": 2}
    assert pair.modalities_available() == ("graph", "relation", "attribute")


def test_crlf_and_bom_accepted(tiny, tmp_path):
    plain = load_folder(tiny())
    crlf = {k: v.replace("\n", "\r\n") for k, v in TINY_FILES.items()}
    crlf["norm/triples_1"] = "\ufeff" + crlf["norm/triples_1"]
    crlf["norm/ent_ids_1"] = "\ufeff" + crlf["norm/ent_ids_1"]
    other = load_folder(tiny(crlf, name="tiny_crlf"))
    other.name = plain.name
    other.provenance["dataset"] = plain.provenance["dataset"]
    _same(plain, other)


def test_no_final_newline(tiny):
    pair = load_folder(tiny({"norm/ill_ent_ids": "0\t5\n1\t6"}))
    assert pair.links.tolist() == [[0, 5], [1, 6]]


def test_load_pair_equals_load_folder(tiny):
    folder = tiny()
    _same(load_pair(folder.parent, folder.name), load_folder(folder))


# ---- features, against a direct transcription of the lineage's loops -----------------------------------------

def _lineage_relation(e, kg, top_r=1000):
    rel_mat = np.zeros((e, top_r), dtype=np.float32)
    top = Counter(np.array(kg)[:, 1]).most_common(top_r)
    index = {r: i for i, (r, _) in enumerate(top)}
    for h, r, o in kg:
        if r in index:
            rel_mat[h][index[r]] += 1.0
            rel_mat[o][index[r]] += 1.0
    return rel_mat


def _lineage_attr(lines, e, ent2id, top_a=1000):
    cnt = {}
    for th in lines:
        for a in th[1:]:
            cnt[a] = cnt.get(a, 0) + 1
    fre = sorted(cnt, key=cnt.get, reverse=True)
    attr2id = {a: i for i, a in enumerate(fre[:top_a])}
    attr = np.zeros((e, top_a), dtype=np.float32)
    for th in lines:
        for a in th[1:]:
            if a in attr2id:
                attr[ent2id[th[0]]][attr2id[a]] = 1.0
    return attr


@pytest.mark.parametrize("top_k", [1000, 3, 1])
def test_relation_features_match_lineage(synthetic_root, top_k):
    raw = read_folder(synthetic_root[0] / synthetic_root[1])
    kg = np.concatenate([raw.triples[1], raw.triples[2]])
    ours = relation_features(kg, raw.n_ent, top_k)
    theirs = _lineage_relation(raw.n_ent, [tuple(t) for t in kg.tolist()], top_k)
    assert np.array_equal(ours, theirs[:, :ours.shape[1]])
    assert not theirs[:, ours.shape[1]:].any()  # the lineage's extra columns are zero padding


@pytest.mark.parametrize("top_k", [1000, 5])
def test_attribute_features_match_lineage(synthetic_root, top_k):
    folder = synthetic_root[0] / synthetic_root[1]
    raw = read_folder(folder)
    lines = [line.split("\t") for k in (1, 2)
             for line in (folder / "norm" / f"training_attrs_{k}").read_text().splitlines()]
    ours = attribute_features(raw.attrs[1] + raw.attrs[2], raw.n_ent, top_k)
    theirs = _lineage_attr(lines, raw.n_ent, raw.ent2id, top_k)
    assert np.array_equal(ours, theirs[:, :ours.shape[1]])


def test_relation_ties_follow_first_appearance():
    kg = np.array([[0, 7, 1], [1, 3, 2], [2, 3, 0], [0, 7, 2], [1, 5, 0]])
    mat = relation_features(kg, 3, top_k=2)  # 7 and 3 both twice: 7 appears first
    assert mat.shape == (3, 2)
    assert mat[:, 0].tolist() == [2, 1, 1] and mat[:, 1].tolist() == [1, 1, 2]


def test_attribute_features_tiny(tiny):
    pair = load_folder(tiny())
    # counts: p 2, x 2, q 1, y 1 -> columns p, x, q, y (ties by first appearance)
    assert pair.att_features.tolist()[0] == [1, 0, 1, 0]
    assert pair.att_features.tolist()[1] == [1, 0, 0, 0]
    assert pair.att_features.tolist()[7] == [0, 1, 0, 1]
    assert pair.rel_features[0].tolist() == [2, 0, 0, 0]  # relation 0 twice as head of (0,0,1) (a duplicate line)


def test_names_feature(tiny):
    pair = load_folder(tiny(), use_names=True)
    nf = pair.name_features
    assert nf is not None and nf.shape == (10, 256) and pair.provenance["names_used"] is True
    assert torch.allclose(nf.norm(dim=1), torch.ones(10))
    assert torch.equal(nf[0], nf[5])           # "Name 0" on both sides
    assert not torch.equal(nf[0], nf[6])
    again = name_features({0: "  NAME   0 "}, 1)
    assert np.allclose(again[0], nf[0].numpy())  # case and whitespace do not matter
    assert "name" in pair.modalities_available()


# ---- images ------------------------------------------------------------------------------------------------------

def _with_images(folder, suffix=".pkl"):
    rng = np.random.default_rng(0)
    ids = np.array([0, 1, 2, 5, 6])
    feats = rng.normal(size=(5, 8)).astype(np.float32)
    path = folder.parent / "pkls" / f"{folder.name}_id_img_feature_dict{suffix}"
    (write_image_pickle if suffix == ".pkl" else write_image_npz)(path, ids, feats)
    return ids, feats


def test_image_mask_policy(tiny, caplog):
    folder = tiny()
    ids, feats = _with_images(folder)
    with caplog.at_level(logging.INFO, logger="mimea.data"):
        pair = load_folder(folder)
    assert "missing-image policy 'mask'" in caplog.text
    assert pair.img_mask.tolist() == [i in ids for i in range(10)]
    assert torch.allclose(pair.img_features[ids].norm(dim=1), torch.ones(5))
    assert not pair.img_features[~pair.img_mask].any()
    expected = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    assert np.allclose(pair.img_features[ids].numpy(), expected, atol=1e-6)
    assert pair.provenance["image_features"] == "real" and pair.provenance["n_images"] == 5
    assert "image" in pair.modalities_available()


def test_image_random_policy(tiny):
    folder = tiny()
    ids, _ = _with_images(folder)
    a = load_folder(folder, missing_image="random", image_seed=3)
    b = load_folder(folder, missing_image="random", image_seed=3)
    c = load_folder(folder, missing_image="random", image_seed=4)
    m = load_folder(folder)
    missing = ~a.img_mask
    assert a.img_mask.tolist() == m.img_mask.tolist()          # the mask marks real features only
    assert torch.equal(a.img_features, b.img_features)           # seeded
    assert not torch.equal(a.img_features[missing], c.img_features[missing])
    assert torch.equal(a.img_features[~missing], m.img_features[~missing])
    assert torch.allclose(a.img_features[missing].norm(dim=1), torch.ones(int(missing.sum())))
    assert a.provenance["missing_image_policy"] == "random" and a.provenance["image_seed"] == 3


def test_pickle_and_npz_layouts_agree(tiny, tmp_path):
    folder = tiny()
    _with_images(folder, ".pkl")
    from_pkl = load_folder(folder)
    other = tiny(name="tiny_npz")
    _with_images(other, ".npz")
    from_npz = load_folder(other)
    assert torch.equal(from_pkl.img_features, from_npz.img_features)
    assert from_npz.provenance["image_file"].endswith("tiny_npz_id_img_feature_dict.npz")


def test_synthetic_layout(synthetic_root, synthetic_pair, tmp_path):
    root, name = synthetic_root
    assert (root / "pkls" / f"{name}_id_img_feature_dict.pkl").is_file()
    pair = synthetic_pair
    assert pair.provenance["image_features"] == "synthetic"
    assert pair.img_features is not None and pair.img_features.shape[1] == 64
    assert 0 < int(pair.img_mask.sum()) < pair.n_ent
    # the same data with the .npz alternative loads identically
    copy = tmp_path / "copy"
    shutil.copytree(root / name, copy / name)
    ids, feats = read_image_features(root / "pkls" / f"{name}_id_img_feature_dict.pkl")
    write_image_npz(copy / "pkls" / f"{name}_id_img_feature_dict.npz", ids, feats)
    other = load_pair(copy, name)
    assert torch.equal(other.img_features, pair.img_features) and torch.equal(other.img_mask, pair.img_mask)
    assert other.provenance["image_features"] == "synthetic"


def test_pair_to_device_keeps_everything(synthetic_pair):
    moved = synthetic_pair.to("cpu")
    _same(moved, synthetic_pair)


# ---- statistics --------------------------------------------------------------------------------------------------

def test_statistics_tiny(tiny):
    folder = tiny()
    stats = dataset_statistics(folder)
    kg1, kg2 = stats["kg1"], stats["kg2"]
    assert (kg1["entities"], kg2["entities"]) == (5, 5)
    assert (kg1["relations"], kg2["relations"]) == (2, 2)
    assert (kg1["relation_triples"], kg1["relation_triples_distinct"]) == (5, 4)
    assert (kg1["attributes"], kg1["attribute_triples"], kg1["entities_with_attributes"]) == (2, 3, 2)
    assert (kg2["attributes"], kg2["attribute_triples"], kg2["entities_with_attributes"]) == (2, 3, 2)
    assert (kg1["images"], kg2["images"]) == (3, 2) and stats["image_source"] == "image_index"
    assert stats["links"] == 4 and kg2["aligned_entities"] == 4
    assert dataset_statistics(load_folder(folder)) == stats
    table = format_statistics(stats)
    assert "relation triples (distinct)" in table and "tiny" in table


def test_statistics_synthetic_folder_equals_pair(synthetic_root, synthetic_pair):
    from_folder = dataset_statistics(synthetic_root[0] / synthetic_root[1])
    from_pair = dataset_statistics(synthetic_pair)
    assert from_folder == from_pair
    assert from_pair["image_source"] == "features"
    assert from_pair["kg1"]["images"] + from_pair["kg2"]["images"] == int(synthetic_pair.img_mask.sum())
    values = read_attr_values(synthetic_root[0] / synthetic_root[1] / "extra" / "attr_values_1")
    assert from_pair["kg1"]["attribute_triples"] == len(set(values))


def test_blockwise_column_mean_std_equals_numpy():
    import numpy as np

    from mimea.data.features import _column_mean_std

    x = np.random.default_rng(0).normal(3.0, 2.0, size=(1003, 7)).astype(np.float32)
    mean, std = _column_mean_std(x, block=100)
    assert np.allclose(mean, x.mean(axis=0, dtype=np.float64)) and np.allclose(std, x.std(axis=0, dtype=np.float64))
