"""The authors' side: their published command lines, a launcher through the shim, and the reference record.

Published settings (the authors' shell scripts; see docs/fidelity.md for what each flag does):

* MEAformer ``run_meaformer.sh 1 FBDB15K norm 0.2 0``: ``--enable_sota`` fixes 500 epochs on FBDB15K, so the
  run keeps ``--epoch 500`` (the cosine schedule over 500 steps) and the shim stops it after N epochs.
* MCLEA ``run_mmkb.sh 0 42 FB15K_DB15K 0.2`` with ``--epochs N --check_point 1`` (no schedule, so a shorter
  run is the published one cut short; iterative learning would start at epoch 500).
* EVA ``run_dbp15k.sh`` settings (EVA has no FB script) with ``--file_dir data/FBDB15K --rate 0.2 --seed 42
  --epochs N --check_point 1``.
* MSNEA ``python main.py``: no arguments; their ``config.json`` (written by ``msnea_layout.py`` into the working
  directory, ``training_data`` pointing there, everything else as published: 200 epochs, Adam 1e-3, batch 5000
  triples); the shim stops it after N epochs (constant lr, so a shorter run is the published run cut short).
* GCN-Align README ``python train.py --lang zh_en`` with ``--lang NAME --epochs N`` (every other flag at its
  ``train.py`` default: plain SGD lr 20, gamma 3, k 5, beta 0.9, SE 200-d, AE 100-d, dropout 0; no schedule).
  The shim replaces their 30 % split by our lineage split at ``ratio`` and tests every ``test_every`` epochs.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.fidelity import parse as P

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
REFERENCE_DIR = HERE / "reference"

REPOSITORIES = {"meaformer": "zjukg/MEAformer", "mclea": "lzxlin/MCLEA", "eva": "cambridgeltl/eva",
                "gcn_align": "1049451037/GCN-Align", "msnea": "liyichen-cly/MSNEA"}
#: Commits the committed reference curves were measured at (git rev-parse HEAD of the fetched snapshot).
COMMITS = {"meaformer": "a247a496625549be82a2a145f09cd8288ddf3712",
           "mclea": "6946d433a8bab2a1a7d8c88af046d74efa72f7b0",
           "eva": "948ffbf3bf70cd3db1d3b8fcefc1660421d87a1f",
           "gcn_align": "4fc90c438e5a609b96df03daff170fbcf03fde94",
           "msnea": "dfdcda4747cf22732fb3d7f6089b851c2c36db4e"}
SCRIPTS = {"meaformer": "run_meaformer.sh 1 FBDB15K norm 0.2 0", "mclea": "run_mmkb.sh 0 42 FB15K_DB15K 0.2",
           "eva": "run_dbp15k.sh (settings; --file_dir data/FBDB15K --rate 0.2 --seed 42)",
           "gcn_align": "README: python train.py --lang zh_en (here --lang FBDB15K --epochs N; flags at defaults)",
           "msnea": "python main.py with their config.json (training_data = our data in their layout, "
                    "benchmarks/fidelity/msnea_layout.py)"}


def their_args(model: str, epochs: int, dataset: str = "FBDB15K", ratio: float = 0.2) -> list[str]:
    """Their script's arguments at the published settings, for ``epochs`` epochs tested every epoch."""
    if model == "meaformer":
        return ["--gpu", "1", "--eval_epoch", "1", "--only_test", "0", "--model_name", "MEAformer",
                "--data_choice", dataset, "--data_split", "norm", "--data_rate", str(ratio), "--epoch", "500",
                "--lr", "5e-4", "--hidden_units", "300,300,300", "--save_model", "0", "--batch_size", "3500",
                "--csls", "--csls_k", "3", "--random_seed", "42",
                "--exp_name", "IJCAI_MEAformer_sf_0_500-Norm", "--exp_id", f"v1_norm_{ratio}",
                "--workers", "12", "--dist", "0", "--accumulation_steps", "1", "--scheduler", "cos",
                "--attr_dim", "300", "--img_dim", "300", "--name_dim", "300", "--char_dim", "300",
                "--hidden_size", "300", "--tau", "0.1", "--structure_encoder", "gat",
                "--num_attention_heads", "1", "--num_hidden_layers", "1", "--use_surface", "0",
                "--use_intermediate", "1", "--enable_sota", "--replay", "0", "--device", "cpu"]
    if model == "mclea":
        kg = {"FBDB15K": "FB15K_DB15K", "FBYG15K": "FB15K_YAGO15K"}[dataset]
        return ["--file_dir", f"data/mmkb-datasets/{kg}", "--rate", str(ratio), "--lr", ".0005",
                "--epochs", str(epochs), "--hidden_units", "300,300,300", "--check_point", "1",
                "--bsize", "512", "--il", "--il_start", "500", "--semi_learn_step", "5", "--csls",
                "--csls_k", "3", "--seed", "42", "--tau", "0.1", "--tau2", "4.0", "--structure_encoder", "gat",
                "--img_dim", "100", "--attr_dim", "100", "--w_name", "--w_char"]
    if model == "gcn_align":  # every other flag at train.py's default (the README's command)
        return ["--lang", dataset, "--epochs", str(epochs)]
    if model == "msnea":  # main.py reads config.json only
        return []
    if model == "eva":
        return ["--file_dir", f"data/{dataset}", "--rate", str(ratio), "--lr", ".0005", "--epochs", str(epochs),
                "--hidden_units", "400,400,200", "--check_point", "1", "--bsize", "7500", "--il",
                "--il_start", "500", "--semi_learn_step", "5", "--csls", "--csls_k", "3", "--seed", "42"]
    raise ValueError(f"unknown model {model!r}")


def shim_command(model: str, repo: Path, epochs: int, run_dir: Path, python: str, data_root: Path,
                 workdir: Path, threads: int = 1, dataset: str = "FBDB15K", ratio: float = 0.2,
                 test_every: int = 1) -> list[str]:
    """The full command (``/usr/bin/time -v`` when present, the shim, their arguments)."""
    cmd = [python, str(HERE / "shim.py"), "--model", model, "--repo", str(repo), "--threads", str(threads),
           "--timing", str(run_dir / "timing.log"), "--stats", str(run_dir / "stats.json")]
    if model == "meaformer":
        cmd += ["--data-root", str(data_root.parent), "--stop-after", str(epochs)]  # data_root = .../mmkg
    elif model == "gcn_align":
        cmd += ["--cwd", str(workdir / model), "--ratio", str(ratio), "--split-seed", "42",
                "--test-every", str(test_every)]
    elif model == "msnea":
        cmd += ["--cwd", str(workdir / model), "--test-every", str(test_every), "--stop-after", str(epochs)]
    else:
        cmd += ["--cwd", str(workdir / model)]
    cmd += ["--"] + their_args(model, epochs, dataset, ratio)
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-v"] + cmd
    return cmd


def git_commit(repo: Path) -> str | None:
    """The checkout's commit: ``git rev-parse HEAD``, else the ``COMMIT`` file an export may carry."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
        if out.returncode == 0 and len(out.stdout.strip()) == 40:
            return out.stdout.strip()
    except OSError:
        pass
    f = Path(repo) / "COMMIT"
    return f.read_text().strip() if f.is_file() else None


def run_authors(model: str, repo: Path, epochs: int, run_dir: Path, python: str, data_root: Path,
                workdir: Path, threads: int = 1, dataset: str = "FBDB15K", ratio: float = 0.2,
                test_every: int = 1) -> Path:
    """Run their code through the shim (blocking); returns ``run_dir`` holding log.txt, timing.log, stats.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = shim_command(model, repo, epochs, run_dir, python, data_root, workdir, threads, dataset, ratio,
                       test_every)
    (run_dir / "command.txt").write_text(shlex.join(cmd) + "\n", encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(REPO_ROOT)}
    with open(run_dir / "log.txt", "w", encoding="utf-8") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    return run_dir


def time_v_peak_mib(log: Path) -> float | None:
    """``Maximum resident set size (kbytes)`` from ``/usr/bin/time -v`` output, in MiB."""
    if not log.is_file():
        return None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "Maximum resident set size" in line:
            return round(int(line.rsplit(":", 1)[1]) / 1024, 1)
    return None


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": None, "python": platform.python_version()}


def make_reference(model: str, run_dir: Path, repo: Path | None = None, standin: dict | None = None,
                   dataset: str = "FBDB15K", ratio: float = 0.2, notes: str = "") -> dict:
    """Build the reference record from a finished run directory."""
    run_dir = Path(run_dir)
    curve = P.parse(model, run_dir / "timing.log")
    stats = json.loads((run_dir / "stats.json").read_text()) if (run_dir / "stats.json").is_file() else {}
    cmd = (run_dir / "command.txt").read_text().strip() if (run_dir / "command.txt").is_file() else None
    raw_cmd = cmd
    if cmd is not None:
        cmd = portable_command(cmd, scratch=Path(repo).resolve().parent if repo else None)
    peak = time_v_peak_mib(run_dir / "log.txt")
    commit = (git_commit(repo) if repo else None) or COMMITS[model]
    extra = {}
    if model == "gcn_align":
        timing = P.gcn_align_timing(run_dir / "timing.log")
        extra = {"_seconds_per_epoch": timing["seconds_per_epoch"], "seconds_per_test": timing["seconds_per_test"],
                 "test_sha1": timing["test_sha1"],
                 "test_every": (curve[1]["epoch"] - curve[0]["epoch"]) if len(curve) > 1 else None,
                 "evaluation": "their metrics.py:get_combine_hits(vec_se, vec_ae, beta=0.9): cdist cityblock on "
                               "the raw [beta*SE, (1-beta)*AE], candidates the test pairs' other side; Hits@k as "
                               "they print them, MR/MRR added by the shim from the same matrix",
                 "split": "ours: lineage RandomState(42) permutation of ill_ent_ids, first int(n*ratio) train, no "
                          "validation (mimea --profile authors); their 30 % split replaced in the shim"}
    if model == "msnea":
        tokens = shlex.split(raw_cmd or "")
        cwd = tokens[tokens.index("--cwd") + 1] if "--cwd" in tokens else None
        layout = Path(cwd) / "layout.json" if cwd else run_dir / "layout.json"
        extra = {"evaluation": "their main.py:test -> evaluation.py:greedy_alignment(metric='inner', "
                               "normalize=True, csls_k=0, accurate=True): left-to-right only, candidates the test "
                               "pairs' other side; called by the shim every test_every epochs",
                 "split": "ours (mimea --profile authors: lineage RandomState(42), first int(n*ratio) train, no "
                          "validation) written as their 721train/test_links; links with an entity outside every "
                          "triple left out (their ids cover triple entities only)",
                 "test_every": (curve[1]["epoch"] - curve[0]["epoch"]) if len(curve) > 1 else None,
                 "seconds_per_test": round(statistics.median([r["test_s"] for r in curve]), 3) if curve else None}
        if layout.is_file():
            extra["layout"] = json.loads(layout.read_text(encoding="utf-8"))
            extra["test_sha1"] = extra["layout"].get("their_test_sha1")   # ours minus the unreadable links
    threads_env = ("OMP_NUM_THREADS=1 MKL_NUM_THREADS=1, tf.Session intra/inter-op threads 1"
                   if model == "gcn_align" else "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1, torch.set_num_threads(1)")
    if model == "meaformer":
        schedule = "first N epochs of the published 500-epoch cosine schedule (warm-up 75 steps)"
    elif model == "gcn_align":
        schedule = ("plain SGD lr 20, no schedule: a shorter run is the published 2000-epoch run cut short; "
                    "seconds per epoch = training only (the tests every K epochs are timed separately)")
    elif model == "msnea":
        schedule = ("constant lr (no schedule): a shorter run is the published 200-epoch run cut short; seconds per "
                    "epoch = their logged training time of the epoch (the tests are timed separately)")
    else:
        schedule = "constant lr (no schedule): a shorter run is the published run cut short"
    return {
        "model": model, "dataset": dataset, "ratio": ratio,
        "authors": {"repository": REPOSITORIES[model], "commit": commit, "published_script": SCRIPTS[model]},
        "command": cmd,
        "shim": ("benchmarks/fidelity/shim.py (TF1 via tensorflow.compat.v1, our split, test hook; see its "
                 "docstring)" if model == "gcn_align" else
                 "benchmarks/fidelity/shim.py (CPU patches, runpy; see its docstring)"),
        "machine": {**machine(), "threads": stats.get("threads", 1),
                    "env": threads_env,
                    "loadavg_1min": stats.get("loadavg_1min"),
                    "shared": "other jobs ran on the same 2 cores; times are upper bounds"},
        "standin": standin,
        "epochs": curve[-1]["epoch"] if model in ("gcn_align", "msnea") and curve else len(curve),
        "schedule_note": schedule,
        "seconds_per_epoch": (extra.pop("_seconds_per_epoch") if model == "gcn_align" else
                              round(statistics.median([r["train_s"] for r in curve]), 3) if model == "msnea" and curve
                              else P.seconds_per_epoch(curve)),
        **extra,
        "peak_rss_mib": peak if peak is not None else stats.get("peak_rss_self_mib"),
        "peak_rss_note": ("/usr/bin/time -v maximum RSS of the training process (DataLoader workers, if any, are "
                          f"separate: {stats.get('peak_rss_children_mib')} MiB)" if model != "gcn_align" else
                          "/usr/bin/time -v maximum RSS of the training process (it starts no workers; the "
                          f"children's {stats.get('peak_rss_children_mib')} MiB is a short-lived process that "
                          "`import tensorflow` forks)"),
        "wall_s": stats.get("wall_s"), "stop_reason": stats.get("reason"),
        "curve": curve,
        "notes": notes,
    }


def portable_command(cmd: str, scratch: Path | None = None) -> str:
    """The command as recorded in a committed reference: the repository's own files relative to its root, the
    scratch folder (where their checkout and virtualenv lie) as ``$SCRATCH``; no absolute path of this machine."""
    import re

    # first the project's own interpreter (wherever it lies, the repository included): plain ``python``
    out = re.sub(rf"(?<!\S){re.escape(sys.executable)}(?!\S)", "python", cmd)
    out = re.sub(r"/\S*?/benchmarks/fidelity/", "benchmarks/fidelity/", out)
    if scratch is not None:
        out = out.replace(str(scratch), "$SCRATCH")
    return out.replace(f"{REPO_ROOT}/", "").replace(str(REPO_ROOT), ".")


def reference_path(model: str, dataset: str = "FBDB15K", ratio: float = 0.2) -> Path:
    return REFERENCE_DIR / f"{model}-{dataset}-r{int(round(ratio * 100))}.json"


def write_reference(record: dict, path: Path | None = None) -> Path:
    path = path or reference_path(record["model"], record["dataset"], record["ratio"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def load_reference(model: str, dataset: str = "FBDB15K", ratio: float = 0.2, path: Path | None = None) -> dict:
    return json.loads(Path(path or reference_path(model, dataset, ratio)).read_text(encoding="utf-8"))


if __name__ == "__main__":  # python -m benchmarks.fidelity.authors MODEL RUN_DIR [REPO] [STANDIN_JSON]
    m, d = sys.argv[1], Path(sys.argv[2])
    r = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    s = json.loads(Path(sys.argv[4]).read_text()) if len(sys.argv) > 4 else None
    print(write_reference(make_reference(m, d, r, s)))
