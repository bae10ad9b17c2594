"""Issue-level check on the synthetic default (fixed seeds): MIMEA with all modules beats every single modality
alone, and switching each module off changes the result.

Measured when written (dim 64, 30 epochs, seed 0, test mean H@1; session 2, after the batch forward): full 0.236;
graph 0.087, relation 0.008, attribute 0.013, image 0.173 alone; fusion=mean 0.238, transport=none 0.235,
cl_weighting=uniform 0.218, interaction=False 0.227. The margin asked of "beats" (0.03 H@1, about 30 test pairs of
~980) is well below the measured 0.063 gap to the best single modality and well above the run-to-run noise of one
seed (0, by construction: same seed, same numbers). The module switches are only asked to *change* the result: their
measured effects (-0.002 to +0.018; plain-mean fusion is as good as the full model here) are within what one seed
can tell apart, and the tables report them as mean ± std over replicates. Session 4 changed MIMEA's defaults
(fusion_span=0.25, cl_weighting=balanced: docs/design-log.md); the assertions hold for them unchanged.
"""
import pytest

from mimea.pipeline import run
from mimea.training.config import resolve

FAST = {"train": {"epochs": 30, "eval_every": 5, "patience": 0, "progress": False}}
SMALL = {"dim": 64}
SINGLE = {m: {"modalities": [m], "fusion": "mean", "interaction": False, "fusion_span": None}
          for m in ("graph", "relation", "attribute", "image")}
ABLATIONS = {"fusion=mean": {"fusion": "mean", "interaction": False, "fusion_span": None}, "transport=none": {"transport": "none"},
             "cl_weighting=uniform": {"cl_weighting": "uniform"}, "interaction=False": {"interaction": False}}


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimea_synth")
    out = {}
    for name, over in {"full": {}, **SINGLE, **ABLATIONS}.items():
        res = run(resolve("mimea", "smoke", FAST, {**SMALL, **over}), root)["results"]["test"]
        out[name] = res["mean"]
    return out


def test_full_model_beats_every_single_modality(scores):
    best_single = max(scores[m]["hits@1"] for m in SINGLE)
    assert scores["full"]["hits@1"] > best_single + 0.03, scores
    assert scores["full"]["mrr"] > max(scores[m]["mrr"] for m in SINGLE), scores


@pytest.mark.parametrize("switch", list(ABLATIONS))
def test_switching_a_module_off_changes_the_result(scores, switch):
    assert scores[switch] != scores["full"]
    # and does not collapse the model: an ablated MIMEA still uses every modality
    assert scores[switch]["hits@1"] > max(scores[m]["hits@1"] for m in SINGLE)
