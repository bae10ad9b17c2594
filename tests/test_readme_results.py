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
