"""Train / validation / test splits of the alignment links.

``mode="lineage"`` reproduces MCLEA (``src/run.py``) and MEAformer (``src/data.py``) exactly:

    np.random.seed(42)                      # the script's seed, set before the data are read
    np.random.shuffle(ills)                 # ills: list of (kg1, kg2) tuples in ill_ent_ids order
    train_ill = ills[:int(len(ills) // 1 * rate)]
    test_ill  = ills[int(len(ills) // 1 * rate):]

``np.random.shuffle`` of a list of n pairs draws the same permutation as ``RandomState(42).permutation(n)``
(checked on FBYG15K's 11,199 links), and ``int(n // 1 * ratio)`` is computed with the same float expression,
so the test links equal theirs pair for pair and in order (e.g. FBDB15K at 0.2: 2,569 train, 10,277 test).

The lineage has no validation set (it selects checkpoints on the test links). Here the validation links are
carved from the lineage's *train* part: the last ``ceil(val_fraction * n_train)`` positions of
``np.random.default_rng(split_seed).permutation(n_train)``; ``train`` keeps the rest. Both keep the lineage's
order. Test links are never in train or validation. ``mode="seeded"`` replaces the lineage shuffle by
``np.random.default_rng(split_seed).permutation(n)`` (same rounding, same validation carving).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

SPLIT_MODES = ("lineage", "seeded")


@dataclass
class Split:
    """Link indices as ``LongTensor[n, 2]`` of (kg1 id, kg2 id); ``meta`` records how they were made."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    meta: dict = field(default_factory=dict)


def _digest(links: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(links, dtype=np.int64).tobytes()).hexdigest()[:16]


def lineage_order(n: int, seed: int = 42) -> np.ndarray:
    """The permutation ``np.random.seed(seed); np.random.shuffle(ills)`` applies to ``n`` links."""
    return np.random.RandomState(seed).permutation(n)


def make_split(links: torch.Tensor | np.ndarray, ratio: float, *, mode: str = "lineage", split_seed: int = 42,
               val_fraction: float = 0.1) -> Split:
    """Split ``links`` (``[L, 2]`` in ``ill_ent_ids`` order) into train / valid / test.

    Args:
        links: the alignment links in file order.
        ratio: share of links given as seeds (train + validation), as the lineage's ``rate``.
        mode: ``"lineage"`` (``RandomState(split_seed)`` shuffle; MCLEA/MEAformer with ``split_seed=42``) or
            ``"seeded"`` (``default_rng(split_seed)`` permutation).
        split_seed: seed of the shuffle and of the validation carving.
        val_fraction: share of the seed links held out for validation (0 = none).
    """
    if mode not in SPLIT_MODES:
        raise ValueError(f"split mode {mode!r}; choose one of {', '.join(SPLIT_MODES)}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    arr = links.cpu().numpy() if isinstance(links, torch.Tensor) else np.asarray(links)
    arr = arr.astype(np.int64).reshape(-1, 2)
    n = len(arr)
    order = lineage_order(n, split_seed) if mode == "lineage" else np.random.default_rng(split_seed).permutation(n)
    n_seed = int(n // 1 * ratio)  # the lineage's exact expression
    seed_part, test = arr[order[:n_seed]], arr[order[n_seed:]]
    n_val = math.ceil(val_fraction * n_seed)
    carve = np.random.default_rng(split_seed).permutation(n_seed)
    is_val = np.zeros(n_seed, dtype=bool)
    is_val[carve[n_seed - n_val:]] = True
    train, valid = seed_part[~is_val], seed_part[is_val]
    meta = {
        "mode": mode, "ratio": ratio, "split_seed": split_seed, "val_fraction": val_fraction,
        "n_links": n, "n_seed": n_seed, "n_train": len(train), "n_valid": len(valid), "n_test": len(test),
        "test_sha1": _digest(test),
        "recipe": ("np.random.seed(split_seed); np.random.shuffle(links); seeds = first int(n*ratio) (MCLEA/"
                   "MEAformer); valid = last ceil(val_fraction*n_seed) of default_rng(split_seed).permutation"
                   "(n_seed) of the seeds") if mode == "lineage" else
                  ("default_rng(split_seed).permutation(n); seeds = first int(n*ratio); valid carved as in "
                   "lineage mode"),
    }
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).long().reshape(-1, 2)  # noqa: E731
    return Split(as_t(train), as_t(valid), as_t(test), meta)


def split_to_dict(split: Split) -> dict:
    """A JSON-friendly dict: lists of ``[kg1, kg2]`` pairs and the meta."""
    return {"train": split.train.tolist(), "valid": split.valid.tolist(), "test": split.test.tolist(),
            "meta": dict(split.meta)}


def split_from_dict(d: dict) -> Split:
    """Inverse of :func:`split_to_dict`."""
    as_t = lambda rows: torch.tensor(rows, dtype=torch.long).reshape(-1, 2)  # noqa: E731
    return Split(as_t(d["train"]), as_t(d["valid"]), as_t(d["test"]), dict(d.get("meta", {})))
