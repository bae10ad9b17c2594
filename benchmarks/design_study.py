"""The MIMEA design study's log: every stored MIMEA variant of one (dataset, ratio, epochs) cell, VALIDATION only.

``python benchmarks/design_study.py --dataset FBDB15K --ratio 0.2 --epochs 125 [--test] [--results results]``
``python benchmarks/design_study.py --dataset FBDB15K --ratio 0.2 --epochs 125 --ablation [--baseline mclea:250]``

Reads the run store (no training, no data): every ``mimea-*`` run whose config has that dataset, seed ratio,
epoch count and ``eval.valid_pool`` (default ``unseen``), groups the runs by how their model config differs from
MIMEA's defaults (the variant), and prints a Markdown table of validation MRR / Hits@1 / Hits@10 at the selected
epoch (mean ± sample std over init seeds), the selected epoch and the weight MIMEA's fusion gives each modality
there. The test links are never read unless ``--test`` is given: the study chooses on validation and reads the
test once, for the chosen design and its ablations (issue 12, ``docs/design-log.md``).

``--ablation`` prints instead the reading of each module: for every ablation of table 4 (one module switched off),
the change in validation MRR against the full model, paired by init seed (mean ± std of the per-seed deltas), the
full model's seed-to-seed std, and whether the module *earns its place* (the mean drop is larger than that std:
issue 12's criterion); with ``--test`` the test Hits@1 change too. ``--baseline MODEL:EPOCHS`` adds a baseline's
stored runs of the same cell (e.g. MCLEA at the same quarter of its authors' epochs) to the comparison.

Each variant is one command (the design log lists them)::

    mimea train --model mimea --dataset FBDB15K --data-dir ROOT --ratio 0.2 --profile paper --epochs 125 \\
        --set eval.valid_pool=unseen --model-set cl_weighting=balanced --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable (benchmarks, mimea)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = (("mrr", "MRR"), ("hits@1", "H@1"), ("hits@10", "H@10"))


FULL = "full (defaults)"


def _defaults(model: str = "mimea") -> dict[str, Any]:
    from mimea.models import registry

    return json.loads(json.dumps(dataclasses.asdict(registry.get(model).Config())))


def variant_label(model_config: dict[str, Any], defaults: dict[str, Any], model: str = "mimea") -> str:
    """``key=value`` of every field that differs from the model's defaults (``full`` when none does). A field a run
    predates counts at the value it implicitly had (``mimea.store.ids``: e.g. ``fusion_span=None``)."""
    from mimea.store.ids import _MODEL_ADDED_LATER

    model_config = {**{k: v for (m, k), v in _MODEL_ADDED_LATER.items() if m == model}, **model_config}
    diff = [f"{k}={_short(v)}" for k, v in sorted(model_config.items()) if k in defaults and defaults[k] != v]
    return ", ".join(diff) or FULL


def _short(v: Any) -> str:
    return "+".join(map(str, v)) if isinstance(v, list) else str(v)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def collect(results: Path, dataset: str, ratio: float, epochs: int, valid_pool: str = "unseen",
            test: bool = False, model: str = "mimea") -> dict[str, list[dict[str, Any]]]:
    """variant label -> one row per finished run (seed, validation metrics, selected epoch, weights[, test])."""
    defaults = _defaults(model)
    out: dict[str, list[dict[str, Any]]] = {}
    for run in sorted((results / "runs").glob(f"{model}-*")):
        cfg, res = _read(run / "config.json"), _read(run / "results.json")
        if not cfg or not res:
            continue
        if (cfg["data"].get("dataset") != dataset or abs(cfg["split"]["ratio"] - ratio) > 1e-9
                or cfg["train"]["epochs"] != epochs or cfg["eval"].get("valid_pool", "valid") != valid_pool):
            continue
        best = res.get("best_epoch")
        at_best = next((c for c in res.get("curve", []) if c.get("epoch") == best), {})
        row = {"seed": cfg["seed"], "valid": res["valid"]["mean"], "best_epoch": best,
               "weights": {k[2:]: v for k, v in at_best.items() if k.startswith("w_")}}
        if test:
            row["test"] = res["test"]["l2r"]
        rows = out.setdefault(variant_label(cfg["model_config"], defaults, model), [])
        if all(r["seed"] != row["seed"] for r in rows):  # one run per seed (a re-run under a new id would double it)
            rows.append(row)
    return out


def _mean_std(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


def render(rows: dict[str, list[dict[str, Any]]], test: bool = False) -> str:
    head = ["Variant (vs MIMEA's defaults)", "seeds"] + [f"valid {n}" for _, n in METRICS]
    head += ["best epoch", "fusion weights at it"]
    if test:
        head += [f"test {n}" for _, n in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(rows, key=lambda k: -statistics.mean(r["valid"]["mrr"] for r in rows[k]))
    for label in order:
        runs = sorted(rows[label], key=lambda r: r["seed"])
        cells = [label, ",".join(str(r["seed"]) for r in runs)]
        cells += [_mean_std([r["valid"][m] for r in runs]) for m, _ in METRICS]
        cells.append(",".join(str(r["best_epoch"]) for r in runs))
        w = runs[0]["weights"]
        cells.append(" ".join(f"{k} {v:.2f}" for k, v in w.items()) or "-")
        if test:
            cells += [_mean_std([r["test"][m] for r in runs]) for m, _ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_labels() -> list[tuple[str, str]]:
    """(variant label as :func:`collect` names it, table 4's row label) for each module ablation of table 4."""
    from benchmarks.tables.table4_ablation import MODULES

    defaults = _defaults()
    return [(variant_label(json.loads(json.dumps({**defaults, **values})), defaults), label)
            for values, label in MODULES]


def ablation(rows: dict[str, list[dict[str, Any]]], test: bool = False) -> list[dict[str, Any]]:
    """Per module: the seeds it shares with the full model, the mean ± std of the per-seed change in validation MRR
    (and test H@1), the full model's seed std, and whether the drop exceeds it (``earns``; None under 2 seeds)."""
    full = {r["seed"]: r for r in rows.get(FULL, [])}
    sd_full = statistics.stdev(r["valid"]["mrr"] for r in full.values()) if len(full) > 1 else None
    out = []
    for key, label in ablation_labels():
        runs = {r["seed"]: r for r in rows.get(key, []) if r["seed"] in full}
        seeds = sorted(runs)
        d_valid = [runs[s]["valid"]["mrr"] - full[s]["valid"]["mrr"] for s in seeds]
        item: dict[str, Any] = {"module": label, "variant": key, "seeds": seeds, "d_valid_mrr": d_valid,
                                "sd_full": sd_full}
        if test:
            item["d_test_h1"] = [runs[s]["test"]["hits@1"] - full[s]["test"]["hits@1"] for s in seeds]
        item["earns"] = (statistics.mean(d_valid) < -sd_full
                         if d_valid and sd_full is not None and len(seeds) > 1 else None)
        out.append(item)
    return out


def _signed(xs: list[float]) -> str:
    if not xs:
        return "--"
    if len(xs) == 1:
        return f"{xs[0]:+.3f}"
    return f"{statistics.mean(xs):+.3f} ± {statistics.stdev(xs):.3f}"


def render_ablation(rows: dict[str, list[dict[str, Any]]], baselines: dict[str, list[dict[str, Any]]],
                    test: bool = False) -> str:
    head = ["", "seeds", "valid MRR"] + (["test H@1", "test MRR"] if test else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in [("MIMEA, full", rows.get(FULL, []))] + list(baselines.items()):
        cells = [name, ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"])) or "--",
                 _mean_std([r["valid"]["mrr"] for r in runs]) if runs else "--"]
        if test:
            cells += [_mean_std([r["test"][m] for r in runs]) if runs else "--" for m in ("hits@1", "mrr")]
        lines.append("| " + " | ".join(cells) + " |")
    head = ["Module switched off", "seeds", "Δ valid MRR (paired)", "full's seed std", "earns its place"]
    head += ["Δ test H@1 (paired)"] if test else []
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for item in ablation(rows, test):
        verdict = {True: "yes", False: "no", None: "n/a (< 2 seeds)"}[item["earns"]]
        sd = "--" if item["sd_full"] is None else f"{item['sd_full']:.3f}"
        cells = [item["module"], ",".join(map(str, item["seeds"])) or "--", _signed(item["d_valid_mrr"]), sd, verdict]
        if test:
            cells.append(_signed(item["d_test_h1"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--ratio", type=float, required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--valid-pool", default="unseen")
    ap.add_argument("--results", default="results")
    ap.add_argument("--test", action="store_true", help="add the test metrics (l2r): read them once, at the end")
    ap.add_argument("--ablation", action="store_true", help="the module ablations' paired deltas and verdicts")
    ap.add_argument("--baseline", action="append", default=[], metavar="MODEL:EPOCHS",
                    help="with --ablation: a baseline's stored runs of the same cell at EPOCHS epochs")
    args = ap.parse_args(argv)
    rows = collect(Path(args.results), args.dataset, args.ratio, args.epochs, args.valid_pool, args.test)
    if not rows:
        print(f"no stored MIMEA run of {args.dataset} r{args.ratio} with {args.epochs} epochs and "
              f"valid_pool={args.valid_pool} under {args.results}/runs", file=sys.stderr)
        return 1
    if args.ablation:
        baselines = {}
        for spec in args.baseline:
            name, sep, epochs = spec.partition(":")
            if not sep or not epochs.isdigit():
                print(f"--baseline {spec}: expected MODEL:EPOCHS, e.g. mclea:250", file=sys.stderr)
                return 2
            found = collect(Path(args.results), args.dataset, args.ratio, int(epochs), args.valid_pool, args.test,
                            model=name)
            baselines[f"{name} ({epochs} epochs)"] = found.get(FULL, [])
        print(render_ablation(rows, baselines, args.test))
    else:
        print(render(rows, args.test))
    return 0


if __name__ == "__main__":
    sys.exit(main())
