"""Seeded random stand-in image features for fidelity runs (the real MMKG VGG16 features are not available).

``python benchmarks/fidelity/standin.py --source ../shared/data/mmkg/FBDB15K --root $SCRATCH/data/mmkg
--seed 0`` builds a data root that our loader and the authors' loaders read alike:

    ROOT/NAME/norm          -> symlink to SOURCE/norm (the shared files, unchanged)
    ROOT/NAME/extra/        a folder of symlinks to SOURCE/extra/* plus dataset.json {"image_features": "synthetic"}
    ROOT/pkls/NAME_id_img_feature_dict.pkl
                            {entity id (int): np.float32 vector (4096,)}, one per id listed in
                            extra/image_index_1 and _2, drawn i.i.d. uniform on [0, 1) (non-negative, like
                            post-ReLU VGG16 fc7 features) by numpy's PCG64 seeded with --seed, in ascending id order.

This is the layout MEAformer reads (``src/data.py:load_eva_data``: ``data_path/NAME/norm``,
``data_path/pkls/NAME_id_img_feature_dict.pkl``) and ours (``mimea.data.loader``). MCLEA and EVA read other paths;
:func:`link_layouts` makes them with symlinks to the same files (see docs/fidelity.md).
Same seed, same source -> byte-identical pickle (protocol 4, keys in ascending order).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np

DIM = 4096
PROTOCOL = 4


def image_ids(source: Path) -> np.ndarray:
    """Ascending distinct ids listed in ``SOURCE/extra/image_index_1`` and ``_2`` (one id per line)."""
    ids: list[int] = []
    for k in (1, 2):
        path = source / "extra" / f"image_index_{k}"
        with open(path, encoding="utf-8") as f:
            ids.extend(int(line.split("\t")[0]) for line in f if line.strip())
    return np.unique(np.asarray(ids, dtype=np.int64))


def standin_features(ids: np.ndarray, seed: int, dim: int = DIM) -> dict[int, np.ndarray]:
    """``{id: float32 [dim]}``, uniform [0, 1), row i drawn for the i-th smallest id."""
    rng = np.random.default_rng(seed)
    feats = rng.random((len(ids), dim), dtype=np.float32)
    return {int(i): feats[j] for j, i in enumerate(ids)}


def write_pickle(path: Path, feats: dict[int, np.ndarray]) -> str:
    """Write atomically; returns the sha256 of the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(feats, f, protocol=PROTOCOL)
    os.replace(tmp, path)
    return sha256(path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _symlink(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        if link.is_symlink() or link.is_file():
            link.unlink()
        else:
            raise FileExistsError(f"{link} exists and is not a symlink")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def build_root(source: Path, root: Path, seed: int, name: str | None = None, dim: int = DIM) -> dict:
    """Build ``ROOT/NAME`` (symlinks) and the stand-in pickle; returns a small record (paths, seed, sha256)."""
    source, root = Path(source).resolve(), Path(root)
    name = name or source.name
    folder = root / name
    _symlink(source / "norm", folder / "norm")
    extra = folder / "extra"
    extra.mkdir(parents=True, exist_ok=True)
    if (source / "extra").is_dir():
        for item in sorted((source / "extra").iterdir()):
            _symlink(item, extra / item.name)
    ids = image_ids(source)
    pkl = root / "pkls" / f"{name}_id_img_feature_dict.pkl"
    digest = write_pickle(pkl, standin_features(ids, seed, dim))
    meta = {"image_features": "synthetic", "standin": {"generator": "benchmarks/fidelity/standin.py",
            "seed": seed, "dim": dim, "distribution": "uniform[0,1) float32, numpy default_rng(seed)",
            "n_ids": int(len(ids)), "sha256": digest}}
    (extra / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return {"root": str(root), "name": name, "pkl": str(pkl), "seed": seed, "dim": dim, "n_ids": int(len(ids)),
            "sha256": digest}


def link_layouts(root: Path, name: str, workdir: Path) -> dict[str, Path]:
    """Symlink ``ROOT/NAME`` into the relative layouts MCLEA and EVA read from their working directory.

    * MCLEA ``src/run.py:load_img_features`` (FB branch): ``data/mmkb-datasets/FB15K_DB15K/`` holding the
      ``norm`` files and ``FB15K_DB15K_id_img_feature_dict.pkl``; run with ``--file_dir data/mmkb-datasets/FB15K_DB15K``.
    * EVA ``src/run_dbp15k.py:main`` (else branch): ``data/NAME/`` and ``data/pkls/NAME_GA_id_img_feature_dict.pkl``.
    Returns the two working directories (``workdir/mclea``, ``workdir/eva``).
    """
    root, workdir = Path(root).resolve(), Path(workdir)
    kg = {"FBDB15K": "FB15K_DB15K", "FBYG15K": "FB15K_YAGO15K"}.get(name, name)
    norm = root / name / "norm"
    pkl = root / "pkls" / f"{name}_id_img_feature_dict.pkl"
    mclea = workdir / "mclea"
    for f in sorted(norm.iterdir()):
        _symlink(f.resolve(), mclea / "data" / "mmkb-datasets" / kg / f.name)
    _symlink(pkl, mclea / "data" / "mmkb-datasets" / kg / f"{kg}_id_img_feature_dict.pkl")
    eva = workdir / "eva"
    _symlink(norm.resolve(), eva / "data" / name)
    _symlink(pkl, eva / "data" / "pkls" / f"{name}_GA_id_img_feature_dict.pkl")
    (eva / "logs").mkdir(parents=True, exist_ok=True)  # EVA writes logs/pred.txt after its last test
    (mclea / "save_pkl").mkdir(parents=True, exist_ok=True)
    return {"mclea": mclea, "eva": eva}


#: GCN-Align's ``utils.py:load_data`` reads ``data/<lang>/`` + these DBP15K names; the MMKG ``norm`` names they link to.
GCN_ALIGN_FILES = {"ent_ids_1": "ent_ids_1", "ent_ids_2": "ent_ids_2", "triples_1": "triples_1",
                   "triples_2": "triples_2", "training_attrs_1": "training_attrs_1",
                   "training_attrs_2": "training_attrs_2", "ref_ent_ids": "ill_ent_ids"}


def link_gcn_align(root: Path, name: str, workdir: Path) -> Path:
    """Symlink ``ROOT/NAME/norm`` into GCN-Align's layout: ``workdir/gcn_align/data/NAME/`` with DBP15K names
    (``ref_ent_ids`` -> ``ill_ent_ids``; no images needed, so any root with ``NAME/norm`` works). Their
    ``train.py --lang NAME`` then runs with ``workdir/gcn_align`` as its working directory; returns that folder."""
    norm = (Path(root) / name / "norm").resolve()
    missing = [src for src in GCN_ALIGN_FILES.values() if not (norm / src).is_file()]
    if missing:
        raise FileNotFoundError(f"{norm}: missing {', '.join(missing)} (GCN-Align needs the MMKG norm files)")
    work = Path(workdir) / "gcn_align"
    for theirs, ours in GCN_ALIGN_FILES.items():
        _symlink(norm / ours, work / "data" / name / theirs)
    return work


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, required=True, help="dataset folder with norm/ and extra/image_index_*")
    ap.add_argument("--root", type=Path, required=True, help="data root to write (outside the repository)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="dataset name (default: the source folder's name)")
    ap.add_argument("--dim", type=int, default=DIM)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="also write MCLEA's and EVA's relative layouts under WORKDIR/mclea and WORKDIR/eva")
    args = ap.parse_args(argv)
    rec = build_root(args.source, args.root, args.seed, args.name, args.dim)
    if args.workdir is not None:
        rec["workdirs"] = {k: str(v) for k, v in link_layouts(args.root, rec["name"], args.workdir).items()}
    json.dump(rec, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
