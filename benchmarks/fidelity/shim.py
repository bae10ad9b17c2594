"""Thin launch shim: run an author's entry point unchanged on a CPU-only machine, and measure it.

    python benchmarks/fidelity/shim.py --model meaformer|mclea|eva|gcn_align|msnea --repo SCRATCH/REPO [--cwd DIR]
        [--data-root DIR] [--stop-after N] [--threads 1] [--timing FILE] [--stats FILE]
        [--ratio R --split-seed S --test-every K] -- THEIR ARGS...

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
* GCN-Align (``train.py``, TensorFlow 1; run in a venv with TensorFlow 2's ``tensorflow.compat.v1``, no torch):

  - ``import tensorflow as tf`` gets a module whose attributes are ``tensorflow.compat.v1``'s (after
    ``disable_v2_behavior()``; ``__path__`` stays the real package's, so TensorFlow's own lazy submodule imports
    work). Their code uses ``tf.app.flags``, ``tf.Session``, placeholders, ``tf.train.GradientDescentOptimizer``
    and ``tf.summary.histogram``: all in ``compat.v1``; no ``tf.contrib``. ``tf.Session`` gets a config with
    ``--threads`` intra- and inter-op threads.
  - ``utils.py`` imports ``scipy.sparse.linalg.eigen.arpack.eigsh`` (gone in SciPy >= 1.12; used only by
    ``chebyshev_polynomials``, which ``train.py`` never calls): the name is provided from ``scipy.sparse.linalg``.
  - Split: ``utils.load_data`` runs unchanged (its ``np.random.shuffle`` still draws from their seeded global
    RandomState, so the negatives that follow are theirs), then its train/test links are replaced by the lineage
    split of ``ref_ent_ids`` in file order, :func:`lineage_links` (``RandomState(--split-seed).permutation(n)``,
    first ``int(n // 1 * --ratio)`` train, the rest test): the links ``mimea``'s ``--profile authors`` run
    trains and tests on (``split.val_fraction=0``). The test links' sha1 (as ``mimea``'s ``split.json``
    ``meta.test_sha1``) is printed.
  - Test curve: ``Session.run`` counts their training steps (two ``[opt_op, loss]`` fetches per epoch, AE then
    SE); after every ``--test-every``-th epoch (not the last: their own test follows it) the shim computes
    ``model_ae.outputs`` / ``model_se.outputs`` as their final test does and calls THEIR
    ``get_combine_hits(vec_se, vec_ae, FLAGS.beta, test)``. ``metrics.get_hits`` is wrapped: it runs unchanged
    (its printed Hits@k are theirs) and the shim keeps the ``cdist`` matrix it built to add MR/MRR
    (``benchmarks/fidelity/cityblock.py``), printed as one ``[fidelity-shim] cityblock epoch=N view=SE+AE ...``
    line (``view=SE`` for their final SE-only test). The shim imports ``benchmarks.fidelity.cityblock`` (numpy and
    scipy only), so ``PYTHONPATH`` holds the repository root (``authors.run_authors`` sets it).
* MSNEA (``main.py``; it reads ``config.json`` and writes ``logs/`` in its working directory, which
  ``benchmarks/fidelity/msnea_layout.py`` fills with our data in their layout):

  - Seeds: their code seeds nothing; the shim seeds ``random``, ``numpy.random`` and ``torch`` with 42 before
    their script runs, so a rerun gives the same curve (their batch workers are forked from that state).
  - Test curve: ``evaluation.greedy_alignment`` is wrapped before ``main.py``'s ``from evaluation import *``.
    Their ``valid`` calls it once per epoch (``accurate=False``; its links file holds the test links, see
    ``msnea_layout.py``): on every ``--test-every``-th epoch and on the ``--stop-after``-th the wrapper prints
    ``[fidelity-shim] msnea test epoch=N`` and calls THEIR ``test(model, kgs, args)`` (from the caller's module
    globals; ``accurate=True``: Hits@1/5/10, MR, MRR on normalised inner products, no CSLS, as their final test)
    and hands its MRR back to ``valid`` (so their ``model_best.pkl`` logic runs); on the other epochs it returns
    MRR -1 without ranking (nothing saved). After the ``--stop-after``-th epoch's test the run stops (their
    final reload-and-test of ``model_best.pkl`` would repeat the best epoch's numbers).
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

SCRIPTS = {"meaformer": ("main.py", "."), "mclea": ("src/run.py", "src"), "eva": ("src/run_dbp15k.py", "src"),
           "gcn_align": ("train.py", "."), "msnea": ("main.py", ".")}


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


def patch_msnea(test_every: int, stop_after: int | None, marks: list, seed: int = 42) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    import evaluation  # their evaluation.py (sys.path has the repo)

    original = evaluation.greedy_alignment
    state = {"epoch": 0}

    def greedy_alignment(logger, embed1, embed2, top_k, nums_threads, metric, normalize, csls_k, accurate):
        if accurate:  # their test(): unchanged
            return original(logger, embed1, embed2, top_k, nums_threads, metric, normalize, csls_k, accurate)
        state["epoch"] += 1
        epoch = state["epoch"]
        marks.append(time.monotonic())
        last = stop_after is not None and epoch >= stop_after
        if epoch % test_every and not last:
            return set(), 0.0, 0.0, -1.0
        print(f"[fidelity-shim] msnea test epoch={epoch}", flush=True)
        g = sys._getframe(1).f_globals           # their main.py's globals: test, model, kgs, args
        mrr = g["test"](g["model"], g["kgs"], g["args"])
        if last:
            raise StopRun(0)
        return set(), 0.0, 0.0, mrr

    evaluation.greedy_alignment = greedy_alignment


def lineage_links(links: list, ratio: float, seed: int = 42) -> tuple[list, list]:
    """``(train, test)``: ``mimea``'s lineage split (``mimea/data/splits.py``, ``val_fraction=0``) of ``links``
    in file order: ``RandomState(seed).permutation(n)``, the first ``int(n // 1 * ratio)`` train, the rest test."""
    import numpy as np

    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    n = len(links)
    if n == 0:
        raise ValueError("no alignment links to split")
    order = np.random.RandomState(seed).permutation(n)
    n_seed = int(n // 1 * ratio)
    return [tuple(links[i]) for i in order[:n_seed]], [tuple(links[i]) for i in order[n_seed:]]


def links_sha1(links: list) -> str:
    """``mimea.data.splits._digest``: sha1 of the int64 ``[n, 2]`` array, first 16 hex digits."""
    import hashlib

    import numpy as np

    return hashlib.sha1(np.ascontiguousarray(np.asarray(links, dtype=np.int64).reshape(-1, 2)).tobytes()
                        ).hexdigest()[:16]


def patch_tf1(threads: int) -> None:
    """``import tensorflow as tf`` -> ``tensorflow.compat.v1`` (v2 behaviour off), sessions on ``threads``."""
    import importlib
    import types

    import tensorflow as real
    import tensorflow.compat.v1 as v1

    v1.disable_v2_behavior()

    class Session(v1.Session):
        hooks: list = []

        def __init__(self, target="", graph=None, config=None):
            if config is None:
                config = v1.ConfigProto(intra_op_parallelism_threads=threads,
                                        inter_op_parallelism_threads=threads)
            super().__init__(target, graph, config)

        def run(self, fetches, *a, **k):
            out = super().run(fetches, *a, **k)
            for hook in Session.hooks:
                hook(self, fetches)
            return out

    tf = types.ModuleType("tensorflow", "tensorflow.compat.v1 for TF1 code (benchmarks/fidelity/shim.py)")
    tf.__path__ = list(real.__path__)
    tf.__getattr__ = lambda name: getattr(v1, name)  # PEP 562: everything else is compat.v1's
    tf.Session = Session
    tf.__version__ = real.__version__
    sys.modules["tensorflow"] = tf
    try:
        importlib.import_module("scipy.sparse.linalg.eigen.arpack")  # SciPy < 1.12 has it
    except ImportError:
        import scipy.sparse.linalg as sla

        arpack = types.ModuleType("scipy.sparse.linalg.eigen.arpack")
        arpack.eigsh = sla.eigsh
        sys.modules["scipy.sparse.linalg.eigen.arpack"] = arpack


def patch_gcn_align(ratio: float, split_seed: int, test_every: int | None, marks: list) -> None:
    """Their split replaced by ours, their ``get_hits`` given MRR, and a test every ``test_every`` epochs."""
    import numpy as np
    import scipy.spatial.distance as ssd

    import metrics  # their metrics.py, utils.py (sys.path has the repo; tf is already compat.v1)
    import utils

    from benchmarks.fidelity import cityblock

    load = utils.load_data

    def load_data(dataset_str):
        adj, ae_input, train, test = load(dataset_str)   # unchanged: reads everything, shuffles their way
        links = utils.loadfile("data/" + dataset_str + "/ref_ent_ids", 2)
        ours_train, ours_test = lineage_links(links, ratio, split_seed)
        print(f"[fidelity-shim] split: lineage (RandomState({split_seed}) permutation, first int(n*{ratio}) "
              f"train) of {len(links)} links: train {len(ours_train)}, test {len(ours_test)} "
              f"(theirs would be {len(train)}/{len(test)}), test_sha1={links_sha1(ours_test)}", flush=True)
        return adj, ae_input, np.array(ours_train), ours_test

    utils.load_data = load_data

    state = {"epoch": 0, "steps": 0, "view": None}
    get_hits, get_combine_hits = metrics.get_hits, metrics.get_combine_hits

    def hits_with_mrr(vec, test_pair, top_k=(1, 10, 50, 100)):
        kept = []
        cdist = ssd.cdist

        def keep(*a, **k):
            kept.append(cdist(*a, **k))
            return kept[-1]

        t0 = time.monotonic()
        ssd.cdist = keep
        try:
            out = get_hits(vec, test_pair, top_k)       # theirs, unchanged: prints their Hits@k
        finally:
            ssd.cdist = cdist
        if kept:
            m = cityblock.metrics(*cityblock.ranks_from_distance(kept[-1]), ks=tuple(top_k))
            print(cityblock.format_line(state["epoch"], state["view"] or "SE", m, time.monotonic() - t0),
                  flush=True)
        return out

    def combine_with_view(se_vec, ae_vec, beta, test_pair, top_k=(1, 10, 50, 100)):
        state["view"] = "SE+AE"
        try:
            return get_combine_hits(se_vec, ae_vec, beta, test_pair, top_k)
        finally:
            state["view"] = None

    metrics.get_hits = hits_with_mrr              # `from metrics import *` in train.py copies these
    metrics.get_combine_hits = combine_with_view

    def after_run(sess, fetches):
        if not (isinstance(fetches, list) and len(fetches) == 2 and type(fetches[0]).__name__ == "Operation"):
            return
        state["steps"] += 1
        if state["steps"] % 2:                     # AE step; the SE step ends the epoch
            return
        state["epoch"] += 1
        marks.append(time.monotonic())
        g = sys.modules["__main__"].__dict__        # their train.py's globals (runpy's temporary __main__)
        if not test_every or state["epoch"] % test_every or state["epoch"] >= g["FLAGS"].epochs:
            return
        feed_ae = g["construct_feed_dict"](g["ae_input"], g["support"], g["ph_ae"])
        feed_se = g["construct_feed_dict"](1.0, g["support"], g["ph_se"])
        vec_ae = sess.run(g["model_ae"].outputs, feed_dict=feed_ae)
        vec_se = sess.run(g["model_se"].outputs, feed_dict=feed_se)
        print(f"[fidelity-shim] test after epoch {state['epoch']}: their get_combine_hits(beta={g['FLAGS'].beta})",
              flush=True)
        g["get_combine_hits"](vec_se, vec_ae, g["FLAGS"].beta, g["test"])

    sys.modules["tensorflow"].Session.hooks.append(after_run)


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
    ap.add_argument("--stop-after", type=int, default=None, help="MEAformer, MSNEA: stop after N epochs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ratio", type=float, default=0.2, help="GCN-Align: the seed ratio of our lineage split")
    ap.add_argument("--split-seed", type=int, default=42, help="GCN-Align: seed of the lineage shuffle")
    ap.add_argument("--test-every", type=int, default=None, help="GCN-Align, MSNEA: test every K epochs (and at the end)")
    ap.add_argument("--seed", type=int, default=42, help="MSNEA: the seed of random, numpy and torch (recorded: 42)")
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
    if args.test_every is not None and args.test_every < 1:
        ap.error(f"--test-every must be >= 1, got {args.test_every}")
    if args.model == "gcn_align":
        patch_tf1(args.threads)
        patch_gcn_align(args.ratio, args.split_seed, args.test_every, marks)
    else:
        patch_cpu(args.threads)
    if args.model == "meaformer":
        patch_meaformer(args.data_root, args.stop_after, marks)
    elif args.model == "eva":
        patch_eva()
    elif args.model == "msnea":
        patch_msnea(args.test_every or 1, args.stop_after, marks, args.seed)
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
