"""Convert the MMKB release files (Liu et al. 2019, ``mniepert/mmkb``) to the MEAformer/MCLEA layout the loader reads.

Input, for a pair ``KG1-KG2`` (``FB15K-DB15K`` or ``FB15K-YAGO15K``), each file looked up as ``SRC/KG/KG_<part>``
(the mmkb repository's layout) and then as ``SRC/KG_<part>``:

==============================  ==========================================================================
``KG_EntityTriples.txt``        ``<head> <relation> <tail> .``: 4 whitespace-separated fields (both KGs)
``KG2_SameAsLink.txt``          ``<KG1 entity> <SameAs> <KG2 entity> .`` (in KG2's folder)
``KG_NumericalTriples.txt``     ``entity attribute value`` (FB15K: tab-separated) or
                                ``<entity> <attribute> "value"^^<type> .`` (DB15K, YAGO15K): 3 or 4 fields
``KG_ImageIndex.txt``           ``entity<TAB>image name`` (``/m/01m4kpp  FBIMG00001``); optional
``KG_ImageData.h5``             one HDF5 dataset per image, named by the index's image name (MMKB's README:
                                ``h5py.File('DB15K_ImageData.h5')['DBIMG00039']`` is that image's VGG16
                                vector, 4096 values); optional, needs the index; read with ``h5py``
==============================  ==========================================================================

Output (``DST/NAME/norm``, ``DST/NAME/extra``, ``DST/pkls/NAME_id_img_feature_dict.pkl``), numbered as MCLEA's
converter (``datapro/mmkb_convert.py``) numbers it:

* entities: one shared counter, in order of first appearance (head, then tail) in ``KG1_EntityTriples.txt``,
  then ``KG2_EntityTriples.txt``; ``ent_ids_k`` lists the entities of file ``k`` in that order. Relations: the
  same, with their own shared counter (``extra/rel_ids_k``).
* ``triples_k``: one line per EntityTriples line, duplicates kept. ``ill_ent_ids``: one line per SameAsLink line.
* ``training_attrs_k``: per entity (first appearance in the NumericalTriples file), its distinct attribute names
  in first-appearance order (the lineage writes a Python ``set``: its order is arbitrary). Lines of entities
  that are not entities of that KG are dropped (MCLEA/MEAformer's ``load_attr`` skips them too) and counted.
* image features: the vector of each h5 dataset, flattened, keyed by its entity's id; an entity with several
  images keeps the first in the h5 file's iteration order (as the lineage's ``for key, val in f.items()``).
  Written with :func:`~mimea.data.images.write_image_pickle` (protocol 4, read by the restricted unpickler).
* ``extra/``: ``attr_values_k`` (``id<TAB>attribute<TAB>lexical value``: distinct triples, quotes and XSD type
  dropped), ``image_index_k``, ``names_k`` (the local name of a ``<...>`` URI with ``_`` as space, or from a
  ``--names`` file), ``rel_ids_k``, ``dataset.json`` and ``PROVENANCE.md`` (the rules above, the counts, the
  source files' SHA-256).

Bad input is a one-line :class:`~mimea.data.errors.DataError` naming the file and line. Everything is read and
checked before anything is written; the output is built in a temporary folder inside ``DST`` and renamed into
place, so a failed conversion leaves ``DST`` as it was.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from mimea.hashing import sha256_file

from .errors import DataError
from .images import IMAGE_STEM, write_image_npz, write_image_pickle
from .readers import read_lines

CONVERTER_VERSION = 1

#: pair -> (KG1, KG2, default dataset name)
PAIRS = {
    "FB15K-DB15K": ("FB15K", "DB15K", "FBDB15K"),
    "FB15K-YAGO15K": ("FB15K", "YAGO15K", "FBYG15K"),
}
IMAGE_BACKBONE = "vgg16 (MMKB *_ImageData.h5)"


@dataclass
class _KG:
    label: str                                     # FB15K, DB15K...
    entities: list[str] = field(default_factory=list)   # first appearance in this KG's triples file
    relations: list[str] = field(default_factory=list)
    triples: list[tuple[int, int, int]] = field(default_factory=list)
    attrs: dict[int, list[str]] = field(default_factory=dict)
    values: dict[tuple[int, str, str], None] = field(default_factory=dict)   # ordered set
    attr_dropped: int = 0
    image_of: dict[str, tuple[str, int]] = field(default_factory=dict)    # image name -> (entity, index line)
    image_index: dict[int, None] = field(default_factory=dict)            # ordered set of ids
    features: dict[int, np.ndarray] = field(default_factory=dict)
    image_repeats: int = 0
    images_missing: int = 0


def find_source(src: Path, kg: str, part: str, required: bool = True) -> Path | None:
    """``SRC/KG/KG_part`` or ``SRC/KG_part``; a one-line error naming the first when neither exists."""
    candidates = [src / kg / f"{kg}_{part}", src / f"{kg}_{part}"]
    for path in candidates:
        if path.is_file():
            return path
    if required:
        raise DataError(candidates[0], None, f"file is missing (also looked for {candidates[1].name} directly "
                                             "under SRC)")
    return None


def _fields(path: Path, line_no: int, line: str, counts: tuple[int, ...], what: str) -> list[str]:
    tokens = line.split()
    if len(tokens) not in counts:
        raise DataError(path, line_no, f"expected {what} ({' or '.join(map(str, counts))} whitespace-separated "
                                       f"fields), found {len(tokens)}")
    if len(tokens) == 4 and tokens[3] != ".":
        raise DataError(path, line_no, f"expected {what}; the 4th field must be '.', found {tokens[3][:40]!r}")
    return tokens


def _lexical(value: str) -> str:
    """``"75500000.0"^^<http://...#double>`` -> ``75500000.0``; a plain value stays as it is."""
    if value.startswith('"'):
        end = value.rfind('"')
        if end > 0:
            return value[1:end]
    return value


def _local_name(entity: str) -> str | None:
    """``<http://dbpedia.org/resource/Andy_Griffith>`` -> ``Andy Griffith``; None for a non-URI (a Freebase mid)."""
    if not (entity.startswith("<") and entity.endswith(">")):
        return None
    tail = entity[1:-1].rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    name = " ".join(unquote(tail).replace("_", " ").split())
    return name or None



class _Reader:
    """Reads and checks the source files of one pair into two :class:`_KG` records (no output is written)."""

    def __init__(self, src: Path, kg1: str, kg2: str) -> None:
        self.src = src
        self.kgs = {1: _KG(kg1), 2: _KG(kg2)}
        self.ent2id: dict[str, int] = {}
        self.kg_of: dict[str, int] = {}
        self.first_line: dict[str, tuple[str, int]] = {}
        self.rel2id: dict[str, int] = {}
        self.links: list[tuple[int, int]] = []
        self.sources: dict[str, Path] = {}

    def _source(self, kg: str, part: str, required: bool = True) -> Path | None:
        path = find_source(self.src, kg, part, required)
        if path is not None:
            self.sources[path.relative_to(self.src).as_posix()] = path
        return path

    def _describe(self, entity: str) -> str:
        k = self.kg_of.get(entity)
        if k is None:
            return (f"entity {entity[:80]!r} is in neither {self.kgs[1].label}_EntityTriples.txt nor "
                    f"{self.kgs[2].label}_EntityTriples.txt")
        return f"entity {entity[:80]!r} is a {self.kgs[k].label} entity"

    def triples(self) -> None:
        for k in (1, 2):
            kg = self.kgs[k]
            path = self._source(kg.label, "EntityTriples.txt")
            for i, line in enumerate(read_lines(path), start=1):
                head, rel, tail, _ = _fields(path, i, line, (4,), "an N-Triples line '<head> <relation> <tail> .'")
                for ent in (head, tail):
                    if ent not in self.ent2id:
                        self.ent2id[ent] = len(self.ent2id)
                        self.kg_of[ent] = k
                        self.first_line[ent] = (path.name, i)
                        kg.entities.append(ent)
                    elif self.kg_of[ent] != k:
                        where = self.first_line[ent]
                        raise DataError(path, i, f"entity {ent[:80]!r} also appears in {where[0]} (line {where[1]});"
                                                 " the two KGs must not share entity strings")
                if rel not in self.rel2id:
                    self.rel2id[rel] = len(self.rel2id)
                    kg.relations.append(rel)
                kg.triples.append((self.ent2id[head], self.rel2id[rel], self.ent2id[tail]))

    def same_as(self) -> None:
        path = self._source(self.kgs[2].label, "SameAsLink.txt")
        for i, line in enumerate(read_lines(path), start=1):
            left, _, right, _ = _fields(path, i, line, (4,), f"'<{self.kgs[1].label} entity> <SameAs> "
                                                            f"<{self.kgs[2].label} entity> .'")
            for role, ent, k in (("left", left, 1), ("right", right, 2)):
                if self.kg_of.get(ent) != k:
                    raise DataError(path, i, f"{role}: {self._describe(ent)}; a link is ({self.kgs[1].label} "
                                             f"entity, {self.kgs[2].label} entity)")
            self.links.append((self.ent2id[left], self.ent2id[right]))

    def attributes(self) -> None:
        for k in (1, 2):
            kg = self.kgs[k]
            path = self._source(kg.label, "NumericalTriples.txt")
            for i, line in enumerate(read_lines(path), start=1):
                ent, attr, value = _fields(path, i, line, (3, 4), "'entity attribute value [.]'")[:3]
                if self.kg_of.get(ent) != k:
                    kg.attr_dropped += 1
                    continue
                e = self.ent2id[ent]
                names = kg.attrs.setdefault(e, [])
                if attr not in names:
                    names.append(attr)
                kg.values[(e, attr, _lexical(value))] = None
            if not kg.attrs:
                raise DataError(path, None, f"no line names an entity of {kg.label}_EntityTriples.txt "
                                            "(training_attrs would be empty)")

    def images(self, allow_missing: bool) -> None:
        for k in (1, 2):
            kg = self.kgs[k]
            index = self._source(kg.label, "ImageIndex.txt", required=False)
            h5 = find_source(self.src, kg.label, "ImageData.h5", required=False)
            if index is None:
                if h5 is not None:
                    raise DataError(self.src / kg.label / f"{kg.label}_ImageIndex.txt", None,
                                    f"file is missing; it maps the datasets of {h5.name} to entities")
                continue
            for i, line in enumerate(read_lines(index), start=1):
                ent, image = _fields(index, i, line, (2,), "'entity<TAB>image name'")
                if self.kg_of.get(ent) != k:
                    raise DataError(index, i, f"{self._describe(ent)}; {index.name} lists {kg.label} entities")
                if image in kg.image_of:
                    raise DataError(index, i, f"image {image!r} is already listed on line {kg.image_of[image][1]}")
                kg.image_of[image] = (ent, i)
                kg.image_index[self.ent2id[ent]] = None
            if h5 is not None:
                self.sources[h5.relative_to(self.src).as_posix()] = h5
                self._read_h5(kg, index, h5, allow_missing)

    def _read_h5(self, kg: _KG, index: Path, path: Path, allow_missing: bool) -> None:
        try:
            import h5py
        except ImportError:
            raise DataError(path, None, "reading it needs h5py, which is not installed (pip install "
                                        "'mimea[mmkb]' or pip install h5py)") from None
        try:
            fh = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(path, None, f"not a readable HDF5 file ({exc})") from None
        dim, first, seen = None, None, set()
        with fh:
            for key in fh.keys():  # the file's own order, as the lineage's f.items()
                obj = fh[key]
                if not isinstance(obj, h5py.Dataset):
                    raise DataError(path, None, f"{key!r} is a group; expected one dataset per image, named as in "
                                                f"{index.name} (e.g. {next(iter(kg.image_of), 'FBIMG00001')!r})")
                if key not in kg.image_of:
                    raise DataError(path, None, f"dataset {key!r} is not an image listed in {index.name} (expected "
                                                f"one dataset per image, e.g. {next(iter(kg.image_of))!r})")
                try:
                    vec = np.asarray(obj[()])
                except Exception as exc:  # corrupt chunk, unsupported filter...
                    raise DataError(path, None, f"dataset {key!r} cannot be read ({exc})") from None
                if not (np.issubdtype(vec.dtype, np.floating) or np.issubdtype(vec.dtype, np.integer)):
                    raise DataError(path, None, f"dataset {key!r} holds {vec.dtype}, expected numbers")
                vec = vec.reshape(-1).astype(np.float32)
                if dim is None:
                    dim, first = len(vec), key
                elif len(vec) != dim:
                    raise DataError(path, None, f"dataset {key!r} has {len(vec)} values, {first!r} has {dim}")
                if not np.isfinite(vec).all():
                    raise DataError(path, None, f"dataset {key!r} holds NaN or inf")
                seen.add(key)
                e = self.ent2id[kg.image_of[key][0]]
                if e in kg.features:
                    kg.image_repeats += 1
                else:
                    kg.features[e] = vec
        missing = [(line, image) for image, (_, line) in kg.image_of.items() if image not in seen]
        if missing and not allow_missing:
            line, image = missing[0]
            raise DataError(index, line, f"image {image!r} has no dataset in {path.name} ({len(missing)} listed "
                                         "images have none); pass --allow-missing-images to skip them, as MCLEA's "
                                         "converter does")
        kg.images_missing = len(missing)


def _read_names(path: Path) -> dict[str, str]:
    out = {}
    for i, line in enumerate(read_lines(path), start=1):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or not parts[1].strip():
            raise DataError(path, i, "expected 'entity<TAB>name'")
        out[parts[0]] = " ".join(parts[1].split())
    return out


def _write(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")


_NOTE = """# {name} ({kg1}-{kg2}): converted from the MMKB release files

Written by `mimea data convert mmkb` (`mimea/data/convert_mmkb.py`, converter version {version}). Ids follow
MCLEA's `datapro/mmkb_convert.py`: entities and relations numbered in order of first appearance (head, then
tail) in `{kg1}_EntityTriples.txt`, then `{kg2}_EntityTriples.txt`, one shared counter each; `ill_ent_ids` one
line per `{kg2}_SameAsLink.txt` line; image features from `*_ImageData.h5` (one dataset per image, first image
of an entity kept). Source files and their SHA-256 are in `dataset.json`.

| | {kg1} (KG1) | {kg2} (KG2) |
|---|---|---|
| entities | {e1} | {e2} |
| relations | {r1} | {r2} |
| relation triples (lines) | {t1} | {t2} |
| entities with attributes | {a1} | {a2} |
| attribute triples (distinct) | {v1} | {v2} |
| attribute lines dropped (entity not in the KG) | {d1} | {d2} |
| entities in the image index | {x1} | {x2} |
| entities with an image feature | {i1} | {i2} |
| images listed without an h5 dataset (skipped) | {m1} | {m2} |
| alignment links | {links} | |

Attribute order within a `training_attrs` line is first appearance (the lineage writes a Python set).

## Deviations from the original benchmark

None known: the files are the converter's output for these sources.
"""


def convert_mmkb(src: str | Path, dst: str | Path, pair: str = "FB15K-DB15K", name: str | None = None, *,
                 names_file: str | Path | None = None, allow_missing_images: bool = False,
                 image_format: str = "pkl") -> dict:
    """Convert ``SRC`` (MMKB files of ``pair``) to ``DST/NAME`` + ``DST/pkls``; return the counts written.

    Raises :class:`DataError` (one line, file and line) on bad input and when ``DST/NAME`` or its image file
    already exists; ``ValueError`` on a bad argument. ``DST`` is left untouched on any error.
    """
    if pair not in PAIRS:
        raise ValueError(f"--pair {pair!r}: choose one of {', '.join(PAIRS)}")
    if image_format not in ("pkl", "npz"):
        raise ValueError(f"image format {image_format!r}: choose pkl or npz")
    kg1, kg2, default_name = PAIRS[pair]
    name = name or default_name
    if not name or name in (".", "..") or "/" in name or name.startswith("."):
        raise ValueError(f"--name {name!r}: expected a plain folder name")
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(src, None, "source folder does not exist" if not src.exists() else "is not a folder")
    if dst.exists() and not dst.is_dir():
        raise DataError(dst, None, "is not a folder (DST is the data ROOT that receives NAME/ and pkls/)")
    folder = dst / name
    if folder.exists():
        raise DataError(folder, None, "already exists; remove it or choose another --name")
    image_files = [dst / "pkls" / (IMAGE_STEM.format(name=name) + s) for s in (".pkl", ".npz")]
    for path in image_files:
        if path.exists():
            raise DataError(path, None, "already exists; remove it or choose another --name")

    reader = _Reader(src, kg1, kg2)
    reader.triples()
    reader.same_as()
    reader.attributes()
    reader.images(allow_missing_images)
    extra_names = _read_names(Path(names_file)) if names_file is not None else {}
    kgs = reader.kgs

    created = not dst.exists()
    dst.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-convert-{name}-", dir=dst))
    moved: list[Path] = []
    pkls_created = not (dst / "pkls").exists()
    try:
        out = tmp / name
        counts = _write_dataset(out, reader, extra_names, pair, name)
        ids = sorted(e for k in (1, 2) for e in kgs[k].features)
        image_file = None
        if ids:
            feats = np.stack([kgs[1 if e in kgs[1].features else 2].features[e] for e in ids])
            image_file = tmp / "pkls" / (IMAGE_STEM.format(name=name) + f".{image_format}")
            (write_image_pickle if image_format == "pkl" else write_image_npz)(image_file, np.array(ids), feats)
        _share(tmp)
        if image_file is not None:  # the image file first: DST/NAME appearing is what marks a finished conversion
            target = dst / "pkls" / image_file.name
            target.parent.mkdir(exist_ok=True)
            os.rename(image_file, target)
            moved.append(target)
        os.rename(out, folder)
    except BaseException:
        for path in moved:
            path.unlink(missing_ok=True)
        if pkls_created and (dst / "pkls").is_dir() and not any((dst / "pkls").iterdir()):
            (dst / "pkls").rmdir()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not folder.exists():
            shutil.rmtree(dst, ignore_errors=True)
    return counts


def _write_dataset(out: Path, reader: _Reader, extra_names: dict[str, str], pair: str, name: str) -> dict:
    kgs = reader.kgs
    norm, extra = out / "norm", out / "extra"
    ent2id = reader.ent2id
    entity_names = [""] * len(ent2id)
    for ent, e in ent2id.items():
        entity_names[e] = ent
    for k in (1, 2):
        kg = kgs[k]
        _write(norm / f"ent_ids_{k}", (f"{ent2id[s]}\t{s}" for s in kg.entities))
        _write(norm / f"triples_{k}", (f"{h}\t{r}\t{t}" for h, r, t in kg.triples))
        _write(norm / f"training_attrs_{k}", ("\t".join([entity_names[e], *attrs]) for e, attrs in kg.attrs.items()))
        _write(extra / f"attr_values_{k}", (f"{e}\t{a}\t{v}" for e, a, v in kg.values))
        _write(extra / f"rel_ids_{k}", (f"{reader.rel2id[r]}\t{r}" for r in kg.relations))
        if kg.image_index:
            _write(extra / f"image_index_{k}", (str(e) for e in kg.image_index))
        named = [(ent2id[s], extra_names.get(s) or _local_name(s)) for s in kg.entities]
        named = [(e, n) for e, n in named if n]
        if named:
            _write(extra / f"names_{k}", (f"{e}\t{n}" for e, n in named))
    _write(norm / "ill_ent_ids", (f"{a}\t{b}" for a, b in reader.links))

    c = {}
    for k in (1, 2):
        kg = kgs[k]
        c[f"kg{k}"] = {"entities": len(kg.entities), "relations": len(kg.relations), "triples": len(kg.triples),
                       "entities_with_attributes": len(kg.attrs), "attribute_triples": len(kg.values),
                       "attribute_lines_dropped": kg.attr_dropped, "image_index": len(kg.image_index),
                       "images": len(kg.features), "image_repeats": kg.image_repeats,
                       "images_missing": kg.images_missing}
    c["links"] = len(reader.links)
    dims = {len(v) for k in (1, 2) for v in kgs[k].features.values()}
    meta = {"converter": "mimea.data.convert_mmkb", "version": CONVERTER_VERSION, "source": "MMKB", "pair": pair,
            "kg1": kgs[1].label, "kg2": kgs[2].label, "image_features": "real", "counts": c,
            "source_files": {rel: sha256_file(p) for rel, p in sorted(reader.sources.items())}}
    if dims:
        meta["image_backbone"] = IMAGE_BACKBONE
        meta["image_dim"] = dims.pop()
    (extra / "dataset.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    k1, k2 = c["kg1"], c["kg2"]
    (extra / "PROVENANCE.md").write_text(_NOTE.format(
        name=name, kg1=kgs[1].label, kg2=kgs[2].label, version=CONVERTER_VERSION,
        e1=k1["entities"], e2=k2["entities"], r1=k1["relations"], r2=k2["relations"], t1=k1["triples"],
        t2=k2["triples"], a1=k1["entities_with_attributes"], a2=k2["entities_with_attributes"],
        v1=k1["attribute_triples"], v2=k2["attribute_triples"], d1=k1["attribute_lines_dropped"],
        d2=k2["attribute_lines_dropped"], x1=k1["image_index"], x2=k2["image_index"], i1=k1["images"],
        i2=k2["images"], m1=k1["images_missing"], m2=k2["images_missing"], links=c["links"]), encoding="utf-8")
    return c


def _share(folder: Path) -> None:
    """Folders 0755, files 0644 (mkdtemp makes 0700)."""
    for base, dirs, files in os.walk(folder):
        os.chmod(base, 0o755)
        for f in files:
            os.chmod(os.path.join(base, f), 0o644)
