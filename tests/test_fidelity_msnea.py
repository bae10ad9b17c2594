"""benchmarks/fidelity for MSNEA: our data in their layout, their log parsed, the shim's test hook."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.fidelity import msnea_layout
from benchmarks.fidelity import parse as P
from benchmarks.fidelity import shim, standin


def test_layout_holds_our_triples_attributes_images_and_split(tiny, tmp_path):
    h5py = __import__("h5py")
    from mimea.data.loader import load_pair
    from mimea.data.splits import make_split

    standin.build_root(tiny(), tmp_path / "root", seed=0, dim=8)
    out = tmp_path / "work" / "msnea"
    rec = msnea_layout.write_layout(tmp_path / "root", "tiny", 0.5, out)
    pair = load_pair(tmp_path / "root", "tiny")
    rows = [line.split("\t") for k in (1, 2) for line in (out / f"rel_triples_{k}").read_text().splitlines()]
    assert sorted((int(h[1:]), int(r[1:]), int(t[1:])) for h, r, t in rows) == sorted(map(tuple, pair.triples.tolist()))
    kg2 = set(pair.kg2.tolist())
    for k in (1, 2):                                   # each file holds its own KG's heads
        heads = {int(line.split("\t")[0][1:]) for line in (out / f"rel_triples_{k}").read_text().splitlines()}
        assert all((e in kg2) == (k == 2) for e in heads)
    att = [line.split("\t") for k in (1, 2) for line in (out / f"attr_triples_{k}").read_text().splitlines()]
    assert len(att) == int((pair.att_features > 0).sum()) - sum(   # entities outside every triple are left out
        int((pair.att_features[e] > 0).sum()) for e in range(pair.n_ent)
        if e not in set(pair.triples[:, 0].tolist()) | set(pair.triples[:, 2].tolist()))
    for e, a, v in att:
        assert pair.att_features[int(e[1:]), int(a[1:])] > 0 and float(v) == float(v)   # parsable float
    with h5py.File(out / "resnet50_1.h5", "r") as f1, h5py.File(out / "resnet50_2.h5", "r") as f2:
        keys = {int(k[1:]): np.array(f[k]) for f in (f1, f2) for k in f.keys()}
    assert set(keys) <= set(np.flatnonzero(pair.img_mask.numpy()).tolist())
    for e, v in keys.items():                           # the rows our loader gives (L2-normalised)
        assert np.allclose(v, pair.img_features[e].numpy())
    with h5py.File(out / "attr_name_1.h5", "r") as f:
        assert all(np.array(f[k]).shape == (msnea_layout.NAME_DIM,) for k in f.keys())
    split = make_split(pair.links, 0.5, val_fraction=0.0)
    links = lambda part: [tuple(int(x[1:]) for x in line.split("\t"))  # noqa: E731
                          for line in (out / f"721{part}_links").read_text().splitlines()]
    assert links("valid") == links("test")               # their per-epoch valid reads the test links
    assert len(links("train")) + rec["links_left_out"]["train"] == len(split.train)
    assert set(links("test")) <= set(map(tuple, split.test.tolist()))
    cfg = json.loads((out / "config.json").read_text())
    assert set(cfg) == set(msnea_layout.THEIR_CONFIG) and cfg["training_data"].endswith("/")
    assert (out / "logs").is_dir() and rec["our_test_sha1"] == split.meta["test_sha1"]


def _msnea_log(path: Path) -> Path:
    path.write_text(
        "1.0\t2026-12-02 05:50:25,856 - INFO: [epoch 1] loss: 1.288528, relation loss: 1.283552, "
        "align loss:1.408960, time: 344.8375s\n"
        "1.1\t[fidelity-shim] msnea test epoch=1\n"
        "1.2\t2026-12-02 05:50:47,700 - INFO: accurate results: hits@[1, 5, 10] = [0.215 0.685 1.233]%, "
        "mr = 4930.642, mrr = 0.006235, time = 13.000 s \n"
        "2.0\t2026-12-02 05:56:25,856 - INFO: [epoch 2] loss: 1.1, relation loss: 1.0, align loss:1.2, time: 340.0s\n",
        encoding="utf-8")
    return path


def test_parse_msnea(tmp_path):
    curve = P.parse("msnea", _msnea_log(tmp_path / "t.log"))
    assert len(curve) == 1                              # epoch 2 has no test
    r = curve[0]
    assert r["epoch"] == 1 and r["train_s"] == 344.8375 and r["test_s"] == 13.0
    assert r["test"]["l2r"] == {"hits@1": 0.00215, "hits@5": 0.00685, "hits@10": 0.01233, "mr": 4930.642,
                                "mrr": 0.006235}


def test_shim_msnea_tests_every_k_epochs_with_their_test_and_stops(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "evaluation.py").write_text(
        "def greedy_alignment(logger, e1, e2, top_k, n, metric, normalize, csls_k, accurate):\n"
        "    print('accurate results: hits@[1, 5, 10] = [10.0 20.0 30.0]%, mr = 5.000, mrr = 0.150000, '\n"
        "          'time = 0.100 s ' if accurate else 'quick results')\n"
        "    return set(), 10.0, 5.0, 0.15\n")
    (repo / "main.py").write_text(
        "from evaluation import *\n"
        "def test(model, kgs, args):\n"
        "    assert (model, kgs, args) == ('m', 'k', 'a')\n"
        "    return greedy_alignment(None, 0, 0, [1, 5, 10], 1, 'inner', True, 0, True)[3]\n"
        "def valid(model, kgs, args):\n"
        "    return greedy_alignment(None, 0, 0, [1, 5, 10], 1, 'inner', True, 0, False)[3]\n"
        "if __name__ == '__main__':\n"
        "    model, kgs, args = 'm', 'k', 'a'\n"
        "    for i in range(1, 7):\n"
        "        print(f'[epoch {i}] loss: 1.0, relation loss: 0.5, align loss:0.5, time: 0.0100s')\n"
        "        print('flag', valid(model, kgs, args))\n"
        "    print('their final test')\n")
    out = subprocess.run([sys.executable, str(Path(shim.__file__)), "--model", "msnea", "--repo", str(repo),
                          "--test-every", "2", "--stop-after", "4", "--timing", str(tmp_path / "t.log"),
                          "--stats", str(tmp_path / "s.json")], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "quick results" not in out.stdout             # their valid never ranks: the shim decides
    assert out.stdout.count("flag -1.0") == 2 and out.stdout.count("flag 0.15") == 1   # 1, 3: no test; 2: test
    assert "their final test" not in out.stdout
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["reason"] == "stopped after 4 epochs"
    assert [r["epoch"] for r in P.parse("msnea", tmp_path / "t.log")] == [2, 4]
