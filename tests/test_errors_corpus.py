"""Bad configs and damaged run stores, run one by one: each is one line ``mimea: error: ...``, exit 2, nothing
half-written (like the bad-dataset corpus of test_data_errors.py). Also: failed runs are marked, a read-only
store still serves finished runs, a killed sweep takes its children with it, the synthetic cache is shared."""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))

from mimea.cli import main  # noqa: E402
from mimea.store import RunStore  # noqa: E402
from mimea.store.damage import failed_runs, failure  # noqa: E402
from mimea.training.config import resolve  # noqa: E402

#: A run of seconds: the smoke profile, 2 epochs of GCN-Align on a 200-entity synthetic pair.
TINY = ["--model", "gcn_align", "--epochs", "2", "--no-progress", "--set", 'data.synthetic={"n_latent": 200}',
        "train.eval_every=1"]


def _train(results: Path, *extra: str) -> list[str]:
    return ["train", "--results", str(results), *TINY, *extra]


def _one_error(capsys, prefix: str = "mimea: error: ") -> str:
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err   # one line, no traceback
    assert err.startswith(prefix), err
    return err.strip()


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


# -- bad configs: rejected before anything is loaded or written -----------------------------------------------

def _config_file(tmp_path: Path, name: str, text: str) -> str:
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return str(f)


# (case id, extra argv (a callable of tmp_path for files), message fragment)
CONFIG_CASES = [
    ("lr not a number", ["--set", "train.lr=abc"], "train.lr='abc': expected a float"),
    ("batch_size not a number", ["--set", "train.batch_size=abc"], "train.batch_size='abc': expected an int"),
    ("batch_size a float", ["--set", "train.batch_size=1.5"], "train.batch_size=1.5: expected an int"),
    ("seed not a number", ["--set", "seed=abc"], "seed='abc': expected an int"),
    ("bool is not an int", ["--set", "seed=true"], "seed=True: expected an int"),
    ("int is not a bool", ["--set", "train.iterative=1"], "train.iterative=1: expected a bool"),
    ("threads not int or null", ["--set", "train.threads=two"], "train.threads='two': expected an int or null"),
    ("section replaced", ["--set", "eval=3"], "eval=3: expected a section"),
    ("section replaced by a flag", ["--set", "train=3", "--epochs", "2"], "train=3: expected a section"),
    ("model field not a number", ["--model-set", "dim=abc"], "model_config.dim='abc': expected an int"),
    ("model field via --set", ["--set", "model_config.dim=abc"], "model_config.dim='abc': expected an int"),
    ("eval_every 0", ["--set", "train.eval_every=0"], "train.eval_every=0: expected at least 1"),
    ("epochs negative", ["--set", "train.epochs=-3"], "train.epochs=-3: expected at least 1"),
    ("--epochs 0", ["--epochs", "0"], "train.epochs=0: expected at least 1"),
    ("--replicates 0", ["--replicates", "0"], "--replicates 0: expected at least 1"),
    ("unknown synthetic key", ["--set", "data.synthetic.n_latnet=300"], "unknown key data.synthetic.n_latnet"),
    ("synthetic key of wrong type", ["--set", "data.synthetic.n_latent=big"],
     "data.synthetic.n_latent='big': expected an int"),
    ("synthetic value out of range", ["--set", "data.synthetic.overlap=2"], "overlap=2: must be in [0, 1]"),
    ("select_metric unknown", ["--set", "train.select_metric=foo"],
     "train.select_metric='foo': choose from hits@1, hits@5, hits@10, mrr"),
    ("select_metric lower-better", ["--set", "train.select_metric=mr"], "train.select_metric='mr': choose"),
    ("similarity unknown", ["--set", "eval.similarity=dot"], "eval.similarity='dot': choose from cosine, csls"),
    ("ratio out of range", ["--ratio", "1.5"], "split.ratio=1.5: expected a share in (0, 1)"),
    ("device unknown", ["--device", "gpu0"], "train.device='gpu0': not a device"),
    ("config of wrong types", lambda t: ["--config", _config_file(t, "c.json", '{"dim": "wide"}')],
     "c.json: model_config.dim='wide': expected an int"),
    ("tuned config of wrong types",
     lambda t: ["--config", _config_file(t, "best.json", '{"model_config": {}, "train": {"lr": "fast"}}')],
     "best.json: train.lr='fast': expected a float"),
    ("config unknown field", lambda t: ["--config", _config_file(t, "c.json", '{"width": 3}')],
     "c.json: unknown key model_config.width"),
    ("config malformed", lambda t: ["--config", _config_file(t, "bad.json", '{\n  "dim": 64,\n  oops\n}\n')],
     "bad.json:3: not valid JSON: Expecting property name enclosed in double quotes (column 3)"),
    ("config empty", lambda t: ["--config", _config_file(t, "empty.json", "")], "empty.json:1: not valid JSON"),
    ("config not an object", lambda t: ["--config", _config_file(t, "list.json", "[1, 2]")],
     "list.json: expected a JSON object"),
]


@pytest.mark.parametrize("extra,words", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, extra, words):
    extra = extra(tmp_path) if callable(extra) else extra
    results = tmp_path / "results"
    assert main(["train", "--results", str(results), "--model", "gcn_align", "--no-progress", *extra]) == 2
    line = _one_error(capsys)
    assert words in line, line
    assert not (results / "runs").exists()     # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --device cuda is valid here")
def test_device_cuda_on_a_cpu_only_build(tmp_path, capsys):
    assert main(_train(tmp_path / "results", "--device", "cuda")) == 2
    line = _one_error(capsys)
    assert "train.device='cuda': " in line and ("CPU-only" in line or "no CUDA device" in line), line


def test_type_rules():
    cfg = resolve("gcn_align", "smoke", {"train": {"lr": 1, "time_budget_s": 5, "threads": None}})
    assert cfg.train.lr == 1                                    # a float field accepts an int
    cfg = resolve("mimea", "smoke", None, {"modalities": ["graph", "image"]})   # a tuple field accepts a list
    assert list(cfg.model_config["modalities"]) == ["graph", "image"]
    with pytest.raises(ValueError, match=r"model_config.modalities=\[\"graph\", 3\]: expected a list of str"):
        resolve("mimea", "smoke", None, {"modalities": ["graph", 3]})


def test_every_entry_point_checks(tmp_path, capsys):
    """mimea tune, benchmarks/run.py and python -m mimea.pipeline reject the same config the same way."""
    from benchmarks.run import main as sweep_main
    from mimea.pipeline import main as pipeline_main

    assert main(["tune", "--results", str(tmp_path), "--model", "gcn_align", "--set", "train.lr=abc"]) == 2
    assert "train.lr='abc': expected a float" in _one_error(capsys)
    assert sweep_main(["--table", "5", "--models", "gcn_align", "--synthetic", "--results", str(tmp_path),
                       "--out", str(tmp_path / "out"), "--set", "train.eval_every=0"]) == 2
    assert "train.eval_every=0: expected at least 1" in _one_error(capsys, "run.py: error: ")
    cfg = json.loads(json.dumps(__import__("dataclasses").asdict(resolve("gcn_align", "smoke"))))
    cfg["train"]["select_metric"] = "foo"
    path = Path(_config_file(tmp_path, "run.json", json.dumps(cfg)))
    assert pipeline_main([str(path), str(tmp_path)]) == 2
    assert "train.select_metric='foo'" in _one_error(capsys)
    path.write_text('{"model": "gcn_align",\n "train": {"epochs": 2,}}')
    assert pipeline_main([str(path), str(tmp_path)]) == 2
    assert "run.json:2: not valid JSON" in _one_error(capsys)
    assert not (tmp_path / "runs").exists()


# -- damaged run stores ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run: (store root, run folder)."""
    root = tmp_path_factory.mktemp("store") / "results"
    assert main(_train(root)) == 0
    (run_dir,) = (root / "runs").iterdir()
    return root, run_dir


def _copy(finished, tmp_path: Path) -> tuple[Path, Path]:
    root, run_dir = finished
    new = tmp_path / "results"
    shutil.copytree(root, new)   # with its synthetic data cache: the run id covers the data's content
    return new, new / "runs" / run_dir.name


def _checkpoint_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"model": {}, "optimizer": {}, "epoch": 1}, buf)
    return buf.getvalue()


def _unfinish(run_dir: Path) -> None:
    """Make the run look killed mid-training: no results, metadata or best.pt."""
    for name in ("results.json", "metadata.json", "best.pt"):
        (run_dir / name).unlink(missing_ok=True)


# (case id, file, new content (None: the run is unfinished with this checkpoint), message fragment)
STORE_CASES = [
    ("checkpoint empty", "checkpoint.pt", b"", "checkpoint.pt: damaged (empty file)"),
    ("checkpoint truncated", "checkpoint.pt", _checkpoint_bytes()[:200],
     "checkpoint.pt: damaged (torch.load: PytorchStreamReader failed reading zip archive"),
    ("checkpoint garbage", "checkpoint.pt", b"\x00garbage" * 50,
     "checkpoint.pt: damaged (not a torch checkpoint: 400 bytes starting"),
    ("checkpoint not a dict", "checkpoint.pt", None, "checkpoint.pt: damaged (holds a list"),
    ("results empty", "results.json", b"", "results.json: damaged (empty file)"),
    ("results truncated", "results.json", b'{"test": {"l2r": {"hits@1": 0.', "results.json: damaged (not valid JSON"),
    ("metadata truncated", "metadata.json", b'{"run_id": "x", "epo', "metadata.json: damaged (not valid JSON"),
    ("metadata garbage", "metadata.json", b"\xff\xfe\x00", "metadata.json: damaged (not UTF-8 at byte 0)"),
    ("config truncated", "config.json", b'{"model": "gcn', "config.json: damaged (not valid JSON"),
]


@pytest.mark.parametrize("name,content,words", [c[1:] for c in STORE_CASES], ids=[c[0] for c in STORE_CASES])
def test_damaged_store_file_is_one_line_exit_2(finished, tmp_path, capsys, name, content, words):
    root, run_dir = _copy(finished, tmp_path)
    if name == "checkpoint.pt":
        _unfinish(run_dir)
        if content is None:
            buf = io.BytesIO()
            torch.save([1, 2], buf)
            content = buf.getvalue()
    (run_dir / name).write_bytes(content)
    before = _files(root / "runs")
    assert main(_train(root)) == 2
    line = _one_error(capsys)
    assert f"mimea: error: {run_dir / name}: " in line and words in line, line
    assert "rerun with --restart-damaged" in line
    assert (run_dir / name).read_bytes() == content          # kept for inspection, not overwritten
    after = _files(root / "runs")
    assert after - before <= {f"{run_dir.name}/failed.json"}  # at most the failure marker
    assert words in (failure(run_dir) or words)


def test_restart_damaged_moves_the_file_aside_and_starts_over(finished, tmp_path, capsys):
    root, run_dir = _copy(finished, tmp_path)
    _unfinish(run_dir)
    (run_dir / "checkpoint.pt").write_bytes(b"")
    assert main(_train(root, "--restart-damaged")) == 0
    assert (run_dir / "results.json").is_file() and not (run_dir / "failed.json").exists()
    (aside,) = run_dir.glob("checkpoint.pt.damaged-*")
    assert aside.read_bytes() == b""
    # a finished run with a damaged results.json is redone; its old results.json is kept aside
    (run_dir / "metadata.json").write_text("{")
    assert main(_train(root, "--restart-damaged")) == 0
    assert len(list(run_dir.glob("metadata.json.damaged-*"))) == 1
    assert len(list(run_dir.glob("results.json.damaged-*"))) == 1
    assert "reused" not in capsys.readouterr().out
    RunStore(root).load(run_dir.name)   # readable again


def test_sweep_reports_a_damaged_run_and_writes_every_table(tmp_path, capsys):
    """benchmarks/run.py: a damaged results.json is named, its cells stay empty, the tables are written, exit 1."""
    from benchmarks.run import build_context, main as sweep_main, make_parser
    from benchmarks.tables.registry import table_module
    from mimea.pipeline import run

    argv = ["--table", "5", "--models", "gcn_align", "--synthetic", "--replicates", "2", "--results",
            str(tmp_path / "results"), "--out", str(tmp_path / "out"), "--no-progress", "--no-figures",
            "--set", "train.epochs=2", "train.eval_every=1", "data.synthetic.n_latent=200"]
    ctx = build_context(make_parser().parse_args(argv))
    specs = table_module(5).plan(ctx)
    for spec in specs:        # fill the store in-process (no child processes): the sweep then reuses both
        run(spec.config, ctx.results)
    damaged = RunStore(ctx.results).path(specs[1].run_id) / "results.json"
    damaged.write_text('{"test": ')
    assert sweep_main(argv) == 1
    err = capsys.readouterr().err
    assert f"damaged: {damaged}: damaged (not valid JSON" in err, err
    md = (tmp_path / "out" / "table5.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| GCN-Align"))
    assert row.count("(n=1)") == 6, row                       # the readable replicate alone fills the cells
    assert "Runs not finished" in md and "GCN-Align (1)" in md
    assert (tmp_path / "out" / "tables.tex").is_file()


# -- failed runs are marked, and retried -----------------------------------------------------------------------

def test_failed_run_is_marked_and_retried(tmp_path, monkeypatch):
    from mimea.pipeline import run
    from mimea.training.trainer import Trainer

    cfg = resolve("gcn_align", "smoke", {"train": {"epochs": 2, "eval_every": 1, "progress": False},
                                         "data": {"synthetic": {"n_latent": 200}}})
    real_fit = Trainer.fit

    def boom(self, *a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(Trainer, "fit", boom)
    with pytest.raises(RuntimeError):
        run(cfg, tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "failed.json").read_text())["error"] == "RuntimeError: boom second line"
    assert failed_runs(tmp_path / "runs") == {run_dir.name: "RuntimeError: boom second line"}
    monkeypatch.setattr(Trainer, "fit", real_fit)
    run(cfg, tmp_path)
    assert not (run_dir / "failed.json").exists() and failed_runs(tmp_path / "runs") == {}


def test_pruning_is_not_a_failure(tmp_path):
    from mimea.store.damage import record_failure

    class TrialPruned(Exception):
        pass

    with pytest.raises(TrialPruned), record_failure(tmp_path):
        raise TrialPruned("stopped on purpose")
    assert not (tmp_path / "failed.json").exists()


# -- a read-only store -------------------------------------------------------------------------------------------

def _read_only(monkeypatch, root: Path) -> None:
    """Every write under ``root`` fails with EACCES, as on a read-only folder (tests run as root, where chmod
    does not block writes)."""
    root = str(root.resolve())

    def under(path) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(root)
        except TypeError:   # a file descriptor
            return False

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_open, real_os_open = builtins.open, os.open

    def fake_open(file, mode="r", *a, **k):
        if under(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def fake_os_open(path, flags, *a, **k):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    for name in ("mkdir", "unlink", "rmdir"):
        real = getattr(os, name)

        def fake(path, *a, _real=real, **k):
            if under(path) and not (_real is os.mkdir and os.path.isdir(path)):
                refuse(path)
            return _real(path, *a, **k)

        monkeypatch.setattr(os, name, fake)
    for name in ("replace", "rename"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda a, b, *x, _real=real, **k: refuse(a) if under(a) or under(b)
                            else _real(a, b, *x, **k))


def test_read_only_store_serves_finished_runs(finished, tmp_path, capsys, monkeypatch):
    root, run_dir = _copy(finished, tmp_path)
    shutil.rmtree(root / ".locks")                 # no lock file to reuse either
    before = _files(root)
    _read_only(monkeypatch, root)
    assert main(_train(root)) == 0                 # a finished run is read as stored
    out = capsys.readouterr().out
    assert run_dir.name in out and "reused" in out
    assert main(_train(root, "--seeds", "5")) == 2     # a new run has to write: one line
    line = _one_error(capsys)
    assert line.startswith(f"mimea: error: {root / '.locks'}") and "cannot write (Permission denied)" in line
    assert "give --results a writable folder" in line
    monkeypatch.undo()
    assert _files(root) == before


# -- the synthetic cache is shared like the store ----------------------------------------------------------------

def test_synthetic_cache_is_0755_and_0644(tmp_path):
    from mimea.data.synthetic import ensure_synthetic

    old = os.umask(0o077)
    try:
        root, name = ensure_synthetic(tmp_path, n_latent=60)
    finally:
        os.umask(old)
    assert root.stat().st_mode & 0o777 == 0o755
    modes = {p.relative_to(root).as_posix(): p.stat().st_mode & 0o777 for p in root.rglob("*")}
    assert modes and all(m == (0o755 if (root / p).is_dir() else 0o644) for p, m in modes.items()), modes


# -- a killed sweep takes its children with it -------------------------------------------------------------------

def _children(pid: int) -> set[int]:
    """Live (non-zombie) descendants of ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(p.name)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd / PR_SET_PDEATHSIG: Linux")


def _wait_gone(pids, seconds: float = 10.0) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _py(code: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True, **kw)


@LINUX_ONLY
def test_subprocess_child_dies_with_its_parent():
    """The ``subprocess`` launcher's preexec: SIGKILL of the parent ends the child."""
    parent = _py("import subprocess, sys, time\n"
                 "from benchmarks.tables.children import preexec_die_with_parent\n"
                 "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
                 " preexec_fn=preexec_die_with_parent())\n"
                 "print(c.pid, flush=True); time.sleep(60)")
    try:
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(10)
        assert not _wait_gone([child]), "the child outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(10)


@LINUX_ONLY
def test_forked_child_dies_with_the_sweep_it_watches():
    """A forkserver child watches the sweep (not its parent): when the sweep exits, the child gets SIGTERM."""
    sweep = _py("import time; time.sleep(60)")
    child = _py(f"import time\nfrom benchmarks.tables.children import die_with\ndie_with({sweep.pid})\n"
                "print('watching', flush=True); time.sleep(60)")
    try:
        assert child.stdout.readline().strip() == "watching"
        sweep.kill()      # not reaped yet: a zombie counts as exited
        assert child.wait(10) == -signal.SIGTERM
    finally:
        for p in (sweep, child):
            p.kill()
            p.wait(10)


@LINUX_ONLY
def test_killed_sweep_takes_its_children(tmp_path, launcher="forkserver"):
    """End to end on the default launcher: SIGKILL benchmarks/run.py mid-run; its run child, the fork server and
    the resource tracker are all gone within seconds."""
    results = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--table", "5", "--models", "gcn_align",
           "--synthetic", "--replicates", "1", "--results", str(results), "--out", str(tmp_path / "out"),
           "--no-progress", "--no-figures", "--launcher", launcher,
           "--set", "train.epochs=100000", "train.eval_every=100000", "data.synthetic.n_latent=60"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    sweep = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: set[int] = set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and sweep.poll() is None:
            if list((results / "logs").glob("*.log")) if (results / "logs").is_dir() else []:
                kids = _children(sweep.pid)
                if kids:
                    break
            time.sleep(0.1)
        assert kids, "the sweep started no child"
        time.sleep(0.5)
        kids = _children(sweep.pid) or kids
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(10)
        left = _wait_gone(kids, 15)
        assert not left, f"children still running after the sweep was killed: {left}"
    finally:   # never leave a process behind, whatever failed
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait(10)
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)
