"""Load a dataset folder in the MEAformer/MCLEA layout, unchanged, into a validated :class:`MMKGPair`.

Layout (``ROOT/NAME`` is the dataset folder)::

    ROOT/NAME/norm/ent_ids_1, ent_ids_2        id<TAB>entity string; ids of both KGs together are 0..N-1
    ROOT/NAME/norm/triples_1, triples_2        head<TAB>relation<TAB>tail (ids; triples_i uses KG i only)
    ROOT/NAME/norm/ill_ent_ids                 kg1 id<TAB>kg2 id, one alignment link per line
    ROOT/NAME/norm/training_attrs_1, _2        entity string<TAB>attribute name<TAB>attribute name...
    ROOT/NAME/extra/                           optional: names_1/_2 (id<TAB>name), image_index_1/_2 (id),
                                               attr_values_1/_2 (id<TAB>attribute<TAB>value), PROVENANCE.md,
                                               dataset.json ({"image_features": "real"|"synthetic", ...})
    ROOT/pkls/NAME_id_img_feature_dict.pkl     optional image features (or .npz; see mimea.data.images)

Every inconsistency is a :class:`DataError` naming the file and line (see ``docs/data.md`` for the list).
:func:`read_folder` does the reading and checking and returns the raw records (used by the statistics too);
:func:`load_pair` adds the feature matrices.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import features as F
from .errors import DataError
from .images import find_image_file, read_image_features
from .pair import MMKGPair
from .readers import (parse_deviations, read_attr_lines, read_attr_values, read_id_strings, read_int_table,
                      read_lines)

log = logging.getLogger(__name__)

KGS = (1, 2)


@dataclass
class RawDataset:
    """The checked contents of a dataset folder, before any feature is built (ids are global)."""

    folder: Path
    kg_ids: dict[int, np.ndarray]                 # KG -> its entity ids in ent_ids file order
    entity_names: list[str]                       # by global id
    ent2id: dict[str, int]
    triples: dict[int, np.ndarray]                # KG -> [T, 3] (head, relation, tail), file order
    links: np.ndarray                             # [L, 2] in ill_ent_ids order
    attrs: dict[int, list[tuple[int, list[str]]]]  # KG -> (entity id, attribute names) per line
    image_index: dict[int, np.ndarray] | None = None  # KG -> ids listed in extra/image_index_i
    attr_value_triples: dict[int, int] | None = None  # KG -> distinct lines of extra/attr_values_i
    deviations: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)      # extra/dataset.json

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def root(self) -> Path:
        return self.folder.parent

    @property
    def n_ent(self) -> int:
        return len(self.entity_names)

    def kg_of(self) -> np.ndarray:
        """``[n_ent]`` int8: 1 or 2, the KG of each entity."""
        out = np.zeros(self.n_ent, dtype=np.int8)
        for k in KGS:
            out[self.kg_ids[k]] = k
        return out


def _first_repeat(values: np.ndarray) -> int | None:
    """Index of the first element equal to an earlier one, or None."""
    _, first = np.unique(values, return_index=True)
    if len(first) == len(values):
        return None
    seen = np.zeros(len(values), dtype=bool)
    seen[first] = True
    return int(np.flatnonzero(~seen)[0])


def _read_entities(norm: Path) -> tuple[dict[int, np.ndarray], list[str], dict[str, int]]:
    ids, strings, where = {}, {}, {}
    for k in KGS:
        path = norm / f"ent_ids_{k}"
        ids[k], strings[k] = read_id_strings(path, "entity")
        rep = _first_repeat(ids[k])
        if rep is not None:
            first = int(np.flatnonzero(ids[k] == ids[k][rep])[0])
            raise DataError(path, rep + 1, f"duplicate entity id {ids[k][rep]} (first on line {first + 1})")
    overlap = np.isin(ids[2], ids[1])
    if overlap.any():
        i = int(np.flatnonzero(overlap)[0])
        j = int(np.flatnonzero(ids[1] == ids[2][i])[0])
        raise DataError(norm / "ent_ids_2", i + 1, f"entity id {ids[2][i]} is also a KG1 id (ent_ids_1 line "
                                                   f"{j + 1}); the ids of the two KGs must not overlap")
    n = len(ids[1]) + len(ids[2])
    every = np.concatenate([ids[1], ids[2]])
    if every.max() != n - 1:
        present = np.zeros(max(int(every.max()) + 1, n), dtype=bool)
        present[every] = True
        missing = int(np.flatnonzero(~present)[0])
        raise DataError(norm / "ent_ids_2", None, f"entity ids of ent_ids_1 and ent_ids_2 together must be "
                                                  f"exactly 0..{n - 1} (one per entity); id {missing} is "
                                                  f"missing and the largest is {every.max()}")
    names = [""] * n
    ent2id: dict[str, int] = {}
    for k in KGS:
        for line, (e, s) in enumerate(zip(ids[k].tolist(), strings[k]), start=1):
            if s in ent2id:
                other = where[s]
                raise DataError(norm / f"ent_ids_{k}", line, f"entity string {s!r} already names entity "
                                                             f"{ent2id[s]} ({other})")
            ent2id[s] = e
            where[s] = f"ent_ids_{k} line {line}"
            names[e] = s
    return ids, names, ent2id


def _describe(e: int, kg_of: np.ndarray) -> str:
    if e >= len(kg_of):
        return f"entity {e} is not in ent_ids_1 or ent_ids_2 ({len(kg_of)} entities)"
    return f"entity {e} is a KG{kg_of[e]} entity (ent_ids_{kg_of[e]})"


def _check_kg(path: Path, table: np.ndarray, cols: dict[int, tuple[str, int]], kg_of: np.ndarray,
              rule: str) -> None:
    """Every ``table[:, col]`` must be an entity of KG ``kg``; name the first line that is not."""
    n = len(kg_of)
    first_bad, msg = None, ""
    for col, (role, kg) in cols.items():
        v = table[:, col]
        bad = (v >= n) | (kg_of[np.minimum(v, n - 1)] != kg)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if first_bad is None or i < first_bad:
                first_bad, msg = i, f"{role}: {_describe(int(v[i]), kg_of)}; {rule}"
    if first_bad is not None:
        raise DataError(path, first_bad + 1, msg)


def _read_attrs(path: Path, k: int, ent2id: dict[str, int], kg_of: np.ndarray) -> list[tuple[int, list[str]]]:
    out = []
    for line, ent, names in read_attr_lines(path):
        e = ent2id.get(ent)
        if e is None:
            raise DataError(path, line, f"unknown entity {ent!r} (not in ent_ids_1 or ent_ids_2)")
        if kg_of[e] != k:
            raise DataError(path, line, f"entity {ent!r} is a KG{kg_of[e]} entity; training_attrs_{k} must "
                                        f"list KG{k} entities")
        out.append((e, names))
    return out


def read_folder(folder: str | Path) -> RawDataset:
    """Read and check ``ROOT/NAME`` (norm/ and the optional extra/); no features are built."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, None, "dataset folder does not exist" if not folder.exists()
                        else "is not a folder")
    norm = folder / "norm"
    if not norm.is_dir():
        raise DataError(norm, None, "folder is missing (expected the MEAformer/MCLEA layout NAME/norm/"
                                    "{ent_ids_1,ent_ids_2,triples_1,triples_2,ill_ent_ids,training_attrs_1,"
                                    "training_attrs_2})")
    kg_ids, names, ent2id = _read_entities(norm)
    kg_of = np.zeros(len(names), dtype=np.int8)
    for k in KGS:
        kg_of[kg_ids[k]] = k
    triples = {}
    for k in KGS:
        path = norm / f"triples_{k}"
        triples[k] = read_int_table(path, ("head", "relation", "tail"))
        _check_kg(path, triples[k], {0: ("head", k), 2: ("tail", k)}, kg_of,
                  f"triples_{k} must use KG{k} entities only")
    path = norm / "ill_ent_ids"
    links = read_int_table(path, ("kg1 entity", "kg2 entity"))
    _check_kg(path, links, {0: ("left", 1), 1: ("right", 2)}, kg_of,
              "a link is (KG1 entity, KG2 entity)")
    attrs = {k: _read_attrs(norm / f"training_attrs_{k}", k, ent2id, kg_of) for k in KGS}
    raw = RawDataset(folder, kg_ids, names, ent2id, triples, links, attrs)
    _read_extra(raw, kg_of)
    return raw


def _read_extra(raw: RawDataset, kg_of: np.ndarray) -> None:
    extra = raw.folder / "extra"
    if not extra.is_dir():
        return
    if all((extra / f"image_index_{k}").is_file() for k in KGS):
        raw.image_index = {}
        for k in KGS:
            path = extra / f"image_index_{k}"
            ids = read_int_table(path, ("id",))
            _check_kg(path, ids, {0: ("id", k)}, kg_of, f"image_index_{k} lists KG{k} entities")
            raw.image_index[k] = np.unique(ids[:, 0])
    if all((extra / f"attr_values_{k}").is_file() for k in KGS):
        raw.attr_value_triples = {}
        for k in KGS:  # counted for the statistics only; read_attr_values() parses and checks them
            raw.attr_value_triples[k] = len(set(read_lines(extra / f"attr_values_{k}")))
    if (extra / "PROVENANCE.md").is_file():
        raw.deviations = parse_deviations(extra / "PROVENANCE.md")
    meta_path = extra / "dataset.json"
    if meta_path.is_file():
        try:
            raw.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            line = getattr(exc, "lineno", None)
            raise DataError(meta_path, line, f"not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") \
                from None
        if not isinstance(raw.meta, dict):
            raise DataError(meta_path, None, "expected a JSON object")
        label = raw.meta.get("image_features", "real")
        if label not in ("real", "synthetic"):
            raise DataError(meta_path, None, f"image_features is {label!r}; expected 'real' or 'synthetic'")


def read_names(raw: RawDataset) -> dict[int, str]:
    """``extra/names_1`` and ``_2`` (``id<TAB>name``) as ``{entity id: name}``, checked against the KGs."""
    kg_of = raw.kg_of()
    out: dict[int, str] = {}
    for k in KGS:
        path = raw.folder / "extra" / f"names_{k}"
        ids, names = read_id_strings(path, "name")
        _check_kg(path, ids[:, None], {0: ("id", k)}, kg_of, f"names_{k} names KG{k} entities")
        rep = _first_repeat(ids)
        if rep is not None:
            raise DataError(path, rep + 1, f"entity {ids[rep]} is named twice")
        out.update(zip(ids.tolist(), names))
    return out


def load_pair(root: str | Path, name: str, *, use_names: bool = False, missing_image: str = "mask",
              top_k: int = 1000, image_seed: int = 0) -> MMKGPair:
    """Read, check and featurise ``ROOT/NAME`` (image features from ``ROOT/pkls`` when present).

    Args:
        root: the folder holding ``NAME/`` and, optionally, ``pkls/``.
        name: dataset folder name (``FBDB15K``, ``synthetic``...).
        use_names: build ``name_features`` from ``extra/names_*`` (off in every benchmark of the lineage).
        missing_image: ``"mask"`` (zero rows, ``img_mask`` False) or ``"random"`` (MEAformer's mean/std fill).
        top_k: width cap of the relation and attribute bags (the lineage uses 1000).
        image_seed: seed of the ``random`` fill.
    """
    if missing_image not in F.MISSING_IMAGE_POLICIES:
        raise ValueError(f"missing_image={missing_image!r}; choose one of {', '.join(F.MISSING_IMAGE_POLICIES)}")
    root = Path(root)
    raw = read_folder(root / name)
    n = raw.n_ent
    triples = np.concatenate([raw.triples[1], raw.triples[2]])
    rel = F.relation_features(triples, n, top_k)
    att = F.attribute_features(raw.attrs[1] + raw.attrs[2], n, top_k)
    att_values = None
    extra = root / name / "extra"
    if raw.attr_value_triples is not None:
        columns = F.attribute_ranking(raw.attrs[1] + raw.attrs[2], top_k)
        rows = [r for k in KGS for r in read_attr_values(extra / f"attr_values_{k}")]
        att_values = torch.from_numpy(F.attribute_values([r for r in rows if r[0] < n], columns, n))

    img_path = find_image_file(root, name)
    img, mask, n_images = None, np.zeros(n, dtype=bool), 0
    label = "absent"
    if img_path is not None:
        ids, feats = read_image_features(img_path)
        if ids[-1] >= n:
            raise DataError(img_path, None, f"image feature for entity {ids[-1]}, which is not in ent_ids_1 or "
                                            f"ent_ids_2 ({n} entities)")
        img, mask = F.image_matrix(ids, feats, n, missing_image, image_seed)
        n_images = len(ids)
        label = raw.meta.get("image_features", "real")
    else:
        log.info("no image features under %s: img_features=None, img_mask all False", root / "pkls")

    names = None
    if use_names:
        names = F.name_features(read_names(raw), n)

    provenance = {
        "image_features": label,
        "missing_image_policy": missing_image,
        "names_used": bool(use_names),
        # names relative to the data ROOT, never an absolute path (records are committed and shared)
        "source": Path(root).name,
        "dataset": name,
        "deviations": list(raw.deviations),
        "n_images": n_images,
        "image_file": _relative(img_path, root) if img_path is not None else None,
        "image_seed": image_seed if missing_image == "random" and img is not None else None,
        "top_k": top_k,
        "features": "rel: joint head+tail bag of top-k relation ids (MCLEA/MEAformer load_relation); "
                    "att: multi-hot of top-k attribute names (load_attr); img: L2-normalised rows",
    }
    if img_path is not None and raw.meta.get("image_backbone"):
        provenance["image_backbone"] = str(raw.meta["image_backbone"])   # extra/dataset.json (converter, extractor)
    if raw.image_index is not None:
        provenance["image_index"] = {f"kg{k}": int(len(raw.image_index[k])) for k in KGS}
    if raw.attr_value_triples is not None:
        provenance["attr_value_triples"] = {f"kg{k}": raw.attr_value_triples[k] for k in KGS}
    if raw.meta:
        provenance["dataset_meta"] = raw.meta
    return MMKGPair(
        name=name,
        n_ent=n,
        kg1=torch.from_numpy(raw.kg_ids[1].copy()),
        kg2=torch.from_numpy(raw.kg_ids[2].copy()),
        triples=torch.from_numpy(triples),
        links=torch.from_numpy(raw.links.copy()),
        rel_features=torch.from_numpy(rel),
        att_features=torch.from_numpy(att),
        img_features=torch.from_numpy(img) if img is not None else None,
        img_mask=torch.from_numpy(mask),
        name_features=torch.from_numpy(names) if names is not None else None,
        att_values=att_values,
        entity_names=raw.entity_names,
        provenance=provenance,
    )


def load_folder(path: str | Path, **kwargs) -> MMKGPair:
    """:func:`load_pair` for a dataset folder ``ROOT/NAME`` given as one path (same keyword arguments)."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        path = path.resolve()
    return load_pair(path.parent, path.name, **kwargs)


def _relative(path: Path, root: str | Path) -> str:
    """``path`` relative to the data ROOT (posix), or its bare name when it lies elsewhere."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).name
