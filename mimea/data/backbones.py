"""Image backbones for ``mimea features images``: VGG16 and ResNet-152 that load torchvision's weight files, CLIP.

VGG16 and ResNet-152 are defined here, layer for layer as torchvision's ``vgg16`` and ``resnet152`` (the same
module names, so ``state_dict`` keys and shapes are torchvision's), and their ImageNet weights are read from
torchvision's own files (``vgg16-397923af.pth``, ``resnet152-394f9c45.pth``) with ``torch.load(weights_only=True)``.
Why not torchvision itself: PyPI's torchvision 0.28.0 (the release for torch 2.13.0) is linked against the CUDA
build of torch and fails to import beside the CPU build this project pins (``operator torchvision::nms does not
exist``; its ``_C.so`` needs ``libtorch_cuda.so``); the models themselves need nothing of torchvision's compiled
code. The preprocessing is torchvision's ImageNet evaluation transform (``Resize(256)`` bilinear on the PIL image,
``CenterCrop(224)``, ``ToTensor``, ``Normalize``), written with PIL and numpy.

Weights are never downloaded. Without ``weights``, the file is looked up in the torch hub cache
(``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints`` or ``~/.cache/torch/hub/checkpoints``,
where torchvision itself keeps it); a missing file is a one-line :class:`DataError` saying where to put it.
``weights="random"`` builds the network with PyTorch's default initialisation (tests; never for real features).

CLIP ViT-B/32 comes from ``open_clip`` (``open_clip_torch``), imported only when asked for; it needs torchvision,
so it is unavailable where torchvision is (see above): :class:`MissingDependency` says so in one line.

Features: VGG16 ``fc7`` after its ReLU (4096-d, ``classifier[:5]``: the MMKB ``*_ImageData.h5`` vectors are
4096-d VGG16 activations); ResNet-152 the global average pool (2048-d, before ``fc``); CLIP the image embedding
(512-d, ``encode_image``, not normalised).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mimea.hashing import sha256_file

from .errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MissingDependency(ValueError):
    """A backbone needs a package that is not installed (one line: what to install, or why it cannot be)."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    layer: str
    weight_file: str | None   # torchvision's file name in the hub cache (None: --weights is required)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


SPECS = {
    "vgg16": BackboneSpec("vgg16", 4096, "fc7 after ReLU (classifier[:5])", "vgg16-397923af.pth"),
    "resnet152": BackboneSpec("resnet152", 2048, "global average pool (before fc)", "resnet152-394f9c45.pth"),
    "clip-vit-b32": BackboneSpec("clip-vit-b32", 512, "open_clip ViT-B-32 encode_image", None,
                                 (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
BACKBONES = tuple(SPECS)

_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """torchvision's ``vgg16`` (configuration D, no batch norm); ``forward`` returns fc7 after its ReLU."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, 1000),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:5](x)


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (stride on the 3x3 convolution, "ResNet v1.5")."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet152(nn.Module):
    """torchvision's ``resnet152`` (bottlenecks 3, 8, 36, 3); ``forward`` returns the 2048-d pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._layer(64, 3)
        self.layer2 = self._layer(128, 8, stride=2)
        self.layer3 = self._layer(256, 36, stride=2)
        self.layer4 = self._layer(512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, 1000)   # kept so torchvision's file loads strictly; not used by forward

    def _layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def hub_checkpoint_dir() -> Path:
    """Where torchvision keeps downloaded weights: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(name: str, weights: str | Path | None) -> Path | None:
    """The weight file to read, or None for random initialisation (``weights="random"``)."""
    spec = SPECS[name]
    if isinstance(weights, str) and weights == "random":
        return None
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise DataError(path, None, f"{name} weight file does not exist")
        return path
    if spec.weight_file is None:
        raise ValueError(f"--backbone {name} needs --weights FILE (an open_clip ViT-B-32 checkpoint, e.g. "
                         "open_clip_pytorch_model.bin) or --weights random; weights are never downloaded")
    path = hub_checkpoint_dir() / spec.weight_file
    if not path.is_file():
        raise DataError(path, None, f"{name} ImageNet weights not found; put torchvision's {spec.weight_file} "
                                    "there (the torch hub cache; set TORCH_HOME to use another) or pass "
                                    "--weights FILE; mimea never downloads weights")
    return path



def _load_state(module: nn.Module, path: Path, name: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or holding code (weights_only refuses it)
        raise DataError(path, None, f"not a readable torch weight file ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, None, f"expected a state dict of tensors for {name}")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise DataError(path, None, f"does not fit torchvision's {name}: " + ", ".join(parts))
    module.load_state_dict(state, strict=True)


@dataclass
class Backbone:
    """A ready network: ``forward(batch [B, 3, S, S]) -> [B, dim]`` and ``preprocess(PIL image) -> [3, S, S]``."""

    name: str
    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    preprocess: Callable
    info: dict


def build_backbone(name: str, weights: str | Path | None = None, image_size: int = 224) -> Backbone:
    """Build ``name`` with ``weights`` (a file, None for the hub cache, ``"random"``), in eval mode, on the CPU."""
    if name not in SPECS:
        raise ValueError(f"--backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    if image_size < 32:
        raise ValueError(f"--image-size {image_size}: at least 32")
    spec = SPECS[name]
    path = resolve_weights(name, weights)
    info = {"backbone": name, "layer": spec.layer, "dim": spec.dim, "pretrained": path is not None,
            "weights": path.name if path is not None else "random initialisation (not pretrained)",
            "weights_sha256": sha256_file(path) if path is not None else None}
    if name == "clip-vit-b32":
        return _build_clip(spec, path, info)
    model = VGG16() if name == "vgg16" else ResNet152()
    if path is not None:
        _load_state(model, path, name)
    model.eval()
    resize = int(round(image_size * 256 / 224))
    info.update({"image_size": image_size, "resize": resize,
                 "preprocess": f"RGB, Resize({resize}) bilinear, CenterCrop({image_size}), /255, ImageNet "
                               "mean/std (torchvision's ImageNet evaluation transform)"})
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return Backbone(name, model, model, lambda img: imagenet_preprocess(img, image_size, resize, mean, std), info)


def imagenet_preprocess(img, size: int, resize: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """torchvision's ``Resize(resize)`` (shorter side, bilinear, on the PIL image), ``CenterCrop(size)``,
    ``ToTensor()`` and ``Normalize(mean, std)``, as one function of a PIL image."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    img = img.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    return (x - mean) / std


def _build_clip(spec: BackboneSpec, path: Path | None, info: dict) -> Backbone:
    try:
        import open_clip
    except Exception as exc:   # ImportError, or torchvision failing to load inside open_clip's import
        raise MissingDependency(
            "--backbone clip-vit-b32 needs open_clip (pip install open_clip_torch), which needs a torchvision that "
            f"imports beside this torch {torch.__version__}; importing it failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=str(path) if path is not None else None)
    model.eval()
    info.update({"image_size": 224, "preprocess": "open_clip ViT-B-32 transform (Resize 224 bicubic, CenterCrop "
                                                  "224, CLIP mean/std)"})
    return Backbone(spec.name, model, model.encode_image, preprocess, info)
