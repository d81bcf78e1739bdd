"""Kaldi-style TDNN acoustic model for CTC, written as dilated Conv1d layers.

A layer's splicing context, e.g. ``[-3, 0, 3]`` (offsets in that layer's input
frames), is a Conv1d with kernel ``2a+1``, dilation ``d`` and padding ``a*d``
for a context ``[-a*d, ..., a*d]`` (and kernel ``n``, padding ``-first`` for a
symmetric context without 0 such as ``[-1, 1]``), so every layer keeps the frame count except
the one with stride ``subsampling_factor``. Module names are part of the
contract with the compression stages: ``layers.<i>.conv``, ``layers.<i>.bn``
and ``output``.

Padding: each layer's output is zeroed beyond the utterance's length, so the
next layer sees exactly the zero padding it would see for that utterance alone;
in eval mode a padded batch therefore gives every utterance the same valid
frames as running it alone. In training mode BatchNorm statistics are taken
over the valid frames only.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

DEFAULT_TDNN = dict(
    type="tdnn",
    hidden_dim=384,
    contexts=[[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1], [-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    subsample_at=1,
    subsampling_factor=3,
    dropout=0.1,
)


def context_to_conv(context: Sequence[int]) -> tuple[int, int, int]:
    """``(kernel, dilation, padding)`` of a splicing context such as ``[-2, 0, 2]``.

    Raises ValueError unless the offsets are integers, sorted, evenly spaced and
    symmetric around 0.
    """
    offs = list(context)
    if not offs or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs):
        raise ValueError(f"context {offs!r}: need a non-empty list of integer frame offsets, e.g. [-1, 0, 1]")
    if offs != sorted(set(offs)):
        raise ValueError(f"context {offs!r}: offsets must be sorted and distinct, e.g. [-1, 0, 1]")
    if offs[0] != -offs[-1]:
        raise ValueError(f"context {offs!r}: offsets must be symmetric around 0 (first = -last), e.g. [-3, 0, 3]")
    if len(offs) == 1:
        return 1, 1, 0
    step = offs[1] - offs[0]
    if any(b - a != step for a, b in zip(offs, offs[1:])):
        raise ValueError(f"context {offs!r}: offsets must be evenly spaced, e.g. [-2, -1, 0, 1, 2] or [-3, 0, 3]")
    # kernel len(offs) at dilation step spans [-pad, +pad]; also right for 0-less contexts like [-1, 1]
    return len(offs), step, -offs[0]


def conv_out_lens(lens: torch.Tensor, kernel: int, stride: int, dilation: int, padding: int) -> torch.Tensor:
    """Output lengths of a Conv1d for input lengths ``lens`` (``(N,)`` int64), as PyTorch computes them.

    With ``padding = dilation * (kernel - 1) / 2`` this is ``floor((T - 1) / stride) + 1``.
    """
    return torch.div(lens + 2 * padding - dilation * (kernel - 1) - 1, stride, rounding_mode="floor") + 1


def lengths_to_mask(lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(N, max_len)`` bool mask, True on the first ``lens[n]`` frames of row n."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


def masked_batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d of ``x: (N, C, T)`` whose training statistics come from valid frames only.

    ``mask: (N, T)`` bool. In eval mode (or with no padding) this is just ``bn(x)``.
    """
    if not bn.training or bool(mask.all()):
        return bn(x)
    xt = x.transpose(1, 2)  # (N, T, C)
    out = xt.new_zeros(xt.shape)
    out[mask] = bn(xt[mask])  # (M, C): the valid frames only
    return out.transpose(1, 2)


class TdnnLayer(nn.Module):
    """Conv1d -> ReLU -> BatchNorm1d (Kaldi's relu-batchnorm order) -> dropout."""

    def __init__(self, in_dim: int, out_dim: int, context: Sequence[int], stride: int = 1, dropout: float = 0.0):
        super().__init__()
        kernel, dilation, padding = context_to_conv(context)
        # kept on the layer, not read from self.conv, so a compression stage may replace the conv
        self.kernel, self.stride, self.dilation, self.padding = kernel, stride, dilation, padding
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, dilation=dilation, padding=padding)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm1d(out_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def out_lens(self, lens: torch.Tensor) -> torch.Tensor:
        return conv_out_lens(lens, self.kernel, self.stride, self.dilation, self.padding)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (N, C_in, T)``, zero beyond ``lens`` -> ``(N, C_out, T')``, zero beyond the new lengths."""
        y = self.relu(self.conv(x))
        lens = self.out_lens(lens)
        mask = lengths_to_mask(lens, y.shape[2])
        y = self.dropout(masked_batch_norm(self.bn, y, mask))
        return y.masked_fill(~mask[:, None, :], 0.0), lens


class Tdnn(nn.Module):
    """TDNN: ``layers`` (a ModuleList of :class:`TdnnLayer`) then a Linear ``output`` and log-softmax.

    ``layer_dims``: per-layer output widths (default ``hidden_dim`` for every layer), e.g. after
    channel pruning (``asrcomp prune-channels``); ``arch()`` writes it only when a width differs.
    """

    def __init__(self, feat_dim: int, num_tokens: int, hidden_dim: int = 384,
                 contexts: Sequence[Sequence[int]] = tuple(DEFAULT_TDNN["contexts"]),
                 subsample_at: int = 1, subsampling_factor: int = 3, dropout: float = 0.0,
                 layer_dims: Sequence[int] | None = None):
        super().__init__()
        contexts = [list(c) for c in contexts]
        if not contexts:
            raise ValueError("contexts: need at least one layer")
        for c in contexts:
            context_to_conv(c)
        if not isinstance(subsampling_factor, int) or subsampling_factor < 1:
            raise ValueError(f"subsampling_factor must be an integer >= 1, not {subsampling_factor!r}")
        if subsampling_factor > 1 and not 0 <= subsample_at < len(contexts):
            raise ValueError(f"subsample_at={subsample_at} is not a layer index (0..{len(contexts) - 1})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        self.feat_dim, self.num_tokens, self.hidden_dim = int(feat_dim), int(num_tokens), int(hidden_dim)
        self.contexts, self.subsample_at = contexts, int(subsample_at)
        self.subsampling_factor, self.dropout = subsampling_factor, float(dropout)
        dims = [self.hidden_dim] * len(contexts) if layer_dims is None else [int(d) for d in layer_dims]
        if len(dims) != len(contexts) or min(dims) < 1:
            raise ValueError(f"layer_dims {layer_dims!r}: need one width >= 1 per layer ({len(contexts)})")
        self.layer_dims = dims
        self.layers = nn.ModuleList(
            TdnnLayer(feat_dim if i == 0 else dims[i - 1], dims[i], c,
                      stride=subsampling_factor if i == subsample_at else 1, dropout=dropout)
            for i, c in enumerate(contexts))
        self.output = nn.Linear(dims[-1], num_tokens)

    def arch(self) -> dict:
        """The config ``build_model`` rebuilds this model from (plain lists and numbers)."""
        return dict(type="tdnn", feat_dim=self.feat_dim, num_tokens=self.num_tokens, hidden_dim=self.hidden_dim,
                    contexts=[list(c) for c in self.contexts], subsample_at=self.subsample_at,
                    subsampling_factor=self.subsampling_factor, dropout=self.dropout,
                    **({"layer_dims": list(self.layer_dims)} if set(self.layer_dims) != {self.hidden_dim} else {}))

    def out_lens(self, x_lens: torch.Tensor) -> torch.Tensor:
        """``(N,)`` output frame counts for ``(N,)`` input frame counts."""
        for layer in self.layers:
            x_lens = layer.out_lens(x_lens)
        return x_lens

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (N, T, F)``, ``x_lens: (N,)`` -> log-probs ``(N, T', V)`` and ``out_lens: (N,)``.

        ``T' = floor((T - 1) / subsampling_factor) + 1``; frames of row n at or
        beyond ``out_lens[n]`` are padding (finite, but meaningless).
        """
        h, lens = run_layers(self.layers, x, x_lens, self.feat_dim)
        return self.output(h.transpose(1, 2)).float().log_softmax(dim=-1), lens


def run_layers(layers: nn.ModuleList, x: torch.Tensor, x_lens: torch.Tensor, feat_dim: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``x: (N, T, F)`` (checked), zeroed beyond ``x_lens``, through layers taking and returning
    ``(h: (N, C, T), lens)`` -> the last layer's ``(N, C, T')`` and ``(N,)`` lengths."""
    check_input(x, x_lens, feat_dim)
    lens = x_lens.to(x.device)
    mask = lengths_to_mask(lens, x.shape[1])
    h = x.masked_fill(~mask[:, :, None], 0.0).transpose(1, 2)  # (N, F, T); padding may hold anything
    for layer in layers:
        h, lens = layer(h, lens)
    return h, lens


def check_input(x: torch.Tensor, x_lens: torch.Tensor, feat_dim: int) -> None:
    """ValueError unless ``x`` is ``(N, T, feat_dim)`` and ``x_lens`` is ``(N,)`` within ``[0, T]``."""
    if x.dim() != 3 or x.shape[2] != feat_dim:
        raise ValueError(f"expected features of shape (N, T, {feat_dim}), got {tuple(x.shape)}")
    if x_lens.shape != (x.shape[0],):
        raise ValueError(f"x_lens has shape {tuple(x_lens.shape)}, expected ({x.shape[0]},)")
    if x_lens.numel() and (int(x_lens.max()) > x.shape[1] or int(x_lens.min()) < 0):
        raise ValueError(f"x_lens {x_lens.tolist()} out of range for {x.shape[1]} frames")
