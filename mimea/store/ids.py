"""Stable run ids: a hash of the resolved config, so a sweep recognises runs it has already finished."""
from __future__ import annotations

import hashlib
import json
from typing import Any

# Keys that do not change what a run computes, so they do not enter its id.
_NOT_IN_ID = {("train", "progress"), ("train", "device"), ("train", "threads"), ("eval", "export_predictions"),
              ("data", "data_dir")}

# Keys added to the config after runs were stored, with the value every earlier run implicitly had: at that value
# they stay out of the id, so the stored runs keep their ids (and are reused); any other value enters it.
_ADDED_LATER = {("eval", "valid_pool"): "valid", ("eval", "test_curve"): False, ("eval", "valid_pool_compare"): None,
                ("train", "optimizer"): "adamw", ("train", "schedule"): "constant", ("train", "warmup"): 0.0,
                ("train", "accumulate"): "none", ("train", "schedule_epochs"): None}
# Top-level keys added later, likewise: a model's code revision (RunConfig.revision; 0 before it existed).
_TOP_ADDED_LATER = {"revision": 0}
# The same for a model's own Config fields: (model, field) -> the value earlier runs implicitly had.
_MODEL_ADDED_LATER = {("mimea", "ot_target"): "joint", ("mimea", "fusion_span"): None,
                      ("mimea", "fusion_holdout"): 0.0}


def canonical(config: dict[str, Any]) -> str:
    """Canonical JSON of a config dict with the id-neutral keys removed."""
    d = json.loads(json.dumps(config, sort_keys=True))
    for section, key in _NOT_IN_ID:
        if isinstance(d.get(section), dict):
            d[section].pop(key, None)
    for (section, key), old in _ADDED_LATER.items():
        if isinstance(d.get(section), dict) and d[section].get(key, old) == old:
            d[section].pop(key, None)
    for key, old in _TOP_ADDED_LATER.items():
        if d.get(key, old) == old:
            d.pop(key, None)
    mc = d.get("model_config")
    for (model, key), old in _MODEL_ADDED_LATER.items():
        if d.get("model") == model and isinstance(mc, dict) and mc.get(key, old) == old:
            mc.pop(key, None)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def run_id(config: dict[str, Any], data_fingerprint: str | None = None) -> str:
    """``<model>-<dataset>-r<ratio>-s<seed>-<12 hex>``: readable and unique per resolved config and data.

    ``data_fingerprint`` (:func:`mimea.data.fingerprint.fingerprint`: the content of what the run reads, not its
    path) enters the hash, so the same config on other data is another run. Use
    :func:`mimea.pipeline.run_identity` to get both from a config.
    """
    text = canonical(config)
    if data_fingerprint:
        text += f"|data={data_fingerprint}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    data = config.get("data", {})
    ratio = config.get("split", {}).get("ratio", 0)
    return f"{config.get('model', 'model')}-{data.get('dataset', 'data')}-r{int(round(ratio * 100))}" \
           f"-s{config.get('seed', 0)}-{digest}"
