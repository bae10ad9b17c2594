"""What one epoch is: which link batches, grouped into which optimiser steps (a part the trainer composes).

* a pass over the shuffled seed links in batches of ``batch_size`` (every lineage method), or, when the model's
  authors define the epoch otherwise, ``model.steps_per_epoch`` batches from repeated passes (MSNEA: a pass over
  the triples);
* ``accumulate="none"``: one optimiser step per batch;
* ``accumulate="epoch"``: the losses of every batch of the epoch summed into ONE step (MCLEA's authors: one
  forward, a backward per batch, gradients summed, one ``optimizer.step()``). The sum is one forward and one
  backward here (the gradient of a sum is the sum of the gradients).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

ACCUMULATE = ("none", "epoch")


@dataclass(frozen=True)
class EpochPlan:
    batch_size: int
    accumulate: str = "none"
    steps_per_epoch: int | None = None   # batches an epoch, when the model says; None: one pass over the links

    def __post_init__(self):
        if self.accumulate not in ACCUMULATE:
            raise ValueError(f"train.accumulate={self.accumulate!r}; choose from {', '.join(ACCUMULATE)}")

    def n_batches(self, n_links: int) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return max(1, -(-n_links // max(1, self.batch_size)))

    def optimizer_steps(self, n_links: int) -> int:
        """Optimiser steps in one epoch over ``n_links`` seed links."""
        return 1 if self.accumulate == "epoch" else self.n_batches(n_links)

    def steps(self, links: torch.Tensor, gen: torch.Generator) -> list[list[torch.Tensor]]:
        """The epoch's optimiser steps, each a list of link batches whose losses are summed."""
        bs = max(1, self.batch_size)
        want = self.n_batches(len(links))
        batches: list[torch.Tensor] = []
        while len(batches) < want:
            perm = torch.randperm(len(links), generator=gen).to(links.device)
            batches += [links[perm[i:i + bs]] for i in range(0, len(links), bs)]
        batches = batches[:want]
        return [batches] if self.accumulate == "epoch" else [[b] for b in batches]
