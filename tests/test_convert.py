"""``mimea data convert mmkb``: MMKB release files -> the MEAformer/MCLEA layout, numbered as MCLEA's converter."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from mimea.cli import main
from mimea.data.errors import DataError
from mimea.data.loader import load_pair

h5py = pytest.importorskip("h5py", reason="the MMKB converter reads *_ImageData.h5 with h5py (extra 'mmkb')")

FB = "http://rdf.freebase.com/ns/"
DB = "http://dbpedia.org/resource/"
DBO = "http://dbpedia.org/ontology/"
XSD = "http://www.w3.org/2001/XMLSchema#"

#: A tiny MMKB release for FB15K-DB15K, in the mmkb repository's layout (SRC/KG/KG_part). File -> text.
MMKB_FILES = {
    "FB15K/FB15K_EntityTriples.txt":
        f"/m/a <{FB}r1> /m/b .\n/m/b <{FB}r2> /m/c .\n/m/a <{FB}r1> /m/b .\n/m/d <{FB}r2> /m/a .\n",
    "DB15K/DB15K_EntityTriples.txt":
        f"<{DB}A> <{DBO}p> <{DB}B> .\n<{DB}C_D> <{DBO}q> <{DB}A> .\n<{DB}E> <{DBO}p> <{DB}E> .\n",
    "DB15K/DB15K_SameAsLink.txt":
        f"/m/a <SameAs> <{DB}A> .\n/m/b <SameAs> <{DB}B> .\n/m/c <SameAs> <{DB}C_D> .\n",
    "FB15K/FB15K_NumericalTriples.txt":
        f"/m/a\t<{FB}geo.latitude>\t54.2\n/m/a\t<{FB}geo.longitude>\t9.7\n/m/zz\t<{FB}geo.latitude>\t3.0\n"
        f"/m/c\t<{FB}geo.latitude>\t1.5\n/m/a\t<{FB}geo.latitude>\t54.2\n",
    "DB15K/DB15K_NumericalTriples.txt":
        f'<{DB}A> <{DBO}gross> "75500000.0"^^<{XSD}double> .\n'
        f'<{DB}B> <http://www.w3.org/2003/01/geo/wgs84_pos#lat> "53.4"^^<{XSD}float> .\n',
    "FB15K/FB15K_ImageIndex.txt": "/m/a\tFBIMG00001\n/m/b\tFBIMG00002\n/m/d\tFBIMG00003\n",
    "DB15K/DB15K_ImageIndex.txt": f"<{DB}A>\tDBIMG00001\n<{DB}A>\tDBIMG00002\n<{DB}C_D>\tDBIMG00003\n",
}
DIM = 6


def vectors(prefix: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(prefix))
    return {f"{prefix}IMG{i:05d}": rng.normal(size=DIM).astype(np.float32) for i in (1, 2, 3)}


def write_mmkb(src, overrides: dict | None = None, h5: dict | None = None):
    """Write :data:`MMKB_FILES` (with ``overrides``; None deletes) and the two h5 files under ``src``."""
    files = {**MMKB_FILES, **(overrides or {})}
    for rel, text in files.items():
        if text is None:
            continue
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    h5 = h5 if h5 is not None else {"FB15K": vectors("FB"), "DB15K": vectors("DB")}
    for kg, datasets in h5.items():
        with h5py.File(src / kg / f"{kg}_ImageData.h5", "w") as fh:
            for key, value in reversed(list(datasets.items())):   # written in reverse: read in name order
                fh.create_dataset(key, data=value)
    return src


def _listing(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else None


def test_convert_load_and_check(tmp_path, capsys):
    src, dst = write_mmkb(tmp_path / "mmkb"), tmp_path / "out"
    assert main(["data", "convert", "mmkb", str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    assert "FBDB15K" in printed and "links" in printed
    norm = dst / "FBDB15K" / "norm"
    # ids: first appearance (head, then tail) in FB15K's triples, then DB15K's; one counter for each kind
    assert (norm / "ent_ids_1").read_text() == "0\t/m/a\n1\t/m/b\n2\t/m/c\n3\t/m/d\n"
    assert (norm / "ent_ids_2").read_text() == f"4\t<{DB}A>\n5\t<{DB}B>\n6\t<{DB}C_D>\n7\t<{DB}E>\n"
    assert (norm / "triples_1").read_text() == "0\t0\t1\n1\t1\t2\n0\t0\t1\n3\t1\t0\n"
    assert (norm / "triples_2").read_text() == "4\t2\t5\n6\t3\t4\n7\t2\t7\n"
    assert (norm / "ill_ent_ids").read_text() == "0\t4\n1\t5\n2\t6\n"
    assert (norm / "training_attrs_1").read_text() == f"/m/a\t<{FB}geo.latitude>\t<{FB}geo.longitude>\n" \
                                                      f"/m/c\t<{FB}geo.latitude>\n"
    extra = dst / "FBDB15K" / "extra"
    assert (extra / "attr_values_2").read_text() == f"4\t<{DBO}gross>\t75500000.0\n" \
                                                   "5\t<http://www.w3.org/2003/01/geo/wgs84_pos#lat>\t53.4\n"
    assert (extra / "attr_values_1").read_text().count("\n") == 3       # the repeated triple once
    assert (extra / "names_2").read_text() == "4\tA\n5\tB\n6\tC D\n7\tE\n"
    assert not (extra / "names_1").exists()                                # Freebase mids carry no name
    assert (extra / "rel_ids_2").read_text() == f"2\t<{DBO}p>\n3\t<{DBO}q>\n"
    meta = json.loads((extra / "dataset.json").read_text())
    assert meta["counts"]["kg1"]["attribute_lines_dropped"] == 1 and meta["counts"]["kg2"]["image_repeats"] == 1
    assert sorted(meta["source_files"]) == ["DB15K/DB15K_EntityTriples.txt", "DB15K/DB15K_ImageData.h5",
                                            "DB15K/DB15K_ImageIndex.txt", "DB15K/DB15K_NumericalTriples.txt",
                                            "DB15K/DB15K_SameAsLink.txt", "FB15K/FB15K_EntityTriples.txt",
                                            "FB15K/FB15K_ImageData.h5", "FB15K/FB15K_ImageIndex.txt",
                                            "FB15K/FB15K_NumericalTriples.txt"]
    for generated in (dst / "FBDB15K").rglob("*"):                         # no path of this machine
        if generated.is_file():
            assert str(tmp_path) not in generated.read_text(encoding="utf-8", errors="replace")

    # the lineage's pickle: {int id: float32 vector}, the first image of an entity (name order) kept
    with open(dst / "pkls" / "FBDB15K_id_img_feature_dict.pkl", "rb") as fh:
        feats = pickle.load(fh)
    fb, db = vectors("FB"), vectors("DB")
    assert sorted(feats) == [0, 1, 3, 4, 6]
    assert np.array_equal(feats[3], fb["FBIMG00003"]) and np.array_equal(feats[4], db["DBIMG00001"])

    pair = load_pair(dst, "FBDB15K")
    assert pair.n_ent == 8 and pair.kg1.tolist() == [0, 1, 2, 3] and pair.kg2.tolist() == [4, 5, 6, 7]
    assert pair.links.tolist() == [[0, 4], [1, 5], [2, 6]] and pair.triples.shape == (7, 3)
    assert pair.img_mask.tolist() == [True, True, False, True, True, False, True, False]
    expect = torch.from_numpy(db["DBIMG00003"])
    assert torch.allclose(pair.img_features[6], expect / expect.norm())
    assert pair.provenance["image_backbone"] == "vgg16 (MMKB *_ImageData.h5)"
    assert pair.provenance["image_features"] == "real" and pair.provenance["deviations"] == []
    assert pair.att_values is not None and pair.att_values.shape[0] == 8
    with pytest.raises(DataError, match="names_1: file is missing"):   # no names for mids without --names
        load_pair(dst, "FBDB15K", use_names=True)

    assert main(["data", "check", str(dst / "FBDB15K")]) == 0
    stats = capsys.readouterr().out
    assert "entities" in stats and "links" in stats


def test_flat_layout_npz_and_names_file(tmp_path):
    nested = write_mmkb(tmp_path / "nested")
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in nested.rglob("*"):
        if path.is_file():
            (flat / path.name).write_bytes(path.read_bytes())
    dst, names = tmp_path / "out", tmp_path / "mid2name.txt"
    names.write_text("/m/a\tAndy  Griffith\n/m/c\tSpain\n")
    assert main(["data", "convert", "mmkb", str(flat), str(dst), "--name", "mini", "--image-format", "npz",
                 "--names", str(names)]) == 0
    assert (dst / "pkls" / "mini_id_img_feature_dict.npz").is_file()
    assert (dst / "mini" / "extra" / "names_1").read_text() == "0\tAndy Griffith\n2\tSpain\n"
    pair = load_pair(dst, "mini", use_names=True)
    assert pair.img_mask.sum() == 5 and pair.name_features[0].abs().sum() > 0


def test_images_are_optional_and_missing_ones_can_be_skipped(tmp_path, capsys):
    src = write_mmkb(tmp_path / "src", h5={})
    assert main(["data", "convert", "mmkb", str(src), str(tmp_path / "a")]) == 0
    assert not (tmp_path / "a" / "pkls").exists()
    assert load_pair(tmp_path / "a", "FBDB15K").provenance["image_features"] == "absent"
    db = vectors("DB")
    del db["DBIMG00003"]
    src = write_mmkb(tmp_path / "src2", h5={"FB15K": vectors("FB"), "DB15K": db})
    assert main(["data", "convert", "mmkb", str(src), str(tmp_path / "b")]) == 2
    assert "DB15K_ImageIndex.txt:3: image 'DBIMG00003' has no dataset in DB15K_ImageData.h5" \
           in capsys.readouterr().err
    assert main(["data", "convert", "mmkb", str(src), str(tmp_path / "b"), "--allow-missing-images"]) == 0
    assert load_pair(tmp_path / "b", "FBDB15K").img_mask.sum() == 4


BAD = [
    ("malformed triple", {"FB15K/FB15K_EntityTriples.txt": f"/m/a <{FB}r1> /m/b .\n/m/b <{FB}r2>\n"}, None,
     "FB15K_EntityTriples.txt:2: expected an N-Triples line"),
    ("no final dot", {"DB15K/DB15K_EntityTriples.txt": f"<{DB}A> <{DBO}p> <{DB}B> ;\n"}, None,
     "DB15K_EntityTriples.txt:1: expected an N-Triples line"),
    ("SameAs to an unknown entity", {"DB15K/DB15K_SameAsLink.txt": f"/m/a <SameAs> <{DB}A> .\n"
                                                                   f"/m/b <SameAs> <{DB}Nowhere> .\n"}, None,
     "DB15K_SameAsLink.txt:2: right: entity '<http://dbpedia.org/resource/Nowhere>' is in neither"),
    ("SameAs reversed", {"DB15K/DB15K_SameAsLink.txt": f"<{DB}A> <SameAs> /m/a .\n"}, None,
     "DB15K_SameAsLink.txt:1: left: entity '<http://dbpedia.org/resource/A>' is a DB15K entity"),
    ("entity in both KGs", {"DB15K/DB15K_EntityTriples.txt": f"<{DB}A> <{DBO}p> /m/c .\n"}, None,
     "DB15K_EntityTriples.txt:1: entity '/m/c' also appears in FB15K_EntityTriples.txt (line 2)"),
    ("missing file", {"FB15K/FB15K_NumericalTriples.txt": None}, None,
     "FB15K_NumericalTriples.txt: file is missing"),
    ("empty line", {"DB15K/DB15K_SameAsLink.txt": f"/m/a <SameAs> <{DB}A> .\n\n"}, None,
     "DB15K_SameAsLink.txt:2: empty line"),
    ("bad attribute line", {"DB15K/DB15K_NumericalTriples.txt": f"<{DB}A> <{DBO}gross>\n"}, None,
     "DB15K_NumericalTriples.txt:1: expected 'entity attribute value [.]' (3 or 4"),
    ("image index of unknown entity", {"FB15K/FB15K_ImageIndex.txt": "/m/a\tFBIMG00001\n/m/q\tFBIMG00002\n"},
     None, "FB15K_ImageIndex.txt:2: entity '/m/q' is in neither"),
    ("h5 without the per-image datasets", {}, {"FB15K": {"features": np.zeros((3, DIM), np.float32)},
                                               "DB15K": vectors("DB")},
     "FB15K_ImageData.h5: dataset 'features' is not an image listed in FB15K_ImageIndex.txt"),
    ("h5 ragged", {}, {"FB15K": {**vectors("FB"), "FBIMG00002": np.zeros(DIM + 1, np.float32)},
                       "DB15K": vectors("DB")},
     "FB15K_ImageData.h5: dataset 'FBIMG00002' has 7 values, 'FBIMG00001' has 6"),
    ("h5 NaN", {}, {"FB15K": vectors("FB"), "DB15K": {**vectors("DB"), "DBIMG00002": np.full(DIM, np.nan)}},
     "DB15K_ImageData.h5: dataset 'DBIMG00002' holds NaN or inf"),
]


@pytest.mark.parametrize("overrides,h5,words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
@pytest.mark.parametrize("dst_exists", [True, False], ids=["dst-exists", "no-dst"])
def test_bad_input_one_line_exit_2_dst_untouched(tmp_path, capsys, overrides, h5, words, dst_exists):
    src = write_mmkb(tmp_path / "src", overrides, h5)
    dst = tmp_path / "dst"
    if dst_exists:
        (dst / "pkls").mkdir(parents=True)
        (dst / "other.txt").write_text("kept\n")
    before = _listing(dst)
    assert main(["data", "convert", "mmkb", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert _listing(dst) == before


def test_bad_h5_file(tmp_path, capsys):
    src = write_mmkb(tmp_path / "src")
    (src / "DB15K" / "DB15K_ImageData.h5").write_bytes(b"not hdf5")
    assert main(["data", "convert", "mmkb", str(src), str(tmp_path / "dst")]) == 2
    assert "DB15K_ImageData.h5: not a readable HDF5 file" in capsys.readouterr().err
    assert not (tmp_path / "dst").exists()


def test_dst_that_is_a_file(tmp_path, capsys):
    src, dst = write_mmkb(tmp_path / "src"), tmp_path / "dst"
    dst.write_text("x")
    assert main(["data", "convert", "mmkb", str(src), str(dst)]) == 2
    assert "dst: is not a folder" in capsys.readouterr().err and dst.read_text() == "x"


def test_existing_output_is_refused(tmp_path, capsys):
    src, dst = write_mmkb(tmp_path / "src"), tmp_path / "dst"
    assert main(["data", "convert", "mmkb", str(src), str(dst)]) == 0
    before = _listing(dst)
    assert main(["data", "convert", "mmkb", str(src), str(dst)]) == 2
    assert "FBDB15K: already exists; remove it or choose another --name" in capsys.readouterr().err
    assert _listing(dst) == before
