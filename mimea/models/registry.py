"""Resolve a model class by name (PyKEEN-style), and say where each one came from.

MIMEA registers itself here; the baselines live in the top-level ``baselines`` package and register through
the ``mimea.models`` entry-point group declared in ``pyproject.toml``, so this lower layer never imports the
higher one. Any installed distribution can add a model the same way (``docs/extending.md``).

Two different classes under one name (a plugin registering ``meaformer`` again, two plugins with one name) is
an error naming both sources, never a silent override. A plugin that fails to import is skipped with one
logged warning naming it, so it never hides the others.
"""
from __future__ import annotations

import functools
import logging
from importlib import import_module
from importlib.metadata import entry_points, packages_distributions

from mimea.models.base import AlignmentModel

log = logging.getLogger(__name__)

GROUP = "mimea.models"
BUILTIN = "builtin"
#: top-level packages of this distribution: their models are reported as "builtin"
_BUILTIN_PACKAGES = frozenset({"mimea", "baselines"})
_REGISTRY: dict[str, type[AlignmentModel]] = {}

#: ``profile_defaults`` entries for the lineage's loaders (EVA, MCLEA, MEAformer) in the profiles that keep the
#: authors' settings: a missing image feature is a draw from the present ones' per-dimension normal (their
#: ``load_img``), not the harness's zero-and-mask.
AUTHORS_DATA: dict[str, dict] = {p: {"data": {"missing_image": "random"}} for p in ("paper", "authors")}
# Fallback when the package is used from a source checkout without being installed (entry points absent).
_BUILTIN_MODULES = ("mimea.models.mimea", "baselines")
#: entry points (name = value) already warned about, so a broken plugin is reported once per process
_WARNED: set[str] = set()


class ModelNameClash(ValueError):
    """Two different classes registered under one model name."""


@functools.lru_cache(maxsize=None)
def _distributions() -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in packages_distributions().items()}


def source(cls: type) -> str:
    """Where a model class comes from: ``builtin``, ``<distribution> (<module>)``, or ``module <module>``."""
    module = cls.__module__
    top = module.split(".")[0]
    if top in _BUILTIN_PACKAGES:
        return BUILTIN
    dists = _distributions().get(top)
    return f"{dists[0]} ({module})" if dists else f"module {module}"


def _where(cls: type) -> str:
    return f"{source(cls)}: {cls.__module__}.{cls.__qualname__}"


def register(cls: type[AlignmentModel]) -> type[AlignmentModel]:
    """Class decorator: ``@register`` adds the class under ``cls.name``.

    Registering the same class again (same module and qualified name, e.g. a reloaded module) replaces it;
    another class under a taken name raises :class:`ModelNameClash` naming both sources.
    """
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    other = _REGISTRY.get(cls.name)
    if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ModelNameClash(f"model name {cls.name!r} registered twice: by {_where(other)} and by {_where(cls)}; "
                             f"rename one (its class attribute `name`) or uninstall one")
    _REGISTRY[cls.name] = cls
    return cls


def _load_plugins() -> None:
    for ep in entry_points(group=GROUP):
        try:
            ep.load()
        except ModelNameClash:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            key = f"{ep.name} = {ep.value}"
            if key not in _WARNED:
                _WARNED.add(key)
                dist = getattr(ep.dist, "name", None) or "unknown distribution"
                log.warning("model plugin %s from %s failed to load and is skipped: %s: %s", key, dist,
                            type(exc).__name__, exc)
    for mod in _BUILTIN_MODULES:
        try:
            import_module(mod)
        except ImportError:
            continue


def available() -> list[str]:
    """Names of every registered model."""
    _load_plugins()
    return sorted(_REGISTRY)


def sources() -> dict[str, str]:
    """Every registered model name -> where it came from (see :func:`source`)."""
    _load_plugins()
    return {name: source(_REGISTRY[name]) for name in sorted(_REGISTRY)}


def get(name: str) -> type[AlignmentModel]:
    """The model class registered as ``name``; a clear error listing the known names otherwise."""
    if name not in _REGISTRY:
        _load_plugins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
