"""The repository tree: no packaged binaries committed (wheels, archives, compiled code); install from registries."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BINARY_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip", ".egg", ".so", ".pyc", ".pyd", ".dll", ".exe")


def test_no_packaged_binaries_are_committed():
    if shutil.which("git") is None:
        pytest.skip("git not on PATH")
    proc = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    files = proc.stdout.splitlines()
    assert "pyproject.toml" in files
    bad = [f for f in files if f.lower().endswith(BINARY_SUFFIXES)]
    assert not bad, f"binaries committed: {bad}"
