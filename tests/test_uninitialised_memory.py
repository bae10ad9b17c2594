"""``seed_everything`` turns off PyTorch's NaN-filling of new uninitialised tensors (a debugging aid of
deterministic mode that cost MEAformer's training step ~1.5 s of page-touching fills). That is safe only if no
code reads memory it has not written: then the numbers cannot depend on the fill. Checked for every model: a few
smoke-profile epochs with the fill on and off give the same losses and embeddings, bit for bit."""
from __future__ import annotations

import pytest
import torch

from mimea.data.splits import make_split
from mimea.models import registry
from mimea.training.config import model_config, resolve
from mimea.training.seeding import seed_everything
from mimea.training.trainer import Trainer

MODELS = ("mimea", "mclea", "meaformer", "eva", "gcn_align", "msnea")


def _run(name: str, pair, fill: bool) -> tuple[list[float], torch.Tensor]:
    cfg = resolve(name, "smoke", {})
    seed_everything(0)
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    torch.utils.deterministic.fill_uninitialized_memory = fill
    try:
        split = make_split(pair.links, cfg.split.ratio, mode=cfg.split.mode, val_fraction=cfg.split.val_fraction)
        model = registry.get(name)(pair, model_config(cfg))
        model.prepare_training(split.train)
        trainer = Trainer(model, cfg.train, None)
        gen = torch.Generator().manual_seed(0)
        losses = [trainer.train_epoch(split.train, gen)[0]["loss"] for _ in range(3)]
        return losses, model.embed()
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = False


@pytest.mark.parametrize("name", MODELS)
def test_numbers_do_not_depend_on_filling_uninitialised_memory(name, synthetic_pair):
    on_losses, on_emb = _run(name, synthetic_pair, True)
    off_losses, off_emb = _run(name, synthetic_pair, False)
    assert on_losses == off_losses
    assert torch.equal(on_emb, off_emb)
