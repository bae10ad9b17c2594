"""The README's results tables are what the committed run records give (benchmarks/readme_results.py)."""
from __future__ import annotations

import pytest

from benchmarks import readme_results as R


def test_the_committed_readme_is_what_the_committed_records_give():
    """Fails when a record was committed (or changed) without regenerating the README's tables."""
    assert R.main(["--check"]) == 0


def test_a_stale_block_is_reported_and_rewritten(tmp_path, capsys):
    readme = tmp_path / "README.md"
    text = R.README.read_text(encoding="utf-8")
    stale = text.replace("<!-- readme_results:design begin -->\n",
                         "<!-- readme_results:design begin -->\n| a typed number | 0.999 |\n", 1)
    assert stale != text
    readme.write_text(stale, encoding="utf-8")
    assert R.main(["--check", "--readme", str(readme)]) == 1
    assert "stale block(s) design" in capsys.readouterr().err
    assert R.main(["--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == text


def test_a_readme_without_the_markers_is_a_clear_error(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n", encoding="utf-8")
    assert R.main(["--check", "--readme", str(readme)]) == 2
    assert "no '<!-- readme_results:paper begin -->'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(R.BLOCKS))
def test_every_block_reads_records_only(tmp_path, name):
    """An empty store gives the empty rows, never an error (a fresh fork with no records)."""
    (tmp_path / "runs").mkdir()
    text = R.BLOCKS[name](tmp_path)
    assert text.startswith("| ")
    assert "0.487" not in text and "0.465" not in text


def test_the_design_block_adds_a_ratio_only_once_it_has_runs(tmp_path):
    """20 % always has its rows (dashes when empty); a dataset's 50 % rows appear with its first stored run there."""
    import json

    from benchmarks import design_study as D

    (tmp_path / "runs").mkdir()
    empty = R.design_block(tmp_path).splitlines()[2:]
    assert len(empty) == 4 and all("20%" in line and line.endswith("| - | - | - | - |") for line in empty)
    run = tmp_path / "runs" / "mimea-FBYG15K-r50-s0-x"
    run.mkdir()
    cfg = {"model": "mimea", "data": {"dataset": "FBYG15K"}, "split": {"ratio": 0.5},
           "train": {"epochs": R.DESIGN_EPOCHS["mimea"]}, "eval": {"valid_pool": "unseen"}, "seed": 0,
           "model_config": D._defaults("mimea")}
    res = {"best_epoch": 5, "curve": [], "valid": {"mean": {"mrr": 0.612, "hits@1": 0.5, "hits@10": 0.9}},
           "test": {"l2r": {"mrr": 0.534, "hits@1": 0.456, "hits@10": 0.8}}}
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "results.json").write_text(json.dumps(res))
    rows = [line for line in R.design_block(tmp_path).splitlines() if "50%" in line]
    assert rows == ["| FBYG15K 50%: MIMEA (ours), 125 epochs | 0 | 0.612 | 0.456 | 0.534 |",
                    "| FBYG15K 50%: MCLEA, 250 epochs | - | - | - | - |"]   # FBDB15K 50 % has no run yet
