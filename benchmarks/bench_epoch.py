"""Benchmark (not a test): one training epoch's wall time and peak memory for a model on a dataset.

    python benchmarks/bench_epoch.py [--model mimea] [--dataset FBDB15K] [--data-dir ../shared/data/mmkg]

Prints the forward+backward+step time of one epoch at ratio 0.2 (its batches as the cpu profile sets them),
after one warm-up epoch, and the process's peak memory (RSS on CPU, max allocated on CUDA).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from mimea.data.splits import make_split
from mimea.models import registry
from mimea.pipeline import load_data
from mimea.store.metadata import peak_rss_mb
from mimea.training.config import model_config, resolve
from mimea.training.seeding import resolve_device, seed_everything


def main(argv=None) -> int:
    default_dir = os.environ.get("MIMEA_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared/data/mmkg"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mimea")
    ap.add_argument("--dataset", default="FBDB15K")
    ap.add_argument("--data-dir", default=default_dir)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if args.dataset != "synthetic" and not (Path(args.data_dir) / args.dataset / "norm").is_dir():
        print(f"bench_epoch: {args.data_dir}/{args.dataset}/norm not found; pass --data-dir (skipped)")
        return 0
    over = {"data": {"dataset": args.dataset, "data_dir": None if args.dataset == "synthetic" else args.data_dir}}
    cfg = resolve(args.model, args.profile, over)
    device = resolve_device(args.device)
    seed_everything(0)
    t = time.perf_counter()
    pair = load_data(cfg.data)
    load_s = time.perf_counter() - t
    split = make_split(pair.links, 0.2, mode="lineage")
    model = registry.get(args.model)(pair.to(device), model_config(cfg)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    links = split.train.to(device)
    bs = cfg.train.batch_size

    def epoch() -> float:
        t0 = time.perf_counter()
        for i in range(0, len(links), bs):
            loss, _ = model.batch_loss(links[i:i + bs])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    epoch()  # warm-up
    times = [epoch() for _ in range(2)]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    print(f"{args.model} on {args.dataset} ({device}, {torch.get_num_threads()} threads): load {load_s:.1f} s, "
          f"epoch {min(times):.2f} s (best of 2, {len(links)} seed links, batch {bs}), peak memory {peak:.0f} MB, "
          f"{model.n_parameters():,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
