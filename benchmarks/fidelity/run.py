"""Compare the authors' per-epoch test curve with ours: a Markdown table and a PNG figure.

    python benchmarks/fidelity/run.py --model meaformer|mclea|eva|gcn_align|msnea --epochs N [--data-dir ROOT]
        [--authors-code SCRATCH/REPO --authors-python VENV/bin/python] [--reference] [--test-every K] [--out DIR]

* Authors' side: with ``--authors-code`` (and without ``--reference``) their code runs through the shim
  (``benchmarks/fidelity/shim.py``) at their published settings for ``--epochs`` epochs, test every epoch, on
  ``--data-dir`` (a root made by ``benchmarks/fidelity/standin.py``: ``ROOT/NAME/norm`` + ``ROOT/pkls``), and
  the record goes to ``OUT/authors-<model>.json`` (``--record`` also overwrites the committed reference).
  Otherwise the committed ``benchmarks/fidelity/reference/<model>-FBDB15K-r20.json`` is read.
* Our side: ``python -m mimea.cli train --model M --dataset D --data-dir ROOT --ratio R --profile authors
  --epochs N --set train.eval_every=1`` (``--our-profile``, ``--our-args`` change it), timed with
  ``/usr/bin/time -v``; its ``results.json`` curve is read by :func:`read_our_curve` (the one place to adapt if
  the record layout changes). ``--ours-results FILE`` reads an existing results.json instead of training.
* GCN-Align (``--model gcn_align``): their TensorFlow 1 ``train.py`` through the shim (a venv with TensorFlow 2,
  whose ``compat.v1`` it runs on), on ``--data-dir`` = any root with ``NAME/norm`` (no images: no stand-in
  needed; ``standin.link_gcn_align`` makes their ``data/NAME`` layout under ``--workdir``), split replaced by ours,
  tested every ``--test-every`` epochs with their ``get_combine_hits``. Ours runs through
  ``benchmarks/fidelity/ours_eval.py`` (the same CLI command, the test evaluation replaced by the authors'
  cityblock protocol, ``model_config.joint_normalize=false``), ``train.eval_every=K``. The table's seconds per
  epoch are training only; a test's seconds are a row of their own.
* MSNEA (``--model msnea``): ``--data-dir`` = a stand-in root with 2,048-d features (``standin.py --dim 2048``);
  ``benchmarks/fidelity/msnea_layout.py`` writes our data and split in their layout under ``--workdir``/msnea,
  their ``main.py`` runs through the shim, tested every ``--test-every`` epochs with their own ``test``; ours
  with ``eval.similarity=cosine`` (their inner product of normalised embeddings, no CSLS), left-to-right read.
* Output: ``OUT/fidelity-<model>.md`` (per-epoch test H@1/H@10/MRR of both, seconds per epoch, peak RSS, ratios)
  and ``OUT/fidelity-<model>.png`` (test H@1 per epoch, both curves).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.fidelity import authors as A  # noqa: E402
from benchmarks.fidelity import standin  # noqa: E402

METRICS = ("hits@1", "hits@10", "mrr")


# --------------------------------------------------------------------------------------------- our side
def _pick_metrics(block) -> dict | None:
    """``{"hits@1":..}`` from a record's test block: direction ``l2r`` first (the authors' headline), then
    ``mean``, or the block itself when it is flat."""
    if not isinstance(block, dict):
        return None
    for key in ("l2r", "mean"):
        if isinstance(block.get(key), dict) and "hits@1" in block[key]:
            return block[key]
    return block if "hits@1" in block else None


def read_our_curve(results: dict) -> list[dict]:
    """Per-epoch records ``{"epoch", "test": {hits@1, hits@10, mrr, ...}, "wall_s"}`` from our ``results.json``.

    Tolerant: each ``results["curve"]`` record needs ``epoch`` and a ``test`` block (``{"l2r": {...}, "mean":
    {...}}`` or flat); records without one are skipped (``valid``-only records are NOT used: the authors' curve
    is on test). ``time_s`` (cumulative seconds since training began) gives ``wall_s`` by differences; a
    per-record ``epoch_time_s`` wins when present.
    """
    out, prev_t = [], 0.0
    for rec in results.get("curve") or []:
        m = _pick_metrics(rec.get("test"))
        t = rec.get("time_s")
        wall = rec.get("epoch_time_s")
        if wall is None and t is not None:
            wall = t - prev_t
        if t is not None:
            prev_t = t
        if m is None:
            continue
        out.append({"epoch": int(rec["epoch"]), "test": m, "wall_s": wall})
    return out


def our_seconds_per_epoch(results: dict) -> float | None:
    """Median seconds between consecutive curve records' cumulative ``time_s`` (every record, test or not)."""
    ts = [r["time_s"] for r in results.get("curve") or [] if r.get("time_s") is not None]
    return _median([b - a for a, b in zip([0.0] + ts[:-1], ts)])


def our_seconds_per_test(results: dict) -> float | None:
    """Median seconds a test adds to an epoch: a tested record's ``time_s`` step minus the median step."""
    recs = [r for r in results.get("curve") or [] if r.get("time_s") is not None]
    steps = [(b["time_s"] - a["time_s"], "test" in b) for a, b in zip([{"time_s": 0.0}] + recs[:-1], recs)]
    plain = _median([d for d, tested in steps[1:] if not tested])
    tested = [d - plain for d, t in steps[1:] if t] if plain is not None else []
    return _median(tested)


#: What our side needs to be the authors' run cut short: MEAformer's published run keeps its 500-epoch cosine
#: schedule when the shim stops it after N epochs, so ours keeps that horizon too.
OUR_SETTINGS: dict[str, tuple[str, ...]] = {"meaformer": ("train.schedule_epochs=500",),
                                             # the authors' joint [beta*SE, (1-beta)*AE] (evaluation only)
                                             "gcn_align": ("model_config.joint_normalize=false",),
                                             # their test: inner product of the normalised joint, no CSLS
                                             "msnea": ("eval.similarity=cosine",)}
#: Models whose test evaluation on our side is replaced by the authors' (``benchmarks/fidelity/ours_eval.py``).
OURS_WITH_AUTHORS_EVAL = ("gcn_align",)


def _scratch_of(args) -> Path | None:
    """The scratch folder the recorded commands name ``$SCRATCH``: the one holding the authors' checkout, else the
    deepest folder holding every path of the run outside the repository (``--out`` and ``--data-dir``)."""
    if getattr(args, "authors_code", None) is not None:
        return Path(args.authors_code).resolve().parent
    outside = [p for p in (Path(args.out).resolve(),
                           Path(args.data_dir).resolve() if getattr(args, "data_dir", None) else None)
               if p is not None and A.REPO_ROOT not in (p, *p.parents)]
    if not outside:
        return None
    common = Path(os.path.commonpath([str(p) for p in outside]))
    if common == outside[0]:            # --out itself (no data dir outside): its parent, as before
        common = common.parent
    return None if common == Path(common.anchor) else common


def run_ours(args, out: Path) -> tuple[dict, float | None, str, Path]:
    """Train ours through the CLI; returns (results.json, peak RSS MiB from /usr/bin/time, the command, its path)."""
    store = out / "ours-store"
    entry = ["-m", "mimea.cli"]
    if args.model in OURS_WITH_AUTHORS_EVAL:
        entry = ["-m", "benchmarks.fidelity.ours_eval", "--csls-log", str(out / "ours-csls.jsonl")]
        (out / "ours-csls.jsonl").unlink(missing_ok=True)
    cmd = [args.our_python, *entry, "train", "--model", args.model, "--dataset", args.dataset,
           "--ratio", str(args.ratio), "--profile", args.our_profile, "--epochs", str(args.epochs),
           "--results", str(store), "--no-progress", "--force"]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    cmd += ["--set", f"train.eval_every={args.test_every}", *OUR_SETTINGS.get(args.model, ())]
    cmd += shlex.split(args.our_args or "")
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-v"] + cmd
    env = {**os.environ, "PYTHONPATH": str(A.REPO_ROOT), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    log = out / "ours.log"
    t0 = time.time()
    with open(log, "w", encoding="utf-8") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=A.REPO_ROOT).returncode
    if rc != 0:
        raise SystemExit(f"our run failed (exit {rc}); see {log}")
    found = [p for p in store.rglob("results.json") if p.stat().st_mtime >= t0 - 1]
    if not found:
        raise SystemExit(f"our run wrote no results.json under {store}; see {log}")
    path = max(found, key=lambda p: p.stat().st_mtime)
    res = json.loads(path.read_text(encoding="utf-8"))
    return res, A.time_v_peak_mib(log), shlex.join(cmd), path


def our_test_sha1(run_dir: Path) -> str | None:
    """``meta.test_sha1`` of the run's ``split.json`` (the test links ours used), if the run folder has one."""
    f = Path(run_dir) / "split.json"
    if not f.is_file():
        return None
    return (json.loads(f.read_text(encoding="utf-8")).get("meta") or {}).get("test_sha1")


# --------------------------------------------------------------------------------------------- report
def _median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2


def _fmt(x, nd=4):
    return "" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def _ratio(a, b):
    return None if a in (None, 0) or b is None else b / a


def table(model: str, ref: dict, ours: list[dict] | None, ours_meta: dict) -> str:
    theirs = {r["epoch"]: r for r in ref["curve"]}
    mine = {r["epoch"]: r for r in ours or []}
    epochs = sorted(set(theirs) | set(mine))
    images = (f"stand-in image features seed {ref['standin'].get('seed')}" if ref.get("standin") else
              "no image features (the model reads none)")
    lines = [f"# Fidelity: {model} on {ref['dataset']} ({int(ref['ratio'] * 100)} % seeds), test, l2r", "",
             f"Authors: {ref['authors']['repository']} @ `{ref['authors']['commit'][:12]}`; {images}. "
             f"{ref.get('schedule_note', '')}", ""]
    if ref.get("evaluation"):
        ours_eval = ("; ours: the same ranks of our [beta*SE, (1-beta)*AE] (benchmarks/fidelity/ours_eval.py, "
                     "model_config.joint_normalize=false)" if model in OURS_WITH_AUTHORS_EVAL else "")
        lines += [f"Evaluation, authors: {ref['evaluation']}{ours_eval}. Split: {ref.get('split')}"
                  + (f"; authors' test_sha1 `{ref.get('test_sha1')}`, ours `{ours_meta['test_sha1']}`"
                     f" ({'same' if ref.get('test_sha1') == ours_meta.get('test_sha1') else 'DIFFERENT'} test links)"
                     if ours_meta.get("test_sha1") else "") + ".", ""]
    lines += ["| epoch | authors H@1 | ours H@1 | authors H@10 | ours H@10 | authors MRR | ours MRR |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for ep in epochs:
        t = P_test(theirs.get(ep))
        o = (mine.get(ep) or {}).get("test") or {}
        lines.append(f"| {ep} | " + " | ".join(f"{_fmt(t.get(k))} | {_fmt(o.get(k))}" for k in METRICS) + " |")
    s_t = ref.get("seconds_per_epoch")
    s_o = ours_meta.get("seconds_per_epoch") or _median(r.get("wall_s") for r in ours or [])
    r_t, r_o = ref.get("peak_rss_mib"), ours_meta.get("peak_rss_mib")
    train_only = ref.get("seconds_per_test") is not None
    what = "median, training only" if train_only else "median, train + test"
    lines += ["", "| | authors | ours | ours / authors |", "|---|---:|---:|---:|",
              f"| seconds per epoch ({what}) | {_fmt(s_t, 2 if train_only else 1)} | "
              f"{_fmt(s_o, 2 if train_only else 1)} | {_fmt(_ratio(s_t, s_o), 2)} |"]
    if train_only:
        q_t, q_o = ref.get("seconds_per_test"), ours_meta.get("seconds_per_test")
        lines.append(f"| seconds per test (median) | {_fmt(q_t, 1)} | {_fmt(q_o, 1)} | {_fmt(_ratio(q_t, q_o), 2)} |")
    lines += [f"| peak RSS (MiB) | {_fmt(r_t, 0)} | {_fmt(r_o, 0)} | {_fmt(_ratio(r_t, r_o), 2)} |", "",
              f"Authors' machine: {ref.get('machine', {}).get('cpu')}, {ref.get('machine', {}).get('threads')} "
              f"thread(s). Authors' command: `{ref.get('command')}`"]
    if ours_meta.get("command"):
        lines.append(f"Our command: `{ours_meta['command']}`")
    return "\n".join(lines) + "\n"


def P_test(rec) -> dict:
    """The authors' l2r metrics of one curve record (``{}`` when absent)."""
    if not rec:
        return {}
    return _pick_metrics(rec.get("test")) or {}


def _cost(sec, rss) -> str:
    parts = ([f"{sec:.1f} s/epoch"] if sec is not None else []) + ([f"{rss / 1024:.1f} GiB"] if rss else [])
    return f" [{', '.join(parts)}]" if parts else ""


def figure(model: str, ref: dict, ours: list[dict] | None, path: Path, ours_meta: dict | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    meta = ours_meta or {}
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    xs = [r["epoch"] for r in ref["curve"]]
    ax.plot(xs, [P_test(r).get("hits@1") for r in ref["curve"]], "o-",
            label=f"authors ({ref['authors']['repository']})"
            + _cost(ref.get("seconds_per_epoch"), ref.get("peak_rss_mib")))
    if ours:
        s_o = meta.get("seconds_per_epoch") or _median(r.get("wall_s") for r in ours)
        ax.plot([r["epoch"] for r in ours], [r["test"].get("hits@1") for r in ours], "s--",
                label="ours (mimea)" + _cost(s_o, meta.get("peak_rss_mib")))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test H@1 (l2r)")
    ax.set_title(f"{model}, {ref['dataset']} {int(ref['ratio'] * 100)} % seeds, "
                 + ("stand-in images" if ref.get("standin") else "no images"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(A.REPOSITORIES), required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--dataset", default="FBDB15K")
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--data-dir", type=Path, default=None, help="ROOT with NAME/norm and pkls/ (standin.py)")
    ap.add_argument("--authors-code", type=Path, default=None, help="their checkout (scratch, outside the repo)")
    ap.add_argument("--authors-python", default=sys.executable, help="the python of their virtualenv")
    ap.add_argument("--reference", action="store_true", help="read the committed reference, do not run theirs")
    ap.add_argument("--reference-file", type=Path, default=None)
    ap.add_argument("--record", action="store_true", help="also overwrite the committed reference JSON")
    ap.add_argument("--standin-seed", type=int, default=0, help="recorded with the authors' run")
    ap.add_argument("--workdir", type=Path, default=None, help="MCLEA/EVA layouts (default OUT/work)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--test-every", type=int, default=1, help="test every K epochs (ours: train.eval_every=K; theirs: GCN-Align only, the "
                    "others' published scripts test every epoch)")
    ap.add_argument("--our-python", default=sys.executable)
    ap.add_argument("--our-profile", default="authors")
    ap.add_argument("--our-args", default="", help="extra arguments for our train command (one string)")
    ap.add_argument("--ours-results", type=Path, default=None, help="an existing results.json (no training)")
    ap.add_argument("--ours-log", type=Path, default=None,
                    help="with --ours-results: that run's ours.log (its /usr/bin/time -v peak RSS)")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("fidelity-out"))
    args = ap.parse_args(argv)
    if args.test_every < 1:
        ap.error(f"--test-every must be >= 1, got {args.test_every}")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    if args.authors_code is not None and not args.reference:
        if args.data_dir is None:
            ap.error("--authors-code needs --data-dir (a root written by benchmarks/fidelity/standin.py)")
        meta_file = args.data_dir / args.dataset / "extra" / "dataset.json"
        stand = json.loads(meta_file.read_text()).get("standin") if meta_file.is_file() else None
        workdir = args.workdir or out / "work"
        if args.model == "gcn_align":
            try:
                standin.link_gcn_align(args.data_dir, args.dataset, workdir)
            except FileNotFoundError as exc:
                ap.error(str(exc))
            stand = None  # GCN-Align reads no images
        elif args.model == "msnea":
            from benchmarks.fidelity import msnea_layout

            msnea_layout.write_layout(args.data_dir, args.dataset, args.ratio, workdir / "msnea")
        else:
            standin.link_layouts(args.data_dir, args.dataset, workdir)
        run_dir = A.run_authors(args.model, args.authors_code.resolve(), args.epochs, out / f"authors-{args.model}",
                                args.authors_python, args.data_dir.resolve(), workdir.resolve(), args.threads,
                                args.dataset, args.ratio, args.test_every)
        ref = A.make_reference(args.model, run_dir, args.authors_code, stand, args.dataset, args.ratio)
        A.write_reference(ref, out / f"authors-{args.model}.json")
        if args.record:
            print("recorded", A.write_reference(ref))
    else:
        ref = A.load_reference(args.model, args.dataset, args.ratio, args.reference_file)
    ref = {**ref, "curve": [r for r in ref["curve"] if r["epoch"] <= args.epochs]}

    ours, meta = None, {}
    if args.ours_results is not None:
        res = json.loads(args.ours_results.read_text(encoding="utf-8"))
        ours, meta = read_our_curve(res), {"seconds_per_epoch": our_seconds_per_epoch(res),
                                           "seconds_per_test": our_seconds_per_test(res),
                                           "test_sha1": our_test_sha1(args.ours_results.parent)}
        if args.ours_log is not None:
            meta["peak_rss_mib"] = A.time_v_peak_mib(args.ours_log)
    elif not args.skip_ours:
        res, peak, cmd, path = run_ours(args, out)
        ours, meta = read_our_curve(res), {"peak_rss_mib": peak,
                                           "command": A.portable_command(cmd, scratch=_scratch_of(args)),
                                           "seconds_per_epoch": our_seconds_per_epoch(res),
                                           "seconds_per_test": our_seconds_per_test(res),
                                           "test_sha1": our_test_sha1(path.parent)}
        if not ours:
            print("warning: our results.json has no per-epoch test records (needs --profile authors)",
                  file=sys.stderr)
    md = out / f"fidelity-{args.model}.md"
    md.write_text(table(args.model, ref, ours, meta), encoding="utf-8")
    png = figure(args.model, ref, ours, out / f"fidelity-{args.model}.png", meta)
    print(md.read_text(encoding="utf-8"))
    print(f"wrote {md} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
