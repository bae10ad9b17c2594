"""Every bad input is one DataError that names the file and the line."""
from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from mimea.data.errors import DataError
from mimea.data.images import RestrictedUnpickler, read_image_features, write_image_npz, write_image_pickle
from mimea.data.loader import load_folder, load_pair

ENT1 = "".join(f"{i}\ta{i}\n" for i in range(5))

# (case id, overrides of the tiny dataset, file named in the error, line or None, words the message must hold)
CASES = [
    ("missing file", {"norm/triples_2": None}, "triples_2", None, "file is missing"),
    ("empty file", {"norm/ill_ent_ids": ""}, "ill_ent_ids", None, "file is empty"),
    ("empty line", {"norm/triples_2": "5\t2\t6\n\n6\t3\t7\n"}, "triples_2", 2, "empty line"),
    ("wrong column count", {"norm/triples_1": "0\t0\t1\n1\t1\n"}, "triples_1", 2, "expected 3"),
    ("wrong column count ent_ids", {"norm/ent_ids_1": "0\ta0\n1\ta1\textra\n2\ta2\n3\ta3\n4\ta4\n"},
     "ent_ids_1", 2, "expected 2"),
    ("non-integer id", {"norm/triples_1": "0\t0\t1\n1\t1\t2\n2\tx\t3\n"}, "triples_1", 3, "not an integer"),
    ("float id", {"norm/ill_ent_ids": "0\t5\n1.0\t6\n"}, "ill_ent_ids", 2, "not an integer"),
    ("negative id", {"norm/ill_ent_ids": "-1\t5\n"}, "ill_ent_ids", 1, "negative id -1"),
    ("duplicate id", {"norm/ent_ids_1": "0\ta0\n1\ta1\n1\ta2\n3\ta3\n4\ta4\n"}, "ent_ids_1", 3,
     "duplicate entity id 1"),
    ("duplicate entity string", {"norm/ent_ids_2": "5\tb0\n6\ta1\n7\tb2\n8\tb3\n9\tb4\n"}, "ent_ids_2", 2,
     "already names entity 1"),
    ("overlapping ids", {"norm/ent_ids_2": "5\tb0\n6\tb1\n4\tb2\n8\tb3\n9\tb4\n"}, "ent_ids_2", 3,
     "also a KG1 id"),
    ("ids not contiguous", {"norm/ent_ids_2": "5\tb0\n6\tb1\n7\tb2\n8\tb3\n11\tb4\n"}, "ent_ids_2", None,
     "id 9 is missing"),
    ("triple unknown entity", {"norm/triples_1": "0\t0\t1\n0\t0\t99\n"}, "triples_1", 2,
     "entity 99 is not in ent_ids_1 or ent_ids_2"),
    ("triple wrong KG", {"norm/triples_1": "0\t0\t1\n1\t1\t2\n6\t0\t3\n"}, "triples_1", 3,
     "head: entity 6 is a KG2 entity"),
    ("triple of KG2 naming KG1", {"norm/triples_2": "5\t2\t6\n6\t3\t0\n"}, "triples_2", 2,
     "tail: entity 0 is a KG1 entity"),
    ("link reversed", {"norm/ill_ent_ids": "0\t5\n6\t1\n"}, "ill_ent_ids", 2, "left: entity 6 is a KG2 entity"),
    ("link unknown", {"norm/ill_ent_ids": "0\t5\n1\t42\n"}, "ill_ent_ids", 2, "entity 42 is not in ent_ids"),
    ("attrs unknown entity", {"norm/training_attrs_2": "b0\tx\nzz\ty\n"}, "training_attrs_2", 2,
     "unknown entity 'zz'"),
    ("attrs wrong KG", {"norm/training_attrs_1": "a0\tp\nb1\tq\n"}, "training_attrs_1", 2, "KG2 entity"),
    ("attrs without attribute", {"norm/training_attrs_1": "a0\tp\na1\n"}, "training_attrs_1", 2,
     "at least one attribute"),
    ("non-UTF-8", {"norm/ent_ids_1": b"0\ta0\n1\ta\xff1\n2\ta2\n3\ta3\n4\ta4\n"}, "ent_ids_1", 2,
     "not valid UTF-8"),
    ("image index of wrong KG", {"extra/image_index_2": "5\n2\n"}, "image_index_2", 2, "KG1 entity"),
    ("dataset.json not JSON", {"extra/dataset.json": "{oops"}, "dataset.json", 1, "not valid JSON"),
    ("dataset.json bad label", {"extra/dataset.json": '{"image_features": "fake"}'}, "dataset.json", None,
     "expected 'real' or 'synthetic'"),
]


def _where(fname: str, line: int | None) -> str:
    return f"{fname}:{line}: " if line is not None else f"{fname}: "


@pytest.mark.parametrize("overrides,fname,line,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_text_input(tiny, overrides, fname, line, words):
    folder = tiny(overrides)
    with pytest.raises(DataError) as info:
        load_folder(folder)
    err = info.value
    text = str(err)
    assert "\n" not in text
    assert _where(fname, line) in text, text
    assert words in text, text
    assert err.line == line and err.path.endswith(fname)


def test_names_checked_only_when_used(tiny):
    folder = tiny({"extra/names_1": "0\tA\n6\tB\n"})
    load_folder(folder)  # names unused: fine
    with pytest.raises(DataError, match=r"names_1:2: id: entity 6 is a KG2 entity"):
        load_folder(folder, use_names=True)


def test_missing_names_with_use_names(tiny):
    folder = tiny({"extra/names_2": None})
    with pytest.raises(DataError, match=r"names_2: file is missing"):
        load_folder(folder, use_names=True)


def test_folder_does_not_exist(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: dataset folder does not exist"):
        load_pair(tmp_path, "nowhere")


def test_norm_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"norm: folder is missing"):
        load_folder(tmp_path / "empty")


def test_bad_policy_is_a_value_error(tiny):
    with pytest.raises(ValueError, match="missing_image"):
        load_folder(tiny(), missing_image="zeros")


# ---- image features -------------------------------------------------------------------------------------------

def _pkl_path(folder):
    return folder.parent / "pkls" / f"{folder.name}_id_img_feature_dict.pkl"


def _dump(path, obj, protocol=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


IMAGE_CASES = [
    ("NaN", {0: np.zeros(4, np.float32), 1: np.array([0, np.nan, 0, 0], np.float32)}, "entity 1 holds NaN or inf"),
    ("inf", {0: np.full(4, np.inf, np.float32)}, "entity 0 holds NaN or inf"),
    ("ragged", {0: np.zeros(4, np.float32), 2: np.zeros(3, np.float32)}, "ragged: entity 2 has 3 values"),
    ("unknown entity", {0: np.zeros(4, np.float32), 99: np.zeros(4, np.float32)},
     "image feature for entity 99, which is not in ent_ids_1 or ent_ids_2"),
    ("not a dict", [np.zeros(4)], "pickle holds a list"),
    ("string key", {"a0": np.zeros(4)}, "key 'a0' is not an integer entity id"),
    ("matrix value", {0: np.zeros((2, 2))}, "has shape (2, 2)"),
    ("text value", {0: "abc"}, "not a numeric vector"),
]


@pytest.mark.parametrize("obj,words", [c[1:] for c in IMAGE_CASES], ids=[c[0] for c in IMAGE_CASES])
def test_bad_image_pickle(tiny, obj, words):
    folder = tiny()
    path = _pkl_path(folder)
    _dump(path, obj)
    with pytest.raises(DataError) as info:
        load_folder(folder)
    assert f"{path.name}: " in str(info.value) and words in str(info.value), str(info.value)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_MARKER",))


def test_pickle_of_os_system_is_refused(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tiny()
    path = _pkl_path(folder)
    _dump(path, {0: _Evil()})
    with pytest.raises(DataError, match=r"refers to posix\.system, which is not plain data; refused"):
        load_folder(folder)
    assert not (tmp_path / "EVIL_MARKER").exists()


@pytest.mark.parametrize("target", [eval, getattr, __import__("subprocess").call])
def test_restricted_unpickler_refuses_code(target):
    class Gadget:
        def __reduce__(self):
            return (target, ("1",))

    with pytest.raises(DataError, match="not plain data; refused"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(Gadget()))).load()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_reads_plain_arrays(tmp_path, protocol):
    obj = {3: np.arange(4, dtype=np.float32), 1: np.ones(4, np.float64)}
    path = tmp_path / "f.pkl"
    _dump(path, obj, protocol)
    ids, feats = read_image_features(path)
    assert ids.tolist() == [1, 3]
    assert feats.dtype == np.float32 and feats.tolist() == [[1, 1, 1, 1], [0, 1, 2, 3]]


def test_truncated_pickle(tmp_path):
    path = tmp_path / "f.pkl"
    path.write_bytes(pickle.dumps({0: np.zeros(4)})[:-5])
    with pytest.raises(DataError, match="f.pkl: not a readable pickle"):
        read_image_features(path)


def test_npz_errors(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, idx=np.arange(2), features=np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"f.npz: npz lacks array\(s\) ids"):
        read_image_features(path)
    np.savez(path, ids=np.arange(2), features=np.zeros((3, 3)))
    with pytest.raises(DataError, match="'ids' has 2 entries but 'features' has 3 rows"):
        read_image_features(path)
    np.savez(path, ids=np.array([0, 0]), features=np.zeros((2, 3)))
    with pytest.raises(DataError, match="entity id 0 has two image features"):
        read_image_features(path)
    np.savez(path, ids=np.arange(2), features=np.array([[0.0, np.nan], [0, 0]]))
    with pytest.raises(DataError, match="entity 0 holds NaN"):
        read_image_features(path)
    np.savez(path, ids=np.arange(2), features=np.array([{}, {}], dtype=object))
    with pytest.raises(DataError, match="not plain numeric data; refused"):
        read_image_features(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable npz"):
        read_image_features(path)


def test_pkl_and_npz_together_is_ambiguous(tiny):
    folder = tiny()
    ids, feats = np.array([0, 5]), np.ones((2, 4), np.float32)
    write_image_pickle(_pkl_path(folder), ids, feats)
    write_image_npz(_pkl_path(folder).with_suffix(".npz"), ids, feats)
    with pytest.raises(DataError, match="both tiny_id_img_feature_dict.pkl and tiny_id_img_feature_dict.npz"):
        load_folder(folder)


def test_error_str_and_pickle():
    e = DataError("a/b", 3, "bad\nthing")
    assert str(e) == "a/b:3: bad thing"
    assert str(DataError("a/b", None, "x")) == "a/b: x"
    again = pickle.loads(pickle.dumps(e))
    assert (again.path, again.line, again.message) == ("a/b", 3, "bad thing")
