"""Time one forward + backward of each structure encoder on the real FBDB15K graph, and its peak memory.

    python benchmarks/bench_gat.py [--dataset FBDB15K] [--dim 300] [--repeats 3] [--threads 2]
                                   [--kinds gat_diag gcn] [--include-gatconv] [--device cpu|cuda]

The graph is read straight from ``ROOT/NAME/norm/triples_{1,2}`` with numpy (no features needed) and
built exactly as :meth:`mimea.data.pair.MMKGPair.edge_index` does (undirected, de-duplicated, self
loops). ``ROOT`` is ``$MIMEA_DATA_DIR`` or ``<repo>/../shared/data/mmkg``.

Each kind runs in its own subprocess so that its peak memory is its own: on CPU the peak resident
set size of that process (graph and inputs included); on CUDA ``torch.cuda.max_memory_allocated``.
``torch.set_num_threads(--threads)`` is set inside the timed process only. The first call (which
builds and caches the CSR structure) is reported separately from the steady-state median.
``gatconv`` (PyG's GATConv) needs ~17 GB and ~25 s per call on this graph, so it runs only with
``--include-gatconv``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    env = os.environ.get("MIMEA_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "mmkg"


def load_edge_index(dataset: str):
    """``(edge_index [2, E], n_nodes)`` of the union graph of ``dataset`` (with self loops)."""
    import torch

    norm = data_root() / dataset / "norm"
    if not norm.is_dir():
        raise SystemExit(f"no data at {norm}: set MIMEA_DATA_DIR to the folder holding {dataset}/")
    tri = np.concatenate([np.loadtxt(norm / f"triples_{k}", dtype=np.int64, ndmin=2) for k in (1, 2)])
    ids = np.concatenate([np.loadtxt(norm / f"ent_ids_{k}", dtype=str, delimiter="\t", usecols=0, ndmin=1)
                          for k in (1, 2)]).astype(np.int64)
    n = int(ids.max()) + 1
    h, t = torch.from_numpy(tri[:, 0]), torch.from_numpy(tri[:, 2])
    src, dst = torch.cat([h, t]), torch.cat([t, h])
    keep = src != dst
    loop = torch.arange(n)
    src, dst = torch.cat([src[keep], loop]), torch.cat([dst[keep], loop])
    key = torch.unique(src * n + dst)
    return torch.stack([key // n, key % n]), n


def run_one(kind: str, dataset: str, dim: int, repeats: int, threads: int, device: str) -> dict:
    """Benchmark one kind in this process; returns a JSON-able dict."""
    import torch

    from mimea.nn.graph import build_graph_encoder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    edge_index, n = load_edge_index(dataset)
    edge_index = edge_index.to(dev)
    enc = build_graph_encoder(kind, dim).to(dev)
    x = torch.randn(n, dim, device=dev, requires_grad=True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(repeats + 1):
        x.grad = None
        enc.zero_grad(set_to_none=True)
        sync()
        start = time.perf_counter()
        enc(x, edge_index).pow(2).mean().backward()
        sync()
        times.append(time.perf_counter() - start)
    if dev.type == "cuda":
        peak_gb = torch.cuda.max_memory_allocated(dev) / 2**30
        peak_what = "cuda max_memory_allocated"
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        peak_what = "process peak RSS"
    return {
        "kind": kind, "dataset": dataset, "nodes": n, "edges": int(edge_index.size(1)), "dim": dim,
        "device": device, "threads": threads, "first_s": round(times[0], 3),
        "median_s": round(statistics.median(times[1:]), 3), "peak_gb": round(peak_gb, 3), "peak": peak_what,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="FBDB15K")
    p.add_argument("--dim", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--kinds", nargs="+", default=["gat_diag", "gcn"])
    p.add_argument("--include-gatconv", action="store_true")
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # child mode: one kind
    a = p.parse_args(argv)
    if a.single:
        print(json.dumps(run_one(a.kinds[0], a.dataset, a.dim, a.repeats, a.threads, a.device)))
        return 0
    kinds = list(a.kinds) + (["gatconv"] if a.include_gatconv and "gatconv" not in a.kinds else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    rows = []
    for kind in kinds:
        cmd = [sys.executable, __file__, "--single", "--kinds", kind, "--dataset", a.dataset, "--dim", str(a.dim),
               "--repeats", str(a.repeats), "--threads", str(a.threads), "--device", a.device]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            print(f"{kind}: failed ({res.returncode}): {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    if not rows:
        return 1
    print(f"{rows[0]['dataset']}: {rows[0]['nodes']} nodes, {rows[0]['edges']} edges, dim {a.dim}, "
          f"{a.device}, {a.threads} threads, one forward+backward")
    print(f"{'kind':<10} {'first (s)':>10} {'median (s)':>11} {'peak (GB)':>10}  peak is")
    for r in rows:
        print(f"{r['kind']:<10} {r['first_s']:>10.2f} {r['median_s']:>11.2f} {r['peak_gb']:>10.2f}  {r['peak']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
