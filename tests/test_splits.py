"""Splits: the lineage recipe pair for pair, validation carved from the seeds, no leakage, JSON round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mimea.data.splits import make_split, split_from_dict, split_to_dict


def _lineage(links: list[tuple[int, int]], rate: float, seed: int = 42):
    """MCLEA/MEAformer, transcribed: global seed, shuffle the list of tuples, slice at int(len // 1 * rate)."""
    ills = list(links)
    np.random.seed(seed)
    np.random.shuffle(ills)
    cut = int(len(ills) // 1 * rate)
    return ills[:cut], ills[cut:]


def _links(n: int = 1001) -> torch.Tensor:
    rng = np.random.default_rng(7)
    return torch.from_numpy(np.stack([rng.permutation(n), n + rng.permutation(n)], axis=1))


@pytest.mark.parametrize("ratio", [0.2, 0.3, 0.5, 0.8])
def test_lineage_test_links_equal_theirs(ratio):
    links = _links()
    seeds, test = _lineage([tuple(x) for x in links.tolist()], ratio)
    split = make_split(links, ratio)
    assert [tuple(x) for x in split.test.tolist()] == test           # same pairs, same order
    assert sorted(map(tuple, torch.cat([split.train, split.valid]).tolist())) == sorted(seeds)
    assert split.meta["n_seed"] == len(seeds) == int(1001 * ratio)


def test_lineage_on_synthetic_links(synthetic_pair):
    links = synthetic_pair.links
    _, test = _lineage([tuple(x) for x in links.tolist()], 0.2)
    assert [tuple(x) for x in make_split(links, 0.2).test.tolist()] == test


def test_validation_carved_from_train_and_no_leak():
    links = _links()
    split = make_split(links, 0.3, val_fraction=0.1)
    n_seed = int(1001 * 0.3)
    assert len(split.valid) == int(np.ceil(0.1 * n_seed)) and len(split.train) == n_seed - len(split.valid)
    train = set(map(tuple, split.train.tolist()))
    valid = set(map(tuple, split.valid.tolist()))
    test = set(map(tuple, split.test.tolist()))
    assert not train & valid and not train & test and not valid & test
    assert len(train | valid | test) == len(links)
    # the lineage's train order is kept within train and valid
    seeds, _ = _lineage([tuple(x) for x in links.tolist()], 0.3)
    pos = {p: i for i, p in enumerate(seeds)}
    assert [pos[p] for p in map(tuple, split.train.tolist())] == sorted(pos[p] for p in train)


def test_no_validation():
    split = make_split(_links(), 0.2, val_fraction=0.0)
    assert split.valid.shape == (0, 2) and len(split.train) == 200


def test_split_seed_changes_validation_only_in_lineage_mode():
    a = make_split(_links(), 0.3, split_seed=42)
    b = make_split(_links(), 0.3, split_seed=42)
    assert torch.equal(a.train, b.train) and torch.equal(a.valid, b.valid) and torch.equal(a.test, b.test)
    c = make_split(_links(), 0.3, mode="seeded", split_seed=1)
    d = make_split(_links(), 0.3, mode="seeded", split_seed=2)
    assert not torch.equal(c.test, d.test)
    assert len(c.test) == len(a.test)


def test_json_round_trip():
    split = make_split(_links(), 0.2)
    d = json.loads(json.dumps(split_to_dict(split)))
    again = split_from_dict(d)
    for key in ("train", "valid", "test"):
        assert torch.equal(getattr(again, key), getattr(split, key)) and getattr(again, key).dtype == torch.long
    assert again.meta == split.meta and again.meta["mode"] == "lineage"


@pytest.mark.parametrize("kwargs", [{"ratio": 0.0}, {"ratio": 1.0}, {"ratio": 0.2, "mode": "random"},
                                    {"ratio": 0.2, "val_fraction": 1.0}])
def test_bad_arguments(kwargs):
    ratio = kwargs.pop("ratio")
    with pytest.raises(ValueError):
        make_split(_links(), ratio, **kwargs)
