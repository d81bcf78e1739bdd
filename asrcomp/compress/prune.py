"""Magnitude pruning (Deep Compression step 1; Han et al. 2015, "Learning both weights and
connections"): per tensor, the given fraction of smallest-magnitude weights is set to zero,
and retraining keeps them at zero (their gradients are masked, and the weights are re-zeroed
after every optimiser step, since Adam's moments and weight decay would move them).
"""

from __future__ import annotations

import torch
from torch import nn


def magnitude_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask (True = kept) zeroing exactly ``round(sparsity * numel)`` smallest-|w| entries."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    flat = w.detach().abs().flatten()
    k = int(round(sparsity * flat.numel()))
    mask = torch.ones(flat.numel(), dtype=torch.bool, device=w.device)
    if k:
        mask[torch.argsort(flat, stable=True)[:k]] = False
    return mask.view_as(w)


def prune_model(model: nn.Module, sparsity: dict[str, float]) -> dict[str, torch.Tensor]:
    """Zero the smallest weights of each named parameter (``{name: sparsity}``) in place;
    returns the masks of the parameters actually pruned (sparsity > 0)."""
    params = dict(model.named_parameters())
    masks = {}
    with torch.no_grad():
        for name, s in sparsity.items():
            if s > 0:
                p = params[name]
                masks[name] = magnitude_mask(p, s)
                p.mul_(masks[name])
    return masks


class MaskHooks:
    """``after_backward`` / ``after_step`` for :class:`asrcomp.train.FitHooks` keeping pruned weights at 0."""

    def __init__(self, masks: dict[str, torch.Tensor]):
        self.masks = masks

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The masks, checkpointed with the retraining (``FitHooks.state``)."""
        return {name: m.cpu() for name, m in self.masks.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.masks):
            raise ValueError(f"masks for {sorted(state)}, this run prunes {sorted(self.masks)}")
        self.masks = {name: state[name].bool() for name in self.masks}

    def _pairs(self, model):
        params = dict(model.named_parameters())
        for name, m in self.masks.items():
            p = params[name]
            yield p, m.to(p.device)

    def after_backward(self, model: nn.Module) -> None:
        for p, m in self._pairs(model):
            if p.grad is not None:
                p.grad.mul_(m)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for p, m in self._pairs(model):
            p.mul_(m)


def sparsity_of(t: torch.Tensor) -> float:
    return float((t == 0).sum()) / max(t.numel(), 1)
