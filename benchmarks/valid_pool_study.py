"""Which validation pool ranks checkpoints the way the test does (issue 12, step 1): a reading of stored runs.

A run made with ``eval.test_curve=true eval.valid_pool_compare=POOL`` records, at every evaluation, the validation
metrics in the pool it selects on (``valid``), in the other pool (``valid_<POOL>``) and the test metrics
(``test``; recorded only, the run still selects on ``eval.valid_pool``). For each such run this prints, per pool:
the epoch that pool would select (its best validation MRR), the test MRR at that epoch, the regret (the best test
MRR of the curve minus it), and the rank correlation (Spearman) between the pool's and the test's MRR over all
evaluations and over the second half of them (where the curve is flat and the choice is made). Across runs of one
dataset (models, variants, seeds) it gives the rank correlation between each pool's selected validation MRR and
the test MRR at the selected epoch: whether the pool orders configurations as the test does.

    mimea train --model M --profile paper --dataset FBDB15K --data-dir ../shared/data/mmkg --ratio 0.2 --seeds 0 \\
        --set train.threads=1 eval.test_curve=true eval.valid_pool_compare=unseen
    python benchmarks/valid_pool_study.py [--results results] [--dataset FBDB15K] [--out FILE]

The test metric is left-to-right MRR (what the tables report); validation MRR is the mean of both directions (what
selection uses). Nothing here trains or reads a checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None for fewer than 3 points or a constant series."""
    if len(a) != len(b) or len(a) < 3:
        return None

    def ranks(x: list[float]) -> list[float]:
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den > 0 else None


def read_runs(results: Path, dataset: str | None = None) -> list[dict]:
    """The stored finished runs that recorded a test curve and a second validation pool."""
    out = []
    for folder in sorted((results / "runs").glob("*")):
        files = [folder / f for f in ("config.json", "results.json")]
        if not all(f.is_file() for f in files):
            continue
        cfg, res = (json.loads(f.read_text(encoding="utf-8")) for f in files)
        ev = cfg.get("eval", {})
        other = ev.get("valid_pool_compare")
        if not (ev.get("test_curve") and other) or (dataset and cfg["data"]["dataset"] != dataset):
            continue
        evals = [r for r in res.get("curve", []) if "valid" in r and "test" in r and f"valid_{other}" in r]
        if evals:
            out.append({"id": folder.name, "model": cfg["model"], "dataset": cfg["data"]["dataset"],
                        "seed": cfg.get("seed"), "pools": (ev.get("valid_pool", "valid"), other), "evals": evals})
    return out


def _argmax(values: list[float]) -> int:
    """Index of the first maximum (the trainer keeps the first best checkpoint: a later tie does not replace it)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def study(run: dict) -> dict:
    """Per pool: selected epoch, test MRR there, regret, Spearman over all and the second half of the evaluations."""
    evals = run["evals"]
    test = [r["test"]["l2r"]["mrr"] for r in evals]
    epochs = [r["epoch"] for r in evals]
    half = len(evals) // 2
    row = {"run": run, "best_test": max(test), "best_test_epoch": epochs[_argmax(test)], "pools": {}}
    for pool, key in zip(run["pools"], ("valid", f"valid_{run['pools'][1]}")):
        v = [r[key]["mrr"] for r in evals]
        i = _argmax(v)
        row["pools"][pool] = {"epoch": epochs[i], "valid": v[i], "test": test[i], "regret": max(test) - test[i],
                              "rho": spearman(v, test), "rho_late": spearman(v[half:], test[half:])}
    return row


def _f(x: float | None, digits: int = 3) -> str:
    return "--" if x is None else f"{x:.{digits}f}"


def render(rows: list[dict]) -> str:
    if not rows:
        return ("No stored run has both a test curve and a second validation pool "
                "(eval.test_curve=true eval.valid_pool_compare=POOL).")
    pools = list(dict.fromkeys(p for r in rows for p in r["pools"]))   # the selecting pool first
    lines = ["| run | evaluations | best test MRR (epoch) | "
             + " | ".join(f"{p}: epoch, test MRR, regret, rho all / late" for p in pools) + " |",
             "|---|---:|---:|" + "---:|" * len(pools)]
    for r in rows:
        run = r["run"]
        cells = []
        for p in pools:
            s = r["pools"].get(p)
            cells.append("--" if s is None else
                         f"{s['epoch']}, {_f(s['test'])}, {_f(s['regret'])}, {_f(s['rho'], 2)} / {_f(s['rho_late'], 2)}")
        lines.append(f"| {run['model']} {run['dataset']} s{run['seed']} | {len(run['evals'])} | "
                     f"{_f(r['best_test'])} ({r['best_test_epoch']}) | " + " | ".join(cells) + " |")
    by_ds: dict[str, list[dict]] = {}
    for r in rows:
        by_ds.setdefault(r["run"]["dataset"], []).append(r)
    lines += ["", "Across runs of one dataset: Spearman between the selected validation MRR and the test MRR at the "
              "selected epoch (does the pool order models and variants as the test does?)", "",
              "| dataset | runs | " + " | ".join(pools) + " |", "|---|---:|" + "---:|" * len(pools)]
    for ds, rs in sorted(by_ds.items()):
        cells = []
        for p in pools:
            have = [r["pools"][p] for r in rs if p in r["pools"]]
            cells.append(_f(spearman([s["valid"] for s in have], [s["test"] for s in have]), 2))
        lines.append(f"| {ds} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results", help="the run store (default results)")
    ap.add_argument("--dataset", default=None, help="only this dataset's runs")
    ap.add_argument("--out", default=None, help="also write the Markdown here")
    args = ap.parse_args(argv)
    text = render([study(r) for r in read_runs(Path(args.results), args.dataset)])
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
