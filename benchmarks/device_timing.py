"""The GPU-against-CPU timing table, from the run records of the same runs on both (never typed).

    python benchmarks/device_timing.py                          # print the Markdown table
    python benchmarks/device_timing.py --update docs/speed.md   # rewrite its block between the markers
    python benchmarks/device_timing.py --check docs/speed.md    # exit 1 when that block is stale

A run's id leaves the device out (``mimea.store.ids``), so the same configuration run on a lent GPU is stored apart
(``--gpu``, default ``results/gpu``) and matched to the CPU record of the same id (``--cpu``, default ``results``).
Per run: seconds of training (the trainer's clock: every epoch and its validations, not the data loading or the
final test), seconds per epoch, how many runs shared the machine (the GPU store's ``sweep.json``; the CPU runs ran
two at a time on two cores), peak memory and the test H@1 on each. Only finished runs on both sides are shown.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.readme_results import replace_between  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- device_timing begin -->", "<!-- device_timing end -->"
NAMES = {"gcn_align": "GCN-Align", "eva": "EVA", "mclea": "MCLEA", "meaformer": "MEAformer", "msnea": "MSNEA",
         "mimea": "MIMEA (ours)"}


def _record(run: Path) -> dict | None:
    try:
        meta = json.loads((run / "metadata.json").read_text(encoding="utf-8"))
        res = json.loads((run / "results.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    sweep = run / "sweep.json"
    seconds = sum(a["seconds"] for a in meta.get("attempts", [])) or meta.get("train_time_s")
    return {"model": meta["run_id"].split("-")[0], "seed": json.loads((run / "config.json").read_text())["seed"],
            "device": meta.get("device_name") or meta.get("device"), "threads": meta.get("threads"),
            "seconds": float(seconds), "epochs": int(meta["epochs_run"]), "peak_mb": meta.get("peak_memory_mb"),
            "h1": res["test"]["mean"]["hits@1"],
            "at_once": json.loads(sweep.read_text())["jobs"] if sweep.is_file() else None}


def rows(gpu_store: Path, cpu_store: Path) -> list[dict]:
    out = []
    for run in sorted((gpu_store / "runs").glob("*")):
        g, c = _record(run), _record(cpu_store / "runs" / run.name)
        if g is None or c is None:
            continue
        out.append({"id": run.name, "gpu": g, "cpu": c})
    order = list(NAMES)
    return sorted(out, key=lambda r: (order.index(r["gpu"]["model"]) if r["gpu"]["model"] in order else 99,
                                      r["gpu"]["seed"]))


def table(gpu_store: Path, cpu_store: Path) -> str:
    lines = ["| model | seed | epochs | GPU s/run | GPU s/epoch | runs at once (GPU) | CPU s/run | CPU s/epoch "
             "| CPU / GPU | peak MB GPU / CPU | test H@1 GPU / CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    found = rows(gpu_store, cpu_store)
    for r in found:
        g, c = r["gpu"], r["cpu"]
        threads = f"{g['threads']} thread{'s' if g['threads'] != 1 else ''} each"
        lines.append(f"| {NAMES.get(g['model'], g['model'])} | {g['seed']} | {g['epochs']:,} | {g['seconds']:,.0f} "
                     f"| {g['seconds'] / g['epochs']:.3f} | {g['at_once'] or '?'} ({threads}) "
                     f"| {c['seconds']:,.0f} | {c['seconds'] / c['epochs']:.3f} | {c['seconds'] / g['seconds']:.1f}x "
                     f"| {g['peak_mb']:,.0f} / {c['peak_mb']:,.0f} | {g['h1']:.3f} / {c['h1']:.3f} |")
    if found:
        devs = sorted({r["gpu"]["device"] for r in found})
        ratio = statistics.median(r["cpu"]["seconds"] / r["gpu"]["seconds"] for r in found)
        lines.append("")
        lines.append(f"GPU: {', '.join(map(str, devs))}; CPU: the committed records of the same run ids (one thread "
                     f"per run, two runs at a time on two cores). Median CPU / GPU time per run: {ratio:.1f}x over "
                     f"{len(found)} runs. GPU peak memory is CUDA's max allocated, CPU's the process's peak RSS.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", default=str(REPO_ROOT / "results" / "gpu"), help="the GPU runs' store")
    ap.add_argument("--cpu", default=str(REPO_ROOT / "results"), help="the CPU runs' store")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--update", metavar="FILE", help="rewrite FILE's block between the markers")
    group.add_argument("--check", metavar="FILE", help="exit 1 when FILE's block is not what the records give")
    args = ap.parse_args(argv)
    text = table(Path(args.gpu), Path(args.cpu))
    target = args.update or args.check
    if target is None:
        print(text)
        return 0
    path = Path(target)
    doc = path.read_text(encoding="utf-8")
    try:
        new = replace_between(doc, BEGIN + "\n", END, text + "\n")
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != doc:
            print(f"{path}: the device_timing block is stale; run python benchmarks/device_timing.py --update {path}",
                  file=sys.stderr)
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
