"""End-to-end runs on the synthetic default: determinism, store layout, reuse, resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimea.pipeline import run
from mimea.store import RunStore
from mimea.training.config import resolve

FAST = {"train": {"epochs": 12, "eval_every": 3, "patience": 0, "progress": False}}


def _cfg(model="gcn_align", **over):
    o = json.loads(json.dumps(FAST))
    for k, v in over.items():
        o.setdefault(k, {}).update(v)
    return resolve(model, "smoke", o)


def _start_until_checkpoint(cfg, store_root: Path, tmp_path: Path):
    """Start ``python -m mimea.pipeline`` on ``cfg`` in a child process; return (process, first checkpoint path)
    once the child has written its first checkpoint (the test fails if it ends before)."""
    from mimea.training.config import to_dict

    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(to_dict(cfg)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "mimea.pipeline", str(cfg_file), str(store_root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        found = list((store_root / "runs").glob("*/checkpoint.pt")) if (store_root / "runs").exists() else []
        if found:
            return proc, found[0]
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the run finished or failed before writing a checkpoint")


def test_run_writes_the_store_and_is_reused(tmp_path):
    out = run(_cfg(), tmp_path)
    p = Path(out["path"])
    for name in ("config.json", "split.json", "results.json", "metadata.json", "best.pt"):
        assert (p / name).is_file(), name
    assert not (p / "checkpoint.pt").exists()
    res = json.loads((p / "results.json").read_text())
    meta = json.loads((p / "metadata.json").read_text())
    split = json.loads((p / "split.json").read_text())
    for d in ("l2r", "r2l", "mean"):
        assert 0.0 <= res["test"][d]["hits@1"] <= res["test"][d]["hits@10"] <= 1.0
    assert meta["protocol"]["iterative"] is False and meta["protocol"]["names"] is False
    assert meta["n_parameters"] > 0 and meta["epochs_run"] == 12
    assert [r["epoch"] for r in res["curve"]] == list(range(1, 13))
    # test links never in train/valid
    test = {tuple(x) for x in split["test"]}
    assert not test & {tuple(x) for x in split["train"] + split["valid"]}
    again = run(_cfg(), tmp_path)
    assert again["reused"] and again["results"]["test"] == res["test"]


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    a = run(_cfg(), tmp_path / "a")["results"]["test"]
    b = run(_cfg(), tmp_path / "b")["results"]["test"]
    assert a == b
    c = run(resolve("gcn_align", "smoke", {**FAST, "seed": 5}), tmp_path / "c")["results"]["test"]
    assert c != a


@pytest.mark.parametrize("model,over", [
    ("gcn_align", {}),
    # MSNEA: several TransE steps an epoch (a pass over its triple lists, lazily built, with redrawn negatives)
    ("msnea", {"model_config": {"triple_batch_size": 64}}),
])
def test_killed_run_resumes_to_the_same_result(tmp_path, model, over):
    """SIGKILL a training process after its first checkpoint; the rerun resumes and matches an unbroken run."""
    cfg = _cfg(model, train={"epochs": 30, "eval_every": 2}, **over)
    ref = run(cfg, tmp_path / "ref")["results"]
    store_root = tmp_path / "killed"
    store = RunStore(store_root)
    proc, ckpt = _start_until_checkpoint(cfg, store_root, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rid = ckpt.parent.name
    assert not store.is_finished(rid)
    resumed_from = store.load_checkpoint(rid)["epoch"]
    assert 0 < resumed_from < 30
    out = run(cfg, store_root)
    assert not out["reused"]
    assert out["results"]["test"] == ref["test"]
    assert [r["epoch"] for r in out["results"]["curve"]] == list(range(1, 31))


def test_two_processes_never_train_the_same_run(tmp_path):
    """While one process trains a run, a second ``run`` of the same config waits for it and reuses its result."""
    cfg = _cfg(train={"epochs": 30, "eval_every": 2})
    store_root = tmp_path / "store"
    proc, _ = _start_until_checkpoint(cfg, store_root, tmp_path)
    out = run(cfg, store_root)          # blocks on the run's lock until the first process is done
    assert proc.wait(timeout=120) == 0
    assert out["reused"], "the second process trained the run too"
    assert [r["epoch"] for r in out["results"]["curve"]] == list(range(1, 31))


def test_validation_in_a_test_sized_pool(tmp_path):
    """eval.valid_pool="unseen" ranks the validation links among every entity outside the training links (its own
    run id); the default keeps the ids runs had before the option existed."""
    from mimea.store import run_id
    from mimea.training.config import to_dict

    base = _cfg()
    d = to_dict(base)
    without_key = json.loads(json.dumps(d))
    del without_key["eval"]["valid_pool"]
    assert run_id(d) == run_id(without_key)
    pooled = _cfg(eval={"valid_pool": "unseen"})
    assert run_id(to_dict(pooled)) != run_id(d)
    small = run(base, tmp_path)["results"]["valid"]
    large = run(pooled, tmp_path)["results"]["valid"]
    assert large["pool"][0] > large["n"] and large["pool"][1] > large["n"]
    assert large["l2r"]["mrr"] < small["l2r"]["mrr"]       # the same kind of model, far more distractors
    with pytest.raises(ValueError, match="valid_pool"):
        run(_cfg(eval={"valid_pool": "everything"}), tmp_path)


def test_a_second_validation_pool_is_recorded_and_never_selects(tmp_path):
    """eval.valid_pool_compare scores the other pool at every evaluation, in the curve only: the run selects and
    ends exactly as without it, and its ``valid_unseen`` entries are what a run selecting on that pool sees."""
    from mimea.store import run_id
    from mimea.training.config import to_dict
    from mimea.training.validate import ConfigError, check_config

    base = _cfg()
    d = to_dict(base)
    without_key = json.loads(json.dumps(d))
    del without_key["eval"]["valid_pool_compare"]
    assert run_id(d) == run_id(without_key)                 # stored runs keep their ids
    both = _cfg(eval={"valid_pool_compare": "unseen", "test_curve": True})
    assert run_id(to_dict(both)) != run_id(d)
    plain, compared = run(base, tmp_path), run(both, tmp_path)
    assert compared["results"]["valid"] == plain["results"]["valid"]
    assert compared["results"]["test"] == plain["results"]["test"]
    assert compared["metadata"]["best_epoch"] == plain["metadata"]["best_epoch"]
    assert compared["metadata"]["protocol"]["valid_pool_compare"] == "unseen"
    pooled = run(_cfg(eval={"valid_pool": "unseen"}), tmp_path)["results"]["curve"]
    curve = compared["results"]["curve"]
    evals = [r for r in curve if "valid" in r]
    assert len(evals) == 4 and all("valid_unseen" in r and "test" in r for r in evals)
    assert [r["valid_unseen"] for r in evals] == [r["valid"] for r in pooled if "valid" in r]
    assert all(r["valid_unseen"]["mrr"] < r["valid"]["mrr"] for r in evals)   # far more distractors
    for bad, match in (("valid", "is eval.valid_pool itself"), ("everything", "choose from")):
        with pytest.raises(ConfigError, match=match):
            check_config(_cfg(eval={"valid_pool_compare": bad}))


def test_each_attempt_records_the_commit_it_started_from(tmp_path, monkeypatch):
    """A run's commit is read when its attempt starts (the code it runs), not when it ends: a checkout changed
    during the run is recorded beside it, and a resumed run lists every attempt's own commit."""
    import mimea.pipeline as pipeline
    import mimea.store.metadata as metadata

    class Stop(Exception):
        pass

    def stop_at_6(epoch, metrics):   # raised before epoch 6's checkpoint: the rerun resumes from epoch 3
        if epoch == 6:
            raise Stop

    cfg = _cfg(train={"epochs": 12, "eval_every": 3})
    monkeypatch.setattr(pipeline, "git_commit", lambda: "c1")
    with pytest.raises(Stop):
        run(cfg, tmp_path, on_eval=stop_at_6)
    monkeypatch.setattr(pipeline, "git_commit", lambda: "c2")
    monkeypatch.setattr(metadata, "git_commit", lambda: "c3-dirty")   # what the checkout holds at the end
    meta = run(cfg, tmp_path)["metadata"]
    assert [(a["git_commit"], a["first_epoch"]) for a in meta["attempts"]] == [("c1", 1), ("c2", 4)]
    assert meta["git_commit"] == "c2" and meta["git_commit_at_end"] == "c3-dirty" and meta["resumed"]
    monkeypatch.setattr(metadata, "git_commit", lambda: "c2")
    again = run(cfg, tmp_path / "unchanged")["metadata"]
    assert again["git_commit"] == "c2" and "git_commit_at_end" not in again
