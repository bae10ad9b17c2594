"""The paper-tables harness (benchmarks/run.py): every table on the synthetic default with tiny runs.

One module-scoped sweep (``--table all``: one baseline and MIMEA, one seed ratio, one dataset for the per-dataset
tables, 4 epochs of width-32 models on a ~350-entity synthetic pair; ~15 runs) feeds most tests; the others add
a few runs to the same store.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))

from benchmarks.figures import FIGURE_BUILDERS  # noqa: E402
from benchmarks.run import main  # noqa: E402
from benchmarks.tables import registry  # noqa: E402
from benchmarks.tables.registry import MODELS, OURS, TABLES, model_label  # noqa: E402
from benchmarks.tables.render import Cell, Column, Group, Row, Table, tex_escape, to_latex, to_markdown  # noqa: E402
from benchmarks.tables.sweep import Context, make_spec  # noqa: E402
from benchmarks.tables.table4_ablation import variants as table4_variants  # noqa: E402

BASELINE = "gcn_align"
TEST_MODELS = (BASELINE, OURS)
TINY = ["--set", "train.epochs=4", "train.eval_every=2", "data.synthetic.n_latent=200", "model_config.dim=32",
        "model_config.ot_iters=20"]


def _args(store: dict, *extra: str) -> list[str]:
    return ["--synthetic", "--no-progress", "--results", str(store["results"]), "--out", str(store["out"]),
            "--ratios", "0.2", "--replicates", "1", *extra, *TINY]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sweep of every table; shared by the tests of this module."""
    root = tmp_path_factory.mktemp("tables")
    s = {"results": root / "results", "out": root / "paper_tables"}
    s["argv"] = _args(s, "--table", "all", "--models", ",".join(TEST_MODELS), "--dataset", "FBDB15K")
    s["rc"] = main(s["argv"])
    return s


def _read(store: dict, name: str) -> str:
    return (store["out"] / name).read_text(encoding="utf-8")


def _md_rows(md: str) -> dict[str, list[str]]:
    """Markdown pipe table -> label -> cells (header and rule lines skipped)."""
    rows = {}
    for line in md.splitlines():
        if line.startswith("|") and not line.startswith("|:") and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _value(cell: str) -> float:
    return float(cell.replace("**", "").split("±")[0].replace(",", "").strip())


# -- without runs -----------------------------------------------------------------------------------------------

def test_numbering_is_stated_once_and_docs_agree():
    assert sorted(TABLES) == [1, 2, 3, 4, 5, 6]
    docs = (REPO / "docs" / "tables.md").read_text(encoding="utf-8")
    for n, t in TABLES.items():
        assert f"| {n} | {t.title} |" in docs, f"docs/tables.md does not state table {n} as {t.title!r}"
        mod = registry.table_module(n)
        assert callable(mod.plan) and callable(mod.build)
    assert set(registry.FIGURES) == set(FIGURE_BUILDERS)
    assert MODELS[-1] == OURS


def test_render_bold_std_published_and_escaping():
    cols = [Column("a", ("20%", "H@1")), Column("t", ("Time (s)",), better="min", fmt="seconds")]
    t = Table(9, "T", "cap_50%", cols, [
        Group(None, [Row("x_1", {"a": Cell([0.5, 0.7]), "t": Cell([3.0, 5.0])}),
                     Row("y", {"a": Cell([0.2, 0.2]), "t": Cell([1.0, 1.0])})]),
        Group("Published", [Row("z (published, protocol B) [1]", {"a": Cell([0.9])}, ours=False)])],
        notes=["KG1 → KG2 ≈ 5 & 10%"], replicates=2)
    md, tex = to_markdown(t), to_latex(t)
    assert "**0.600 ± 0.141**" in md and "**1.00 ± 0.00**" in md    # best of ours: max H@1, min time
    assert "**0.900" not in md and r"\textbf{0.900" not in tex  # published never bold
    assert r"\textbf{0.600$\pm$0.141}" in tex and r"\textbf{1.00$\pm$0.00}" in tex
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){2-2}"):
        assert rule in tex
    assert r"x\_1" in tex and r"cap\_50\%" in tex
    assert r"KG1 $\rightarrow$ KG2 $\approx$ 5 \& 10\%" in tex
    assert all(ord(ch) < 128 for ch in tex)
    assert tex_escape("a{b}~^\\") == r"a\{b\}\textasciitilde{}\textasciicircum{}\textbackslash{}"


def test_tuned_and_set_overrides_resolve_in_order(tmp_path):
    tuned = tmp_path / "tuned" / BASELINE / "synthetic"
    tuned.mkdir(parents=True)
    (tuned / "best.json").write_text('{"model_config": {}, "train": {"lr": 0.0123, "weight_decay": 0.5}}')
    ctx = Context(tuned=tmp_path / "tuned", overrides={"train": {"weight_decay": 0.25}, "seed": 7})
    spec = make_spec(ctx, BASELINE, "FBYG15K", 0.5, 3)
    cfg = spec.config
    assert cfg.train.lr == 0.0123 and cfg.train.weight_decay == 0.25       # tuned < --set
    assert cfg.seed == 3 and cfg.split.ratio == 0.5                        # the table fixes seed and ratio
    assert cfg.data.dataset == "synthetic" and cfg.data.synthetic == {"seed": 1}   # params B
    assert make_spec(ctx, BASELINE, "FBYG15K", 0.5, 3).run_id == spec.run_id
    assert make_spec(ctx, BASELINE, "FBDB15K", 0.5, 3).run_id != spec.run_id
    study = tmp_path / "tuned" / f"{OURS}-synthetic-r0.2-smoke"   # the tuner's own study folder
    study.mkdir()
    (study / "best.json").write_text('{"model_config": {"tau": 0.05}, "train": {"lr": 0.002}}')
    tuned = make_spec(ctx, OURS, "FBDB15K", 0.2, 0, {"transport": "none"}).config
    assert tuned.model_config["tau"] == 0.05 and tuned.train.lr == 0.002
    assert tuned.model_config["transport"] == "none"                      # the table's variant wins
    assert make_spec(ctx, OURS, "FBDB15K", 0.5, 0).config.model_config["tau"] != 0.05


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["--table", "2", "--models", "no_such_model", "--results", str(tmp_path)]) == 2
    assert "no_such_model" in capsys.readouterr().err
    assert main(["--table", "4", "--synthetic", "--dataset", "DBP15K", "--results", str(tmp_path)]) == 2
    assert "no synthetic stand-in" in capsys.readouterr().err
    assert main(["--table", "1", "--data-dir", str(tmp_path), "--results", str(tmp_path)]) == 2
    assert "FBDB15K" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--table", "7"])


# -- one sweep of every table -----------------------------------------------------------------------------------

def test_sweep_succeeds_and_writes_every_file(store):
    assert store["rc"] == 0
    for n in TABLES:
        assert (store["out"] / f"table{n}.tex").is_file() and (store["out"] / f"table{n}.md").is_file()
    for stem in registry.FIGURES:
        for ext in ("png", "pdf"):
            assert (store["out"] / "figures" / f"{stem}.{ext}").stat().st_size > 0, stem
    tables = _read(store, "tables.tex")
    assert all(rf"\input{{table{n}.tex}}" in tables for n in TABLES) and r"\usepackage{booktabs}" in tables
    assert not list(store["out"].rglob("*.tmp"))


@pytest.mark.parametrize("number", [2, 3])
def test_main_tables(store, number):
    md, tex = _read(store, f"table{number}.md"), _read(store, f"table{number}.tex")
    rows = _md_rows(md)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert [h.strip() for h in header.strip("|").split("|")][1:] == ["20% H@1", "20% H@10", "20% MRR"]
    ours = {m: rows[model_label(m)] for m in TEST_MODELS}
    for j in range(3):  # the bold cell is the best of our rows, and only there
        vals = {m: _value(c[j]) for m, c in ours.items()}
        best = max(vals.values())
        assert all(c[j].startswith("**") == (vals[m] == best) for m, c in ours.items())
    # synthetic numbers: the published (real-data) rows are left out, and a note says why
    assert set(rows) == {"Method"} | {model_label(m) for m in TEST_MODELS}, sorted(rows)
    assert "(published" not in md and "(published" not in tex and r"\textit{" not in tex
    assert "synthetic" in md.split("\n")[0] and "not comparable with these synthetic numbers" in md
    assert "Protocol flags (from the runs' metadata)" in md and "iterative no" in md
    assert "Synthetic data" in md or "synthetic data" in md
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{" in tex


def test_table1_statistics(store):
    md = _read(store, "table1.md")
    rows = _md_rows(md)
    for label in ("Entities", "Relations (distinct ids used)", "Attribute triples", "Alignment links",
                  "Entities with images"):
        assert label in rows and rows[label][0] not in ("", "--", "n/a")
    assert "synthetic stand-ins" in md


def test_ablation_and_design_tables(store):
    rows4 = _md_rows(_read(store, "table4.md"))
    labels = [label for _, label, _ in table4_variants()]
    assert len(labels) == 1 + 4 + 4       # full, four modules, four modalities
    assert {"w/o graph", "w/o relation", "w/o attribute", "w/o image"} <= set(labels)
    for label in labels:
        assert label in rows4 and all(c != "--" for c in rows4[label]), label
    md6 = _read(store, "table6.md")
    rows6 = _md_rows(md6)
    for choice in ("fusion_span = 0.25 (ours)", "fusion_span = 0.5 (alternative)", "fusion_span = None (alternative)", "fusion = beta (ours)",
                   "fusion = softmax (alternative)", "transport = sinkhorn (ours)",
                   "transport = identity (alternative)", "ot_target = joint (ours)", "ot_target = others (alternative)",
                   "cl_weighting = balanced (ours)", "cl_weighting = adaptive (alternative)",
                   "cl_weighting = uncertainty (alternative)"):
        assert choice in rows6 and rows6[choice][0] != "--", choice
    assert "within each group of rows" in md6
    # the unmodified MIMEA is one run shared by tables 2, 4, 5 and 6
    full = rows4[f"{model_label(OURS)}, full"]
    assert [c.strip("*") for c in rows6["fusion = beta (ours)"]] == [c.strip("*") for c in full]


def test_efficiency_table(store):
    md = _read(store, "table5.md")
    rows = _md_rows(md)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert [h.strip() for h in header.strip("|").split("|")][1:] == [
        "Parameters", "Time/epoch (s)", "Training time (s)", "Epochs run", "Peak memory (MB)", "H@1"]
    for m in TEST_MODELS:
        assert int(rows[model_label(m)][0].replace("**", "").replace(",", "")) > 0
    assert "process_peak_rss" in md or "cuda_max_allocated" in md


def test_second_invocation_runs_nothing(store, capsys):
    runs = store["results"] / "runs"
    before = {p.name: (p / "results.json").stat().st_mtime_ns for p in runs.iterdir()}
    capsys.readouterr()
    assert main(store["argv"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"(\d+) reused from the store, 0 run", out)
    assert m and int(m.group(1)) > 0, out
    assert {p.name: (p / "results.json").stat().st_mtime_ns for p in runs.iterdir()} == before


def test_replicates_show_std_and_run_side_by_side(store):
    runs = store["results"] / "runs"
    before = {p.name for p in runs.iterdir()}
    # two new replicates (seeds 1, 2), two at a time; --replicates given last wins over _args' 1
    assert main(_args(store, "--table", "5", "--models", BASELINE, "--replicates", "3", "--jobs", "2")) == 0
    md = _read(store, "table5.md")
    assert "±" in _md_rows(md)[model_label(BASELINE)][-1] and "n=3 replicate" in md
    new = {p.name for p in runs.iterdir()} - before
    assert len(new) == 2
    for name in new:
        assert json.loads((runs / name / "sweep.json").read_text())["jobs"] == 2
    assert "2 runs at a time" in md


def test_failed_run_is_reported_and_sweep_goes_on(store, capsys):
    # lr 1e300 passes the config checks and fails in the child (AdamW overflows)
    argv = _args(store, "--table", "5", "--models", BASELINE, "--no-figures") + ["train.lr=1e300"]
    assert main(argv) == 1
    assert "without overflow (log: " in capsys.readouterr().err   # the child's one-line error (failed.json)
    md = _read(store, "table5.md")
    assert _md_rows(md)[model_label(BASELINE)] == ["--"] * 6
    assert "Runs not finished" in md
    assert list((store["results"] / "logs").glob("*.log"))


def test_published_rows_beside_real_data_runs_and_no_absolute_path(tmp_path):
    """On real data (a data folder given) table 2 prints the published rows apart; its caption names the folder by
    name, never by the machine's absolute path. Built from no runs: the layout only."""
    from benchmarks.tables.table2_fbdb import build

    root = tmp_path / "somewhere" / "mmkg"
    ctx = Context(data_dir=str(root), models=TEST_MODELS, ratios=(0.2,))
    table = build(ctx, {})
    md, tex = to_markdown(table), to_latex(table)
    rows = _md_rows(md)
    published = [label for label in rows if "(published" in label]
    assert published and all(re.search(r"\(published, protocol [ABC]\) \[\d+(,\d+)*\]$", p)
                              for p in published if "not public" not in p)
    assert not any("**" in c for p in published for c in rows[p])
    assert rows["MIMEA (published): not public"] == ["--"] * 3
    assert "*Published results (cited; not run here)*" in rows
    assert "from the data folder mmkg/FBDB15K" in md
    assert str(tmp_path) not in md and str(tmp_path) not in tex and "somewhere" not in md + tex


def test_no_generated_file_holds_an_absolute_path(store):
    root = str(store["out"].parent)      # the sweep's temporary folder (holds results/ and paper_tables/)
    files = [p for p in store["out"].rglob("*") if p.is_file()]
    assert any(p.suffix == ".tex" for p in files) and any(p.suffix == ".png" for p in files)
    for path in files:
        data = path.read_bytes()
        assert root.encode() not in data and str(REPO).encode() not in data, path


def test_a_data_folder_run_names_no_absolute_path(tmp_path):
    """Table 2 from a data folder given by its absolute path (a generated pair laid out as ROOT/FBDB15K): no output
    file holds that path (nor the store's); the caption names the folder."""
    from mimea.data.synthetic import generate

    root = tmp_path / "datasets" / "mmkg"
    generate(root, "FBDB15K", n_latent=200)
    out = tmp_path / "out"
    assert main(["--table", "2", "--data-dir", str(root), "--models", BASELINE, "--ratios", "0.2", "--no-progress",
                 "--results", str(tmp_path / "results"), "--out", str(out), "--set", "train.epochs=2"]) == 0
    md = (out / "table2.md").read_text(encoding="utf-8")
    assert "from the data folder mmkg/FBDB15K" in md and "(published, protocol" in md
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 4
    for path in files:
        assert str(tmp_path).encode() not in path.read_bytes(), path


def test_every_table_is_input_able_as_is(store):
    """A tableN.tex is one bare table environment: no preamble, no \\documentclass, no macro of ours."""
    for n in TABLES:
        tex = _read(store, f"table{n}.tex")
        body = [line for line in tex.splitlines() if line and not line.startswith("%")]
        assert body[0] == r"\begin{table}[htbp]" and body[-1] == r"\end{table}", n
        assert not re.search(r"\\(documentclass|usepackage|begin\{document\}|ifdefined|newcommand)", tex), n
    assert "mimeatables" not in _read(store, "tables.tex")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not on PATH (CI installs texlive)")
def test_pdflatex_compiles_everything(store, tmp_path):
    """Every generated table \\input into a user's minimal document (booktabs only), and tables.tex on its own."""
    build = tmp_path / "tex"
    shutil.copytree(store["out"], build)
    numbers = sorted(int(p.stem[5:]) for p in build.glob("table*.tex") if p.stem[5:].isdigit())
    assert numbers == sorted(TABLES)
    docs = ["tables.tex"]
    for n in numbers:
        (build / f"paper{n}.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
                                             f"Some text.\n\\input{{table{n}}}\nMore text.\n\\end{{document}}\n")
        docs.append(f"paper{n}.tex")
    for name in docs:
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", name], cwd=build,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{name}: {proc.stdout[-2000:]}"
        assert (build / name.replace(".tex", ".pdf")).stat().st_size > 0


@pytest.mark.real_data
def test_table1_on_real_data_shows_published_figures(shared_data_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["--table", "1", "--data-dir", str(shared_data_dir), "--results", str(tmp_path / "r"),
                 "--out", str(out), "--no-progress"]) == 0
    md = (out / "table1.md").read_text(encoding="utf-8")
    rows = _md_rows(md)
    assert rows["Relation triples (lines)"][0] == "381,186 [592,213]"   # FB15K reconstructed (PROVENANCE.md)
    assert rows["Entities"][:2] == ["14,951", "12,842"]                 # equal: no published figure beside
    assert "Liu et al. 2019" in md and "reconstruction" in md


def test_tables_render_from_stored_records_without_the_data(tmp_path):
    """A fresh clone holds committed run records but not the data: --no-train renders the table from the records
    (found by their config), trains nothing, and lists what is missing."""
    from mimea.data.synthetic import generate

    root = tmp_path / "datasets" / "mmkg"
    generate(root, "FBDB15K", n_latent=200)
    args = ["--table", "2", "--data-dir", str(root), "--models", BASELINE, "--ratios", "0.2", "--no-progress",
            "--results", str(tmp_path / "results"), "--set", "train.epochs=2", "--no-figures"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    shutil.rmtree(root)
    assert main([*args, "--out", str(tmp_path / "b"), "--no-train"]) == 0
    assert (tmp_path / "a" / "table2.md").read_text() == (tmp_path / "b" / "table2.md").read_text()
    other = [a if a != "train.epochs=2" else "train.epochs=3" for a in args]
    assert main([*other, "--out", str(tmp_path / "c"), "--no-train"]) == 0   # no record: nothing trained
    assert not list((tmp_path / "results" / "runs").glob("*nodata*"))


def test_table4_notes_a_modality_the_runs_skipped(tmp_path):
    """On data without image features the "w/o image" row would be the full model again: the note says so."""
    from types import SimpleNamespace

    from benchmarks.tables.table4_ablation import skipped_modality_notes

    ctx = Context(data_dir=str(tmp_path), ratios=(0.2,))

    def rec(ds, skipped):
        return SimpleNamespace(spec=SimpleNamespace(dataset=ds), metadata={"protocol": {"modalities_skipped": skipped}})

    notes = skipped_modality_notes(ctx, [rec("FBDB15K", ["image"]), rec("FBDB15K", []), rec("FBYG15K", [])])
    assert len(notes) == 1 and "FB15K-DB15K" in notes[0] and "'w/o image'" in notes[0]
    assert skipped_modality_notes(ctx, [rec("FBYG15K", None)]) == []


def test_table4_trains_no_run_for_a_modality_the_data_lack(tmp_path):
    """A real data folder without image features: "w/o image" would be the full model again, so table 4 plans
    no run for it there (n/a and a note), and plans it where the features exist."""
    from benchmarks.tables import table4_ablation as t4
    from mimea.data.images import find_image_file
    from mimea.data.synthetic import generate

    root = tmp_path / "mmkg"
    for ds in t4.DATASETS:
        generate(root, ds, n_latent=120)
    find_image_file(root, "FBYG15K").unlink()           # FBYG15K: no image features; FBDB15K keeps them
    ctx = Context(data_dir=str(root), ratios=(0.2,))
    assert t4.absent_modalities(ctx, "FBYG15K") == {"image"} and not t4.absent_modalities(ctx, "FBDB15K")
    by_ds = {ds: [s for s in t4.plan(ctx) if s.dataset == ds] for ds in t4.DATASETS}
    assert len(by_ds["FBDB15K"]) == len(by_ds["FBYG15K"]) + 1 == len(t4.variants())
    kept = [s.variant for s in by_ds["FBYG15K"] if s.variant.startswith("modalities=")]
    assert len(kept) == 3 and all("image" in v for v in kept), kept      # w/o graph, relation, attribute
    table = t4.build(ctx, {})
    row = next(r for g in table.groups for r in g.rows if r.label == "w/o image")
    assert all(c.text == "n/a" for k, c in row.cells.items() if k.startswith("FBYG15K:"))
    assert all(c.text is None for k, c in row.cells.items() if k.startswith("FBDB15K:"))
    assert any("'w/o image' is n/a, not trained" in n and "FB15K-YAGO15K" in n for n in table.notes)
