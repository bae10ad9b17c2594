"""Per-entity feature matrices, built as the MCLEA/MEAformer lineage builds them.

Read from the authors' code (MCLEA ``src/Load.py``; MEAformer ``src/data.py``, the same functions):

* ``load_relation(e, KG, topR=1000)``: the ``topR`` most frequent relation ids over *all* triples of both KGs
  (``Counter.most_common``: by count, ties by first appearance in ``triples_1`` then ``triples_2``, duplicate
  lines counted); each triple adds 1 to its relation's column for the head **and** 1 for the tail: one joint
  bag, raw counts, no normalisation (a self-loop counts twice). -> :func:`relation_features`.
* ``load_attr(fns, e, ent2id, topA=1000)``: the ``topA`` most frequent attribute names over the lines of
  ``training_attrs_1`` then ``_2`` (``sorted(cnt, key=cnt.get, reverse=True)``, stable: ties by first
  appearance); multi-hot 0/1, no normalisation. -> :func:`attribute_features`.
* ``load_img``: entities without a feature get ``np.random.normal(mean, std)`` of the present features (per
  dimension); the models then L2-normalise every row (``F.normalize``). -> :func:`image_matrix`.

Deviations, all deliberate:

* Width: MCLEA pads both bags to exactly ``top_k`` columns (zero columns when there are fewer names);
  MEAformer pads relations but not attributes. Here both are ``min(top_k, distinct)`` wide. A zero column adds
  nothing to a linear layer's output, so only the parameter count differs.
* The ``random`` image fill draws from ``np.random.default_rng(image_seed)`` instead of the global legacy stream,
  so it does not depend on what ran before. The default policy is ``mask`` (zeros, ``img_mask`` False).
* Image rows are L2-normalised here (the lineage does it in the model); zero rows stay zero.
"""
from __future__ import annotations

import logging
import math
import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

MISSING_IMAGE_POLICIES = ("mask", "random")
#: Width of the hashed character-bigram name feature.
NAME_HASH_DIM = 256


def top_k_by_frequency(values: np.ndarray, k: int) -> np.ndarray:
    """Distinct ``values`` by decreasing count, ties by first appearance (``Counter.most_common``); first ``k``."""
    uniq, first, counts = np.unique(values, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    return uniq[order[:k]]


def relation_features(triples: np.ndarray, n_ent: int, top_k: int = 1000) -> np.ndarray:
    """Bag of the ``top_k`` relations: ``[n_ent, min(top_k, R)]`` float32 counts over head and tail roles."""
    if len(triples) == 0:
        return np.zeros((n_ent, 0), dtype=np.float32)
    rels = triples[:, 1]
    top = top_k_by_frequency(rels, top_k)
    width = len(top)
    col = np.full(int(rels.max()) + 1, -1, dtype=np.int64)
    col[top] = np.arange(width)
    c = col[rels]
    keep = c >= 0
    keys = np.concatenate([triples[keep, 0] * width + c[keep], triples[keep, 2] * width + c[keep]])
    # unique-with-counts instead of bincount over n_ent*width bins: FBDB15K is 27,793 x 1,000.
    uniq, counts = np.unique(keys, return_counts=True)
    mat = np.zeros((n_ent, width), dtype=np.float32)
    mat.reshape(-1)[uniq] = counts
    return mat


def attribute_ranking(records: Iterable[tuple[int, list[str]]], top_k: int = 1000) -> list[str]:
    """The ``top_k`` most frequent attribute names (the columns of :func:`attribute_features`, in order)."""
    cnt: dict[str, int] = {}
    for _, names in records:
        for a in names:
            cnt[a] = cnt.get(a, 0) + 1
    return sorted(cnt, key=cnt.__getitem__, reverse=True)[:top_k]  # stable: ties keep first appearance


def attribute_features(records: Iterable[tuple[int, list[str]]], n_ent: int, top_k: int = 1000) -> np.ndarray:
    """Multi-hot of the ``top_k`` attribute names: ``[n_ent, min(top_k, A)]`` float32.

    ``records``: ``(entity id, attribute names)`` per ``training_attrs`` line, KG1's file then KG2's, in order.
    """
    records = list(records)
    attr2id = {a: i for i, a in enumerate(attribute_ranking(records, top_k))}
    mat = np.zeros((n_ent, len(attr2id)), dtype=np.float32)
    rows, cols = [], []
    for e, names in records:
        for a in names:
            j = attr2id.get(a)
            if j is not None:
                rows.append(e)
                cols.append(j)
    mat[rows, cols] = 1.0
    return mat


_DATE = re.compile(r"^(-?\d{1,4})-\d{2}(-\d{2})?")


def numeric_value(text: str) -> float | None:
    """MSNEA's reading of a lexical value: a float, a date cut to its year, ``#`` stripped; None otherwise."""
    t = text.strip().strip('"').replace("#", "")
    try:
        v = float(t)
    except ValueError:
        m = _DATE.match(t)
        if not m:
            return None
        v = float(m.group(1))
    return v if math.isfinite(v) else None


def attribute_values(rows: Iterable[tuple[int, str, str]], columns: list[str], n_ent: int) -> np.ndarray:
    """``[n_ent, len(columns)]`` float32: the numeric value of each (entity, attribute) of ``extra/attr_values_*``
    (the first parsable one when several), 0 where none; columns as :func:`attribute_ranking`."""
    col = {a: j for j, a in enumerate(columns)}
    mat = np.zeros((n_ent, len(columns)), dtype=np.float32)
    seen = np.zeros((n_ent, len(columns)), dtype=bool)
    for e, a, text in rows:
        j = col.get(a)
        if j is None or seen[e, j]:
            continue
        v = numeric_value(text)
        if v is not None:
            mat[e, j] = np.float32(np.clip(v, -3.0e38, 3.0e38))
            seen[e, j] = True
    return mat


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm (``torch.nn.functional.normalize`` semantics: zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)   # one float32 result (no extra copy of a large image matrix)


def _column_mean_std(x: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (population) std in float64, in row blocks: no float64 copy of a large matrix."""
    n = x.shape[0]
    total = np.zeros(x.shape[1], dtype=np.float64)
    for i in range(0, n, block):
        total += x[i:i + block].sum(axis=0, dtype=np.float64)
    mean = total / n
    sq = np.zeros(x.shape[1], dtype=np.float64)
    for i in range(0, n, block):
        sq += np.square(x[i:i + block] - mean).sum(axis=0)
    return mean, np.sqrt(sq / n)


def image_matrix(ids: np.ndarray, features: np.ndarray, n_ent: int, policy: str = "mask",
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``[n_ent, D]`` L2-normalised image features and the mask of entities with a real one.

    ``policy``: ``"mask"``: missing rows are zeros; ``"random"``: missing rows are drawn from a normal with the
    per-dimension mean and std of the present features (MEAformer/MCLEA ``load_img``), seeded by ``seed``.
    """
    if policy not in MISSING_IMAGE_POLICIES:
        raise ValueError(f"missing-image policy {policy!r}; choose one of {', '.join(MISSING_IMAGE_POLICIES)}")
    mask = np.zeros(n_ent, dtype=bool)
    mask[ids] = True
    img = np.zeros((n_ent, features.shape[1]), dtype=np.float32)
    img[ids] = features
    n_missing = int((~mask).sum())
    if policy == "random" and n_missing:
        mean, std = _column_mean_std(features)
        rng = np.random.default_rng(seed)
        img[~mask] = rng.normal(mean, std, size=(n_missing, features.shape[1]))
    log.info("image features: %d of %d entities have one; missing-image policy %r%s", int(mask.sum()), n_ent,
             policy, f" (seed {seed})" if policy == "random" else "")
    img /= np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)   # in place: zero rows stay zero
    return img, mask


def _bigrams(name: str) -> list[str]:
    text = " ".join(unicodedata.normalize("NFKC", name).casefold().split())
    padded = f"^{text}$"
    return [padded[i:i + 2] for i in range(len(padded) - 1)]


def name_features(names: Mapping[int, str], n_ent: int, dim: int = NAME_HASH_DIM) -> np.ndarray:
    """Hashed character-bigram counts of entity names, L2-normalised: ``[n_ent, dim]`` float32.

    Each name is NFKC-normalised, case-folded, its whitespace collapsed, wrapped in ``^...$``; each character
    bigram adds 1 to column ``crc32(bigram as UTF-8) % dim``. Deterministic across runs and machines (no Python
    ``hash``). Entities without a name get a zero row.
    """
    mat = np.zeros((n_ent, dim), dtype=np.float32)
    for e, name in names.items():
        for bg in _bigrams(name):
            mat[e, zlib.crc32(bg.encode("utf-8")) % dim] += 1.0
    return l2_normalise(mat)
