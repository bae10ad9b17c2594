"""Regenerate the paper's tables and figures: ``python benchmarks/run.py --table N|all [options]``.

Runs only the runs the requested tables need and the store does not hold yet (one child process per run, a
progress bar with ETA over the sweep), then writes ``OUT/tableN.tex`` (booktabs), ``OUT/tableN.md`` (pipe),
``OUT/tables.tex`` (a minimal article inputting every table; ``pdflatex tables.tex``) and ``OUT/figures/``.
A killed invocation resumes: finished runs are reused, a run with a checkpoint resumes from it.

Without ``--data-dir`` (and without ``$MIMEA_DATA_DIR``) the real datasets are replaced by the package's synthetic
stand-ins (table 2: params A, table 3: params B); every caption says so. Exit status: 0, 1 when a run failed
(its cells stay empty and its log and error are named) or a stored run is damaged (named), 2 on bad input.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable (benchmarks, mimea)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimea.training.config import PROFILES as PROFILE_NAMES  # noqa: E402
from benchmarks.tables.registry import DEFAULT_REPLICATES, FIGURES, MODELS, TABLES, table_module  # noqa: E402

EXIT_RUN_FAILED, EXIT_INPUT_ERROR = 1, 2


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or not all(0 < v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"seed ratios must lie in (0, 1), got {text!r}")
    return vals


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _tables(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "all":
        return tuple(TABLES)
    try:
        nums = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--table takes N, N,M or all; got {text!r}") from None
    bad = [n for n in nums if n not in TABLES]
    if bad:
        raise argparse.ArgumentTypeError(f"no table {bad[0]}; tables: {', '.join(map(str, TABLES))}, all")
    return nums


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Tables: " + "; ".join(f"{n}: {t.title}" for n, t in TABLES.items()))
    p.add_argument("--table", type=_tables, required=True, help="N, N,M or all")
    p.add_argument("--profile", default="smoke", choices=list(PROFILE_NAMES))
    p.add_argument("--dataset", type=_names, default=None,
                   help="datasets of tables 1 and 4 (all given) and 5, 6 (the first); default FBDB15K,FBYG15K")
    p.add_argument("--data-dir", default=None, help="ROOT holding FBDB15K/ and FBYG15K/ (default $MIMEA_DATA_DIR; "
                   "neither: synthetic stand-ins)")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic stand-ins even if $MIMEA_DATA_DIR "
                   "is set")
    p.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES,
                   help=f"init seeds 0..R-1 per cell, split fixed (default {DEFAULT_REPLICATES})")
    p.add_argument("--models", type=_names, default=None, help=f"models of tables 2, 3 and 5, in row order (default {','.join(MODELS)}); any "
                   "registered name, plugins included (`mimea models`; docs/extending.md)")
    p.add_argument("--ratios", type=_floats, default=None,
                   help="seed ratios of tables 2, 3 (all) and 4, 5, 6 (the first); default 0.2,0.5,0.8 / 0.2")
    p.add_argument("--results", default="results", help="run store root (default results)")
    p.add_argument("--out", default="paper_tables", help="output folder (default paper_tables)")
    p.add_argument("--tuned", default=None, help="DIR with <model>/<dataset>/best.json (tuned overrides)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="RunConfig fields for every run (train.epochs=4, eval.similarity=cosine); "
                        "model_config.KEY=VALUE sets KEY in every model that has it")
    p.add_argument("--launcher", default="forkserver" if os.name == "posix" else "subprocess",
                   choices=["forkserver", "subprocess"], help="how each run's child process starts")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at a time (default 1; with --executor submitit: all, the scheduler decides); each "
                        "in-process child sets its own torch threads: pair with --set train.threads=1")
    from mimea.executors import add_executor_flags

    add_executor_flags(p, executor_help="inprocess (default): child processes of this command (--launcher); "
                       "submitit: one job per run (Slurm, or its local executor), the --results store on a "
                       "filesystem every node mounts",
                       set_example="timeout_min=240 cpus_per_task=4 gpus_per_node=1 slurm_partition=gpu "
                                   "(default timeout_min 1440)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-train", action="store_true",
                   help="render from the stored (e.g. committed) run records only: train nothing, leave the cells "
                        "of missing runs empty and list them; the data folder need not exist")
    p.add_argument("--restart-damaged", action="store_true",
                   help="a stored run with a damaged file: move the file aside (NAME.damaged-TIME), start it over")
    return p


def build_context(args):
    from mimea.cli import parse_assignments
    from mimea.models import registry

    from benchmarks.tables.sweep import Context

    data_dir = None if args.synthetic else (args.data_dir or os.environ.get("MIMEA_DATA_DIR") or None)
    if data_dir is not None:
        data_dir = str(Path(data_dir).expanduser().resolve())
        if not Path(data_dir).is_dir() and not getattr(args, "no_train", False):
            raise FileNotFoundError(f"--data-dir {data_dir}: no such folder")
    if args.replicates < 1:
        raise ValueError(f"--replicates must be >= 1, got {args.replicates}")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    models = args.models or MODELS
    known = registry.available()
    missing = [m for m in models if m not in known]
    if missing:
        raise KeyError(f"model {missing[0]!r} is not registered; registered: {', '.join(known) or 'none'}")
    overrides = parse_assignments(args.set)
    model_overrides = overrides.pop("model_config", {}) or {}
    results = Path(args.results).resolve()
    from mimea.executors import from_flags

    executor = from_flags(args.executor, args.submitit_cluster, parse_assignments(args.submitit_set),
                          results / "submitit")
    launcher = executor or args.launcher
    jobs = args.jobs or (1 if executor is None else 1_000_000)   # submitit: all at once, the scheduler decides
    return Context(profile=args.profile, data_dir=data_dir, datasets=args.dataset, replicates=args.replicates,
                   models=tuple(models), ratios=args.ratios, results=results,
                   out=Path(args.out), tuned=Path(args.tuned) if args.tuned else None, overrides=overrides,
                   model_overrides=model_overrides, launcher=launcher, progress=not args.no_progress, jobs=jobs)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    t0 = time.perf_counter()
    from mimea.data.errors import DataError

    from benchmarks.tables.render import write_table, write_tables_tex
    from benchmarks.tables.sweep import SweepReport, check_datasets, check_model_overrides, collect, execute, unique

    try:
        ctx = build_context(args)
        from mimea.models import registry

        check_model_overrides(ctx, (set(MODELS) & set(registry.available())) | set(ctx.models))
        if 1 in args.table:
            from benchmarks.tables.table1_datasets import DATASETS as TABLE1_DATASETS

            check_datasets(ctx, ctx.dataset_keys(TABLE1_DATASETS))
        plans = {n: table_module(n).plan(ctx) for n in args.table}
        if not args.no_train:
            check_datasets(ctx, {s.dataset for specs in plans.values() for s in specs})
    except (KeyError, ValueError, FileNotFoundError, DataError) as exc:
        print(f"run.py: error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR

    specs = unique(s for specs in plans.values() for s in specs)
    data = "synthetic stand-ins" if ctx.synthetic else ctx.data_dir
    where = ctx.launcher.describe() if hasattr(ctx.launcher, "describe") else f"{ctx.launcher} child processes"
    print(f"tables {','.join(map(str, args.table))}: {len(specs)} runs needed (profile {ctx.profile}, data "
          f"{data}, {ctx.replicates} replicate(s)); store {ctx.results}; runs as {where}", flush=True)

    def _terminated(signum, frame):  # SIGTERM stops the children like Ctrl-C (a SIGKILL: see tables/children.py)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        if args.no_train:
            from mimea.store import RunStore

            store = RunStore(ctx.results)
            missing = [s for s in specs if not store.is_finished(s.run_id)]
            report = SweepReport(needed=len(specs), reused=len(specs) - len(missing))
            for s in missing:
                print(f"  not in the store (cells left empty): {s.model} {s.dataset} r{s.ratio:g} seed {s.seed}"
                      f"{' ' + s.variant if s.variant else ''}", file=sys.stderr)
        else:
            report = execute(specs, ctx.results, launcher=ctx.launcher, progress=ctx.progress, jobs=ctx.jobs,
                             restart_damaged=args.restart_damaged)
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept (and a stopped run's checkpoint); run the same command to "
              "resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"sweep: {report.reused} reused from the store, {report.ran} run in {report.seconds:.1f} s, "
          f"{len(report.failed)} failed", flush=True)
    for rid, log in report.failed:
        error = report.errors.get(rid)
        print(f"  failed: {rid}{': ' + error if error else ''} (log: {log})", file=sys.stderr)

    damaged: list = []
    runs = collect(specs, ctx.results, damaged)   # a damaged run's cells stay empty, like a failed run's
    for exc in damaged:
        print(f"  damaged: {exc}", file=sys.stderr)
    out = Path(ctx.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for n in args.table:
            table = table_module(n).build(ctx, {rid: runs[rid] for rid in {s.run_id for s in plans[n]} if rid in runs})
            written += write_table(table, out)
    except DataError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    written.append(write_tables_tex(out))
    if not args.no_figures and specs:
        from benchmarks.figures import write_figures

        figs = write_figures(ctx, runs.values(), out / "figures")
        for stem, paths in figs.items():
            if paths:
                written += paths
            else:
                print(f"figure {stem} ({FIGURES[stem]}): skipped, no runs for it in this invocation")
    print(f"wrote {len(written)} files under {out} in {time.perf_counter() - t0:.1f} s")
    return EXIT_RUN_FAILED if report.failed or damaged else 0


if __name__ == "__main__":
    raise SystemExit(main())
