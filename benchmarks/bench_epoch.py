"""Benchmark (not a test): seconds per training epoch, peak memory and parameters, per model.

    python benchmarks/bench_epoch.py --model meaformer [--dataset FBDB15K] [--data-dir ../shared/data/mmkg]
    python benchmarks/bench_epoch.py --model all --repeats 3 --out benchmarks/results/epoch.md
    python benchmarks/bench_epoch.py --model mimea --ratio 0.5         # another seed ratio (default 0.2)

One epoch is the trainer's epoch under the chosen profile (default ``paper``: the authors' epoch plan, batch and
optimiser; `mimea.training.epoch_plan`): its optimiser steps, each ``summed_loss`` + backward + step. One warm-up
epoch, then the median of ``--repeats`` epochs. Each model runs in its own process (``--model all``), so the
peak RSS is that model's. Where a fidelity reference curve of the authors' code exists
(``benchmarks/fidelity/reference/<model>-<dataset>-r<percent>.json``), the ratio to their seconds per epoch is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE = Path(__file__).resolve().parent / "fidelity" / "reference"


def authors_seconds_per_epoch(model: str, dataset: str, ratio: float = 0.2) -> float | None:
    """Median seconds per epoch of the authors' code from the committed fidelity reference at this seed ratio."""
    f = REFERENCE / f"{model}-{dataset}-r{round(ratio * 100)}.json"
    if not f.is_file():
        return None
    ref = json.loads(f.read_text(encoding="utf-8"))
    if isinstance(ref.get("seconds_per_epoch"), (int, float)):
        return float(ref["seconds_per_epoch"])
    times = [e.get("train_s") or e.get("seconds") for e in ref.get("epochs", []) if isinstance(e, dict)]
    times = [t for t in times if isinstance(t, (int, float))]
    return statistics.median(times) if times else None


def measure(model_name: str, dataset: str, data_dir: str | None, profile: str, device_name: str, repeats: int,
            threads: int | None, ratio: float = 0.2) -> dict:
    import torch

    from mimea.data.splits import make_split
    from mimea.models import registry
    from mimea.pipeline import load_data
    from mimea.store.metadata import peak_rss_mb
    from mimea.training.allocator import keep_freed_memory
    from mimea.training.config import model_config, resolve
    from mimea.training.trainer import Trainer
    from mimea.training.seeding import resolve_device, seed_everything, set_threads

    set_threads(threads)
    keep_freed_memory()
    over = {"data": {"dataset": dataset, "data_dir": None if dataset == "synthetic" else data_dir},
            "split": {"ratio": ratio}}
    cfg = resolve(model_name, profile, over)
    device = resolve_device(device_name)
    seed_everything(0)
    t = time.perf_counter()
    pair = load_data(cfg.data)
    load_s = time.perf_counter() - t
    split = make_split(pair.links, cfg.split.ratio, mode=cfg.split.mode, val_fraction=cfg.split.val_fraction)
    model = registry.get(model_name)(pair.to(device), model_config(cfg)).to(device)
    links = split.train.to(device)
    model.prepare_training(links)                   # before the plan: MSNEA's steps count the swapped triples
    trainer = Trainer(model, cfg.train, None)       # the trainer's own epoch (plan, optimiser, clipping)
    gen = torch.Generator().manual_seed(0)

    def epoch() -> float:
        t0 = time.perf_counter()
        trainer.train_epoch(links, gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    epoch()  # warm-up
    times = [epoch() for _ in range(max(1, repeats))]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    return {"model": model_name, "dataset": dataset, "profile": profile, "device": str(device),
            "threads": torch.get_num_threads(), "ratio": ratio, "load_s": load_s, "epoch_s": statistics.median(times),
            "epoch_s_all": times, "steps_per_epoch": trainer.plan.optimizer_steps(len(links)),
            "seed_links": len(links), "peak_mb": peak, "parameters": model.n_parameters()}


def _row(r: dict) -> str:
    ref = authors_seconds_per_epoch(r["model"], r["dataset"], r.get("ratio", 0.2))
    ratio = f"{ref / r['epoch_s']:.1f}x ({ref:.1f} s)" if ref else "-"
    return (f"| {r['model']} | {r['epoch_s']:.2f} | {r['steps_per_epoch']} | {r['peak_mb']:,.0f} | "
            f"{r['parameters'] / 1e6:.2f} M | {ratio} |")


HEADER = ("| model | s/epoch (median) | steps/epoch | peak RSS MB | params | authors' code: ours faster by |\n"
          "|---|---|---|---|---|---|")


def main(argv=None) -> int:
    default_dir = os.environ.get("MIMEA_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared/data/mmkg"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mimea", help="a registered model, or all")
    ap.add_argument("--dataset", default="FBDB15K")
    ap.add_argument("--data-dir", default=default_dir)
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ratio", type=float, default=0.2, help="seed ratio of the split (default 0.2)")
    ap.add_argument("--json", action="store_true", help="print one JSON line (used by --model all)")
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    args = ap.parse_args(argv)
    if args.dataset != "synthetic" and not (Path(args.data_dir) / args.dataset / "norm").is_dir():
        print(f"bench_epoch: {args.data_dir}/{args.dataset}/norm not found; pass --data-dir (skipped)")
        return 0
    if args.model != "all":
        r = measure(args.model, args.dataset, args.data_dir, args.profile, args.device, args.repeats, args.threads,
                    args.ratio)
        print(json.dumps(r) if args.json else f"{HEADER}\n{_row(r)}")
        return 0
    from mimea.models import registry

    rows = []
    for name in registry.available():
        cmd = [sys.executable, __file__, "--model", name, "--dataset", args.dataset, "--data-dir", args.data_dir,
               "--profile", args.profile, "--device", args.device, "--repeats", str(args.repeats), "--json",
               "--ratio", str(args.ratio)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"bench_epoch: {name} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(_row(rows[-1]), flush=True)
    table = "\n".join([HEADER, *(_row(r) for r in rows)])
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
