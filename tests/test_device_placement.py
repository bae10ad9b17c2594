"""Every model's whole run keeps its tensors on one device, checked on a CPU-only machine.

On a CPU-only build every tensor is on the CPU, so a tensor made without ``device=`` (``torch.arange(n)`` beside
the pair's ``triples``) works here and fails on a GPU ("Expected all tensors to be on the same device"). The
session that first ran the sweep on a lent H200 met four such failures. This test emulates the two devices: a
tensor is "on the device" when it came from ``.to(device)`` (the pair, the model, the links), from a factory
called with ``device=``, or from an operation on such a tensor; every other tensor is "on the host". An operation
that mixes the two (0-dim host tensors allowed, as CUDA allows them, except in ``cat``/``stack`` and in indexed
assignment) is what a GPU would refuse, and fails the test with the line that made it.
"""
from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

import mimea.nn.graph as _graph
from mimea.models import registry
from mimea.pipeline import run
from mimea.training.config import resolve

ROOT = Path(__file__).resolve().parents[1]
# host-side index tensors are accepted by CUDA indexing; .cpu()/.numpy() leave the device on purpose
_ALLOWED = {"__getitem__", "__get__", "cpu", "numpy", "tolist", "item", "__len__", "__repr__", "__format__"}
_DEVICE_GETTER = torch.Tensor.device.__get__
_REFUSED = "operations a GPU refuses (host and device tensors mixed):\n"
_NO_SCALARS = {"cat", "stack", "hstack", "vstack", "__setitem__", "index_put_", "index_put", "where"}


class _TwoDevices(TorchFunctionMode):
    """Tracks which tensors would be on the accelerator; records each operation that mixes them with host ones."""

    def __init__(self):
        super().__init__()
        self.on_device = WeakTensorKeyDictionary()
        self.mixed: dict[tuple, str] = {}
        self.devices: dict[int, tuple[torch.device, bool]] = {}   # id of each ``t.device`` handed out -> on device?

    def _moves(self, name: str, args, kwargs) -> bool:
        if kwargs.get("device") is not None:   # ``device=t.device`` follows t; any other device is the run's own
            seen = self.devices.get(id(kwargs["device"]))
            return True if seen is None else seen[1]
        if name != "to":
            return False
        return any(isinstance(a, (torch.device, str)) or (isinstance(a, torch.Tensor) and a in self.on_device)
                   for a in args[1:])

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == _DEVICE_GETTER:   # a distinct device object per tensor side, so a factory's device= is traced
            d = torch.device(str(func(*args, **kwargs)))
            self.devices[id(d)] = (d, args[0] in self.on_device)
            return d
        name = getattr(func, "__name__", str(func))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        dev = [t for t in tensors if t in self.on_device]
        host = [t for t in tensors if t not in self.on_device and (t.dim() > 0 or name in _NO_SCALARS)]
        if dev and host and name not in _ALLOWED:
            frames = [f for f in traceback.extract_stack()[:-1] if f.filename.startswith(str(ROOT))]
            f = frames[-1] if frames else None
            where = f"{Path(f.filename).relative_to(ROOT)}:{f.lineno}" if f else "?"
            self.mixed.setdefault((name, where), f"{name} at {where}: {f.line if f else ''} (host shapes "
                                  f"{[tuple(t.shape) for t in host]})")
        out = func(*args, **kwargs)
        if name == "cpu":   # on a GPU this is a copy on the host; here it may be the tensor itself (on the "device")
            return out.clone() if isinstance(out, torch.Tensor) and out in self.on_device else out
        moves = self._moves(name, args, kwargs)
        if moves and name == "to" and out is args[0] and out not in self.on_device:
            # here .to(device) hands back the same host tensor; on a GPU it is a new one, which misses every cache
            # keyed to the tensor object (mimea.nn.graph's CSR structures): drop them so they are rebuilt likewise
            _graph._CACHE._entries.clear()
        if dev or moves:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.on_device[t] = True
        return out


def test_the_emulation_catches_a_tensor_made_without_device():
    mode = _TwoDevices()
    with mode:
        edges = torch.arange(6).to("cpu")                        # "moved": on the device
        torch.cat([edges, torch.arange(3)])                      # the bug pair.edge_index had: caught
        torch.cat([edges, torch.arange(3, device=edges.device)])  # the fix: fine
        host = torch.arange(4)
        host[torch.zeros(2, dtype=torch.long, device=host.device)] = 1   # host with host: fine
        edges[torch.tensor([0, 1])]                               # a host index: CUDA accepts it
    assert [k[0] for k in mode.mixed] == ["cat"], mode.mixed


@pytest.mark.parametrize("model", ["gcn_align", "eva", "mclea", "meaformer", "msnea", "mimea"])
def test_a_whole_run_keeps_one_device(model, tmp_path):
    assert model in registry.available()
    cfg = resolve(model, "smoke", {"train": {"epochs": 2, "eval_every": 1, "threads": 1, "device": "cpu",
                                             "progress": False}})
    mode = _TwoDevices()
    with mode:
        out = run(cfg, tmp_path)
    assert out["results"]["test"]["n"] > 0
    assert not mode.mixed, _REFUSED + "\n".join(mode.mixed.values())


@pytest.mark.parametrize("model", ["mclea", "msnea", "mimea"])
def test_iterative_training_and_filled_images_keep_one_device(model, tmp_path):
    """The iterative (mutual-NN pseudo-seed) path and MEAformer's random image fill, which the default run skips."""
    cfg = resolve(model, "smoke", {"data": {"missing_image": "random"},
                                   "train": {"epochs": 3, "eval_every": 1, "threads": 1, "device": "cpu",
                                             "progress": False, "iterative": True, "il_start": 1, "il_every": 1,
                                             "il_commit_every": 1}})
    mode = _TwoDevices()
    with mode:
        out = run(cfg, tmp_path)
    assert out["metadata"]["split"]["seeds_added_by_iterative"] > 0   # the iterative path did run
    assert not mode.mixed, _REFUSED + "\n".join(mode.mixed.values())
