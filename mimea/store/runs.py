"""One folder per run under ``<root>/runs/<run_id>/`` (PyKEEN/LibKGE style).

Files, each written atomically:

* ``config.json``    the fully resolved RunConfig (written first, when the run starts)
* ``split.json``     the train / valid / test links the run used
* ``checkpoint.pt``  trainer state for resume (weights + optimiser + history); removed when the run finishes
* ``best.pt``        the model weights selected on validation
* ``metadata.json``  versions, git commit, device, threads, wall time, peak memory, protocol, data provenance
* ``results.json``   test + validation metrics and the per-epoch curve; written LAST: its presence marks a
                     finished run, so a resumed sweep skips it and never runs it twice. The curve is written one
                     epoch per line with its floats at 7 significant digits (the losses are float32 values),
                     so a 1,000-epoch record stays ~100 KB in git; the metrics are written in full.
* ``failed.json``    the one-line error of the last attempt when it raised (removed by the next attempt)

A damaged file (truncated, empty, garbage) raises a one-line DamagedRunError naming it; see mimea.store.damage.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch

from mimea.store.atomic import _clean, atomic_write_bytes, atomic_write_json, atomic_write_text
from mimea.store.damage import load_checkpoint, read_run_json


def _round(obj: Any, digits: int = 7) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v, digits) for v in obj]
    return obj


def results_text(results: dict[str, Any]) -> str:
    """``results.json``'s text: the metrics indented in full, the ``curve`` one compact epoch per line."""
    results = _clean(results)
    curve = results.get("curve")
    if not isinstance(curve, list):
        return json.dumps(results, indent=2, sort_keys=True, allow_nan=False) + "\n"
    marker = "__curve_placeholder__"
    head = json.dumps({**results, "curve": marker}, indent=2, sort_keys=True, allow_nan=False)
    lines = ",\n    ".join(json.dumps(_round(e), sort_keys=True, allow_nan=False, separators=(",", ":"))
                           for e in curve)
    return head.replace(json.dumps(marker), "[\n    " + lines + "\n  ]" if curve else "[]") + "\n"


class RunStore:
    def __init__(self, root: str | Path = "results"):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    def path(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def is_finished(self, run_id: str) -> bool:
        return (self.path(run_id) / "results.json").is_file()

    def start(self, run_id: str, config: dict[str, Any]) -> Path:
        """Create the run folder and write its config (idempotent for a resumed run)."""
        p = self.path(run_id)
        p.mkdir(parents=True, exist_ok=True)
        atomic_write_json(p / "config.json", portable_config(config))
        return p

    def write_json(self, run_id: str, name: str, obj: Any) -> None:
        atomic_write_json(self.path(run_id) / name, obj)

    def read_json(self, run_id: str, name: str) -> Any:
        """A run file's JSON; a truncated or garbage file is a DamagedRunError naming it (mimea.store.damage)."""
        return read_run_json(self.path(run_id) / name)

    # -- checkpoints: torch.save into memory, then an atomic write; load with weights_only=True ---------------
    def save_checkpoint(self, run_id: str, state: dict[str, Any], name: str = "checkpoint.pt") -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path(run_id) / name, buf.getvalue())

    def load_checkpoint(self, run_id: str, name: str = "checkpoint.pt", map_location=None) -> dict | None:
        return load_checkpoint(self.path(run_id) / name, map_location=map_location)  # damaged: DamagedRunError

    def drop_checkpoint(self, run_id: str, name: str = "checkpoint.pt") -> None:
        f = self.path(run_id) / name
        if f.exists():
            f.unlink()

    def finish(self, run_id: str, results: dict[str, Any], metadata: dict[str, Any]) -> None:
        """Write metadata, then results (the finished marker), then drop the resume checkpoint."""
        atomic_write_json(self.path(run_id) / "metadata.json", metadata)
        atomic_write_text(self.path(run_id) / "results.json", results_text(results))
        self.drop_checkpoint(run_id)

    def remove(self, run_id: str) -> None:
        shutil.rmtree(self.path(run_id), ignore_errors=True)

    # -- reading back -------------------------------------------------------------------------------------------
    def finished_ids(self) -> Iterator[str]:
        if not self.runs_dir.is_dir():
            return iter(())
        return iter(sorted(p.name for p in self.runs_dir.iterdir() if (p / "results.json").is_file()))

    def load(self, run_id: str) -> dict[str, Any]:
        """config, results, metadata of one finished run."""
        return {name: self.read_json(run_id, f"{name}.json") for name in ("config", "results", "metadata")}

    def frame(self):
        """All finished runs as a pandas DataFrame, one row per run (flattened config, test metrics, metadata)."""
        import pandas as pd

        rows = []
        for rid in self.finished_ids():
            run = self.load(rid)
            row: dict[str, Any] = {"run_id": rid}
            cfg = run["config"]
            row.update({"model": cfg["model"], "dataset": cfg["data"]["dataset"], "ratio": cfg["split"]["ratio"],
                        "seed": cfg["seed"], "profile": cfg["profile"]})
            row.update({f"model_config.{k}": _hashable(v) for k, v in cfg["model_config"].items()})
            row.update({f"train.{k}": _hashable(v) for k, v in cfg["train"].items()})
            res = run["results"]
            for split in ("test", "valid"):
                for direction, metrics in (res.get(split) or {}).items():
                    if isinstance(metrics, dict):
                        for m, v in metrics.items():
                            row[f"{split}.{direction}.{m}"] = v
            meta = run["metadata"]
            for key in ("wall_time_s", "time_per_epoch_s", "peak_memory_mb", "n_parameters", "epochs_run",
                        "stopped_by", "device"):
                row[key] = meta.get(key)
            for k, v in (meta.get("protocol") or {}).items():
                row[f"protocol.{k}"] = _hashable(v)
            rows.append(row)
        return pd.DataFrame(rows)


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as stored: ``data.data_dir`` relative to the working directory, never an absolute path (run
    records are committed and move between machines; the run id covers the data by content, not by path)."""
    data = config.get("data")
    if not isinstance(data, dict) or not data.get("data_dir"):
        return config
    rel = os.path.relpath(str(data["data_dir"]))
    return {**config, "data": {**data, "data_dir": Path(rel).as_posix()}}


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
