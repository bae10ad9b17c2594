"""Thin launch shim: run an author's entry point unchanged on a CPU-only machine, and measure it.

    python benchmarks/fidelity/shim.py --model meaformer|mclea|eva --repo SCRATCH/REPO [--cwd DIR]
        [--data-root DIR] [--stop-after N] [--threads 1] [--timing FILE] [--stats FILE] -- THEIR ARGS...

What it does, and nothing else (their files are never copied or edited):

* ``sys.argv`` = their script + THEIR ARGS; ``sys.path`` gets their source folder; ``runpy.run_path`` runs the
  script as ``__main__`` (MEAformer ``main.py``, MCLEA ``src/run.py``, EVA ``src/run_dbp15k.py``).
* CPU: ``Tensor.cuda`` / ``Module.cuda`` return the object unchanged, ``torch.cuda.set_device`` /
  ``synchronize`` / ``empty_cache`` do nothing, ``torch.cuda.is_available()`` is False (MCLEA/EVA then pick
  ``torch.device("cpu")`` themselves; MEAformer gets ``--device cpu``, its own option). ``torch.set_num_threads``.
* MEAformer: ``config.cfg.data_root`` (hard-coded as ``<repo>/../../data``) is set to ``--data-root``.
* MEAformer: ``--stop-after N`` ends the run after the N-th epoch's evaluation (the tqdm bar's N-th
  ``update``), so the learning-rate schedule stays the published one (500 epochs) and only the run is cut short.
* EVA: ``Load.load_attr`` loops ``for i in range(topA)`` over the 1,000 most frequent attribute names and
  raises IndexError when there are fewer (FBDB15K has 341). The wrapper calls it with ``topA = number of distinct
  attributes`` and pads the matrix with zero columns back to 1,000, which is exactly what MCLEA's fixed
  ``load_attr`` returns (same column order, same width, so ``att_fc = nn.Linear(1000, 100)`` is unchanged).
* ``kill -TERM <shim pid>`` stops a run early and still writes ``--stats`` (the curve so far stays usable).
* Measures: every output line is copied, with seconds since start, to ``--timing`` (``<t>\\t<line>``); at exit
  ``--stats`` gets JSON with wall time, peak RSS of this process and of its children (DataLoader workers), via
  ``resource.getrusage``, the machine's 1-minute load average sampled every 15 s (other jobs on a shared
  machine slow a run down), and why it stopped.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import runpy
import sys
import time
from pathlib import Path

SCRIPTS = {"meaformer": ("main.py", "."), "mclea": ("src/run.py", "src"), "eva": ("src/run_dbp15k.py", "src")}


class StopRun(SystemExit):
    """Raised by the stop hook after the requested number of epochs."""


class Terminated(SystemExit):
    """Raised by the SIGTERM handler."""


class _Tee(io.TextIOBase):
    """Pass text through to ``stream``; copy each complete line, time-stamped, to ``log``."""

    def __init__(self, stream, log, t0: float) -> None:
        self._s, self._log, self._t0, self._buf = stream, log, t0, ""

    def write(self, text: str) -> int:
        self._s.write(text)
        self._buf += text
        while True:
            cut = min((i for i in (self._buf.find("\n"), self._buf.find("\r")) if i >= 0), default=-1)
            if cut < 0:
                break
            line, self._buf = self._buf[:cut], self._buf[cut + 1:]
            if line.strip():
                self._log.write(f"{time.monotonic() - self._t0:.3f}\t{line}\n")
                self._log.flush()
        return len(text)

    def flush(self) -> None:
        self._s.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._s.fileno()


def _start_load_sampler(out: list, every_s: float = 15.0) -> None:
    """Sample the machine's 1-minute load average every ``every_s`` seconds (a shared machine slows runs)."""
    import threading

    def sample():
        while True:
            try:
                out.append(round(os.getloadavg()[0], 2))
            except OSError:
                return
            time.sleep(every_s)

    threading.Thread(target=sample, daemon=True, name="fidelity-load-sampler").start()


def patch_cpu(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.is_available = lambda: False
    torch.cuda.set_device = lambda *a, **k: None
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.empty_cache = lambda *a, **k: None


def patch_meaformer(data_root: str | None, stop_after: int | None, marks: list) -> None:
    import config  # their config.py (sys.path has the repo)

    if data_root is not None:
        init = config.cfg.__init__

        def __init__(self, *a, **k):
            init(self, *a, **k)
            self.data_root = os.path.abspath(data_root)

        config.cfg.__init__ = __init__
    import tqdm as tqdm_mod

    update = tqdm_mod.tqdm.update

    def counted_update(self, n=1):
        out = update(self, n)
        if getattr(self, "total", None) is not None and self.total >= 2:  # the epoch bar, not a loading bar
            marks.append(time.monotonic())
            print(f"[fidelity-shim] epoch {len(marks) - 1} done", file=sys.stderr, flush=True)
            if stop_after is not None and len(marks) >= stop_after:
                raise StopRun(0)
        return out

    tqdm_mod.tqdm.update = counted_update


def patch_eva() -> None:
    import numpy as np

    import Load  # their src/Load.py

    original = Load.load_attr

    def load_attr(fns, e, ent2id, topA=1000):
        names = set()
        for fn in fns:
            with open(fn, "r", encoding="utf-8") as f:
                for line in f:
                    th = line[:-1].split("\t")
                    if th[0] in ent2id:
                        names.update(th[1:])
        if len(names) >= topA:
            return original(fns, e, ent2id, topA)
        attr = original(fns, e, ent2id, len(names))
        return np.pad(attr, ((0, 0), (0, topA - attr.shape[1])))

    Load.load_attr = load_attr


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        cut = argv.index("--")
        ours, theirs = argv[:cut], argv[cut + 1:]
    else:
        ours, theirs = argv, []
    ap = argparse.ArgumentParser(description="run an author's entry point on CPU and measure it")
    ap.add_argument("--model", choices=sorted(SCRIPTS), required=True)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--cwd", type=Path, default=None, help="working directory (default: the repository)")
    ap.add_argument("--data-root", default=None, help="MEAformer: the folder holding mmkg/")
    ap.add_argument("--stop-after", type=int, default=None, help="MEAformer: stop after N epochs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timing", type=Path, default=None)
    ap.add_argument("--stats", type=Path, default=None)
    args = ap.parse_args(ours)
    repo = args.repo.resolve()
    args.stats = args.stats.resolve() if args.stats else None  # before the chdir below
    args.timing = args.timing.resolve() if args.timing else None
    script_rel, src = SCRIPTS[args.model]
    script = repo / script_rel
    t0 = time.monotonic()
    timing = open(args.timing, "w", encoding="utf-8") if args.timing else open(os.devnull, "w")
    sys.stdout = _Tee(sys.__stdout__, timing, t0)
    sys.stderr = _Tee(sys.__stderr__, timing, t0)
    os.chdir(args.cwd.resolve() if args.cwd else repo)
    sys.path.insert(0, str(repo / src))
    sys.argv = [str(script)] + theirs
    marks: list[float] = []
    load: list[float] = []
    _start_load_sampler(load)
    patch_cpu(args.threads)
    if args.model == "meaformer":
        patch_meaformer(args.data_root, args.stop_after, marks)
    elif args.model == "eva":
        patch_eva()
    reason, rc = "finished", 0

    def on_term(signum, frame):  # `kill -TERM` ends the run early but still writes --stats
        raise Terminated(0)

    import signal

    signal.signal(signal.SIGTERM, on_term)
    try:
        runpy.run_path(str(script), run_name="__main__")
    except StopRun:
        reason = f"stopped after {args.stop_after} epochs"
    except Terminated:
        reason = "SIGTERM (stopped early by hand)"
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
        reason = f"SystemExit({exc.code})"
    except BaseException as exc:  # report, then re-raise below
        reason, rc = f"{type(exc).__name__}: {exc}", 1
        import traceback

        traceback.print_exc()
    finally:
        stats = {"model": args.model, "repo": str(repo), "argv": theirs, "threads": args.threads,
                 "wall_s": round(time.monotonic() - t0, 3), "reason": reason,
                 "peak_rss_self_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                 "peak_rss_children_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
                 "epoch_marks_s": [round(m - t0, 3) for m in marks],
                 "loadavg_1min": {"mean": round(sum(load) / len(load), 2) if load else None,
                                  "max": max(load) if load else None, "samples": len(load),
                                  "cores": os.cpu_count()}}
        print("[fidelity-shim] " + json.dumps(stats), file=sys.stderr, flush=True)
        if args.stats:
            args.stats.write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
        timing.flush()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
