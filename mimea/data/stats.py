"""Dataset statistics per KG, in the rows of the usual MMKG table (and of PROVENANCE.md's "Exact counts").

From a folder the counts come from the files themselves; from an :class:`MMKGPair` they come from its tensors,
where attribute counts cover the top-k attribute columns only (exact whenever ``top_k`` >= distinct names, as
for FBDB15K/FBYG15K with the default 1000). Images count entities with a real image feature; without image
features they count ``extra/image_index_*`` (None when neither exists). Attribute triples are the distinct
(entity, attribute, value) lines of ``extra/attr_values_*`` when present (the MMKG table's count: DB15K has
48,044 triples over 47,246 entity-attribute pairs), else the entity-attribute pairs of ``training_attrs_*``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tabulate import tabulate

from .images import find_image_file, read_image_features
from .loader import KGS, RawDataset, read_folder
from .pair import MMKGPair

#: (key, label) of each per-KG row, in table order.
ROWS = (
    ("entities", "entities"),
    ("relations", "relations (distinct ids used)"),
    ("relation_triples", "relation triples (lines)"),
    ("relation_triples_distinct", "relation triples (distinct)"),
    ("attributes", "attributes (distinct names)"),
    ("attribute_triples", "attribute triples"),
    ("attribute_pairs", "entity-attribute pairs"),
    ("entities_with_attributes", "entities with attributes"),
    ("images", "entities with images"),
    ("aligned_entities", "entities in links (distinct)"),
)


def _n_distinct_rows(table: np.ndarray) -> int:
    """Distinct rows of a non-negative int table, via one int64 key per row when it fits (10x faster)."""
    if len(table) == 0:
        return 0
    sizes = [int(c.max()) + 1 for c in table.T]
    if float(np.prod(sizes, dtype=np.float64)) < 2.0 ** 62:
        key = np.zeros(len(table), dtype=np.int64)
        for col, size in zip(table.T, sizes):
            key = key * size + col
        key.sort()
        return int(1 + np.count_nonzero(key[1:] != key[:-1]))  # np.unique's hash path is 20x slower here
    return int(len(np.unique(table, axis=0)))


def _graph_counts(triples: np.ndarray) -> dict:
    distinct = _n_distinct_rows(triples)
    return {"relations": int(len(np.unique(triples[:, 1]))), "relation_triples": int(len(triples)),
            "relation_triples_distinct": int(distinct)}


def _from_raw(raw: RawDataset) -> dict:
    img_path = find_image_file(raw.root, raw.name)
    img_ids = read_image_features(img_path)[0] if img_path is not None else None
    kg_of = raw.kg_of()
    out: dict = {"name": raw.name, "links": int(len(raw.links)),
                 "links_distinct": _n_distinct_rows(raw.links),
                 "image_source": "features" if img_ids is not None else
                 ("image_index" if raw.image_index is not None else None),
                 "attribute_triples_source": "attr_values" if raw.attr_value_triples else "training_attrs"}
    for k in KGS:
        pairs = {(e, a) for e, names in raw.attrs[k] for a in names}
        if img_ids is not None:
            images = int((kg_of[img_ids[img_ids < raw.n_ent]] == k).sum())
        elif raw.image_index is not None:
            images = int(len(raw.image_index[k]))
        else:
            images = None
        out[f"kg{k}"] = {
            "entities": int(len(raw.kg_ids[k])),
            **_graph_counts(raw.triples[k]),
            "attributes": len({a for _, a in pairs}),
            "attribute_triples": raw.attr_value_triples[k] if raw.attr_value_triples else len(pairs),
            "attribute_pairs": len(pairs),
            "entities_with_attributes": len({e for e, _ in pairs}),
            "images": images,
            "aligned_entities": int(len(np.unique(raw.links[:, k - 1]))),
        }
    return out


def _from_pair(pair: MMKGPair) -> dict:
    kg_of = np.zeros(pair.n_ent, dtype=np.int8)
    triples = pair.triples.cpu().numpy()
    links = pair.links.cpu().numpy()
    att = pair.att_features.cpu().numpy() > 0
    mask = pair.img_mask.cpu().numpy()
    index = pair.provenance.get("image_index")
    values = pair.provenance.get("attr_value_triples")
    has_img = pair.img_features is not None
    out: dict = {"name": pair.name, "links": int(len(links)), "links_distinct": _n_distinct_rows(links),
                 "image_source": "features" if has_img else ("image_index" if index else None),
                 "attribute_triples_source": "attr_values" if values else "training_attrs"}
    for k, ids in ((1, pair.kg1), (2, pair.kg2)):
        ids = ids.cpu().numpy()
        kg_of[ids] = k
    for k, ids in ((1, pair.kg1), (2, pair.kg2)):
        ids = ids.cpu().numpy()
        a = att[ids]
        out[f"kg{k}"] = {
            "entities": int(len(ids)),
            **_graph_counts(triples[kg_of[triples[:, 0]] == k]),
            "attributes": int(a.any(axis=0).sum()),
            "attribute_triples": int(values[f"kg{k}"]) if values else int(a.sum()),
            "attribute_pairs": int(a.sum()),
            "entities_with_attributes": int(a.any(axis=1).sum()),
            "images": int(mask[ids].sum()) if has_img else (int(index[f"kg{k}"]) if index else None),
            "aligned_entities": int(len(np.unique(links[:, k - 1]))),
        }
    return out


def dataset_statistics(pair_or_folder: MMKGPair | RawDataset | str | Path) -> dict:
    """Counts per KG (keys as in :data:`ROWS`) and overall.

    Returns ``{"name", "links", "links_distinct", "image_source", "attribute_triples_source", "kg1": {...},
    "kg2": {...}}``. A folder is read and checked (:func:`read_folder`); a pair is counted from its tensors.
    """
    if isinstance(pair_or_folder, MMKGPair):
        return _from_pair(pair_or_folder)
    if isinstance(pair_or_folder, RawDataset):
        return _from_raw(pair_or_folder)
    return _from_raw(read_folder(pair_or_folder))


def format_statistics(stats: dict) -> str:
    """A plain-text table: one row per statistic, one column per KG, then the link counts."""
    def cell(v):
        return "-" if v is None else f"{v:,}"

    rows = [[label, cell(stats["kg1"][key]), cell(stats["kg2"][key])] for key, label in ROWS]
    rows.append(["alignment links (lines)", cell(stats["links"]), ""])
    rows.append(["alignment links (distinct)", cell(stats["links_distinct"]), ""])
    title = (f"{stats['name']}  (images from: {stats['image_source'] or 'nowhere'}; attribute triples from: "
             f"{stats['attribute_triples_source']})")
    return title + "\n" + tabulate(rows, headers=["", "KG1", "KG2"], colalign=("left", "right", "right"))
