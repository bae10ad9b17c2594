"""The embedded default dataset: a small synthetic multi-modal KG pair, written in the real on-disk layout.

:func:`generate` writes ``OUT_ROOT/NAME/{norm,extra}`` and ``OUT_ROOT/pkls/NAME_id_img_feature_dict.pkl`` so that
the data go through the same loader and checks as FBDB15K. :func:`ensure_synthetic` generates once per
parameter set into a cache folder (atomically) and returns ``(root, name)`` for :func:`~mimea.data.load_pair`.

Design (every knob is a field of :class:`SyntheticParams`; ``docs/data.md`` gives the measured signal of each
modality at the defaults):

* **Latent world.** ``n_latent`` entities, each in one of ``n_clusters`` clusters, with a latent vector
  ``z = centroid(cluster) + individual`` (``latent_dim``) and a log-normal popularity.
* **Two views.** A share ``overlap`` of the latent entities is in both KGs (these are the links); the rest is
  split evenly between KG1-only and KG2-only entities (distractors without a counterpart).
* **Graph.** ``n_latent * avg_degree / 2`` latent triples: head by popularity, relation from the head's
  cluster profile, tail from the relation's tail-cluster profile, by popularity. Each KG keeps each triple
  independently with probability ``edge_keep`` (and only between its own entities).
* **Relations.** KG1 renames the latent relations by a permutation; KG2 merges a share
  ``kg2_relation_merge`` of them into others and renames the rest: KG2 ids follow KG1's and are disjoint.
* **Attributes.** Each cluster has ``attrs_per_cluster`` typical attribute names (probability 0.8 each, 0.03
  for the others); an entity's latent set is drawn once. Each KG drops all attributes of an entity with
  probability ``attr_missing`` and otherwise keeps each with probability ``attr_keep``; names are renamed per KG
  (different URIs and numbering). Values (``extra/attr_values_*``) are a projection of ``z`` plus 2 % noise.
* **Images.** ``image_dim`` features: ``P z + individual`` (shared across KGs, as one visual encoder would see
  it) plus independent per-KG noise of relative size ``image_noise``; each KG lacks the image of an entity with
  probability ``image_missing``.
* **Names.** Two pseudo-words per entity; KG2 substitutes each letter with probability ``name_noise``.
  Entity strings (``ent_ids_*``) are random tokens and ids are shuffled per KG: neither leaks the alignment.

The signal of each modality is partial by construction (cluster-level sharing, dropout, missing data, noise),
so a model that combines modalities can beat any single one; ``tests/test_synthetic.py`` checks this with
training-free probes. Output is a pure function of the parameters (``seed`` included).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .images import IMAGE_STEM, write_image_pickle

GENERATOR_VERSION = 1
DEFAULT_NAME = "synthetic"


@dataclass(frozen=True)
class SyntheticParams:
    """Knobs of the generator (defaults: ~1,500 entities per KG, ~1,260 links, trains in seconds on CPU)."""

    n_latent: int = 1800            # latent entities
    overlap: float = 0.7            # share in both KGs (-> links); the rest is KG1-only or KG2-only
    n_clusters: int = 12            # latent types: shared by relation, attribute and image signals
    latent_dim: int = 16
    individual: float = 0.8         # std of the entity's own part of z (centroids have std 1)
    n_relations: int = 24           # latent relation types
    kg2_relation_merge: float = 0.25  # share of latent relations KG2 folds into another one
    avg_degree: float = 12.0        # latent triples per entity x 2
    edge_keep: float = 0.6          # each KG keeps each latent triple with this probability
    n_attributes: int = 40          # latent attribute names
    attrs_per_cluster: int = 6      # typical attributes of a cluster
    attr_keep: float = 0.7          # each KG keeps each attribute of an entity with this probability
    attr_missing: float = 0.2       # share of entities without any attribute, per KG
    image_dim: int = 64
    image_noise: float = 0.9        # per-KG noise std relative to the image signal's std
    image_missing: float = 0.3      # share of entities without an image, per KG
    name_noise: float = 0.25        # KG2 letter substitution probability
    seed: int = 0

    def __post_init__(self) -> None:
        for f in ("overlap", "edge_keep", "attr_keep", "attr_missing", "image_missing", "name_noise",
                  "kg2_relation_merge"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"synthetic parameter {f}={v}: must be in [0, 1]")
        if self.n_latent < 10 or self.n_clusters < 1 or self.n_relations < 2 or self.n_attributes < 1:
            raise ValueError("synthetic parameters: need n_latent >= 10, n_clusters >= 1, n_relations >= 2, "
                             "n_attributes >= 1")
        if self.overlap == 0.0:
            raise ValueError("synthetic parameter overlap=0 gives no alignment links")


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a ``[m, k]`` probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return np.minimum((cum < u).sum(axis=1), probs.shape[1] - 1)


def _by_popularity(rng: np.random.Generator, members: np.ndarray, weight: np.ndarray, size: int) -> np.ndarray:
    return members[rng.choice(len(members), size=size, p=weight / weight.sum())]


_SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "sel", "du", "an", "bri", "co", "fa", "ge", "hu", "ix",
              "jo", "ku", "lan", "mor", "nel", "os", "pra", "qui", "ros", "sto", "tel", "ur", "val", "wen", "zo"]
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _names(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        words = []
        for _w in range(2):
            k = int(rng.integers(2, 4))
            words.append("".join(_SYLLABLES[j] for j in rng.integers(0, len(_SYLLABLES), k)).capitalize())
        out.append(" ".join(words))
    return out


def _noisy(rng: np.random.Generator, name: str, p: float) -> str:
    chars = list(name)
    flips = rng.random(len(chars)) < p
    for i in np.flatnonzero(flips):
        if chars[i].isalpha():
            c = _LETTERS[int(rng.integers(0, 26))]
            chars[i] = c.upper() if chars[i].isupper() else c
    return "".join(chars)


@dataclass
class _World:
    cluster: np.ndarray
    z: np.ndarray
    triples: np.ndarray       # latent (h, r, t)
    attrs: np.ndarray         # [n, A] bool latent attribute sets
    image: np.ndarray         # [n, D] noiseless image signal
    names: list[str]


def _world(p: SyntheticParams, rng: np.random.Generator) -> _World:
    n = p.n_latent
    cluster = rng.integers(0, p.n_clusters, n)
    centroids = rng.normal(size=(p.n_clusters, p.latent_dim))
    z = centroids[cluster] + p.individual * rng.normal(size=(n, p.latent_dim))
    popularity = rng.lognormal(0.0, 1.0, n)

    rel_pref = rng.dirichlet(np.full(p.n_relations, 0.3), p.n_clusters)    # cluster -> relation
    tail_pref = rng.dirichlet(np.full(p.n_clusters, 0.3), p.n_relations)   # relation -> tail cluster
    m = int(n * p.avg_degree / 2)
    heads = rng.choice(n, size=m, p=popularity / popularity.sum())
    rels = _categorical(rng, rel_pref[cluster[heads]])
    tail_cl = _categorical(rng, tail_pref[rels])
    tails = np.empty(m, dtype=np.int64)
    for c in range(p.n_clusters):
        sel = np.flatnonzero(tail_cl == c)
        members = np.flatnonzero(cluster == c)
        if len(sel) and len(members):
            tails[sel] = _by_popularity(rng, members, popularity[members], len(sel))
        elif len(sel):
            tails[sel] = rng.integers(0, n, len(sel))
    tri = np.stack([heads, rels, tails], axis=1)
    tri = tri[tri[:, 0] != tri[:, 2]]
    tri = np.unique(tri, axis=0)

    profile = np.full((p.n_clusters, p.n_attributes), 0.03)
    for c in range(p.n_clusters):
        profile[c, rng.choice(p.n_attributes, min(p.attrs_per_cluster, p.n_attributes), replace=False)] = 0.8
    attrs = rng.random((n, p.n_attributes)) < profile[cluster]

    proj = rng.normal(size=(p.latent_dim, p.image_dim)) / np.sqrt(p.latent_dim)
    image = z @ proj + 0.5 * rng.normal(size=(n, p.image_dim))
    return _World(cluster, z, tri, attrs, image, _names(rng, n))


def _kg2_relation_map(p: SyntheticParams, rng: np.random.Generator) -> np.ndarray:
    """Latent relation -> KG2 relation index (0-based, before the offset): a merge then a renaming."""
    r = p.n_relations
    n_keep = max(1, r - int(round(p.kg2_relation_merge * r)))
    order = rng.permutation(r)
    target = np.empty(r, dtype=np.int64)
    target[order[:n_keep]] = np.arange(n_keep)
    target[order[n_keep:]] = rng.integers(0, n_keep, r - n_keep)
    return target


def _write_lines(path: Path, lines) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")


_PROVENANCE = """# {name}: synthetic multi-modal KG pair (mimea.data.synthetic, generator version {version})

Generated by `mimea.data.synthetic.generate` with the parameters in `dataset.json`; see docs/data.md for the
design and the measured signal of each modality. Not a benchmark: never report its numbers as FBDB15K/FBYG15K.

| | KG1 | KG2 |
|---|---|---|
| entities | {n1} | {n2} |
| relation triples | {t1} | {t2} |
| entities with images | {i1} | {i2} |
| alignment links | {links} | |

## Deviations from the original benchmark (read before using)

1. **Synthetic data, not a benchmark.** Every modality is generated from latent clusters and vectors.
2. **Image features are synthetic.** `pkls/{name}_id_img_feature_dict.pkl` holds {image_dim}-d vectors derived
   from the latent vectors, not VGG16 features.
"""


def generate(out_root: str | Path, name: str = DEFAULT_NAME, **params) -> Path:
    """Write a synthetic dataset to ``out_root/name`` (+ ``out_root/pkls``); return the dataset folder.

    ``params`` are :class:`SyntheticParams` fields (``seed``, ``n_latent``, ``image_noise``...).
    """
    p = SyntheticParams(**params)
    rng = np.random.default_rng(p.seed)
    w = _world(p, rng)
    n = p.n_latent

    u = rng.random(n)
    in1 = (u < p.overlap) | ((u >= p.overlap) & (u < p.overlap + (1 - p.overlap) / 2))
    in2 = (u < p.overlap) | (u >= p.overlap + (1 - p.overlap) / 2)
    members = {1: rng.permutation(np.flatnonzero(in1)), 2: rng.permutation(np.flatnonzero(in2))}
    n1, n2 = len(members[1]), len(members[2])
    gid = {1: np.full(n, -1, dtype=np.int64), 2: np.full(n, -1, dtype=np.int64)}
    gid[1][members[1]] = np.arange(n1)
    gid[2][members[2]] = n1 + np.arange(n2)

    rel_map = {1: rng.permutation(p.n_relations), 2: p.n_relations + _kg2_relation_map(p, rng)}
    attr_name = {
        1: [f"<http://kg1.example.org/property/P{j:03d}>" for j in rng.permutation(p.n_attributes)],
        2: [f"<http://kg2.example.org/ontology/attr_{j}>" for j in rng.permutation(p.n_attributes)],
    }
    value_dir = rng.normal(size=(p.latent_dim, p.n_attributes))
    values = w.z @ value_dir * 10.0 + 100.0
    tokens = rng.choice(16 ** 10, size=n1 + n2, replace=False)

    folder = Path(out_root) / name
    (folder / "norm").mkdir(parents=True, exist_ok=True)
    (folder / "extra").mkdir(parents=True, exist_ok=True)
    ent_strings = {1: [f"/s/{tokens[i]:010x}" for i in range(n1)],
                   2: [f"<http://kg2.example.org/resource/E{tokens[n1 + i]:010x}>" for i in range(n2)]}
    img_ids, img_rows, counts = [], [], {}
    image_scale = w.image.std()
    for k in (1, 2):
        lat = members[k]                                  # latent index of each local id
        _write_lines(folder / "norm" / f"ent_ids_{k}",
                     (f"{gid[k][e]}\t{s}" for e, s in zip(lat, ent_strings[k])))
        keep = (gid[k][w.triples[:, 0]] >= 0) & (gid[k][w.triples[:, 2]] >= 0)
        keep &= rng.random(len(w.triples)) < p.edge_keep
        tri = w.triples[keep]
        tri = tri[rng.permutation(len(tri))]
        _write_lines(folder / "norm" / f"triples_{k}",
                     (f"{gid[k][h]}\t{rel_map[k][r]}\t{gid[k][t]}" for h, r, t in tri))
        has_any = rng.random(len(lat)) >= p.attr_missing
        kept = (rng.random((len(lat), p.n_attributes)) < p.attr_keep) & w.attrs[lat] & has_any[:, None]
        attr_lines, value_lines = [], []
        for row, e in enumerate(lat):
            cols = np.flatnonzero(kept[row])
            if len(cols):
                attr_lines.append("\t".join([ent_strings[k][row]] + [attr_name[k][a] for a in cols]))
                noise = 1.0 + 0.02 * rng.normal(size=len(cols))
                value_lines.extend(f"{gid[k][e]}\t{attr_name[k][a]}\t{values[e, a] * f:.6g}"
                                   for a, f in zip(cols, noise))
        _write_lines(folder / "norm" / f"training_attrs_{k}", attr_lines)
        _write_lines(folder / "extra" / f"attr_values_{k}", value_lines)
        names = [w.names[e] if k == 1 else _noisy(rng, w.names[e], p.name_noise) for e in lat]
        _write_lines(folder / "extra" / f"names_{k}", (f"{gid[k][e]}\t{s}" for e, s in zip(lat, names)))
        has_img = rng.random(len(lat)) >= p.image_missing
        feats = w.image[lat] + p.image_noise * image_scale * rng.normal(size=(len(lat), p.image_dim))
        ids = gid[k][lat][has_img]
        _write_lines(folder / "extra" / f"image_index_{k}", (str(i) for i in np.sort(ids)))
        img_ids.append(ids)
        img_rows.append(feats[has_img])
        counts[k] = (len(lat), len(tri), int(has_img.sum()))

    shared = np.flatnonzero(in1 & in2)
    shared = shared[rng.permutation(len(shared))]
    _write_lines(folder / "norm" / "ill_ent_ids", (f"{gid[1][e]}\t{gid[2][e]}" for e in shared))

    ids = np.concatenate(img_ids)
    order = np.argsort(ids)
    write_image_pickle(Path(out_root) / "pkls" / (IMAGE_STEM.format(name=name) + ".pkl"),
                       ids[order], np.concatenate(img_rows)[order].astype(np.float32))
    meta = {"generator": "mimea.data.synthetic", "version": GENERATOR_VERSION, "image_features": "synthetic",
            "params": asdict(p)}
    (folder / "extra" / "dataset.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n",
                                                   encoding="utf-8")
    (folder / "extra" / "PROVENANCE.md").write_text(_PROVENANCE.format(
        name=name, version=GENERATOR_VERSION, n1=counts[1][0], n2=counts[2][0], t1=counts[1][1],
        t2=counts[2][1], i1=counts[1][2], i2=counts[2][2], links=len(shared), image_dim=p.image_dim),
        encoding="utf-8")
    return folder


def params_key(name: str = DEFAULT_NAME, **params) -> str:
    """Hash of the resolved parameters, name and generator version: the cache folder's key."""
    resolved = {"version": GENERATOR_VERSION, "name": name, "params": asdict(SyntheticParams(**params))}
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_root() -> Path:
    """``$MIMEA_CACHE_DIR/synthetic``, else ``~/.cache/mimea/synthetic``."""
    base = os.environ.get("MIMEA_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "mimea") / "synthetic"


def _share(folder: Path) -> None:
    """Folders 0755, files 0644 (mkdtemp makes 0700): the cache is shared and read like the run store."""
    os.chmod(folder, 0o755)
    for base, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(base, d), 0o755)
        for f in files:
            os.chmod(os.path.join(base, f), 0o644)


def ensure_synthetic(cache_root: str | Path | None = None, name: str = DEFAULT_NAME,
                     **params) -> tuple[Path, str]:
    """Generate once into ``cache_root/synthetic-<key>`` (atomic rename of a temp folder); return (root, name).

    ``params`` are :class:`SyntheticParams` fields; unknown ones raise ``TypeError``.
    """
    known = {f.name for f in fields(SyntheticParams)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(f"unknown synthetic parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    cache_root = Path(cache_root) if cache_root is not None else default_cache_root()
    root = cache_root / f"synthetic-{params_key(name, **params)}"
    if (root / name / "extra" / "dataset.json").is_file():
        return root, name
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-synthetic-", dir=cache_root))
    try:
        generate(tmp, name, **params)
        _share(tmp)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / name / "extra" / "dataset.json").is_file():  # not a concurrent writer: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root, name
