"""Bring your own model: entry-point plugins, their sources, name clashes, and a plugin through every command.

The end-to-end test needs the example plugin installed (``nox -s tests`` installs ``tests/plugin_example``;
by hand: ``pip install --no-deps tests/plugin_example``).
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from mimea import cli
from mimea.models import registry
from mimea.models.base import AlignmentModel, ModelConfig

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "tests" / "plugin_example"
PLUGIN_FILE = PLUGIN_DIR / "mimea_plugin_example" / "__init__.py"


@pytest.fixture
def clean_registry(monkeypatch):
    """The real registry (builtins loaded), restored after the test."""
    registry.available()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_WARNED", set())


def _fake(name: str, qualname: str) -> type:
    @dataclass
    class Config(ModelConfig):
        pass

    cls = type(qualname, (AlignmentModel,), {"name": name, "Config": Config, "__module__": "fake_plugin.models"})
    cls.__qualname__ = qualname
    return cls


class _EntryPoint:
    """Stands in for importlib.metadata.EntryPoint: ``load()`` runs ``action``."""

    def __init__(self, name, action):
        self.name, self.value, self.dist, self._action = name, f"fake_plugin.{name}", None, action

    def load(self):
        return self._action()


def test_plugin_registering_a_builtin_name_is_an_error_naming_both(clean_registry):
    with pytest.raises(registry.ModelNameClash) as err:
        registry.register(_fake("meaformer", "MEAformer"))   # same class name, another module: still a clash
    msg = str(err.value)
    assert "\n" not in msg and "'meaformer'" in msg
    assert "builtin: baselines.meaformer.MEAformer" in msg and "fake_plugin.models.MEAformer" in msg
    assert registry.get("meaformer").__module__ == "baselines.meaformer"   # nothing was overridden


def test_two_plugins_with_one_name_fail_every_command(clean_registry, monkeypatch, capsys):
    first, second = _fake("twin", "TwinA"), _fake("twin", "TwinB")
    eps = [_EntryPoint("a", lambda: registry.register(first)), _EntryPoint("b", lambda: registry.register(second))]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.GROUP else [])
    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TwinA" in err and "TwinB" in err and "'twin'" in err
    assert cli.main(["models"]) == 2   # and again: never a silent override on a second look


def test_broken_plugin_warns_once_and_hides_nothing(clean_registry, monkeypatch, caplog, capsys):
    def broken():
        raise ImportError("No module named 'torch_missing_thing'")

    good = _fake("good_plugin_model", "Good")
    eps = [_EntryPoint("broken", broken), _EntryPoint("good", lambda: registry.register(good))]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    with caplog.at_level(logging.WARNING, logger="mimea.models.registry"):
        registry.available()
        assert cli.main(["models"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "mimea.models.registry"]
    assert len(warnings) == 1 and "broken" in warnings[0] and "torch_missing_thing" in warnings[0]
    out = capsys.readouterr().out
    assert re.search(r"^good_plugin_model\s+module fake_plugin\.models\s", out, re.M)
    assert re.search(r"^meaformer\s+builtin\s+baselines\.meaformer\.MEAformer$", out, re.M)


def test_docs_show_the_example_plugin_verbatim():
    doc = (REPO / "docs" / "extending.md").read_text(encoding="utf-8")
    code = PLUGIN_FILE.read_text(encoding="utf-8")
    assert f"```python\n{code}```" in doc
    assert len(code.splitlines()) <= 60
    toml = (PLUGIN_DIR / "pyproject.toml").read_text(encoding="utf-8")
    entry = re.search(r'\[project\.entry-points\."mimea\.models"\]\n.+\n', toml).group(0)
    assert entry in doc


def _installed() -> bool:
    try:
        distribution("mimea-plugin-example")
    except PackageNotFoundError:
        return False
    return True


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not _installed(), reason="pip install --no-deps tests/plugin_example (nox -s tests does)")
def test_example_plugin_through_models_train_tune_and_tables(tmp_path):
    models = _run("-m", "mimea", "models", cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    assert re.search(r"^example_gcn\s+mimea-plugin-example \(mimea_plugin_example\)\s", models.stdout, re.M)

    train = _run("-m", "mimea", "train", "--model", "example_gcn", "--epochs", "3", "--no-progress",
                 "--results", "results", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    assert list((tmp_path / "results" / "runs").glob("example_gcn-synthetic-*/results.json"))

    tune = _run("-m", "mimea", "tune", "--model", "example_gcn", "--n-trials", "1", "--epochs", "2",
                "--no-progress", "--results", "results", cwd=tmp_path)
    assert tune.returncode == 0, tune.stderr[-2000:]
    assert "tau=" in tune.stdout    # the plugin's own search space was sampled

    sweep = _run(str(REPO / "benchmarks" / "run.py"), "--table", "2", "--models", "example_gcn,gcn_align",
                 "--ratios", "0.2", "--set", "train.epochs=2", "--no-progress", "--no-figures",
                 "--results", "results", "--out", "out", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    md = (tmp_path / "out" / "table2.md").read_text(encoding="utf-8")
    row = next(line for line in md.splitlines() if line.startswith("| example_gcn "))
    cells = [c.strip().strip("*") for c in row.strip("|").split("|")[1:]]
    assert len(cells) == 3 and all(0.0 <= float(c) <= 1.0 for c in cells), row
    assert "example_gcn: iterative no" in md     # its protocol flags are printed under the table
