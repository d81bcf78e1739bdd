"""Feed-forward DNN on spliced frames (the classic hybrid acoustic model), trained with CTC.

Each output frame sees ``2*splice+1`` input frames, spliced as Kaldi's
``splice-feats`` does (frame ``t-splice`` first; edges repeat the utterance's
first/last frame). With ``subsampling_factor`` k > 1 only every k-th spliced
frame (t = 0, k, 2k, ...) goes through the network, so compute drops k-fold.

Only the valid (non-padding) frames of a batch are run through the layers, so
BatchNorm training statistics ignore padding and a padded batch gives every
utterance exactly the frames it gets alone. Module names: ``layers.<i>.linear``,
``layers.<i>.bn``, ``output``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from asrcomp.nnet.tdnn import check_input, lengths_to_mask

DEFAULT_DNN = dict(type="dnn", hidden_dim=1024, num_layers=4, splice=5, subsampling_factor=3, dropout=0.1)


def splice_indices(x_lens: torch.Tensor, max_len: int, splice: int, subsampling_factor: int = 1
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which input frames make up each valid output frame.

    Returns ``(n, j, idx)``: for the M valid output frames, their row ``n: (M,)``,
    output frame ``j: (M,)`` and input frame indices ``idx: (M, 2*splice+1)``
    (centre ``j * subsampling_factor``, clamped to ``[0, x_lens[n] - 1]``).
    """
    out_lens = torch.div(x_lens - 1, subsampling_factor, rounding_mode="floor") + 1
    t_out = (max_len - 1) // subsampling_factor + 1 if max_len > 0 else 0
    n, j = lengths_to_mask(out_lens, t_out).nonzero(as_tuple=True)
    offsets = torch.arange(-splice, splice + 1, device=x_lens.device)
    idx = (j * subsampling_factor)[:, None] + offsets[None, :]
    idx = torch.minimum(idx.clamp(min=0), (x_lens[n] - 1)[:, None])
    return n, j, idx


class DnnLayer(nn.Module):
    """Linear -> ReLU -> BatchNorm1d -> dropout on ``(M, D)`` frames."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm1d(out_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.bn(self.relu(self.linear(x))))


class Dnn(nn.Module):
    """DNN: splice, ``layers`` (ModuleList of :class:`DnnLayer`), Linear ``output``, log-softmax."""

    def __init__(self, feat_dim: int, num_tokens: int, hidden_dim: int = 1024, num_layers: int = 4,
                 splice: int = 5, subsampling_factor: int = 1, dropout: float = 0.0):
        super().__init__()
        if not isinstance(splice, int) or splice < 0:
            raise ValueError(f"splice must be an integer >= 0, not {splice!r}")
        if not isinstance(subsampling_factor, int) or subsampling_factor < 1:
            raise ValueError(f"subsampling_factor must be an integer >= 1, not {subsampling_factor!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be an integer >= 1, not {num_layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        self.feat_dim, self.num_tokens, self.hidden_dim = int(feat_dim), int(num_tokens), int(hidden_dim)
        self.num_layers, self.splice = num_layers, splice
        self.subsampling_factor, self.dropout = subsampling_factor, float(dropout)
        in_dim = (2 * splice + 1) * feat_dim
        self.layers = nn.ModuleList(DnnLayer(in_dim if i == 0 else hidden_dim, hidden_dim, dropout)
                                    for i in range(num_layers))
        self.output = nn.Linear(hidden_dim, num_tokens)

    def arch(self) -> dict:
        """The config ``build_model`` rebuilds this model from."""
        return dict(type="dnn", feat_dim=self.feat_dim, num_tokens=self.num_tokens, hidden_dim=self.hidden_dim,
                    num_layers=self.num_layers, splice=self.splice, subsampling_factor=self.subsampling_factor,
                    dropout=self.dropout)

    def out_lens(self, x_lens: torch.Tensor) -> torch.Tensor:
        """``(N,)`` output frame counts: ``floor((T - 1) / subsampling_factor) + 1``."""
        return torch.div(x_lens - 1, self.subsampling_factor, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (N, T, F)``, ``x_lens: (N,)`` -> log-probs ``(N, T', V)`` and ``out_lens: (N,)``.

        Padding frames of the output hold the uniform distribution (``-log V``).
        """
        check_input(x, x_lens, self.feat_dim)
        x_lens = x_lens.to(x.device)
        N, T, _ = x.shape
        n, j, idx = splice_indices(x_lens, T, self.splice, self.subsampling_factor)
        h = x[n[:, None], idx].reshape(len(n), -1)  # (M, (2*splice+1) * F)
        for layer in self.layers:
            h = layer(h)
        lp = self.output(h).float().log_softmax(dim=-1)  # (M, V)
        t_out = (T - 1) // self.subsampling_factor + 1 if T > 0 else 0
        out = lp.new_full((N, t_out, self.num_tokens), -math.log(self.num_tokens))
        out[n, j] = lp
        return out, self.out_lens(x_lens)
