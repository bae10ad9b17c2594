"""The README's results tables, regenerated from the committed run records (``results/runs/``), never typed.

    python benchmarks/readme_results.py            # rewrite the generated blocks of README.md in place
    python benchmarks/readme_results.py --check    # exit 1 (and say which block) when README.md is stale

Each block sits between ``<!-- readme_results:NAME begin -->`` and ``<!-- readme_results:NAME end -->`` in the
README; the text around the blocks (what the numbers say) is written by hand. The blocks:

* ``paper``: table 2's FB15K-DB15K 20 % cells under the ``paper`` profile (the runs
  ``benchmarks/run.py --table 2 --profile paper --dataset FBDB15K --ratios 0.2 --replicates 3 --set
  train.threads=1`` reads), one row per model: seeds, test H@1 / H@10 / MRR (left to right, mean ± std over the
  seeds), epochs with the validation-selected ones, seconds per epoch and peak memory (means over the seeds);
* ``paper_fbyg``: the same for table 3's FB15K-YAGO15K 20 % cells (``--table 3 --dataset FBYG15K``);
* ``design``: MIMEA's chosen design against MCLEA at a quarter of each one's authors' epochs (125 / 250), 20 %,
  ``eval.valid_pool=unseen``, both real datasets (``benchmarks/design_study.py --ablation --test``);
* ``ablation``: each module switched off, the validation MRR change paired by seed, per real dataset;
* ``ablation_paper``: the same at MIMEA's paper length (500 epochs, the default validation pool, table 4's runs),
  with the paired test H@1 change beside it.

Nothing here trains or needs the data: the records are the only input, so a fresh clone regenerates the same
text (``tests/test_readme_results.py`` checks that the committed README is what the committed records give).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
#: the data folder the records were made with, as their configs name it (relative to the repository)
DATA_DIR = "../shared/data/mmkg"
DESIGN_DATASETS = ("FBDB15K", "FBYG15K")
DESIGN_EPOCHS = {"mimea": 125, "mclea": 250}
DESIGN_RATIOS = (0.2, 0.5)
#: MIMEA's paper-profile epochs (table 4's runs: ``benchmarks/run.py --table 4 --profile paper``)
PAPER_EPOCHS = 500
#: the paper-length ablation's datasets: the two real ones and the embedded synthetic default (``mimea train``
#: without data: the only data here with an image modality that carries signal)
PAPER_ABLATION_DATASETS = ("FBDB15K", "FBYG15K", "synthetic")


def _ms(xs: list[float]) -> str:
    """mean ± std to 3 decimals, as the design study prints them; "-" for no runs."""
    from benchmarks.design_study import _mean_std

    return _mean_std(xs) if xs else "-"


def _thousands(x: float) -> str:
    return f"{x:,.0f}"


def _paper_block(results: Path, module) -> str:
    """One row per model of a main-results table module's 20 % paper-profile cells (its NUMBER, DATASET)."""
    from benchmarks.run import build_context, make_parser
    from benchmarks.tables.registry import model_label
    from benchmarks.tables.sweep import collect, group_records

    dataset = module.DATASET
    args = make_parser().parse_args(["--table", str(module.NUMBER), "--profile", "paper", "--dataset", dataset,
                                     "--ratios", "0.2", "--data-dir", DATA_DIR, "--replicates", "3",
                                     "--set", "train.threads=1", "--results", str(results), "--no-train"])
    ctx = build_context(args)
    specs = module.plan(ctx)
    cells = group_records(specs, collect(specs, ctx.results))
    lines = ["| model | seeds | test H@1 | test H@10 | test MRR | epochs (best on validation) | s/epoch | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for model in ctx.models:
        recs = sorted(cells.get((model, dataset, 0.2, ""), []), key=lambda r: r.spec.seed)
        if not recs:
            lines.append(f"| {model_label(model)} | - | not run at paper length yet | | | | | |")
            continue
        metric = {m: [r.metric(m, "l2r") for r in recs] for m in ("hits@1", "hits@10", "mrr")}
        epochs = sorted({int(r.metadata.get("epochs_run") or r.spec.config["train"]["epochs"]) for r in recs})
        best = ", ".join(str(r.results.get("best_epoch")) for r in recs)
        sec = [float(r.metadata["time_per_epoch_s"]) for r in recs if r.metadata.get("time_per_epoch_s")]
        mem = [float(r.metadata["peak_memory_mb"]) for r in recs if r.metadata.get("peak_memory_mb")]
        lines.append("| " + " | ".join([
            model_label(model), ", ".join(str(r.spec.seed) for r in recs),
            *(_ms(metric[m]) for m in ("hits@1", "hits@10", "mrr")),
            f"{'/'.join(_thousands(e) for e in epochs)} ({best})",
            f"{statistics.mean(sec):.2f}" if sec else "-", _thousands(statistics.mean(mem)) if mem else "-"]) + " |")
    return "\n".join(lines)


def paper_block(results: Path) -> str:
    """Table 2's FB15K-DB15K 20 % cells, paper profile."""
    from benchmarks.tables import table2_fbdb

    return _paper_block(results, table2_fbdb)


def paper_fbyg_block(results: Path) -> str:
    """Table 3's FB15K-YAGO15K 20 % cells, paper profile."""
    from benchmarks.tables import table3_fbyg

    return _paper_block(results, table3_fbyg)


def _design_rows(results: Path, dataset: str, ratio: float = 0.2) -> tuple[dict, dict]:
    from benchmarks import design_study as D

    mimea = D.collect(results, dataset, ratio, DESIGN_EPOCHS["mimea"], "unseen", test=True)
    mclea = D.collect(results, dataset, ratio, DESIGN_EPOCHS["mclea"], "unseen", test=True, model="mclea")
    return mimea, mclea


def design_block(results: Path) -> str:
    """The full model against MCLEA at a quarter of each one's epochs, per seed ratio and dataset (the first ratio
    always; a later one only for a dataset with a stored run of either model there)."""
    from benchmarks import design_study as D

    lines = ["| a quarter of each one's epochs | seeds | valid MRR | test H@1 | test MRR |",
             "|---|---|---|---|---|"]
    for ratio in DESIGN_RATIOS:
        for dataset in DESIGN_DATASETS:
            mimea, mclea = _design_rows(results, dataset, ratio)
            cell = f"{dataset} {ratio:.0%}"
            cells = ((f"{cell}: MIMEA (ours), {DESIGN_EPOCHS['mimea']} epochs", mimea.get(D.FULL, [])),
                     (f"{cell}: MCLEA, {DESIGN_EPOCHS['mclea']} epochs", mclea.get(D.FULL, [])))
            if ratio != DESIGN_RATIOS[0] and not any(runs for _, runs in cells):
                continue
            for name, runs in cells:
                runs = sorted(runs, key=lambda r: r["seed"])
                lines.append("| " + " | ".join([
                    name, ", ".join(str(r["seed"]) for r in runs) or "-", _ms([r["valid"]["mrr"] for r in runs]),
                    _ms([r["test"]["hits@1"] for r in runs]), _ms([r["test"]["mrr"] for r in runs])]) + " |")
    return "\n".join(lines)


def _seeds(item: dict) -> str:
    return ",".join(map(str, item["seeds"])) or "-"


def _valid_delta(item: dict) -> str:
    """The paired Δ validation MRR of one module ablation, in bold where the module earns its place."""
    from benchmarks import design_study as D

    text = D._signed(item["d_valid_mrr"])
    return f"**{text}**" if item["earns"] else text


def _module_rows(per: dict, datasets, cells) -> list[str]:
    """One table row per module ablation: its label, then ``cells(item)`` for each dataset's item."""
    rows = []
    for i, item in enumerate(per[datasets[0]]):
        row = [item["module"]]
        for ds in datasets:
            row += cells(per[ds][i])
        rows.append("| " + " | ".join(row) + " |")
    return rows


def ablation_block(results: Path) -> str:
    from benchmarks import design_study as D

    per = {ds: D.ablation(_design_rows(results, ds)[0], test=False) for ds in DESIGN_DATASETS}
    head = ["module removed: Δ validation MRR, paired by seed (seeds)", *DESIGN_DATASETS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += _module_rows(per, DESIGN_DATASETS, lambda it: [f"{_valid_delta(it)} ({_seeds(it)})"])
    sds = [per[ds][0]["sd_full"] if per[ds] else None for ds in DESIGN_DATASETS]
    lines.append("| " + " | ".join(["the full model's seed-to-seed std (a drop beyond it, in bold, earns the place)",
                                     *("-" if sd is None else f"{sd:.3f}" for sd in sds)]) + " |")
    return "\n".join(lines)


def ablation_paper_block(results: Path) -> str:
    """Table 4's module rows at paper length: Δ validation MRR and Δ test H@1, paired by seed, per dataset (real and synthetic)."""
    from benchmarks import design_study as D

    datasets = PAPER_ABLATION_DATASETS
    per = {ds: D.ablation(D.collect(results, ds, 0.2, PAPER_EPOCHS, "valid", test=True), test=True)
           for ds in datasets}
    head = [f"module removed, {PAPER_EPOCHS} epochs: Δ paired by seed"]
    head += [f"{ds} {what}" for ds in datasets for what in ("seeds", "Δ valid MRR", "Δ test H@1")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += _module_rows(per, datasets, lambda it: [_seeds(it), _valid_delta(it), D._signed(it["d_test_h1"])])
    cells = ["the full model's seed-to-seed std of validation MRR (a mean drop beyond it, over 2+ seeds, is in "
             "bold)"]
    for ds in datasets:
        sd = per[ds][0]["sd_full"] if per[ds] else None
        cells += ["", "-" if sd is None else f"{sd:.3f}", ""]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


BLOCKS = {"paper": paper_block, "paper_fbyg": paper_fbyg_block, "design": design_block, "ablation": ablation_block,
          "ablation_paper": ablation_paper_block}


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with what lies between the markers ``begin`` and ``end`` replaced by ``body`` (ValueError: no block)."""
    i = text.find(begin)
    j = text.find(end, i + len(begin)) if i >= 0 else -1
    if j < 0:
        raise ValueError(f"no '{begin.strip()}' ... '{end.strip()}' block")
    return text[:i + len(begin)] + body + text[j:]


def regenerate(text: str, results: Path) -> tuple[str, list[str]]:
    """``text`` with every generated block rewritten; the names of the blocks that changed."""
    changed = []
    for name, make in BLOCKS.items():
        try:
            new = replace_between(text, f"<!-- readme_results:{name} begin -->\n",
                                  f"<!-- readme_results:{name} end -->", make(results) + "\n")
        except ValueError as exc:
            raise ValueError(f"README.md: {exc}") from None
        if new != text:
            changed.append(name)
            text = new
    return text, changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is stale")
    ap.add_argument("--readme", default=str(README))
    ap.add_argument("--results", default=str(REPO_ROOT / "results"))
    args = ap.parse_args(argv)
    path = Path(args.readme)
    try:
        new, changed = regenerate(path.read_text(encoding="utf-8"), Path(args.results))
    except ValueError as exc:
        print(f"readme_results.py: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if changed:
            print(f"{path.name}: stale block(s) {', '.join(changed)}: run python benchmarks/readme_results.py",
                  file=sys.stderr)
            return 1
        return 0
    if changed:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
    print(f"{path.name}: {'rewrote ' + ', '.join(changed) if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
