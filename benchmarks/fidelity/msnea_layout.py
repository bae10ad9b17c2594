"""Our data and split, written in the layout MSNEA's ``kgs.py:KGs`` reads (their code never sees our files).

    python benchmarks/fidelity/msnea_layout.py --data-dir ROOT --dataset FBDB15K --ratio 0.2 --out WORKDIR/msnea

``ROOT`` is a stand-in root (``benchmarks/fidelity/standin.py --dim 2048``: MSNEA's ``fc1`` is
``nn.Linear(2048, dim)``, sized for ResNet-50 features). Everything is taken from the pair ``mimea``'s own
loader builds from that root, so both sides train on the same triples, attributes, values and images:

* ``rel_triples_1`` / ``_2``: ``e<id>\\tr<rel>\\te<id>`` per triple of ``pair.triples`` (KG of the head).
* ``attr_triples_1`` / ``_2``: ``e<id>\\ta<column>\\t<value>`` for every (entity, attribute) our
  ``att_features`` marks present, the value ``att_values`` holds (the first parsable one, 0 when none, as ours),
  written with ``repr(float)`` (their ``uris_attribute_triple_2ids`` parses it back unchanged).
* ``attr_name_1.h5`` / ``_2.h5``: one 768-d vector per attribute name, in place of their frozen BERT embedding
  (BERT weights are not here). ``--names onehot`` (default): name j is the unit vector e_j, so their
  ``fc1(name) = fc1.weight[:, j] + fc1.bias`` is a learned per-name embedding, the same parametrisation as ours
  (our attribute encoder on the one-hot row; needs at most 768 names); ``--names normal``: i.i.d. standard normal
  rows, numpy ``default_rng(--name-seed)`` (a dense, BERT-like input of norm ~28).
* ``resnet50_1.h5`` / ``_2.h5``: each entity with a real image gets its row of ``pair.img_features`` (the
  stand-in vector after our loader's L2 normalisation, so both sides read the same numbers; their own pipeline
  feeds raw ResNet-50 features); the others are absent, so their reader gives the zero vector, as theirs.
* ``721train_links`` / ``721valid_links`` / ``721test_links``: our split of the ``authors`` profile
  (``split.val_fraction=0``: every seed link trains). Their ``valid`` runs every epoch, so its file holds the
  test links (the ``authors`` profile evaluates the test links during training); the shim ranks it only every
  ``--test-every`` epochs.
* ``config.json``: their published ``config.json`` with ``training_data`` pointing here; ``logs/`` (their logger).

MSNEA numbers only entities that occur in a relation triple (``kgs.py:generate_mapping_id``): links with an
entity outside every triple cannot be read by their code (KeyError) and are left out of their link files; the
record (``layout.json``) says how many, and their sha1 next to ours.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

#: Their published config.json (liyichen-cly/MSNEA), key for key; ``training_data`` is set per export.
THEIR_CONFIG = {"training_data": None, "output": "results/", "dataset_division": "721", "gpu_id": "0",
                "dim": 100, "margin": 1, "neg_triple_num": 1, "learning_rate": 0.001, "optimizer": "Adam",
                "max_epoch": 200, "start_valid": 0, "eval_freq": 1, "early_stop": False, "batch_size": 5000,
                "batch_threads_num": 2, "test_threads_num": 4, "ordered": True, "stop_metric": "mrr",
                "eval_metric": "inner", "top_k": [1, 5, 10], "eval_norm": True}
NAME_DIM = 768


def write_layout(data_dir: Path, dataset: str, ratio: float, out: Path, split_seed: int = 42,
                 name_seed: int = 0, max_epoch: int = 200, names: str = "onehot") -> dict:
    import h5py

    from mimea.data.loader import load_pair
    from mimea.data.splits import _digest, make_split

    pair = load_pair(data_dir, dataset)
    split = make_split(pair.links, ratio, mode="lineage", split_seed=split_seed, val_fraction=0.0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    kg2 = np.zeros(pair.n_ent, dtype=bool)
    kg2[pair.kg2.numpy()] = True
    tri = pair.triples.numpy()
    in_triples = np.zeros(pair.n_ent, dtype=bool)
    in_triples[tri[:, 0]] = True
    in_triples[tri[:, 2]] = True
    for k, side in ((1, False), (2, True)):
        rows = tri[kg2[tri[:, 0]] == side]
        with open(out / f"rel_triples_{k}", "w", encoding="utf-8") as f:
            f.writelines(f"e{h}\tr{r}\te{t}\n" for h, r, t in rows.tolist())
    att = pair.att_features.numpy() > 0
    values = pair.att_values.numpy() if getattr(pair, "att_values", None) is not None else np.zeros(att.shape)
    n_att_rows = {1: 0, 2: 0}
    for k, side in ((1, False), (2, True)):
        ents = np.flatnonzero((kg2 == side) & in_triples)
        with open(out / f"attr_triples_{k}", "w", encoding="utf-8") as f:
            for e in ents.tolist():
                for j in np.flatnonzero(att[e]).tolist():
                    f.write(f"e{e}\ta{j}\t{float(values[e, j])!r}\n")
                    n_att_rows[k] += 1
    if names == "onehot":
        if att.shape[1] > NAME_DIM:
            raise ValueError(f"{dataset}: {att.shape[1]} attribute names do not fit {NAME_DIM}-d one-hot rows; "
                             "use names='normal'")
        name_vec = np.eye(att.shape[1], NAME_DIM, dtype=np.float32)
    elif names == "normal":
        name_vec = np.random.default_rng(name_seed).standard_normal((att.shape[1], NAME_DIM)).astype(np.float32)
    else:
        raise ValueError(f"names={names!r}: choose onehot or normal")
    used = {k: sorted({j for e in np.flatnonzero((kg2 == side) & in_triples).tolist()
                       for j in np.flatnonzero(att[e]).tolist()}) for k, side in ((1, False), (2, True))}
    for k in (1, 2):
        with h5py.File(out / f"attr_name_{k}.h5", "w") as f:
            for j in used[k]:
                f[f"a{j}"] = name_vec[j]
    feats = pair.img_features.numpy() if pair.img_features is not None else None
    img = pair.img_mask.numpy() if pair.img_mask is not None else np.zeros(pair.n_ent, dtype=bool)
    n_img = {1: 0, 2: 0}
    for k, side in ((1, False), (2, True)):
        with h5py.File(out / f"resnet50_{k}.h5", "w") as f:
            for e in np.flatnonzero((kg2 == side) & in_triples & img).tolist():
                f[f"e{e}"] = feats[e]
                n_img[k] += 1
    dropped = {}
    written = {}
    for part, links in (("train", split.train.numpy()), ("test", split.test.numpy())):
        keep = in_triples[links[:, 0]] & in_triples[links[:, 1]]
        dropped[part] = int((~keep).sum())
        written[part] = links[keep]
    for part, links in (("train", written["train"]), ("valid", written["test"]), ("test", written["test"])):
        with open(out / f"721{part}_links", "w", encoding="utf-8") as f:
            f.writelines(f"e{a}\te{b}\n" for a, b in links.tolist())
    cfg = dict(THEIR_CONFIG, training_data=str(out.resolve()) + "/", max_epoch=max_epoch)
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n", encoding="utf-8")
    rec = {"dataset": dataset, "ratio": ratio, "split_seed": split_seed, "names": names,
           "name_seed": name_seed if names == "normal" else None,
           "n_train": len(split.train), "n_test": len(split.test), "our_test_sha1": split.meta["test_sha1"],
           "links_left_out": dropped, "their_test_sha1": _digest(written["test"]),
           "attribute_rows": n_att_rows, "attribute_names": {k: len(v) for k, v in used.items()},
           "images": n_img, "entities_outside_triples": int((~in_triples).sum()), "max_epoch": max_epoch}
    (out / "layout.json").write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="stand-in root (standin.py --dim 2048)")
    ap.add_argument("--dataset", default="FBDB15K")
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--split-seed", type=int, default=42)
    ap.add_argument("--names", choices=("onehot", "normal"), default="onehot")
    ap.add_argument("--name-seed", type=int, default=0, help="with --names normal")
    ap.add_argument("--max-epoch", type=int, default=200, help="their config.json max_epoch (published: 200)")
    ap.add_argument("--out", type=Path, required=True, help="their working directory (outside the repository)")
    args = ap.parse_args(argv)
    rec = write_layout(args.data_dir, args.dataset, args.ratio, args.out, args.split_seed, args.name_seed,
                       args.max_epoch, args.names)
    json.dump(rec, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
