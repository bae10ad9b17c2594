"""Checks of a resolved RunConfig, before anything is loaded, trained or written.

:func:`check_config` runs at the end of :func:`mimea.training.config.resolve` (so ``mimea train``, ``mimea tune``,
``benchmarks/run.py`` all get it) and on a config file read by ``python -m mimea.pipeline``. Every problem is one
:class:`ConfigError` whose message is one line naming the key, the value and what was expected, e.g.
``train.lr='abc': expected a float``.

Types come from the dataclass field annotations (``int``, ``float``, ``bool``, ``str``, ``X | None``,
``tuple[str, ...]``): a float field accepts an int, an int field does not accept a bool or a float, a tuple field
accepts a JSON list. The model's own Config is checked the same way, and ``data.synthetic`` against the
synthetic generator's parameters (:class:`mimea.data.synthetic.SyntheticParams`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any, Union

#: Validation metrics a run can select on (higher is better; ``mr`` is lower-better, so it is not one).
SELECT_METRICS = ("hits@1", "hits@5", "hits@10", "mrr")
SIMILARITIES = ("cosine", "csls")
VALID_POOLS = ("valid", "unseen")
SPLIT_MODES = ("lineage", "seeded")
MISSING_IMAGE = ("mask", "random")


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# -- types --------------------------------------------------------------------------------------------------------

def _describe(tp: Any) -> str:
    """``int`` -> 'an int', ``float | None`` -> 'a float or null', ``tuple[str, ...]`` -> 'a list of str'."""
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"a list of {args[0].__name__}" if args else "a list"
    if tp is dict or origin is dict:
        return "an object ({...})"
    name = getattr(tp, "__name__", str(tp))
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"


def _fits(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return not args or all(_fits(v, args[0]) for v in value)
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # an annotation this checker does not know: not checked


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_value(cls: type, key: str, value: Any, where: str) -> None:
    """``value`` for field ``key`` of dataclass ``cls`` fits its annotation (``where`` prefixes the key)."""
    tp = _hints(cls).get(key, Any)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}{key}={_show(value)}: expected a section "
                              f"(set its fields as {where}{key}.KEY=VALUE)")
    elif not _fits(value, tp):
        raise ConfigError(f"{where}{key}={_show(value)}: expected {_describe(tp)}")


def check_fields(obj: Any, where: str) -> None:
    """Type-check every field of dataclass instance ``obj`` against its annotation, nested sections included."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        check_value(type(obj), f.name, value, where)
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{where}{f.name}.")


def check_values(tp_hints: dict[str, Any], values: dict[str, Any], where: str, source: str = "") -> None:
    """Type-check a mapping ``values`` against ``tp_hints`` (unknown keys are an error); ``source`` (a file name
    and ``": "``) starts the message."""
    for key, value in values.items():
        if key not in tp_hints:
            raise ConfigError(f"{source}unknown key {where}{key}; known: {', '.join(sorted(tp_hints))}")
        if not _fits(value, tp_hints[key]):
            raise ConfigError(f"{source}{where}{key}={_show(value)}: expected {_describe(tp_hints[key])}")


# -- values -------------------------------------------------------------------------------------------------------

def _at_least(where: str, value: Any, low: int, note: str = "") -> None:
    if value is not None and value < low:
        raise ConfigError(f"{where}={value!r}: expected at least {low}{note}")


def _one_of(where: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}={value!r}: choose from {', '.join(allowed)}")


def check_synthetic(params: dict[str, Any], where: str = "data.synthetic.") -> None:
    """``data.synthetic`` keys and types against the generator's parameters, then its own range checks."""
    from mimea.data.synthetic import SyntheticParams

    check_values(_hints(SyntheticParams), params, where)
    try:
        SyntheticParams(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where.rstrip('.')}: {exc}") from None


def check_device(spec: str, where: str = "train.device") -> None:
    """``auto``, ``cpu``, or an accelerator this torch build and machine have."""
    import torch

    if spec == "auto":
        return
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{where}={spec!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:   # ROCm serves "cuda" too
            raise ConfigError(f"{where}={spec!r}: this torch build ({torch.__version__}) is CPU-only, without "
                              f"CUDA; use --device cpu (or auto), or install a CUDA build (README: GPU users)")
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"{where}={spec!r}: no CUDA device is visible (torch {torch.__version__}, CUDA "
                              f"{torch.version.cuda}); use --device cpu (or auto)")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"{where}={spec!r}: only {n} CUDA device(s) are visible (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"{where}={spec!r}: MPS is not available on this machine; use --device cpu")


def check_config(cfg, *, device: bool = True) -> None:
    """Every check of a resolved :class:`~mimea.training.config.RunConfig`; raises :class:`ConfigError`."""
    from mimea.models import registry

    check_fields(cfg, "")
    t, s, e, d = cfg.train, cfg.split, cfg.eval, cfg.data
    _at_least("train.epochs", t.epochs, 1, " (a run of no epochs would be stored as finished and untrained)")
    _at_least("train.eval_every", t.eval_every, 1)
    _at_least("train.batch_size", t.batch_size, 1)
    _at_least("train.patience", t.patience, 0, " (0 = never stop early)")
    _at_least("train.il_every", t.il_every, 1)
    _at_least("train.il_commit_every", t.il_commit_every, 1)
    _at_least("train.checkpoint_every", t.checkpoint_every, 0)
    _at_least("train.threads", t.threads, 1, " (or null: torch's default)")
    if t.lr <= 0:
        raise ConfigError(f"train.lr={t.lr!r}: expected a positive float")
    if t.time_budget_s is not None and t.time_budget_s <= 0:
        raise ConfigError(f"train.time_budget_s={t.time_budget_s!r}: expected a positive number or null")
    if t.il_lr_divisor <= 0:
        raise ConfigError(f"train.il_lr_divisor={t.il_lr_divisor!r}: expected a positive float")
    _one_of("train.select_metric", t.select_metric, SELECT_METRICS)
    if not 0 < s.ratio < 1:
        raise ConfigError(f"split.ratio={s.ratio!r}: expected a share in (0, 1)")
    _one_of("split.mode", s.mode, SPLIT_MODES)
    _one_of("eval.similarity", e.similarity, SIMILARITIES)
    _one_of("eval.valid_pool", e.valid_pool, VALID_POOLS)
    if e.valid_pool_compare is not None:
        _one_of("eval.valid_pool_compare", e.valid_pool_compare, VALID_POOLS)
        if e.valid_pool_compare == e.valid_pool:
            raise ConfigError(f"eval.valid_pool_compare={e.valid_pool_compare!r} is eval.valid_pool itself: "
                              "name the other pool, or null")
    _at_least("eval.csls_k", e.csls_k, 1)
    _at_least("eval.chunk_size", e.chunk_size, 1)
    _at_least("eval.top_k_export", e.top_k_export, 1)
    _one_of("data.missing_image", d.missing_image, MISSING_IMAGE)
    _at_least("data.top_k_features", d.top_k_features, 1)
    check_synthetic(d.synthetic)
    try:
        cls = registry.get(cfg.model)
    except KeyError as exc:
        raise ConfigError(f"model={cfg.model!r}: {exc.args[0] if exc.args else 'not registered'}") from None
    check_values(_hints(cls.Config), cfg.model_config, "model_config.")
    if device:
        check_device(t.device)


# -- config files -------------------------------------------------------------------------------------------------

def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; a malformed file is one ConfigError ``FILE:LINE: message``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object ({{...}}), got {type(obj).__name__}")
    return obj


def check_config_file(path: str | Path, model: str, model_config: Any, train: Any) -> None:
    """Types of a ``--config`` file's model Config fields (and a tuned best.json's ``train``), naming the file."""
    from mimea.models import registry
    from mimea.training.config import TrainConfig

    for name, section in (("model_config", model_config), ("train", train)):
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: {name}={_show(section)}: expected an object ({{...}})")
    check_values(_hints(registry.get(model).Config), model_config, "model_config.", f"{path}: ")
    check_values(_hints(TrainConfig), train, "train.", f"{path}: ")


def config_from_file(path: str | Path):
    """A stored/queued RunConfig file (``python -m mimea.pipeline CONFIG.json``), checked."""
    from mimea.training.config import from_dict

    d = read_config_file(path)
    if "model" not in d:
        raise ConfigError(f"{path}: not a run config (no 'model' key)")
    try:
        cfg = from_dict(d)
    except TypeError as exc:  # an unknown field of a section
        raise ConfigError(f"{path}: {exc}") from None
    return cfg
