"""The real FBDB15K / FBYG15K folders load, check and count exactly as their PROVENANCE.md says.

Skipped when the data are absent (``shared_data_dir``). Each dataset is loaded once per test session.
"""
from __future__ import annotations

import pytest

from mimea.data.loader import load_pair
from mimea.data.splits import make_split
from mimea.data.stats import dataset_statistics, format_statistics

pytestmark = pytest.mark.real_data

# PROVENANCE.md, "Exact counts (this build)": (KG1, KG2) per statistic, then the link count.
EXPECTED = {
    "FBDB15K": {
        "entities": (14_951, 12_842),
        "relations": (1_056, 279),
        "relation_triples": (381_186, 99_028),
        "relation_triples_distinct": (381_186, 89_197),
        "attributes": (116, 225),
        "attribute_triples": (29_395, 48_044),
        "entities_with_attributes": (12_493, 10_985),
        "images": (13_444, 12_837),
        "links": 12_846,
    },
    "FBYG15K": {
        "entities": (14_951, 15_404),
        "relations": (1_056, 32),
        "relation_triples": (381_186, 122_886),
        "relation_triples_distinct": (381_186, 122_886),
        "attributes": (116, 7),
        "attribute_triples": (29_395, 23_532),
        "entities_with_attributes": (12_493, 15_081),
        "images": (13_444, 11_194),
        "links": 11_199,
    },
}

_CACHE: dict = {}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def real(request, shared_data_dir):
    name = request.param
    if not (shared_data_dir / name / "norm").is_dir():
        pytest.skip(f"{name} not under {shared_data_dir}")
    if name not in _CACHE:
        pair = load_pair(shared_data_dir, name)
        _CACHE[name] = (pair, dataset_statistics(pair))
    return name, *_CACHE[name]


def test_counts_equal_provenance(real):
    name, _, stats = real
    expected = EXPECTED[name]
    for key, value in expected.items():
        if key == "links":
            assert stats["links"] == value
        else:
            assert (stats["kg1"][key], stats["kg2"][key]) == value, key
    assert stats["image_source"] == "image_index" and stats["attribute_triples_source"] == "attr_values"
    assert "entities with images" in format_statistics(stats)


def test_pair_shape_and_provenance(real):
    name, pair, _ = real
    n1, n2 = EXPECTED[name]["entities"]
    assert pair.n_ent == n1 + n2 and len(pair.kg1) == n1 and len(pair.kg2) == n2
    assert int(pair.kg1.max()) == n1 - 1 and int(pair.kg2.min()) == n1      # KG2 ids follow KG1's
    assert pair.triples.shape == (sum(EXPECTED[name]["relation_triples"]), 3)
    assert pair.rel_features.shape == (pair.n_ent, 1000)                    # 1,335 / 1,088 distinct relations
    assert pair.att_features.shape == (pair.n_ent, sum(EXPECTED[name]["attributes"]))
    assert pair.n_rel == {"FBDB15K": 1624, "FBYG15K": 1377}[name]          # ids have gaps: size by max + 1
    prov = pair.provenance
    assert prov["image_features"] == "absent" and pair.img_features is None and not pair.img_mask.any()
    assert prov["deviations"][0] == "FB15K relation triples are a reconstruction"
    assert "No image features" in prov["deviations"]


def test_lineage_split_sizes(real):
    name, pair, _ = real
    n = EXPECTED[name]["links"]
    for ratio in (0.2, 0.5, 0.8):
        split = make_split(pair.links, ratio, val_fraction=0.0)
        assert len(split.train) == int(n // 1 * ratio) and len(split.test) == n - int(n // 1 * ratio)
    if name == "FBYG15K":  # PROVENANCE.md: 2,240 test pairs at 0.8 reproduce a published (MEAFE) list
        assert len(make_split(pair.links, 0.8).test) == 2_240
