"""Data layer: the validated multi-modal KG pair (:class:`MMKGPair`), its loader, features, splits, statistics
and the synthetic default dataset. See ``docs/data.md``.

The names below are imported lazily, so ``import mimea.data.pair`` stays as light as it is.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "MMKGPair": "pair",
    "DataError": "errors",
    "load_pair": "loader",
    "load_folder": "loader",
    "read_folder": "loader",
    "Split": "splits",
    "make_split": "splits",
    "split_to_dict": "splits",
    "split_from_dict": "splits",
    "dataset_statistics": "stats",
    "format_statistics": "stats",
    "ensure_synthetic": "synthetic",
    "generate": "synthetic",
    "convert_mmkb": "convert_mmkb",
    "extract_image_features": "image_features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
