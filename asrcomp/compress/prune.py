"""Magnitude pruning (Deep Compression step 1; Han et al. 2015, "Learning both weights and
connections"): per tensor, the given fraction of smallest-magnitude weights is set to zero,
and retraining keeps them at zero (their gradients are masked, and the weights are re-zeroed
after every optimiser step, since Adam's moments and weight decay would move them).

Two schedules: one step before the retraining (:func:`prune_model`, :class:`MaskHooks`), or
gradual pruning during it (:class:`GradualMaskHooks`; Zhu & Gupta 2017, "To prune, or not to
prune", Distiller's AutomatedGradualPruner): the sparsity rises along :func:`agp_sparsity`
and the masks are recomputed from the current magnitudes every ``dt`` optimiser steps.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


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


# ----------------------------------------------------------------------------- gradual pruning (AGP)


def agp_sparsity(t: int, s_i: float, s_f: float, n: int, dt: int, t0: int = 0) -> float:
    """Zhu & Gupta's (2017) automated gradual pruning schedule at optimiser step ``t``:

    ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3`` for ``t0 <= t <= t0 + n * dt``,
    ``s_i`` before ``t0`` and ``s_f`` after ``t0 + n * dt`` (masks are recomputed at
    ``t = t0 + k * dt``, k = 0..n). Fast at first, when many redundant weights remain, slower
    as the target nears.
    """
    if n < 1 or dt < 1:
        raise ValueError(f"need n >= 1 and dt >= 1, got n={n}, dt={dt}")
    p = min(max((t - t0) / (n * dt), 0.0), 1.0)
    return s_f + (s_i - s_f) * (1.0 - p) ** 3


def agp_plan(steps_per_epoch: int, ramp_epochs: int, every: int | None = None) -> tuple[int, int]:
    """``(n, dt)`` of an AGP ramp over the first ``ramp_epochs`` epochs: ``dt = every`` (default
    a tenth of the ramp's steps, at least 1; at most the ramp) and ``n = ramp steps // dt``, so
    the last update, at ``n * dt``, falls inside the ramp and every later checkpoint holds the
    final masks."""
    ramp = max(1, steps_per_epoch * ramp_epochs)
    dt = min(int(every), ramp) if every else max(1, ramp // 10)
    return max(1, ramp // dt), dt


def grow_mask(w: torch.Tensor, mask: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The mask pruning ``round(sparsity * numel)`` weights of ``w``: those ``mask`` already prunes
    first (never revived), then the smallest |w| among the kept ones (stable order on ties)."""
    flat = w.detach().abs().flatten().float()
    flat = torch.where(mask.flatten().to(flat.device), flat, torch.full_like(flat, -1.0))
    k = int(round(sparsity * flat.numel()))
    new = torch.ones(flat.numel(), dtype=torch.bool, device=w.device)
    if k:
        new[torch.argsort(flat, stable=True)[:k]] = False
    return new.view_as(w)


class GradualMaskHooks(MaskHooks):
    """:class:`MaskHooks` whose masks follow AGP (:func:`agp_sparsity`) during the retraining.

    ``final``: ``{name: s_f}``; ``initial``: ``s_i`` (capped at each tensor's ``s_f``), the
    sparsity :meth:`prune_initial` gives before the first step. ``ramp_epochs``: the epochs the
    sparsity rises over (later epochs train at ``s_f`` with fixed masks); ``every``: optimiser
    steps between mask updates (``dt``; default a tenth of the ramp). After the optimiser step
    ``t = k * dt`` (k = 1..n) each mask is recomputed from the current magnitudes at
    ``s_t``. Pruned weights are never revived: they are pruned first, then the smallest kept
    ones (Distiller's AutomatedGradualPruner recomputes from the masked weights, whose pruned
    entries are 0, so it revives nothing either, except on ties at exactly 0, which we exclude).
    So the masks shrink monotonically and end with exactly ``round(s_f * numel)`` zeros per tensor.

    The step count and the masks are the hooks' state (checkpointed each epoch, restored on
    resume); :meth:`begin` (``FitHooks.begin``) learns the epoch length from :func:`fit`.
    """

    def __init__(self, final: dict[str, float], initial: float = 0.0, ramp_epochs: int = 1,
                 every: int | None = None):
        self.final = {n: float(s) for n, s in final.items() if s > 0}
        self.initial = {n: min(float(initial), s) for n, s in self.final.items()}
        self.ramp_epochs, self.every = int(ramp_epochs), every
        self.step, self.n, self.dt = 0, None, None
        self.updates: list[tuple[int, dict[str, float]]] = []  # (step, sparsity per tensor) of this process
        super().__init__({})

    def identity(self) -> dict:
        return {"schedule": "agp", "initial": self.initial, "ramp_epochs": self.ramp_epochs, "every": self.every}

    def prune_initial(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Step 0: prune each tensor to ``s_i`` (all-True masks where ``s_i`` is 0)."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, s in self.initial.items():
                p = params[name]
                self.masks[name] = grow_mask(p, torch.ones_like(p, dtype=torch.bool), s)
                p.mul_(self.masks[name])
        return self.masks

    def state_dict(self) -> dict:
        return {"masks": {n: m.cpu() for n, m in self.masks.items()}, "step": torch.tensor(self.step)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state["masks"])
        self.step = int(state["step"])

    def begin(self, model: nn.Module, steps_per_epoch: int, epochs: int, done_steps: int) -> None:
        if self.ramp_epochs > epochs:
            raise ValueError(f"AGP ramp of {self.ramp_epochs} epochs in a retraining of {epochs}")
        self.n, self.dt = agp_plan(steps_per_epoch, self.ramp_epochs, self.every)
        self.step = done_steps  # equal after a resume; a new run from epoch N's weights starts its count there
        log.info("AGP: sparsity %s -> %s over steps 0..%d, masks recomputed every %d steps (%d updates), "
                 "%d steps per epoch", _fmt(self.initial), _fmt(self.final), self.n * self.dt, self.dt, self.n,
                 steps_per_epoch)

    def target(self, name: str, step: int) -> float:
        return agp_sparsity(step, self.initial[name], self.final[name], self.n, self.dt)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        self.step += 1
        if self.n is not None and self.step <= self.n * self.dt and self.step % self.dt == 0:
            params = dict(model.named_parameters())
            now = {}
            for name in self.final:
                now[name] = self.target(name, self.step)
                self.masks[name] = grow_mask(params[name], self.masks[name], now[name])
            self.updates.append((self.step, now))
            log.info("AGP step %d: sparsity %s", self.step, _fmt(now))
        super().after_step(model)


def _fmt(d: dict[str, float]) -> str:
    vals = sorted(set(round(v, 4) for v in d.values()))
    return ", ".join(map(str, vals)) if len(vals) <= 3 else f"{vals[0]}..{vals[-1]}"
