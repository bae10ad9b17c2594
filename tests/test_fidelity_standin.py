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


# ------------------------------------------------------------------------------------------------ GCN-Align
def test_lineage_links_is_our_authors_profile_split():
    """The shim's split of GCN-Align's links is mimea's lineage split with no validation, pair for pair."""
    from mimea.data.splits import make_split

    links = [(i, 1000 + (7 * i) % 113) for i in range(113)]
    train, test = shim.lineage_links(links, 0.2, 42)
    ours = make_split(np.array(links), 0.2, mode="lineage", split_seed=42, val_fraction=0.0)
    assert train == [tuple(x) for x in ours.train.tolist()] and test == [tuple(x) for x in ours.test.tolist()]
    assert shim.links_sha1(test) == ours.meta["test_sha1"]
    with pytest.raises(ValueError, match="ratio"):
        shim.lineage_links(links, 1.5)


def test_link_gcn_align(tiny, tmp_path):
    root = _source(tiny, tmp_path).parent
    work = standin.link_gcn_align(root, "tiny", tmp_path / "work")
    folder = work / "data" / "tiny"
    assert (folder / "ref_ent_ids").resolve() == (root / "tiny" / "norm" / "ill_ent_ids").resolve()
    assert sorted(p.name for p in folder.iterdir()) == sorted(standin.GCN_ALIGN_FILES)
    with pytest.raises(FileNotFoundError, match="missing"):
        standin.link_gcn_align(tmp_path / "nowhere", "tiny", tmp_path / "work2")


def test_cityblock_ranks_match_the_authors_argsort_rule():
    from benchmarks.fidelity import cityblock as C
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    left, right = rng.standard_normal((37, 5)), rng.standard_normal((37, 5))
    right[:10] = left[:10] + 0.01  # some easy pairs
    sim = cdist(left, right, metric="cityblock")
    l2r, r2l = C.ranks_from_distance(sim, chunk=8)
    assert (l2r == [int(np.where(sim[i].argsort() == i)[0][0]) for i in range(37)]).all()   # get_hits' rule
    assert (r2l == [int(np.where(sim[:, i].argsort() == i)[0][0]) for i in range(37)]).all()
    c_l2r, c_r2l = C.ranks(left, right, chunk=5)          # our side: chunked, same cdist
    assert (c_l2r == l2r).all() and (c_r2l == r2l).all()
    m = C.metrics(np.array([0, 1, 9]), np.array([0, 0, 49]), ks=(1, 10))
    assert m["l2r"]["hits@1"] == pytest.approx(1 / 3) and m["l2r"]["hits@10"] == 1.0
    assert m["l2r"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 3, abs=1e-6)
    assert m["r2l"]["mr"] == pytest.approx(52 / 3, abs=1e-3)
    with pytest.raises(ValueError, match="square"):
        C.ranks_from_distance(np.zeros((2, 3)))


def _ga_log(path: Path) -> Path:
    """A GCN-Align timing log as the shim writes it: 4 epochs, a test after epoch 2, their final tests."""
    from benchmarks.fidelity import cityblock as C

    m = C.metrics(np.array([0, 3]), np.array([0, 0]))
    block = ["For each left:", "Hits@1: 50.00%", "Hits@10: 100.00%", "Hits@50: 100.00%", "Hits@100: 100.00%",
             "For each right:", "Hits@1: 100.00%", "Hits@10: 100.00%", "Hits@50: 100.00%", "Hits@100: 100.00%"]
    rows = [(1.0, "[fidelity-shim] split: lineage ... test_sha1=0123456789abcdef"),
            (2.0, "Epoch: 0001 AE_train_loss= 3.00000 SE_train_loss= 2.50000")]
    rows += [(2.1, x) for x in block] + [(2.2, C.format_line(2, "SE+AE", m, 0.5))]
    rows += [(2.7, "Epoch: 0002 AE_train_loss= 2.00000 SE_train_loss= 2.00000"),  # 0.7 s - 0.5 s test
             (2.9, "Epoch: 0003 AE_train_loss= 1.00000 SE_train_loss= 1.50000"),
             (3.2, "Epoch: 0004 AE_train_loss= 1.00000 SE_train_loss= 1.00000"), (3.3, "SE")]
    rows += [(3.4, x) for x in block] + [(3.5, C.format_line(4, "SE", m, 0.4)), (3.6, "SE+AE")]
    rows += [(3.7, x) for x in block] + [(3.8, C.format_line(4, "SE+AE", m, 0.6))]
    path.write_text("".join(f"{t:.3f}\t{line}\n" for t, line in rows), encoding="utf-8")
    return path


def test_parse_gcn_align(tmp_path):
    log = _ga_log(tmp_path / "timing.log")
    curve = P.parse("gcn_align", log)
    assert [r["epoch"] for r in curve] == [2, 4]
    t = curve[0]["test"]
    assert t["l2r"]["hits@1"] == 0.5 and t["r2l"]["hits@1"] == 1.0              # their printed %, / 100
    assert t["l2r"]["mrr"] == pytest.approx((1 + 1 / 4) / 2) and t["l2r"]["mr"] == 2.5   # the shim's line
    assert t["mean"]["hits@1"] == 0.75 and curve[0]["test_s"] == 0.5
    assert curve[0]["train_s"] == pytest.approx(0.2) and curve[0]["loss"] == 4.0
    assert "test_se_only" in curve[1] and "test_se_only" not in curve[0]
    timing = P.gcn_align_timing(log)
    assert timing["seconds_per_epoch"] == pytest.approx(0.2) and timing["seconds_per_test"] == pytest.approx(0.55)
    assert timing["test_sha1"] == "0123456789abcdef"


_FAKE_TF = {  # just enough of tensorflow.compat.v1 for the shim's patches (the test needs no TensorFlow)
    "tensorflow/__init__.py": "__version__ = 'fake'\n",
    "tensorflow/compat/__init__.py": "",
    "tensorflow/compat/v1.py": (
        "def disable_v2_behavior():\n    pass\n"
        "class ConfigProto:\n    def __init__(self, **kw):\n        self.kw = kw\n"
        "class Operation:\n    pass\n"
        "class Session:\n"
        "    def __init__(self, target='', graph=None, config=None):\n        self.config = config\n"
        "    def run(self, fetches, feed_dict=None):\n"
        "        if isinstance(fetches, list):\n            return [f() if callable(f) else None for f in fetches]\n"
        "        return fetches()\n"),
}
_FAKE_REPO = {  # a GCN-Align-shaped train.py / utils.py / metrics.py (same names, globals and print format)
    "utils.py": (
        "import numpy as np\n"
        "def loadfile(fn, num=1):\n"
        "    with open(fn) as f:\n        return [tuple(int(x) for x in l.split('\\t')[:num]) for l in f]\n"
        "def construct_feed_dict(features, support, placeholders):\n    return {}\n"
        "def load_data(name):\n"
        "    ill = loadfile('data/' + name + '/ref_ent_ids', 2)\n    np.random.shuffle(ill)\n"
        "    return None, None, np.array(ill[:5]), ill[5:]\n"),
    "metrics.py": (
        "import numpy as np\nimport scipy.spatial.distance\n"
        "def get_hits(vec, test_pair, top_k=(1, 10, 50, 100)):\n"
        "    L = np.array([vec[a] for a, b in test_pair]); R = np.array([vec[b] for a, b in test_pair])\n"
        "    sim = scipy.spatial.distance.cdist(L, R, metric='cityblock')\n"
        "    for name, s in (('left', sim), ('right', sim.T)):\n"
        "        print('For each %s:' % name)\n"
        "        pos = [int(np.where(s[i].argsort() == i)[0][0]) for i in range(len(s))]\n"
        "        for k in top_k:\n"
        "            print('Hits@%d: %.2f%%' % (k, sum(p < k for p in pos) / len(pos) * 100))\n"
        "def get_combine_hits(se_vec, ae_vec, beta, test_pair, top_k=(1, 10, 50, 100)):\n"
        "    get_hits(np.concatenate([se_vec * beta, ae_vec * (1.0 - beta)], axis=1), test_pair, top_k)\n"),
    "train.py": (
        "import numpy as np\nimport tensorflow as tf\nfrom utils import *\nfrom metrics import *\n"
        "class FLAGS:\n    epochs = 4\n    beta = 0.9\n"
        "np.random.seed(1)\nadj, ae_input, train, test = load_data('toy')\n"
        "print('TRAIN', len(train), 'TEST', len(test))\n"
        "support, ph_ae, ph_se = [None], {}, {}\n"
        "vec = np.random.default_rng(0).standard_normal((40, 6))\nvec[20:] = vec[:20] + 0.01\n"
        "class Model:\n    def __init__(self):\n        self.opt_op, self.loss = tf.Operation(), (lambda: 1.0)\n"
        "        self.outputs = lambda: vec\n"
        "model_ae, model_se = Model(), Model()\nsess = tf.Session()\n"
        "assert sess.config.kw['intra_op_parallelism_threads'] == 1\n"
        "for epoch in range(FLAGS.epochs):\n"
        "    a = sess.run([model_ae.opt_op, model_ae.loss]); s = sess.run([model_se.opt_op, model_se.loss])\n"
        "    print('Epoch:', '%04d' % (epoch + 1), 'AE_train_loss=', '{:.5f}'.format(a[1]), 'SE_train_loss=',"
        " '{:.5f}'.format(s[1]))\n"
        "print('Optimization Finished!')\n"
        "vec_ae = sess.run(model_ae.outputs)\nvec_se = sess.run(model_se.outputs)\n"
        "print('SE')\nget_hits(vec_se, test)\nprint('SE+AE')\nget_combine_hits(vec_se, vec_ae, FLAGS.beta, test)\n"),
}


def test_shim_gcn_align_on_a_fake_repository_and_tensorflow(tmp_path):
    """The GCN-Align path of the shim without TensorFlow: `tensorflow` -> its compat.v1, sessions on 1 thread,
    our split instead of theirs, a test every 2 epochs through their get_combine_hits, MRR from their matrix."""
    import os
    import subprocess

    from mimea.data.splits import make_split

    for files, where in ((_FAKE_TF, tmp_path / "faketf"), (_FAKE_REPO, tmp_path / "repo")):
        for rel, text in files.items():
            (where / rel).parent.mkdir(parents=True, exist_ok=True)
            (where / rel).write_text(text)
    links = [(i, 20 + i) for i in range(20)]
    (tmp_path / "work" / "data" / "toy").mkdir(parents=True)
    (tmp_path / "work" / "data" / "toy" / "ref_ent_ids").write_text("".join(f"{a}\t{b}\n" for a, b in links))
    repo_root = Path(shim.__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "faketf"), str(repo_root)])}
    out = subprocess.run([sys.executable, str(Path(shim.__file__)), "--model", "gcn_align", "--repo",
                          str(tmp_path / "repo"), "--cwd", str(tmp_path / "work"), "--ratio", "0.3",
                          "--test-every", "2", "--timing", str(tmp_path / "t.log"),
                          "--stats", str(tmp_path / "s.json"), "--", "--lang", "toy"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TRAIN 6 TEST 14" in out.stdout                                      # ours (0.3 of 20), not theirs (5)
    ours = make_split(np.array(links), 0.3, val_fraction=0.0)
    assert f"test_sha1={ours.meta['test_sha1']}" in out.stdout
    curve = P.parse("gcn_align", tmp_path / "t.log")
    assert [r["epoch"] for r in curve] == [2, 4] and "test_se_only" in curve[1]
    for rec in curve:
        assert rec["test"]["l2r"]["hits@1"] == 1.0 and rec["test"]["l2r"]["mrr"] == 1.0
    assert json.loads((tmp_path / "s.json").read_text())["reason"] == "finished"
