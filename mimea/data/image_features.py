"""``mimea features images``: one feature vector per entity from its image files, written where the loader reads it.

Layout of ``IMAGES_DIR`` (one of):

* ``IMAGES_DIR/<entity id>.<ext>``: one image of that entity;
* ``IMAGES_DIR/<entity id>/<any name>.<ext>``: several images of that entity (both forms may be mixed);
* ``--index FILE``: lines ``entity id<TAB>image path`` (relative to ``IMAGES_DIR``; an id may repeat).

``<ext>`` is one of :data:`IMAGE_EXTENSIONS` (any case); other files are ignored. An entity with several images
gets the mean of their feature vectors (the MMKB converter keeps only the first image of an entity; with one
image per entity the two agree). Ids are the dataset's global entity ids (``ent_ids_1``/``ent_ids_2``).

Output: ``--out ROOT/pkls/NAME_id_img_feature_dict.npz`` (or ``.pkl``), written atomically (a temporary file,
then a rename). When the output lies in that layout and ``ROOT/NAME`` is a dataset (or ``dataset_dir`` is
given), the ids are checked against its entities before any image is read, and ``ROOT/NAME/extra/dataset.json``
gets ``image_backbone``, ``image_features`` (``real``; ``synthetic`` for random weights) and ``image_recipe``;
the loader puts ``image_backbone`` in ``pair.provenance`` and every run's protocol flags carry it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from mimea.atomic import atomic_write_json

from .backbones import build_backbone
from .errors import DataError
from .images import IMAGE_STEM, write_image_npz, write_image_pickle
from .readers import parse_ids, read_lines, split_columns

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
_LAYOUT = "expected <entity id>.<ext> or <entity id>/<name>.<ext> (or pass --index)"


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(images_dir: str | Path, index: str | Path | None = None) -> dict[int, list[Path]]:
    """``{entity id: [image paths]}`` (ids ascending, paths in index or name order) from the layout above."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(images_dir, None, "image folder does not exist" if not images_dir.exists()
                        else "is not a folder")
    out: dict[int, list[Path]] = {}
    if index is not None:
        index = Path(index)
        columns = ("entity id", "image path")
        rows = split_columns(index, read_lines(index), columns)
        ids = parse_ids(index, rows, columns, 0, 1)[:, 0]
        for line, (e, row) in enumerate(zip(ids.tolist(), rows), start=1):
            path = images_dir / row[1]
            if not path.is_file():
                raise DataError(index, line, f"image {row[1]!r} does not exist under the image folder")
            out.setdefault(e, []).append(path)
        return dict(sorted(out.items()))
    for path in sorted(images_dir.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            if not path.name.isdigit():
                raise DataError(path, None, f"folder name is not an entity id; {_LAYOUT}")
            found = sorted(p for p in path.iterdir() if p.is_file() and _is_image(p))
            if found:
                out.setdefault(int(path.name), []).extend(found)
        elif _is_image(path):
            if not path.stem.isdigit():
                raise DataError(path, None, f"image name is not an entity id; {_LAYOUT}")
            out.setdefault(int(path.stem), []).append(path)
    if not out:
        raise DataError(images_dir, None, f"no images found; {_LAYOUT}, ext one of {' '.join(IMAGE_EXTENSIONS)}")
    return {e: sorted(out[e]) for e in sorted(out)}


def dataset_of(out: Path) -> Path | None:
    """``ROOT/NAME`` for ``out = ROOT/pkls/NAME_id_img_feature_dict.<ext>`` when it holds ``norm/``, else None."""
    suffix = IMAGE_STEM.format(name="")
    if out.parent.name != "pkls" or not out.stem.endswith(suffix) or out.stem == suffix:
        return None
    folder = out.parent.parent / out.stem[: -len(suffix)]
    return folder if (folder / "norm").is_dir() else None


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: CUDA is not available here (use auto or cpu)")
    return device


def _open(path: Path):
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(path, None, f"not a readable image ({type(exc).__name__}: {exc})") from None


def extract_image_features(images_dir: str | Path, backbone: str, out: str | Path, *,
                           weights: str | Path | None = None, index: str | Path | None = None,
                           batch_size: int = 32, device: str = "auto", image_size: int = 224,
                           dataset_dir: str | Path | None = None, skip_unreadable: bool = False,
                           progress: bool = True) -> dict:
    """Extract, write ``out`` (``.npz`` or ``.pkl``) and record the backbone; return a summary dict."""
    out = Path(out)
    if out.suffix not in (".npz", ".pkl"):
        raise ValueError(f"--out {out.name}: the loader reads .npz or .pkl")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: at least 1")
    sibling = out.with_suffix(".pkl" if out.suffix == ".npz" else ".npz")
    if sibling.exists():
        raise DataError(sibling, None, f"already exists; the loader refuses both {sibling.name} and {out.name}: "
                                       "remove one first")
    dev = _device(device)
    folder = Path(dataset_dir) if dataset_dir is not None else dataset_of(out)
    groups = find_images(images_dir, index)
    if folder is not None:
        from .loader import read_folder

        n_ent = read_folder(folder).n_ent
        bad = [e for e in groups if e >= n_ent]
        if bad:
            where = Path(index) if index is not None else groups[bad[0]][0]
            raise DataError(where, None, f"entity id {bad[0]} is not an entity of {folder.name} ({n_ent} "
                                         "entities, ids 0.." f"{n_ent - 1})")
    net = build_backbone(backbone, weights, image_size)
    net.model.to(dev)
    items = [(e, p) for e, paths in groups.items() for p in paths]
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    skipped = 0
    from tqdm import tqdm

    with torch.inference_mode(), tqdm(total=len(items), unit="img", desc=backbone, disable=not progress) as bar:
        for start in range(0, len(items), batch_size):
            batch, owners = [], []
            for e, path in items[start:start + batch_size]:
                try:
                    img = _open(path)
                except DataError:
                    if not skip_unreadable:
                        raise
                    skipped += 1
                    continue
                batch.append(net.preprocess(img))
                owners.append(e)
            if batch:
                feats = net.forward(torch.stack(batch).to(dev)).float().cpu().numpy()
                for e, f in zip(owners, feats):
                    if e in sums:
                        sums[e] += f.astype(np.float64)
                        counts[e] += 1
                    else:
                        sums[e], counts[e] = f.astype(np.float64), 1
            bar.update(len(items[start:start + batch_size]))
    if not sums:
        raise DataError(Path(images_dir), None, "no image could be read")
    ids = np.array(sorted(sums), dtype=np.int64)
    feats = np.stack([sums[e] / counts[e] for e in ids.tolist()]).astype(np.float32)
    if not np.isfinite(feats).all():
        raise ValueError(f"{backbone} produced NaN or inf features; nothing written")
    _write_atomic(out, ids, feats)

    recipe = {**net.info, "device_type": dev.type, "entities": int(len(ids)), "images": len(items) - skipped,
              "unreadable_skipped": skipped, "reduction": "mean over an entity's images",
              "layout": "index" if index is not None else "<id>.<ext> | <id>/<name>.<ext>"}
    recorded = None
    if folder is not None:
        recorded = folder / "extra" / "dataset.json"
        _record(recorded, recipe)
    return {"out": out, "entities": int(len(ids)), "images": len(items) - skipped, "skipped": skipped,
            "dim": int(feats.shape[1]), "device": str(dev), "recorded_in": recorded, "recipe": recipe}


def _write_atomic(out: Path, ids: np.ndarray, feats: np.ndarray) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        (write_image_npz if out.suffix == ".npz" else write_image_pickle)(Path(tmp), ids, feats)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _record(path: Path, recipe: dict) -> None:
    """Set ``image_backbone``, ``image_features`` and ``image_recipe`` in ``extra/dataset.json`` (atomically)."""
    meta: dict = {}
    if path.is_file():
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(path, getattr(exc, "lineno", None), "not valid JSON; image features were written "
                                                                "but the backbone is not recorded") from None
        if not isinstance(meta, dict):
            raise DataError(path, None, "expected a JSON object; the backbone is not recorded")
    pretrained = recipe["pretrained"]
    meta["image_backbone"] = recipe["backbone"] if pretrained else f"{recipe['backbone']} (random init)"
    meta["image_features"] = "real" if pretrained else "synthetic"
    meta["image_recipe"] = recipe
    meta["image_dim"] = recipe["dim"]
    atomic_write_json(path, meta)
