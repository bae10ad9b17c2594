"""Resolve a model class by name (PyKEEN-style).

MIMEA registers itself here; the baselines live in the top-level ``baselines`` package and register
through the ``mimea.models`` entry-point group declared in ``pyproject.toml``, so this lower layer
never imports the higher one.
"""
from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from mimea.models.base import AlignmentModel

_REGISTRY: dict[str, type[AlignmentModel]] = {}

#: ``profile_defaults`` entries for the lineage's loaders (EVA, MCLEA, MEAformer) in the profiles that keep the
#: authors' settings: a missing image feature is a draw from the present ones' per-dimension normal (their
#: ``load_img``), not the harness's zero-and-mask.
AUTHORS_DATA: dict[str, dict] = {p: {"data": {"missing_image": "random"}} for p in ("paper", "authors")}
# Fallback when the package is used from a source checkout without being installed (entry points absent).
_BUILTIN_MODULES = ("mimea.models.mimea", "baselines")


def register(cls: type[AlignmentModel]) -> type[AlignmentModel]:
    """Class decorator: ``@register`` adds the class under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"model name {cls.name!r} registered twice ({other.__qualname__}, {cls.__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def _load_plugins() -> None:
    for ep in entry_points(group="mimea.models"):
        try:
            ep.load()
        except ImportError:  # a broken optional plugin must not hide the others
            continue
    for mod in _BUILTIN_MODULES:
        try:
            import_module(mod)
        except ImportError:
            continue


def available() -> list[str]:
    """Names of every registered model."""
    _load_plugins()
    return sorted(_REGISTRY)


def get(name: str) -> type[AlignmentModel]:
    """The model class registered as ``name``; a clear error listing the known names otherwise."""
    if name not in _REGISTRY:
        _load_plugins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
