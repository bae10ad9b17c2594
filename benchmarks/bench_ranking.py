"""Speed and memory of the chunked CSLS ranking at the size of FBDB15K's 20 % test split (a script, not a test).

    PYTHONPATH=. python benchmarks/bench_ranking.py                 # 10,277 x 10,277, CSLS k=3, dim 300
    PYTHONPATH=. python benchmarks/bench_ranking.py --dim 300 600 1200 --chunk-size 2048 4096 --check
    PYTHONPATH=. python benchmarks/bench_ranking.py --dim 1200 --keep-mb 0 512    # chunked passes vs kept matrix

The problem: FBDB15K has 12,846 links; MCLEA/MEAformer train on the first 20 % after the seed-42 shuffle, so the
test split has 12,846 - int(12,846 * 0.2) = 10,277 pairs, ranked in both directions against 10,277 candidates.
Embeddings are random Gaussian rows (the cost does not depend on their values). The default dim 300 is the
per-modality hidden size of MCLEA's GAT and of MEAformer; the joint dims are 600 for MCLEA on FB data (GAT 300 +
relation, attribute and image 100 each) and 1200 for MEAformer (4 x 300): pass ``--dim 600 1200``.

The cost is two ``n x n x dim`` matrix products (CSLS needs its radii before one of the two directions can be
ranked) plus ~10 elementwise passes over ``n x n``; one product when the matrix is kept whole between the passes
(``MIMEA_EVAL_KEEP_MB``, default 512 MiB: FBDB15K's test matrix is 403 MiB; ``--keep-mb 0`` measures without). At dim 600 the two products alone are 254 GFLOP, which took
2.2 s on the 2-core CPU this was tuned on, so the 3 s target holds there only up to dim ~400.

Figures printed per setting: wall time of ``evaluate`` (best of ``--repeat``), and the extra peak memory it
needed: on CPU the process's peak RSS (``resource.getrusage`` ``ru_maxrss``) minus its RSS just before the call,
on CUDA ``torch.cuda.max_memory_allocated`` minus the memory allocated before. With ``--check`` the script exits
with status 1 if any setting misses ``--max-seconds`` or ``--max-mb``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from mimea.evaluation import evaluate

FBDB15K_TEST_PAIRS = 12846 - int(12846 * 0.2)  # 10,277


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def run(n: int, dim: int, chunk: int, k: int, similarity: str, device: torch.device, repeat: int,
        seed: int) -> tuple[float, float, float, dict]:
    """(best wall seconds, extra peak MiB, CPU seconds of that run, metrics) of ``evaluate`` on a random problem."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(2 * n, dim, generator=g).to(device)
    pairs = torch.stack([torch.arange(n), torch.arange(n) + n], dim=1).to(device)
    best, peak, cpu = float("inf"), 0.0, float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        else:
            before = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        out = evaluate(emb, pairs, similarity=similarity, csls_k=k, chunk_size=chunk)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if time.perf_counter() - t0 < best:
            best, cpu = time.perf_counter() - t0, time.process_time() - c0
        if device.type == "cuda":
            extra = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        else:
            extra = _peak_rss_mb() - before  # repeats after the first add nothing: ru_maxrss never goes down
        peak = max(peak, extra)
    return best, peak, cpu, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=FBDB15K_TEST_PAIRS, help="test pairs (default: FBDB15K 20%% split)")
    ap.add_argument("--dim", type=int, nargs="+", default=[300], help="embedding dims (default 300)")
    ap.add_argument("--chunk-size", type=int, nargs="+", default=[4096],
                    help="chunk sizes to try (default 4096, the EvalConfig default)")
    ap.add_argument("--similarity", choices=["csls", "cosine"], default="csls")
    ap.add_argument("--k", type=int, default=3, help="CSLS k")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--gemm", choices=["numpy", "torch"], default=None,
                    help="CPU matrix product backend (sets MIMEA_CPU_GEMM; default: the library's default)")
    ap.add_argument("--keep-mb", type=float, nargs="+", default=None,
                    help="MIMEA_EVAL_KEEP_MB values to try (0: the chunked two-product passes; default: the "
                         "library's default, which keeps a matrix up to 512 MiB whole)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="exit 1 if a setting misses the targets")
    ap.add_argument("--max-seconds", type=float, default=3.0)
    ap.add_argument("--max-mb", type=float, default=1024.0)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one setting, JSON out
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.one:
        # Warm-up (BLAS/OpenMP initialisation) on a small problem, outside the timings.
        evaluate(torch.randn(64, 8, device=device), torch.stack([torch.arange(32), torch.arange(32) + 32], 1))
        sec, mib, cpu, out = run(args.n, args.dim[0], args.chunk_size[0], args.k, args.similarity, device,
                                 args.repeat, args.seed)
        print(json.dumps({"seconds": sec, "mib": mib, "cpu": cpu, "hits1": out["l2r"]["hits@1"],
                          "load": os.getloadavg()[0]}))
        return 0
    gemm = args.gemm or os.environ.get("MIMEA_CPU_GEMM", "numpy")
    print(f"device={device} threads={torch.get_num_threads()} cpu_gemm={gemm} n={args.n} "
          f"similarity={args.similarity} k={args.k} torch={torch.__version__} "
          f"load_avg_1min={os.getloadavg()[0]:.2f}")
    print(f"{'dim':>5} {'chunk':>6} {'keep_MiB':>8} {'seconds':>8} {'cpu_s':>6} {'extra_MiB':>10} {'load':>5}  "
          "verdict")
    missed = False
    keeps = args.keep_mb or [None]
    for dim, chunk, keep in ((d, c, k) for d in args.dim for c in args.chunk_size for k in keeps):
        # One fresh process per setting, so that each peak RSS is its own (ru_maxrss never goes down).
        cmd = [sys.executable, __file__, "--one", "--n", str(args.n), "--dim", str(dim), "--chunk-size",
               str(chunk), "--similarity", args.similarity, "--k", str(args.k), "--device", args.device,
               "--threads", str(args.threads), "--repeat", str(args.repeat), "--seed", str(args.seed)]
        env = dict(os.environ, **({"MIMEA_CPU_GEMM": args.gemm} if args.gemm else {}),
                   **({"MIMEA_EVAL_KEEP_MB": f"{keep:g}"} if keep is not None else {}))
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        res = json.loads(proc.stdout.splitlines()[-1])
        sec, mib = res["seconds"], res["mib"]
        ok = sec <= args.max_seconds and mib <= args.max_mb
        missed |= not ok
        kept = "default" if keep is None else f"{keep:g}"
        print(f"{dim:>5} {chunk:>6} {kept:>8} {sec:>8.2f} {res['cpu']:>6.2f} {mib:>10.0f} {res['load']:>5.1f}  "
              f"{'ok' if ok else 'MISSED'} (target {args.max_seconds:g} s, {args.max_mb:g} MiB)", flush=True)
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
