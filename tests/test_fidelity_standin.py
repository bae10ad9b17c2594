"""benchmarks/fidelity: the stand-in image features, the authors'-log parsers and the EVA attribute wrapper."""
from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from benchmarks.fidelity import parse as P
from benchmarks.fidelity import shim, standin


def _source(tiny, tmp_path):
    return tiny()  # ROOT/tiny with norm/ and extra/ (image_index_1: 0,1,2; image_index_2: 5,6)


def test_standin_ids_dtype_and_range(tiny, tmp_path):
    src = _source(tiny, tmp_path)
    rec = standin.build_root(src, tmp_path / "root", seed=3, dim=16)
    with open(rec["pkl"], "rb") as f:
        feats = pickle.load(f)
    assert list(feats) == [0, 1, 2, 5, 6]
    for v in feats.values():
        assert v.dtype == np.float32 and v.shape == (16,) and (v >= 0).all() and (v < 1).all()
    meta = json.loads((tmp_path / "root" / "tiny" / "extra" / "dataset.json").read_text())
    assert meta["image_features"] == "synthetic" and meta["standin"]["seed"] == 3
    assert (tmp_path / "root" / "tiny" / "norm").is_symlink()


def test_standin_same_seed_same_bytes(tiny, tmp_path):
    src = _source(tiny, tmp_path)
    a = standin.build_root(src, tmp_path / "a", seed=7, dim=8)
    b = standin.build_root(src, tmp_path / "b", seed=7, dim=8)
    c = standin.build_root(src, tmp_path / "c", seed=8, dim=8)
    assert a["sha256"] == b["sha256"] != c["sha256"]
    again = standin.build_root(src, tmp_path / "a", seed=7, dim=8)  # rebuilding in place is idempotent
    assert again["sha256"] == a["sha256"]


def test_standin_read_by_our_loader(tiny, tmp_path):
    from mimea.data.loader import load_pair

    src = _source(tiny, tmp_path)
    standin.build_root(src, tmp_path / "root", seed=0, dim=8)
    pair = load_pair(tmp_path / "root", "tiny")
    assert pair.img_mask.tolist() == [True, True, True, False, False, True, True, False, False, False]


def test_link_layouts(tiny, tmp_path):
    src = _source(tiny, tmp_path)
    rec = standin.build_root(src, tmp_path / "root", seed=0, dim=8, name="FBDB15K")
    dirs = standin.link_layouts(tmp_path / "root", "FBDB15K", tmp_path / "work")
    m = dirs["mclea"] / "data" / "mmkb-datasets" / "FB15K_DB15K"
    assert (m / "ill_ent_ids").is_file() and (m / "FB15K_DB15K_id_img_feature_dict.pkl").resolve() == \
        __import__("pathlib").Path(rec["pkl"]).resolve()
    e = dirs["eva"] / "data"
    assert (e / "FBDB15K" / "triples_1").is_file() and (e / "pkls" / "FBDB15K_GA_id_img_feature_dict.pkl").is_file()
    assert (dirs["eva"] / "logs").is_dir()


def test_standin_cli(tiny, tmp_path, capsys):
    src = _source(tiny, tmp_path)
    assert standin.main(["--source", str(src), "--root", str(tmp_path / "r"), "--seed", "1", "--dim", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["n_ids"] == 5


MEA_LOG = """\
1.0\t  0%|          | 0/500 [00:00<?, ?it/s]
10.0\tTrain | Ep [0/500] ... [00:08<?]INFO - x - 0:00:10 - Ep 0 | l2r: acc of top [1, 10, 50] = [0.0001 0.0017 0.0099], mr = 3797.222, mrr = 0.002, Loss = 91.4991
10.0\tINFO - x - Ep 0 | r2l: acc of top [1, 10, 50] = [0.0003 0.0026 0.0131], mr = 3639.744, mrr = 0.004, Loss = 91.4991
10.5\t[fidelity-shim] epoch 0 done
20.0\tINFO - x - Ep 1 | l2r: acc of top [1, 10, 50] = [0.1 0.2 0.3], mr = 30.0, mrr = 0.15, Loss = 50.0
20.0\tINFO - x - Ep 1 | r2l: acc of top [1, 10, 50] = [0.2 0.3 0.4], mr = 20.0, mrr = 0.25, Loss = 50.0
22.5\t[fidelity-shim] epoch 1 done
23.0\tINFO - x -  --------------------- Test result --------------------- 
23.0\tINFO - x - Ep 1 | l2r: acc of top [1, 10, 50] = [0.9 0.9 0.9], mr = 1.0, mrr = 0.9, Loss = 50.0
"""

MCLEA_LOG = """\
2.0\t[start training...] 
30.0\t[epoch 0] loss_all: 123.5, time: 27.5000 s
30.1\t
30.1\t[epoch 0] checkpoint!
40.0\tl2r: acc of top [1, 10, 50] = [0.01   0.05   0.1 ], mr = 900.000, mrr = 0.030, time = 9.0 s 
41.0\tr2l: acc of top [1, 10, 50] = [0.02 0.06 0.11], mr = 800.000, mrr = 0.040, time = 10.0 s 
70.0\t[epoch 1] loss_all: 100.0, time: 28.0000 s
70.1\t[epoch 1] checkpoint!
80.0\tl2r: acc of top [1, 10, 50] = [0.03 0.07 0.12], mr = 700.000, mrr = 0.050, time = 9.0 s 
82.0\tr2l: acc of top [1, 10, 50] = [0.04 0.08 0.13], mr = 600.000, mrr = 0.060, time = 11.0 s 
"""


def test_parse_meaformer(tmp_path):
    (tmp_path / "t.log").write_text(MEA_LOG)
    curve = P.parse("meaformer", tmp_path / "t.log")
    assert [r["epoch"] for r in curve] == [1, 2]          # the final best-model re-test is not an epoch
    assert curve[0]["test"]["l2r"]["hits@1"] == 0.0001 and curve[1]["test"]["r2l"]["mrr"] == 0.25
    assert curve[0]["test"]["mean"]["mrr"] == pytest.approx(0.003)
    assert curve[0]["wall_s"] == 9.5 and curve[1]["wall_s"] == 12.0
    assert P.seconds_per_epoch(curve) == pytest.approx(10.75)


def test_parse_mclea_eva(tmp_path):
    (tmp_path / "t.log").write_text(MCLEA_LOG)
    curve = P.parse("mclea", tmp_path / "t.log")
    assert [r["their_epoch"] for r in curve] == [0, 1]
    assert curve[1]["test"]["l2r"]["hits@10"] == 0.07 and curve[0]["train_s"] == 27.5
    assert curve[0]["wall_s"] == 39.0 and curve[1]["wall_s"] == 41.0
    assert curve[0]["loss"] == 123.5


def test_eva_attr_wrapper_pads_to_width(monkeypatch, tmp_path):
    """The wrapper asks the original for #names columns and zero-pads to topA (the original would IndexError)."""
    calls = []

    def load_attr(fns, e, ent2id, topA=1000):
        calls.append(topA)
        if topA > 2:
            raise IndexError("list index out of range")
        return np.ones((e, topA), dtype=np.float32)

    fake = types.ModuleType("Load")
    fake.load_attr = load_attr
    monkeypatch.setitem(sys.modules, "Load", fake)
    f = tmp_path / "attrs"
    f.write_text("a\tp\tq\nb\tp\nzz\tr\n")  # zz is not an entity: r does not count
    shim.patch_eva()
    out = fake.load_attr([str(f)], 3, {"a": 0, "b": 1}, 5)
    assert calls == [2] and out.shape == (3, 5) and out[:, 2:].sum() == 0 and out[:, :2].sum() == 6


def test_shim_end_to_end_on_a_fake_repository(tmp_path):
    """The shim runs a script as __main__ with their argv, on CPU (.cuda() is a no-op), and writes timing + stats."""
    import subprocess

    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "run.py").write_text(
        "import sys, torch\n"
        "x = torch.ones(2).cuda()\n"
        "assert not torch.cuda.is_available() and x.device.type == 'cpu'\n"
        "print('[start training...] ')\n"
        "print('[epoch 0] loss_all: 1.5, time: 0.1000 s')\n"
        "print('[epoch 0] checkpoint!')\n"
        "print('l2r: acc of top [1, 10, 50] = [0.5 0.6 0.7], mr = 3.000, mrr = 0.550, time = 0.1 s ')\n"
        "print('r2l: acc of top [1, 10, 50] = [0.4 0.6 0.7], mr = 3.000, mrr = 0.450, time = 0.1 s ')\n"
        "print('argv', sys.argv[1:])\n")
    shim_py = Path(shim.__file__)
    out = subprocess.run([sys.executable, str(shim_py), "--model", "mclea", "--repo", str(repo),
                          "--timing", str(tmp_path / "t.log"), "--stats", str(tmp_path / "s.json"), "--",
                          "--epochs", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "argv ['--epochs', '1']" in out.stdout
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["reason"] == "finished" and stats["peak_rss_self_mib"] > 0
    curve = P.parse("mclea", tmp_path / "t.log")
    assert curve[0]["test"]["l2r"]["hits@1"] == 0.5 and curve[0]["wall_s"] is not None
