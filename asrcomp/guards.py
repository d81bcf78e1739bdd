"""Guards that stop a stage at once when a tensor goes non-finite, naming the tensor.

A NaN or infinity in one weight spreads: the next forward pass makes the loss NaN, gradient
clipping scales every gradient by NaN, and the optimiser writes NaN into every weight; a
k-means codebook of a tensor holding one NaN is all NaN. Without a guard the failure shows only
at the very end (a NaN ``final.pt``, a pack that cannot encode), far from its cause.

:func:`finite_guard` wraps :class:`asrcomp.train.FitHooks` so that :func:`asrcomp.train.fit`
checks, after every backward pass (before clipping, which would smear one bad gradient over
all of them), that every gradient is finite (and at the first step every weight of the input
model, the likelier cause), and after every optimiser step (and
after the final checkpoint averaging) that every weight is. The first bad tensor is named with
the epoch-independent step count, its count of NaN / infinite elements and where it was seen.
The check costs one reduction per tensor and a single host sync per check: on this 2-core
machine (one thread) 6.5 ms for the weights or the gradients of the 2.83 M-parameter default TDNN,
against 193 ms for the forward and backward pass of one 2,400-frame batch.
"""

from __future__ import annotations

import torch


class NonFiniteError(RuntimeError):
    """A weight or gradient became NaN or infinite; the message names the tensor."""


def _count(t: torch.Tensor) -> str:
    nan = int(torch.isnan(t).sum())
    inf = int(torch.isinf(t).sum())
    return f"{nan} NaN and {inf} infinite of {t.numel()} elements"


def first_nonfinite(tensors) -> tuple[str, torch.Tensor] | None:
    """``(name, tensor)`` of the first of ``(name, tensor)`` pairs holding a NaN or infinity, else None."""
    items = [(n, t.detach()) for n, t in tensors if t is not None and t.is_floating_point() and t.numel()]
    if not items:
        return None
    ok = torch.stack([torch.isfinite(t).all() for _, t in items])
    if bool(ok.all()):  # one host sync for all tensors
        return None
    return items[int((~ok).nonzero()[0])]


def check_finite(tensors, what: str, where: str = "") -> None:
    """NonFiniteError naming the first non-finite of the ``(name, tensor)`` pairs (``what``: weight/gradient)."""
    bad = first_nonfinite(tensors)
    if bad is not None:
        name, t = bad
        raise NonFiniteError(f"non-finite {what} {name} {tuple(t.shape)}{where}: {_count(t)}; stopping here "
                             f"(check the learning rate, the input model and the features)")


def check_model_finite(model: torch.nn.Module, where: str = "", grads: bool = True, extra=(),
                       weights: bool = True) -> None:
    """Every weight and buffer of ``model`` (and ``extra`` parameters) if ``weights``, then every gradient
    if ``grads``, is finite."""
    params = list(model.named_parameters()) + [(f"hook parameter {i}", p) for i, p in enumerate(extra)]
    if weights:  # the cause of bad gradients first
        check_finite(params + list(model.named_buffers()), "weight", where)
    if grads:
        check_finite(((n, p.grad) for n, p in params), "gradient of", where)


class _Guarded:
    """A FitHooks-compatible object: the wrapped hooks, then the finiteness checks."""

    def __init__(self, hooks):
        self.inner = hooks
        self.steps, self.pending = 0, False

    def __getattr__(self, name):  # loss, params and whatever else FitHooks carries: the wrapped hooks'
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def after_backward(self, model) -> None:
        self.steps, self.pending = self.steps + 1, True
        if self.inner.after_backward:
            self.inner.after_backward(model)
        # the weights were checked after the previous step; at the first, they are the input model's
        check_model_finite(model, f" after the backward pass of step {self.steps}", extra=self.params,
                           weights=self.steps == 1)

    def after_step(self, model) -> None:
        if self.inner.after_step:
            self.inner.after_step(model)
        where = f" after optimiser step {self.steps}" if self.pending else " after averaging the checkpoints"
        self.pending = False
        check_model_finite(model, where, grads=False, extra=self.params)


def finite_guard(hooks):
    """``hooks`` (a :class:`asrcomp.train.FitHooks`) with the finiteness checks added (idempotent)."""
    return hooks if isinstance(hooks, _Guarded) else _Guarded(hooks)


__all__ = ["NonFiniteError", "first_nonfinite", "check_finite", "check_model_finite", "finite_guard"]
