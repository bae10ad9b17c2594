"""Iterative (bootstrapped) training as MCLEA/MEAformer do it.

Every ``il_every`` epochs after ``il_start`` the mutual nearest neighbours among entities that are not yet seeds
are collected; every ``il_commit_every`` epochs the pairs that stayed mutual nearest neighbours in every collection
of the window are added to the training seeds. The proposal function is injected (it lives in the evaluation
layer), so this module stays below evaluation in the data flow.
"""
from __future__ import annotations

from typing import Callable

import torch

Proposer = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


class PseudoSeeder:
    def __init__(self, propose: Proposer, start: int, every: int, commit_every: int):
        self.propose = propose
        self.start, self.every, self.commit_every = start, every, commit_every
        self.window: set[tuple[int, int]] | None = None
        self.added = 0

    def state_dict(self) -> dict:
        pairs = sorted(self.window) if self.window is not None else None
        return {"window": torch.tensor(pairs, dtype=torch.long) if pairs else None,
                "has_window": self.window is not None, "added": self.added}

    def load_state_dict(self, state: dict) -> None:
        self.added = int(state.get("added", 0))
        if state.get("has_window"):
            w = state.get("window")
            self.window = {tuple(p) for p in w.tolist()} if w is not None else set()
        else:
            self.window = None

    def step(self, epoch: int, model: torch.nn.Module, seeds: torch.Tensor) -> torch.Tensor:
        """Return the (possibly grown) seed links after ``epoch`` (1-based)."""
        if epoch < self.start or (epoch - self.start) % self.every:
            return seeds
        found = {tuple(p) for p in self.propose(model, seeds).tolist()}
        self.window = found if self.window is None else (self.window & found)
        if (epoch - self.start) % self.commit_every == 0 and epoch > self.start and self.window:
            used_l = set(seeds[:, 0].tolist())
            used_r = set(seeds[:, 1].tolist())
            new = [p for p in sorted(self.window) if p[0] not in used_l and p[1] not in used_r]
            if new:
                seeds = torch.cat([seeds, torch.tensor(new, dtype=torch.long, device=seeds.device)])
                self.added += len(new)
            self.window = None
        return seeds
