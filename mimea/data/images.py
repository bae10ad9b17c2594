"""Image-feature files: a restricted unpickler for the lineage's pickle, and an ``.npz`` alternative.

Where they live (the MEAformer layout): ``ROOT/pkls/NAME_id_img_feature_dict.pkl`` or, our documented alternative,
``ROOT/pkls/NAME_id_img_feature_dict.npz``. Having both is an error (which one would be used is not obvious).

* ``.pkl``: the lineage's format, ``{entity_id (int): np.ndarray (D,) float}`` (MMKG VGG16: D = 4096, float32);
  not every entity needs a key. Read with :class:`RestrictedUnpickler`, which refuses anything but plain data.
* ``.npz``: two arrays, ``ids`` (int, ``[n]``, distinct) and ``features`` (float, ``[n, D]``); read with
  ``allow_pickle=False``. Prefer it for new data: no code can run on load.

Both are returned as ``(ids int64 [n] ascending, features float32 [n, D])`` after checking: a dict/arrays of the
right kinds, integer keys, one length for every vector (no ragged rows), finite values. Checking the ids against
the dataset's entities is the loader's job (it knows ``n_ent``).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError

#: File-name stem the lineage uses under ``ROOT/pkls``.
IMAGE_STEM = "{name}_id_img_feature_dict"
IMAGE_SUFFIXES = (".pkl", ".npz")


def _numpy_attr(submodule: str, attr: str):
    """``numpy._core.<submodule>.<attr>`` (numpy >= 2), else ``numpy.core.<submodule>.<attr>``; no warnings."""
    import importlib

    try:
        return getattr(importlib.import_module(f"numpy._core.{submodule}"), attr)
    except (ImportError, AttributeError):  # numpy 1.x
        return getattr(importlib.import_module(f"numpy.core.{submodule}"), attr)


def _allowed() -> dict[tuple[str, str], object]:
    """The allow-list: what a pickle of ``{int: ndarray}`` (any protocol, numpy 1 or 2) refers to, and no more."""
    reconstruct = _numpy_attr("multiarray", "_reconstruct")
    scalar = _numpy_attr("multiarray", "scalar")
    frombuffer = _numpy_attr("numeric", "_frombuffer")  # protocol 5 arrays
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        # protocol 2 stores the bytes of an array as latin-1 text and rebuilds them with _codecs.encode:
        # a pure text-to-bytes function, needed to read pickles written by Python 2 or with protocol=2.
        ("_codecs", "encode"): __import__("codecs").encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


_OLD_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # Python 2 names


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, numbers and numpy arrays, and refuses every other global.

    ``find_class`` is the only door through which a pickle can reach code (``os.system``, ``builtins.eval``...);
    here it opens only for the entries of an allow-list of numpy array/dtype/scalar reconstruction functions and
    a few builtin containers. Anything else raises :class:`DataError` before it is imported.
    """

    def __init__(self, file, path: str | Path = "<pickle>") -> None:
        super().__init__(file, encoding="latin1")  # latin1: numpy's advice for Python 2 array pickles
        self._path = path
        self._allowed = _allowed()

    def find_class(self, module: str, name: str):
        module = _OLD_MODULES.get(module, module)
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(self._path, None, f"pickle refers to {module}.{name}, which is not plain data; "
                                              "refused") from None

    def persistent_load(self, pid):
        raise DataError(self._path, None, "pickle uses persistent ids, which is not plain data; refused")


def restricted_load(path: Path) -> object:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; every failure is a one-line :class:`DataError`."""
    try:
        fh = open(path, "rb")   # streamed: a 430 MB feature pickle is not held twice in memory
    except FileNotFoundError:
        raise DataError(path, None, "file is missing") from None
    try:
        with fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise DataError(path, None, "file is empty")
            return RestrictedUnpickler(io.BufferedReader(fh, 1 << 20), path).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or corrupt pickles raise many kinds
        raise DataError(path, None, f"not a readable pickle ({type(exc).__name__}: {exc})") from None


def _as_id(key: object, path: Path) -> int:
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise DataError(path, None, f"key {key!r} is not an integer entity id")
    if key < 0:
        raise DataError(path, None, f"key {key} is a negative entity id")
    return int(key)


def _check_matrix(path: Path, ids: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by id, reject duplicates and non-finite values; float32 out."""
    if len(np.unique(ids)) != len(ids):
        dup = ids[np.flatnonzero(np.diff(np.sort(ids)) == 0)[0]]
        raise DataError(path, None, f"entity id {dup} has two image features")
    feats = np.asarray(feats, dtype=np.float32)
    bad = ~np.isfinite(feats.sum(axis=1))     # a NaN or inf anywhere makes the row sum non-finite
    if bad.any():
        raise DataError(path, None, f"image feature of entity {ids[np.flatnonzero(bad)[0]]} holds NaN or inf")
    order = np.argsort(ids, kind="stable")
    if np.array_equal(order, np.arange(len(ids))):   # already sorted (the usual pickle): no 430 MB copy
        return ids.astype(np.int64), np.ascontiguousarray(feats)
    return ids[order].astype(np.int64), np.ascontiguousarray(feats[order])


def _from_dict(obj: object, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict):
        raise DataError(path, None, f"pickle holds a {type(obj).__name__}, expected a dict "
                                    "{entity id: feature vector}")
    if not obj:
        raise DataError(path, None, "pickle holds an empty dict")
    ids, rows, dim, first = [], [], None, None
    for key, value in obj.items():
        eid = _as_id(key, path)
        try:
            vec = np.asarray(value)
        except Exception:
            vec = np.asarray([], dtype=object)
        if vec.dtype == object or not (np.issubdtype(vec.dtype, np.floating) or np.issubdtype(vec.dtype, np.integer)):
            raise DataError(path, None, f"image feature of entity {eid} is not a numeric vector "
                                        f"({type(value).__name__} of {vec.dtype})")
        if vec.ndim != 1:
            raise DataError(path, None, f"image feature of entity {eid} has shape {tuple(vec.shape)}, "
                                        "expected a 1-D vector")
        if dim is None:
            dim, first = len(vec), eid
        elif len(vec) != dim:
            raise DataError(path, None, f"image features are ragged: entity {eid} has {len(vec)} values, "
                                        f"entity {first} has {dim}")
        ids.append(eid)
        rows.append(vec)
    if dim == 0:
        raise DataError(path, None, "image features have 0 dimensions")
    matrix = np.empty((len(rows), dim), dtype=np.float32)   # one float32 matrix, filled row by row
    for i, vec in enumerate(rows):
        matrix[i] = vec
    rows.clear()
    return _check_matrix(path, np.asarray(ids, dtype=np.int64), matrix)


def _from_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(path, None, "file is missing")
    if not zipfile.is_zipfile(path):  # np.load would otherwise try it as a pickle
        raise DataError(path, None, "not a readable npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("ids", "features") if k not in z.files]
            if missing:
                raise DataError(path, None, f"npz lacks array(s) {', '.join(missing)} (expected 'ids' [n] and "
                                            f"'features' [n, D]; found {', '.join(z.files) or 'none'})")
            ids, feats = z["ids"], z["features"]
    except DataError:
        raise
    except ValueError as exc:  # object arrays need allow_pickle
        raise DataError(path, None, f"npz holds something that is not plain numeric data; refused ({exc})") \
            from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(path, None, f"not a readable npz file ({exc})") from None
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(path, None, f"'ids' must be a 1-D integer array, found {ids.dtype} of shape {ids.shape}")
    if feats.ndim != 2 or not (np.issubdtype(feats.dtype, np.floating) or np.issubdtype(feats.dtype, np.integer)):
        raise DataError(path, None, f"'features' must be a 2-D float array, found {feats.dtype} of shape "
                                    f"{feats.shape}")
    if len(ids) != len(feats):
        raise DataError(path, None, f"'ids' has {len(ids)} entries but 'features' has {len(feats)} rows")
    if len(ids) == 0 or feats.shape[1] == 0:
        raise DataError(path, None, "npz holds no image features")
    if (ids < 0).any():
        raise DataError(path, None, f"entity id {ids[ids < 0][0]} is negative")
    return _check_matrix(path, ids.astype(np.int64), feats)


def read_image_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(ids int64 [n] ascending, features float32 [n, D])`` from a ``.pkl`` or ``.npz`` image-feature file."""
    path = Path(path)
    if path.suffix == ".npz":
        return _from_npz(path)
    return _from_dict(restricted_load(path), path)


def find_image_file(root: Path, name: str) -> Path | None:
    """``ROOT/pkls/NAME_id_img_feature_dict.{pkl,npz}`` if exactly one exists, None if none; error if both."""
    stem = Path(root) / "pkls" / IMAGE_STEM.format(name=name)
    found = [stem.with_suffix(s) for s in IMAGE_SUFFIXES if stem.with_suffix(s).is_file()]
    if len(found) > 1:
        raise DataError(found[0], None, f"both {found[0].name} and {found[1].name} exist; keep one")
    return found[0] if found else None


def write_image_pickle(path: Path, ids: np.ndarray, features: np.ndarray) -> None:
    """Write the lineage's ``{int id: float32 vector}`` pickle (protocol 4)."""
    obj = {int(i): np.asarray(f, dtype=np.float32) for i, f in zip(ids, features)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)


def write_image_npz(path: Path, ids: np.ndarray, features: np.ndarray) -> None:
    """Write the ``.npz`` alternative: arrays ``ids`` (int64) and ``features`` (float32)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, ids=np.asarray(ids, dtype=np.int64), features=np.asarray(features, dtype=np.float32))
