"""``mimea features images``: backbones (torchvision layout, random weights here, never a download), layout, output."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mimea.cli import main
from mimea.data.backbones import VGG16, ResNet152, build_backbone, imagenet_preprocess
from mimea.data.errors import DataError
from mimea.data.image_features import extract_image_features, find_images
from mimea.data.images import read_image_features
from mimea.data.loader import load_pair


def _image(path, seed, size=(40, 48)):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(path)


def test_torchvision_layout():
    """State-dict keys and shapes are torchvision's (checked once against torchvision 0.28's own model code:
    identical keys, bit-identical outputs with the same weights), so its weight files load strictly."""
    vgg = VGG16().state_dict()
    assert len(vgg) == 32 and vgg["features.0.weight"].shape == (64, 3, 3, 3)
    assert vgg["features.28.weight"].shape == (512, 512, 3, 3) and vgg["classifier.6.weight"].shape == (1000, 4096)
    res = ResNet152().state_dict()
    assert len(res) == 932 and res["layer3.35.conv3.weight"].shape == (1024, 256, 1, 1)
    assert res["layer2.0.downsample.0.weight"].shape == (512, 256, 1, 1) and res["fc.weight"].shape == (1000, 2048)


def test_preprocess_is_resize_then_centre_crop():
    img = Image.fromarray(np.full((50, 100, 3), 255, np.uint8))
    mean, std = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    x = imagenet_preprocess(img, 32, 37, mean, std)
    assert x.shape == (3, 32, 32) and torch.allclose(x, torch.ones_like(x))


def test_vgg16_cli_writes_npz_and_records_backbone(tiny, capsys):
    folder = tiny()                                      # ids 0..9
    images = folder.parent / "images"
    _image(images / "0.png", 0)
    _image(images / "3.jpg", 1, (64, 32))
    _image(images / "7" / "a.png", 2)
    _image(images / "7" / "b.png", 3)
    (images / "notes.txt").write_text("ignored\n")
    out = folder.parent / "pkls" / "tiny_id_img_feature_dict.npz"
    torch.manual_seed(0)
    rc = main(["features", "images", str(images), "--backbone", "vgg16", "--out", str(out), "--weights", "random",
               "--image-size", "32", "--batch-size", "2", "--device", "auto", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "3 entities from 4 images, 4096-d vgg16" in printed and "recorded image_backbone" in printed
    ids, feats = read_image_features(out)
    assert ids.tolist() == [0, 3, 7] and feats.shape == (3, 4096)
    meta = json.loads((folder / "extra" / "dataset.json").read_text())
    assert meta["image_backbone"] == "vgg16 (random init)" and meta["image_features"] == "synthetic"
    assert meta["image_recipe"]["image_size"] == 32 and meta["image_recipe"]["images"] == 4
    assert str(folder.parent) not in (folder / "extra" / "dataset.json").read_text()
    pair = load_pair(folder.parent, "tiny")
    assert pair.provenance["image_backbone"] == "vgg16 (random init)"
    assert pair.img_mask.tolist() == [True, False, False, True, False, False, False, True, False, False]


def test_resnet152_api_mean_over_images_and_index(tmp_path):
    images = tmp_path / "imgs"
    for i in range(3):
        _image(images / f"x{i}.png", i)
    index = tmp_path / "index.tsv"
    index.write_text("4\tx0.png\n4\tx1.png\n2\tx2.png\n")
    torch.manual_seed(0)
    res = extract_image_features(images, "resnet152", tmp_path / "f.pkl", weights="random", index=index,
                                 batch_size=3, device="cpu", image_size=32, progress=False)
    assert res["recorded_in"] is None and res["dim"] == 2048
    ids, feats = read_image_features(tmp_path / "f.pkl")
    assert ids.tolist() == [2, 4]
    torch.manual_seed(0)
    net = build_backbone("resnet152", "random", 32)
    with torch.no_grad():
        one = net.forward(torch.stack([net.preprocess(Image.open(images / f"x{i}.png")) for i in range(3)]))
    assert np.allclose(feats[1], one[:2].mean(0).numpy(), atol=1e-5)
    assert np.allclose(feats[0], one[2].numpy(), atol=1e-5)


def test_weights_never_downloaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _image(tmp_path / "imgs" / "0.png", 0)
    rc = main(["features", "images", str(tmp_path / "imgs"), "--backbone", "resnet152", "--out",
               str(tmp_path / "f.npz"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "hub/checkpoints/resnet152-394f9c45.pth: resnet152 ImageNet weights not found; put torchvision's" in err
    assert not (tmp_path / "f.npz").exists()


def test_weight_file_that_does_not_fit(tmp_path):
    bad = tmp_path / "w.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match=r"w.pth: does not fit torchvision's vgg16: 31 missing \(e.g. features.0.bias"
                                        r"\), 1 wrong shape"):
        build_backbone("vgg16", bad, 32)
    bad.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="w.pth: not a readable torch weight file"):
        build_backbone("vgg16", bad, 32)


def test_clip_without_open_clip_is_one_line(tmp_path, capsys):
    _image(tmp_path / "imgs" / "0.png", 0)
    rc = main(["features", "images", str(tmp_path / "imgs"), "--backbone", "clip-vit-b32", "--weights", "random",
               "--out", str(tmp_path / "f.npz"), "--no-progress"])
    err = capsys.readouterr().err
    try:
        import open_clip  # noqa: F401
    except Exception:
        assert rc == 2 and err.count("\n") == 1 and "needs open_clip (pip install open_clip_torch)" in err
    else:  # pragma: no cover - where open_clip imports, the command works
        assert rc == 0


@pytest.mark.parametrize("setup,words", [
    (lambda d: _image(d / "cat.png", 0), "cat.png: image name is not an entity id"),
    (lambda d: _image(d / "misc" / "1.png", 0), "misc: folder name is not an entity id"),
    (lambda d: (d / "5.jpg").write_bytes(b"not an image"), "5.jpg: not a readable image"),
    (lambda d: (d / "x.txt").write_text("x"), "imgs: no images found"),
    (lambda d: _image(d / "99.png", 0), "99.png: entity id 99 is not an entity of tiny (10 entities"),
], ids=["bad name", "bad folder", "unreadable", "empty", "unknown entity"])
def test_bad_image_input(tiny, capsys, setup, words):
    folder = tiny()
    images = folder.parent / "imgs"
    images.mkdir()
    setup(images)
    out = folder.parent / "pkls" / "tiny_id_img_feature_dict.npz"
    before = (folder / "extra").iterdir()
    before = sorted(p.name for p in before)
    rc = main(["features", "images", str(images), "--backbone", "vgg16", "--weights", "random", "--out", str(out),
               "--image-size", "32", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and words in err, err
    assert not out.exists() and sorted(p.name for p in (folder / "extra").iterdir()) == before


def test_index_errors_and_sibling(tmp_path):
    images = tmp_path / "imgs"
    _image(images / "a.png", 0)
    index = tmp_path / "idx"
    index.write_text("0\ta.png\n1\tmissing.png\n")
    with pytest.raises(DataError, match="idx:2: image 'missing.png' does not exist"):
        find_images(images, index)
    index.write_text("0\ta.png\nx\ta.png\n")
    with pytest.raises(DataError, match="idx:2: column 1 .entity id.: not an integer id"):
        find_images(images, index)
    (tmp_path / "pkls").mkdir()
    (tmp_path / "pkls" / "d_id_img_feature_dict.pkl").write_bytes(b"")
    with pytest.raises(DataError, match="already exists; the loader refuses both"):
        extract_image_features(images, "vgg16", tmp_path / "pkls" / "d_id_img_feature_dict.npz", index=index)
    with pytest.raises(ValueError, match="reads .npz or .pkl"):
        extract_image_features(images, "vgg16", tmp_path / "f.h5")


def test_backbone_reaches_the_runs_protocol_flags(tmp_path):
    """extra/dataset.json image_backbone -> pair.provenance -> metadata["protocol"] of every run."""
    from mimea.data.synthetic import generate
    from mimea.pipeline import run
    from mimea.training.config import resolve

    generate(tmp_path / "data", "syn", n_latent=200, seed=1)
    meta_path = tmp_path / "data" / "syn" / "extra" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["image_backbone"] = "resnet152"
    meta_path.write_text(json.dumps(meta))
    cfg = resolve("gcn_align", "smoke", {"data": {"dataset": "syn", "data_dir": str(tmp_path / "data")},
                                         "train": {"epochs": 2, "eval_every": 1, "patience": 0, "progress": False}})
    out = run(cfg, tmp_path / "store")
    assert out["metadata"]["protocol"]["image_backbone"] == "resnet152"
    assert out["metadata"]["data"]["image_backbone"] == "resnet152"
