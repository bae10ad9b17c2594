"""benchmarks/device_timing.py: docs/speed.md's GPU timing table is what the committed GPU and CPU records give."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks import device_timing

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_table_is_fresh():
    assert device_timing.main(["--check", str(ROOT / "docs" / "speed.md")]) == 0


def test_a_changed_record_makes_the_table_stale(tmp_path):
    gpu, cpu = tmp_path / "gpu", tmp_path / "cpu"
    run = next(p for p in sorted((ROOT / "results" / "gpu" / "runs").glob("*")) if (p / "results.json").is_file())
    shutil.copytree(run, gpu / "runs" / run.name, ignore=shutil.ignore_patterns("sweep.json"))
    shutil.copytree(ROOT / "results" / "runs" / run.name, cpu / "runs" / run.name,
                    ignore=shutil.ignore_patterns("*.pt", "split.json"))
    doc = tmp_path / "speed.md"
    doc.write_text(f"x\n{device_timing.BEGIN}\n{device_timing.END}\ny\n", encoding="utf-8")
    assert device_timing.main(["--gpu", str(gpu), "--cpu", str(cpu), "--check", str(doc)]) == 1
    assert device_timing.main(["--gpu", str(gpu), "--cpu", str(cpu), "--update", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("x\n") and text.endswith("y\n") and "| ? (" in text   # no sweep.json: "?" at once
    meta = json.loads((gpu / "runs" / run.name / "metadata.json").read_text())
    meta["attempts"] = [{"first_epoch": 1, "last_epoch": meta["epochs_run"], "seconds": 1.0}]
    (gpu / "runs" / run.name / "metadata.json").write_text(json.dumps(meta))
    assert device_timing.main(["--gpu", str(gpu), "--cpu", str(cpu), "--check", str(doc)]) == 1
