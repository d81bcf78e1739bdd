"""Factorised TDNN (TDNN-F, Povey et al. 2018) acoustic model for CTC, as Kaldi's ``tdnnf-layer``.

Layers, in order (all in one ModuleList ``layers``):

- ``layers.0`` .. ``layers.<k-1>``: ordinary TDNN input layers (:class:`~asrcomp.nnet.tdnn.TdnnLayer`,
  one per entry of ``input_contexts``, usually one or two), the one at ``subsample_at`` with
  stride ``subsampling_factor``. Every later layer runs at the subsampled frame rate.
- ``layers.<k>`` .. : one :class:`TdnnfLayer` per entry ``s`` of ``time_strides`` (in subsampled
  frames): ``linear``, a Conv1d ``hidden -> bottleneck`` over frames ``[t-s, t]``, no bias, whose
  weight is kept semi-orthogonal; ``affine``, a Conv1d ``bottleneck -> hidden`` over frames
  ``[t, t+s]``; ReLU, BatchNorm, dropout; then the bypass
  ``out = bypass_scale * input + that``. ``s = 0``: both factors are 1x1 (Kaldi's
  ``time-stride=0``); a negative ``s`` mirrors the offsets.
- ``prefinal`` (only with ``prefinal_dim > 0``): a Linear ``hidden -> prefinal_dim`` bottleneck,
  no bias, semi-orthogonal (Kaldi's ``prefinal-l``; its further ``prefinal-chain`` block is not
  reproduced).
- ``output``: Linear to the tokens, then log-softmax.

Module names addressable by the compression stages (``match_layers`` finds every plain
``nn.Conv1d`` / ``nn.Linear``): ``layers.<i>.conv`` (input layers), ``layers.<i>.linear`` and
``layers.<i>.affine`` (TDNN-F layers), ``prefinal``, ``output``; e.g. ``layers\\.\\d+\\.affine``
selects the affine factors. The asymmetric splicing is done by zero-padding *outside* the
convs (their own ``padding`` is 0), so a factorised replacement of a factor (SVD, TT, ...)
computes the same frames.

Semi-orthogonal constraint: :meth:`Tdnnf.apply_constraints` does Kaldi's
``ConstrainOrthonormal`` update with a floating scale on every ``linear`` factor (and
``prefinal``): with ``M`` the weight as ``rows x cols`` (``rows <= cols``, else its transpose),
``P = M M^T``, ``s^2 = tr(P P) / tr(P)``, ``M <- M - (4 nu / s^2) (P - s^2 I) M`` with
``nu = 0.125`` (halved while ``tr(P P) rows / tr(P)^2 > 1.02``, far from convergence). It moves
the singular values of ``M`` towards a common value without changing ``||M||`` to first order.
:func:`asrcomp.train.fit` calls it after every optimiser step with the global step number; it
applies every ``constrain_every`` steps (Kaldi: on a random quarter of the minibatches).
Factors a compression stage replaced are left alone.

Padding is handled as in :mod:`asrcomp.nnet.tdnn`: each layer's output (and the bottleneck
between the two factors) is zeroed beyond the utterance's length, BatchNorm training statistics
come from valid frames only, and in eval mode a padded batch gives each utterance what it gets
alone.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from asrcomp.nnet.tdnn import TdnnLayer, context_to_conv, lengths_to_mask, masked_batch_norm, run_layers

DEFAULT_TDNNF = dict(
    type="tdnnf",
    hidden_dim=512,
    bottleneck_dim=96,
    input_contexts=[[-2, -1, 0, 1, 2]],
    subsample_at=0,
    subsampling_factor=3,
    time_strides=[1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    bypass_scale=0.66,
    dropout=0.1,
)

ORTHONORMAL_SPEED = 0.125  # Kaldi's update_speed (nu): quadratic convergence near a semi-orthogonal M


@torch.no_grad()
def constrain_semi_orthogonal(weight: torch.Tensor) -> None:
    """One step of Kaldi's floating-scale semi-orthogonal update of ``weight``, in place.

    ``weight``: ``(out, ...)`` (a Linear or Conv1d weight), viewed as ``out x rest``; the
    constraint is on the rows if ``out <= rest``, else on the columns. No host sync.
    """
    w = weight.view(weight.shape[0], -1)
    m = w if w.shape[0] <= w.shape[1] else w.t()
    mf = m.to(torch.promote_types(m.dtype, torch.float32))  # bf16/fp16 weights: the products in float32
    p = mf @ mf.t()
    tr_p, tr_pp = p.trace(), (p * p).sum()
    scale2 = tr_pp / tr_p.clamp_min(torch.finfo(p.dtype).tiny)  # s^2: the update is orthogonal to M
    ratio = tr_pp * p.shape[0] / (tr_p * tr_p).clamp_min(torch.finfo(p.dtype).tiny)
    speed = torch.where(ratio > 1.02, ORTHONORMAL_SPEED / 2, ORTHONORMAL_SPEED)
    alpha = torch.where(scale2 > 0, speed / scale2.clamp_min(torch.finfo(p.dtype).tiny), 0.0)
    p.diagonal().sub_(scale2)
    m.sub_(((4 * alpha) * (p @ mf)).to(m.dtype))


def semi_orthogonality_error(weight: torch.Tensor) -> float:
    """``||P - c I||_F / c`` with ``P = M M^T`` (M as in :func:`constrain_semi_orthogonal`) and
    ``c = tr(P) / rows`` the mean squared singular value: 0 for a semi-orthogonal M times any scale."""
    w = weight.detach().double().reshape(weight.shape[0], -1)
    m = w if w.shape[0] <= w.shape[1] else w.t()
    p = m @ m.t()
    c = float(p.trace()) / p.shape[0]
    if c == 0.0:
        return float("inf")
    return float(torch.linalg.norm(p - c * torch.eye(p.shape[0], dtype=p.dtype))) / c


class TdnnfLayer(nn.Module):
    """Kaldi's ``tdnnf-layer``: ``linear`` (frames ``[t-s, t]``, no bias) -> ``affine``
    (frames ``[t, t+s]``) -> ReLU -> BatchNorm -> dropout, plus ``bypass_scale * input``."""

    def __init__(self, dim: int, bottleneck_dim: int, time_stride: int, bypass_scale: float = 0.66,
                 dropout: float = 0.0):
        super().__init__()
        s = int(time_stride)
        kernel, dilation = (2, abs(s)) if s else (1, 1)
        self.time_stride, self.bypass_scale = s, float(bypass_scale)
        # zero padding (left, right) of the linear factor's input and of the affine factor's input
        self.pad_linear = (s, 0) if s > 0 else (0, -s)
        self.pad_affine = (0, s) if s > 0 else (-s, 0)
        self.linear = nn.Conv1d(dim, bottleneck_dim, kernel, dilation=dilation, bias=False)
        self.affine = nn.Conv1d(bottleneck_dim, dim, kernel, dilation=dilation)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm1d(dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def out_lens(self, lens: torch.Tensor) -> torch.Tensor:
        return lens

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (N, dim, T)``, zero beyond ``lens`` -> ``(N, dim, T)``, zero beyond ``lens``."""
        mask = lengths_to_mask(lens, x.shape[2])
        keep = mask[:, None, :]
        h = self.linear(F.pad(x, self.pad_linear) if self.time_stride else x)
        h = h.masked_fill(~keep, 0.0)  # the affine factor reads t+s: padding must be zero, as alone
        y = self.relu(self.affine(F.pad(h, self.pad_affine) if self.time_stride else h))
        y = self.dropout(masked_batch_norm(self.bn, y, mask))
        return (self.bypass_scale * x + y).masked_fill(~keep, 0.0), lens


class Tdnnf(nn.Module):
    """TDNN-F: ``layers`` (input :class:`TdnnLayer` s, then :class:`TdnnfLayer` s), optional
    ``prefinal`` bottleneck, Linear ``output``, log-softmax. See the module docstring."""

    def __init__(self, feat_dim: int, num_tokens: int, hidden_dim: int = 512, bottleneck_dim: int = 96,
                 input_contexts: Sequence[Sequence[int]] = tuple(DEFAULT_TDNNF["input_contexts"]),
                 subsample_at: int = 0, subsampling_factor: int = 3,
                 time_strides: Sequence[int] = tuple(DEFAULT_TDNNF["time_strides"]),
                 bypass_scale: float = 0.66, prefinal_dim: int = 0, dropout: float = 0.0,
                 constrain_every: int = 4):
        super().__init__()
        input_contexts = [list(c) for c in input_contexts]
        if not input_contexts:
            raise ValueError("input_contexts: need at least one input TDNN layer, e.g. [[-1, 0, 1]]")
        for c in input_contexts:
            context_to_conv(c)
        time_strides = list(time_strides)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in time_strides):
            raise ValueError(f"time_strides {time_strides!r}: need a list of integers, e.g. [1, 1, 0, 1]")
        if not isinstance(subsampling_factor, int) or subsampling_factor < 1:
            raise ValueError(f"subsampling_factor must be an integer >= 1, not {subsampling_factor!r}")
        if subsampling_factor > 1 and not 0 <= subsample_at < len(input_contexts):
            raise ValueError(f"subsample_at={subsample_at} is not an input layer index "
                             f"(0..{len(input_contexts) - 1})")
        if not 1 <= bottleneck_dim < hidden_dim:
            raise ValueError(f"bottleneck_dim must be in 1..hidden_dim-1 ({hidden_dim - 1}), not {bottleneck_dim!r}")
        if not 0 <= prefinal_dim:
            raise ValueError(f"prefinal_dim must be >= 0 (0: none), not {prefinal_dim!r}")
        if not abs(bypass_scale) <= 1.0:
            raise ValueError(f"bypass_scale must be in [-1, 1] (Kaldi: 0.66), not {bypass_scale!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        if not isinstance(constrain_every, int) or constrain_every < 1:
            raise ValueError(f"constrain_every must be an integer >= 1, not {constrain_every!r}")
        self.feat_dim, self.num_tokens = int(feat_dim), int(num_tokens)
        self.hidden_dim, self.bottleneck_dim = int(hidden_dim), int(bottleneck_dim)
        self.input_contexts, self.subsample_at = input_contexts, int(subsample_at)
        self.subsampling_factor, self.time_strides = subsampling_factor, time_strides
        self.bypass_scale, self.prefinal_dim = float(bypass_scale), int(prefinal_dim)
        self.dropout, self.constrain_every = float(dropout), constrain_every
        layers: list[nn.Module] = [
            TdnnLayer(feat_dim if i == 0 else hidden_dim, hidden_dim, c,
                      stride=subsampling_factor if i == subsample_at else 1, dropout=dropout)
            for i, c in enumerate(input_contexts)]
        layers += [TdnnfLayer(hidden_dim, bottleneck_dim, s, bypass_scale, dropout) for s in time_strides]
        self.layers = nn.ModuleList(layers)
        self.prefinal = nn.Linear(hidden_dim, prefinal_dim, bias=False) if prefinal_dim else None
        self.output = nn.Linear(prefinal_dim or hidden_dim, num_tokens)

    def arch(self) -> dict:
        """The config ``build_model`` rebuilds this model from (plain lists and numbers)."""
        return dict(type="tdnnf", feat_dim=self.feat_dim, num_tokens=self.num_tokens, hidden_dim=self.hidden_dim,
                    bottleneck_dim=self.bottleneck_dim, input_contexts=[list(c) for c in self.input_contexts],
                    subsample_at=self.subsample_at, subsampling_factor=self.subsampling_factor,
                    time_strides=list(self.time_strides), bypass_scale=self.bypass_scale,
                    prefinal_dim=self.prefinal_dim, dropout=self.dropout, constrain_every=self.constrain_every)

    def constrained_layers(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of the plain Conv1d/Linear layers kept semi-orthogonal (a factor that a
        compression stage replaced by another module is not among them)."""
        names = [f"layers.{i}.linear" for i, m in enumerate(self.layers) if isinstance(m, TdnnfLayer)]
        if self.prefinal_dim:
            names.append("prefinal")
        out = []
        for n in names:
            m = self.get_submodule(n)
            if type(m) in (nn.Conv1d, nn.Linear):
                out.append((n, m))
        return out

    @torch.no_grad()
    def apply_constraints(self, step: int | None = None) -> None:
        """One semi-orthogonal update of every constrained layer: now (``step`` None), or if
        ``step % constrain_every == 0`` (``step``: the optimiser steps taken before this one)."""
        if step is not None and step % self.constrain_every:
            return
        for _, m in self.constrained_layers():
            constrain_semi_orthogonal(m.weight)

    def orthogonality_errors(self) -> dict[str, float]:
        """:func:`semi_orthogonality_error` of every constrained layer, by name."""
        return {n: semi_orthogonality_error(m.weight) for n, m in self.constrained_layers()}

    def out_lens(self, x_lens: torch.Tensor) -> torch.Tensor:
        """``(N,)`` output frame counts for ``(N,)`` input frame counts."""
        for layer in self.layers:
            x_lens = layer.out_lens(x_lens)
        return x_lens

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (N, T, F)``, ``x_lens: (N,)`` -> log-probs ``(N, T', V)`` and ``out_lens: (N,)``.

        ``T' = floor((T - 1) / subsampling_factor) + 1`` (for symmetric input contexts);
        frames of row n at or beyond ``out_lens[n]`` are padding (finite, but meaningless).
        """
        h, lens = run_layers(self.layers, x, x_lens, self.feat_dim)
        h = h.transpose(1, 2)
        if self.prefinal is not None:
            h = self.prefinal(h)
        return self.output(h).float().log_softmax(dim=-1), lens
