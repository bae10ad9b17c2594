"""The allocator setting (mimea.training.allocator): opt-out, bad values, and the same numbers either way."""
import platform
import subprocess
import sys

import pytest

from mimea.training import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def test_system_mode_leaves_the_allocator(monkeypatch):
    monkeypatch.setenv("MIMEA_MALLOC", "system")
    assert allocator.keep_freed_memory() is False


def test_unknown_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("MIMEA_MALLOC", "jemalloc")
    with pytest.raises(ValueError, match="MIMEA_MALLOC='jemalloc'"):
        allocator.keep_freed_memory()


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_keep_mode_takes_effect_on_glibc(monkeypatch):
    monkeypatch.delenv("MIMEA_MALLOC", raising=False)
    assert allocator.keep_freed_memory() is True


CODE = """
import sys, torch
from mimea.training.allocator import keep_freed_memory
print(keep_freed_memory())
g = torch.Generator().manual_seed(0)
x = torch.randn(3000, 3000, generator=g)   # 36 MB: above glibc's mmap threshold
for _ in range(3):
    y = (x @ x.T).softmax(1)                 # freed and allocated again each round
print(float(y.double().sum()), float((y * y).sum()))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_same_numbers_with_and_without():
    outs = {}
    for mode in ("keep", "system"):
        r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True,
                           env={"MIMEA_MALLOC": mode, "OMP_NUM_THREADS": "1", "PATH": ""})
        outs[mode] = r.stdout.split("\n")
    assert outs["keep"][0] == "True" and outs["system"][0] == "False"
    assert outs["keep"][1] == outs["system"][1]
