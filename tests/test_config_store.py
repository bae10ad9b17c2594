"""Config resolution, run ids and the run store (no training)."""
import json

import pytest
import torch

from mimea.store import RunStore, atomic_write_json, run_id
from mimea.training.config import PROFILES, from_dict, resolve, to_dict


def test_resolution_order_profile_then_explicit():
    cfg = resolve("eva", "smoke")                       # EVA sets no smoke epochs of its own: the profile's
    assert cfg.train.epochs == PROFILES["smoke"]["train"]["epochs"]
    assert cfg.data.dataset == "synthetic"
    # a model's profile_defaults sit between the profile and explicit values
    from baselines.gcn_align import GCNAlign
    from baselines.eva import EVA

    assert resolve("gcn_align", "smoke").train.epochs == GCNAlign.profile_defaults["smoke"]["train"]["epochs"]
    assert resolve("eva", "smoke").model_config["graph_dim"] == EVA.profile_defaults["smoke"]["model_config"][
        "graph_dim"]
    assert resolve("eva", "smoke", model_overrides={"graph_dim": 16}).model_config["graph_dim"] == 16
    assert resolve("eva", "paper").model_config["graph_dim"] == EVA.Config().graph_dim
    assert resolve("mimea", "cpu").train.time_budget_s is None          # no profile makes numbers load-dependent
    cfg = resolve("gcn_align", "smoke")
    cfg2 = resolve("gcn_align", "smoke", {"train": {"epochs": 7}, "split": {"ratio": 0.5}})
    assert cfg2.train.epochs == 7 and cfg2.split.ratio == 0.5
    # nothing else moved
    assert cfg2.train.lr == cfg.train.lr and cfg2.eval == cfg.eval


def test_unknown_keys_are_rejected():
    with pytest.raises(KeyError, match="unknown config key"):
        resolve("gcn_align", "smoke", {"train": {"epoch": 3}})
    with pytest.raises(KeyError, match="model_config"):
        resolve("gcn_align", "smoke", model_overrides={"no_such_field": 1})
    with pytest.raises(KeyError, match="unknown profile"):
        resolve("gcn_align", "fast")


def test_config_round_trip_and_stable_id():
    cfg = resolve("gcn_align", "cpu", {"data": {"dataset": "FBDB15K"}})
    d = to_dict(cfg)
    assert to_dict(from_dict(json.loads(json.dumps(d)))) == d
    assert run_id(d) == run_id(json.loads(json.dumps(d)))
    # id-neutral keys (progress, device, data_dir) do not change the id; anything computed does
    d2 = json.loads(json.dumps(d))
    d2["train"]["progress"] = not d2["train"]["progress"]
    d2["data"]["data_dir"] = "/elsewhere"
    assert run_id(d2) == run_id(d)
    d2["train"]["lr"] = d2["train"]["lr"] * 2
    assert run_id(d2) != run_id(d)


def test_a_models_code_revision_enters_the_run_id_and_is_not_a_setting(monkeypatch):
    """A bumped REVISION gives new ids (runs of the earlier code are never reused as the new code's); revision 0
    keeps the ids of runs stored before the field existed."""
    from baselines.eva import EVA

    monkeypatch.setattr(EVA, "REVISION", 0)
    d0 = to_dict(resolve("eva", "cpu"))
    assert d0["revision"] == 0
    before = {k: v for k, v in d0.items() if k != "revision"}   # a config.json written before the field
    assert run_id(before) == run_id(d0)
    assert from_dict(before).revision == 0
    monkeypatch.setattr(EVA, "REVISION", 2)
    d2 = to_dict(resolve("eva", "cpu"))
    assert d2["revision"] == 2 and run_id(d2) != run_id(d0)
    assert to_dict(from_dict(json.loads(json.dumps(d2))))["revision"] == 2
    with pytest.raises(KeyError, match="code revision"):
        resolve("eva", "cpu", {"revision": 1})


def test_store_marks_finished_only_after_results(tmp_path):
    store = RunStore(tmp_path)
    store.start("r1", {"a": 1})
    assert not store.is_finished("r1")
    store.save_checkpoint("r1", {"w": torch.ones(2), "history": [{"epoch": 1, "loss": 0.5}]})
    state = store.load_checkpoint("r1")
    assert torch.equal(state["w"], torch.ones(2)) and state["history"][0]["loss"] == 0.5
    store.finish("r1", {"test": {}}, {"m": 1})
    assert store.is_finished("r1") and store.load_checkpoint("r1") is None
    assert list(store.finished_ids()) == ["r1"]


def test_atomic_write_leaves_no_temp_files_and_rejects_nan_cleanly(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": float("nan"), "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": None, "b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_checkpoint_refuses_arbitrary_pickles(tmp_path):
    store = RunStore(tmp_path)
    store.start("r", {})

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, store.path("r") / "checkpoint.pt")
    with pytest.raises(Exception):
        store.load_checkpoint("r")


def test_results_text_keeps_metrics_exact_and_the_curve_compact():
    import json

    from mimea.store.runs import results_text

    results = {"best_epoch": 2, "test": {"mrr": 0.123456789012345}, "valid": {"mrr": 1 / 3},
               "curve": [{"epoch": e, "loss": 1 / (e + 7), "valid": {"mrr": 0.1 * e}} for e in (1, 2, 3)]}
    text = results_text(results)
    back = json.loads(text)
    assert back["test"] == results["test"] and back["valid"] == results["valid"]          # metrics in full
    assert [c["epoch"] for c in back["curve"]] == [1, 2, 3]
    assert back["curve"][0]["loss"] == float(f"{1 / 8:.7g}") and back["curve"][1]["loss"] != 1 / 9
    assert len(text.splitlines()) < 20                                                      # one line per epoch
    assert json.loads(results_text({"test": {}, "curve": []}))["curve"] == []


def test_cli_values_read_json_and_python_literals():
    from mimea.cli import parse_assignments

    got = parse_assignments(["model_config.interaction=False", "model_config.fusion_span=None", "train.lr=1e-3",
                             "model_config.fusion=mean", "model_config.dropout=true"])
    assert got == {"model_config": {"interaction": False, "fusion_span": None, "fusion": "mean", "dropout": True},
                   "train": {"lr": 1e-3}}
