"""A table as data (columns, row groups, cells over replicates, notes) and its LaTeX and Markdown renderings.

LaTeX: each ``tableN.tex`` is one bare ``table`` environment that a paper ``\\input``s as it is; it needs booktabs
(``\\toprule``, ``\\midrule``, ``\\bottomrule``) and nothing else, no macro of ours. ``tables.tex`` is the separate
standalone wrapper: a minimal article inputting every table (``pdflatex tables.tex``). Markdown: tabulate's pipe
format. Every file is written atomically.

Bold marks the best of OUR rows per column (or per row group, when a table says so); published rows are never
bolded. A cell is the mean over replicates, with ``± std`` (sample standard deviation) when n >= 2.
"""
from __future__ import annotations

import csv
import math
import statistics
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from mimea.store.atomic import atomic_write_text

PUBLISHED_CSV = Path(__file__).resolve().parents[1] / "published_results.csv"
#: The protocols of published_results.csv (shared/reference/README.md).
PROTOCOLS = {
    "A": "the original papers' setting (iterative training allowed; MSNEA also uses attribute values)",
    "B": "MEAformer's setting (non-iterative, no entity names, attribute names only, MMKG image features)",
    "C": "the ACK-MMEA lineage's own re-runs of the baselines",
}
MISSING = "--"


# -- the table as data ------------------------------------------------------------------------------------------

@dataclass
class Cell:
    values: list[float] = field(default_factory=list)   # one per replicate (ours) or one (published)
    text: str | None = None                              # preformatted text instead of mean +- std

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None


@dataclass
class Column:
    key: str
    header: tuple[str, ...]        # (group, name) or (name,)
    better: str | None = "max"     # "max" | "min" | None (never bolded)
    fmt: str = "metric"            # metric | int | seconds | mb


@dataclass
class Row:
    label: str
    cells: dict[str, Cell]
    ours: bool = True


@dataclass
class Group:
    title: str | None
    rows: list[Row]


@dataclass
class Table:
    number: int
    title: str
    caption: str
    columns: list[Column]
    groups: list[Group]
    notes: list[str] = field(default_factory=list)
    stub: str = "Method"
    bold_scope: str = "column"     # "column": best over all our rows; "group": best within each row group
    replicates: int | None = None  # expected n of our cells; a cell with another n shows it


def fmt_value(v: float, fmt: str, like: float | None = None) -> str:
    """``v`` in column format ``fmt``; ``like``: format with the decimals ``like`` would get (a std beside its mean)."""
    if fmt == "metric":
        return f"{v:.3f}"
    if fmt == "int":
        return f"{int(round(v)):,}"
    if fmt == "mb":
        return f"{v:,.0f}"
    if fmt == "seconds":
        ref = abs(v if like is None else like)
        decimals = 3 if ref < 1 else 2 if ref < 10 else 1 if ref < 100 else 0
        return f"{v:,.{decimals}f}"
    raise ValueError(f"unknown format {fmt!r}")


def best_marks(table: Table) -> set[tuple[int, int, str]]:
    """(group index, row index, column key) of every bold cell: the best displayed mean among our rows."""
    marks: set[tuple[int, int, str]] = set()
    scopes = [list(range(len(table.groups)))] if table.bold_scope == "column" else \
        [[g] for g in range(len(table.groups))]
    for col in table.columns:
        if col.better not in ("max", "min"):
            continue
        for scope in scopes:
            cands = []
            for gi in scope:
                for ri, row in enumerate(table.groups[gi].rows):
                    cell = row.cells.get(col.key)
                    if row.ours and cell is not None and cell.text is None and cell.mean is not None:
                        cands.append((float(fmt_value(cell.mean, col.fmt).replace(",", "")), gi, ri))
            if len(cands) < 2:
                continue
            pick = max if col.better == "max" else min
            best = pick(c[0] for c in cands)
            marks |= {(gi, ri, col.key) for v, gi, ri in cands if v == best}
    return marks


def bold_note(table: Table) -> str | None:
    """What bold means in this table (None when nothing can be bold)."""
    if not any(c.better in ("max", "min") for c in table.columns):
        return None
    where = "within each group of rows" if table.bold_scope == "group" else "per column"
    has_min = any(c.better == "min" for c in table.columns)
    return (f"Bold: the best of our rows {where} ({'highest metric, lowest cost' if has_min else 'highest'}; "
            f"ties all bold); published rows are never bold.")


def all_notes(table: Table) -> list[str]:
    note = bold_note(table)
    return ([note] if note else []) + list(table.notes)


def _cell_parts(cell: Cell | None, col: Column, table: Table, row: Row) -> tuple[str, str | None, str]:
    """(mean text, std text or None, suffix) of a cell."""
    if cell is None or (cell.text is None and cell.mean is None):
        return MISSING, None, ""
    if cell.text is not None:
        return cell.text, None, ""
    std = fmt_value(cell.std, col.fmt, like=cell.mean) if cell.std is not None else None
    suffix = f" (n={cell.n})" if row.ours and table.replicates and cell.n != table.replicates else ""
    return fmt_value(cell.mean, col.fmt), std, suffix


# -- LaTeX ------------------------------------------------------------------------------------------------------

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\textless{}", ">": r"\textgreater{}"}
_TEX_UNICODE = {"±": r"$\pm$", "→": r"$\rightarrow$", "←": r"$\leftarrow$", "–": "--", "—": "---",
                "×": r"$\times$", "≈": r"$\approx$", "…": r"\ldots{}", "’": "'", "‘": "`", "“": "``", "”": "''",
                "≥": r"$\geq$", "≤": r"$\leq$", "µ": r"$\mu$", "−": "-", "·": r"$\cdot$", "†": r"\dag{}",
                "\u00a0": "~"}


def tex_escape(text: str) -> str:
    """Plain text -> LaTeX that pdflatex accepts (specials escaped, non-ASCII mapped or transliterated)."""
    out = []
    for ch in str(text):
        if ch in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[ch])
        elif ch in _TEX_UNICODE:
            out.append(_TEX_UNICODE[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            ascii_ = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(tex_escape(ascii_) if ascii_ else "?")
    return "".join(out)


def _header_rows(columns: Sequence[Column]) -> tuple[list[tuple[str, int, int]], list[str]]:
    """Top-level spans (text, first col index, last col index; 1-based after the stub) and the leaf names."""
    spans: list[tuple[str, int, int]] = []
    for i, col in enumerate(columns, start=2):
        top = col.header[0] if len(col.header) > 1 else ""
        if spans and spans[-1][0] == top and spans[-1][2] == i - 1:
            spans[-1] = (top, spans[-1][1], i)
        else:
            spans.append((top, i, i))
    return spans, [c.header[-1] for c in columns]


def to_latex(table: Table) -> str:
    marks = best_marks(table)
    ncol = 1 + len(table.columns)
    spans, leaves = _header_rows(table.columns)
    lines = [
        f"% Table {table.number}: {tex_escape(table.title)}. Generated by benchmarks/run.py; do not edit.",
        r"% \input{tableN} in a document that loads booktabs; tables.tex compiles all: pdflatex tables.tex",
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{tex_escape(table.title)}. {tex_escape(table.caption)}}}",
        rf"\label{{tab:{table.number}}}",
        r"\footnotesize",
        r"\setlength{\tabcolsep}{3pt}",
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
    ]
    if any(top for top, _, _ in spans):
        head = [""]
        rules = []
        for top, a, b in spans:
            head.append(rf"\multicolumn{{{b - a + 1}}}{{c}}{{{tex_escape(top)}}}" if b > a else tex_escape(top))
            if top:
                rules.append(rf"\cmidrule(lr){{{a}-{b}}}")
        lines.append(" & ".join(head) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join([tex_escape(table.stub)] + [tex_escape(x) for x in leaves]) + r" \\")
    lines.append(r"\midrule")
    for gi, group in enumerate(table.groups):
        if gi > 0:
            lines.append(r"\midrule")
        if group.title:
            lines.append(rf"\multicolumn{{{ncol}}}{{l}}{{\textit{{{tex_escape(group.title)}}}}} \\")
        for ri, row in enumerate(group.rows):
            cells = [tex_escape(row.label)]
            for col in table.columns:
                mean, std, suffix = _cell_parts(row.cells.get(col.key), col, table, row)
                text = tex_escape(mean) + (rf"$\pm${tex_escape(std)}" if std is not None else "")
                if (gi, ri, col.key) in marks:
                    text = rf"\textbf{{{text}}}"
                cells.append(text + tex_escape(suffix))
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = all_notes(table)
    if notes:
        lines += [r"\par\smallskip", r"\begin{minipage}{\linewidth}\scriptsize\raggedright"]
        lines += [tex_escape(n) + r"\par" for n in notes]
        lines.append(r"\end{minipage}")
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def tables_tex(numbers: Iterable[int]) -> str:
    """A minimal article that inputs ``tableN.tex`` for every N given (booktabs only)."""
    lines = [r"% All tables; generated by benchmarks/run.py. Compile: pdflatex tables.tex",
             r"\documentclass{article}", r"\usepackage{booktabs}",
             r"\setlength{\textwidth}{17cm}\setlength{\oddsidemargin}{-0.5cm}\setlength{\evensidemargin}{-0.5cm}",
             r"\begin{document}"]
    lines += [rf"\input{{table{n}.tex}}" for n in sorted(numbers)]
    lines += [r"\end{document}", ""]
    return "\n".join(lines)


# -- Markdown ---------------------------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    from tabulate import tabulate

    marks = best_marks(table)
    headers = [table.stub] + [" ".join(h for h in c.header if h) for c in table.columns]
    body: list[list[str]] = []
    for gi, group in enumerate(table.groups):
        if group.title:
            body.append([f"*{group.title}*"] + [""] * len(table.columns))
        for ri, row in enumerate(group.rows):
            cells = [row.label]
            for col in table.columns:
                mean, std, suffix = _cell_parts(row.cells.get(col.key), col, table, row)
                text = mean + (f" ± {std}" if std is not None else "")
                if (gi, ri, col.key) in marks:
                    text = f"**{text}**"
                cells.append(text + suffix)
            body.append(cells)
    grid = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True,
                    colalign=("left",) + ("right",) * len(table.columns))
    out = [f"**Table {table.number}: {table.title}.** {table.caption}", "", grid, ""]
    notes = all_notes(table)
    if notes:
        out += [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def write_table(table: Table, out_dir: str | Path) -> list[Path]:
    """Write ``tableN.tex`` and ``tableN.md`` atomically; the paths written."""
    out_dir = Path(out_dir)
    tex, md = out_dir / f"table{table.number}.tex", out_dir / f"table{table.number}.md"
    atomic_write_text(tex, to_latex(table))
    atomic_write_text(md, to_markdown(table))
    return [tex, md]


def write_tables_tex(out_dir: str | Path) -> Path:
    """``tables.tex`` inputting every ``tableN.tex`` present in ``out_dir``."""
    out_dir = Path(out_dir)
    numbers = sorted(int(p.stem[5:]) for p in out_dir.glob("table*.tex") if p.stem[5:].isdigit())
    path = out_dir / "tables.tex"
    atomic_write_text(path, tables_tex(numbers))
    return path


# -- published numbers ------------------------------------------------------------------------------------------

def read_published(dataset: str, path: str | Path = PUBLISHED_CSV) -> list[dict[str, Any]]:
    """Rows of published_results.csv for ``dataset`` (values as floats, empty cells as None)."""
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["dataset"] != dataset:
                continue
            rec: dict[str, Any] = dict(row)
            rec["seed_ratio"] = float(row["seed_ratio"])
            for m in ("hits1", "hits10", "mrr"):
                rec[m] = float(row[m]) if row[m].strip() else None
            out.append(rec)
    return out


#: our metric name -> published_results.csv column
PUBLISHED_METRIC = {"hits@1": "hits1", "hits@10": "hits10", "mrr": "mrr"}


def published_group(dataset: str, columns: Sequence[tuple[str, float, str]], *, ours_label: str,
                    path: str | Path = PUBLISHED_CSV) -> tuple[Group, list[str]]:
    """The published rows for ``dataset`` (on the real data) and their citation notes.

    Only for tables of real-data runs: beside synthetic numbers they are not comparable (the tables drop them).

    ``columns``: (column key, seed ratio, our metric name). Each row is labelled method, protocol and a
    reference number; the notes give each reference's source. ``ours_label`` gets a row with empty cells.
    """
    recs = read_published(dataset, path)
    ratios = {r for _, r, _ in columns}
    by_method: dict[tuple[str, str], dict[float, dict]] = {}
    for rec in recs:
        if rec["seed_ratio"] in ratios:
            by_method.setdefault((rec["protocol"], rec["method"]), {})[rec["seed_ratio"]] = rec
    sources: list[str] = []
    rows: list[Row] = []
    for (protocol, method), per_ratio in sorted(by_method.items()):
        refs = []
        for rec in per_ratio.values():
            if rec["source"] not in sources:
                sources.append(rec["source"])
            ref = sources.index(rec["source"]) + 1
            if ref not in refs:
                refs.append(ref)
        cells = {}
        for key, ratio, metric in columns:
            rec = per_ratio.get(ratio)
            v = rec[PUBLISHED_METRIC[metric]] if rec else None
            cells[key] = Cell([v] if v is not None else [])
        label = f"{method} (published, protocol {protocol}) [{','.join(map(str, sorted(refs)))}]"
        rows.append(Row(label, cells, ours=False))
    rows.append(Row(f"{ours_label.replace(' (ours)', '')} (published): not public", {}, ours=False))
    notes = ["Published rows (never bolded): " + "; ".join(
        f"protocol {p}: {d}" for p, d in PROTOCOLS.items() if any(k[0] == p for k in by_method)) + "."]
    notes += [f"[{i}] {s}." for i, s in enumerate(sources, start=1)]
    notes.append("MIMEA's own published numbers could not be obtained: its cells stay empty, never estimated.")
    return Group("Published results (cited; not run here)", rows), notes


# -- notes from the runs' metadata ------------------------------------------------------------------------------

def _yes_no(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def protocol_notes(records: Iterable, labels: dict[str, str]) -> list[str]:
    """One line per model: its protocol flags as recorded in the runs' metadata (distinct values joined)."""
    per_model: dict[str, dict[str, list[str]]] = {}
    for rec in records:
        proto = dict(rec.metadata.get("protocol") or {})
        flags = per_model.setdefault(rec.spec.model, {})
        for k, v in proto.items():
            if isinstance(v, (list, tuple)):
                text = "+".join(map(str, v)) or "none"
            elif isinstance(v, dict):
                text = ", ".join(f"{a}={b}" for a, b in sorted(v.items()))
            else:
                text = _yes_no(v)
            vals = flags.setdefault(k, [])
            if text not in vals:
                vals.append(text)
    order = ["iterative", "names", "images", "missing_image_policy", "split_mode"]
    out = []
    for model, flags in per_model.items():
        keys = [k for k in order if k in flags] + sorted(k for k in flags if k not in order)
        out.append(f"{labels.get(model, model)}: " + ", ".join(f"{k.replace('_', ' ')} {' | '.join(flags[k])}"
                                                               for k in keys))
    return ["Protocol flags (from the runs' metadata): " + "; ".join(out) + "."] if out else []


def data_notes(records: Iterable, dataset_labels: dict[str, str]) -> list[str]:
    """Per dataset: data deviations, image features and synthetic origin, as the runs' metadata records them."""
    per: dict[str, dict[str, list[str]]] = {}
    for rec in records:
        data = rec.metadata.get("data") or {}
        d = per.setdefault(rec.spec.dataset, {"deviations": [], "images": [], "origin": []})
        for dev in data.get("deviations") or []:
            if dev not in d["deviations"]:
                d["deviations"].append(dev)
        img = str(data.get("image_features", "unknown"))
        if img not in d["images"]:
            d["images"].append(img)
        if data.get("dataset") == "synthetic" or (rec.spec.config.data.dataset == "synthetic"):
            meta = data.get("dataset_meta") or {}
            params = rec.spec.config.data.synthetic or {}
            origin = f"synthetic data from {meta.get('generator') or 'mimea.data.synthetic'}" + (
                f" ({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})" if params else " (defaults)")
            if origin not in d["origin"]:
                d["origin"].append(origin)
    out = []
    for key, d in per.items():
        parts = d["origin"] + [f"image features {'/'.join(d['images'])}"]
        if d["deviations"]:
            parts.append("the numbered headings of its PROVENANCE.md section on deviations: " + "; ".join(
                f"({i}) {dev.rstrip(':').strip()}" for i, dev in enumerate(d["deviations"], 1)))
        out.append(f"Data, {dataset_labels.get(key, key)} (from the runs' metadata): " + "; ".join(parts) + ".")
    return out


def run_notes(records: Sequence, replicates: int) -> list[str]:
    """Replicates, ranking, stopping and hardware, from the configs and metadata of the runs."""
    if not records:
        return ["No finished runs: every cell is empty (see the sweep's log)."]
    cfgs = [r.spec.config for r in records]
    seeds = sorted({c.seed for c in cfgs})
    sims = sorted({f"{c.eval.similarity}" + (f" (k={c.eval.csls_k})" if c.eval.similarity == "csls" else "")
                   for c in cfgs})
    splits = sorted({f"{c.split.mode}, split seed {c.split.split_seed}, {int(c.split.val_fraction * 100)}% of "
                     f"the seeds held out for validation" for c in cfgs})
    stopped = Counter(str(r.metadata.get("stopped_by")) for r in records)
    profiles = sorted({c.profile for c in cfgs})
    devices = sorted({str(r.metadata.get("device_name") or r.metadata.get("device")) for r in records})
    selections = sorted({str((r.metadata.get("protocol") or {}).get("selection", "validation")) for r in records})
    chosen = " | ".join("the checkpoint selected on validation MRR" if s == "validation" else
                        "AUTHORS' PROTOCOL: no validation links, every seed trains, the last epoch's model is the "
                        "result (the test curve was evaluated during training, as their scripts do)"
                        for s in selections)
    out = [f"Ours: mean ± std (sample) over n={replicates} replicate(s) per cell (init seeds "
           f"{', '.join(map(str, seeds))}; the split fixed: {'; '.join(splits)}).",
           f"Test links, left-to-right (KG1 → KG2), {', '.join(sims)} ranking; {chosen}. "
           f"Profile {', '.join(profiles)}; {len(records)} runs, "
           + ", ".join(f"{v} stopped by {STOP_REASONS.get(k, k)}" for k, v in sorted(stopped.items()))
           + f"; device {', '.join(devices)}."]
    return out


#: the trainer's ``stopped_by`` values, in words
STOP_REASONS = {"epochs": "the epoch limit", "early_stopping": "early stopping on validation",
                "time_budget": "the time budget"}


def metric_cell(records: Iterable, metric: str, direction: str) -> Cell:
    vals = [v for v in (r.metric(metric, direction) for r in records) if v is not None and math.isfinite(v)]
    return Cell(vals)


def meta_cell(records: Iterable, key: str) -> Cell:
    vals = []
    for r in records:
        v = r.metadata.get(key)
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            vals.append(float(v))
    return Cell(vals)


def missing_note(specs: Sequence, runs: dict, labels: dict[str, str]) -> list[str]:
    """A note naming the cells with runs that did not finish (not run, failed, or killed before results.json)."""
    missing = Counter()
    for s in {sp.run_id: sp for sp in specs}.values():
        if s.run_id not in runs:
            missing[labels.get(s.model, s.model) + (f" [{s.variant}]" if s.variant else "")] += 1
    if not missing:
        return []
    return ["Runs not finished (not run yet, failed, or killed before results.json; their cells are empty or "
            "averaged over fewer replicates; a sweep's logs are under RESULTS/logs/): "
            + ", ".join(f"{k} ({v})" for k, v in sorted(missing.items())) + "."]
