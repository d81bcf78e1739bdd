"""Truncated SVD of a Linear or Conv1d weight (Xue et al. 2013; Kaldi's ``apply-svd``).

``W (out x in) ~= A B`` with ``A = U_k sqrt(S_k)`` (out x k) and ``B = sqrt(S_k) V_k^T``
(k x in). The layer becomes two: ``b`` (in -> k, no bias), then ``a`` (k -> out, the
original bias). A Conv1d weight ``(out, in, K)`` is treated as ``out x (in K)``: ``b`` is a
Conv1d with the original kernel, stride and dilation and k output channels, ``a`` a
1x1 Conv1d. The layer types are :class:`~asrcomp.nnet.factorized.LowRankLinear` and
:class:`~asrcomp.nnet.factorized.LowRankConv1d`; this module computes their factors.
"""

from __future__ import annotations

import torch
from torch import nn

from asrcomp.nnet.factorized import LowRankConv1d, LowRankLinear


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """``(out, in)`` for Linear, ``(out, in * K)`` for Conv1d (in-major, as ``reshape`` flattens)."""
    w = layer.weight.detach()
    return w.reshape(w.shape[0], -1)


def rank_for_energy(s: torch.Tensor, threshold: float) -> int:
    """Smallest k whose k largest singular values ``s`` (descending) keep ``threshold`` of ``sum(s**2)``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"energy threshold must be in (0, 1], not {threshold}")
    energy = torch.cumsum(s.double() ** 2, 0) / (s.double() ** 2).sum()
    return min(int(torch.searchsorted(energy, torch.tensor(threshold, dtype=torch.float64) - 1e-12)) + 1, len(s))


def svd_factors(w: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(A: (out, rank), B: (rank, in), kept energy fraction)`` with ``A @ B`` the best rank-k approximation."""
    out_dim, in_dim = w.shape
    if not 1 <= rank <= min(out_dim, in_dim):
        raise ValueError(f"rank {rank} is not within 1..min(out, in) = {min(out_dim, in_dim)} "
                         f"for a {out_dim} x {in_dim} weight")
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    root = s[:rank].sqrt()
    kept = float((s[:rank] ** 2).sum() / (s ** 2).sum()) if float(s.abs().sum()) > 0 else 1.0
    return (u[:, :rank] * root).to(w.dtype), (root[:, None] * vh[:rank]).to(w.dtype), kept


def svd_params(out_dim: int, in_dim: int, rank: int) -> int:
    """Weights of the factorised form (biases aside)."""
    return rank * (out_dim + in_dim)


def factorize_layer(layer: nn.Module, rank: int) -> tuple[nn.Module, float]:
    """The SVD-factorised copy of a Linear or Conv1d ``layer`` at ``rank``, and the kept energy fraction."""
    w = weight_matrix(layer)
    a, b, kept = svd_factors(w, rank)
    if isinstance(layer, nn.Linear):
        new = LowRankLinear(layer.in_features, layer.out_features, rank, layer.bias is not None)
        new.b.weight.data.copy_(b)
        new.a.weight.data.copy_(a)
    elif isinstance(layer, nn.Conv1d):
        new = LowRankConv1d(layer, rank)
        new.b.weight.data.copy_(b.reshape(rank, layer.in_channels, layer.kernel_size[0]))
        new.a.weight.data.copy_(a[:, :, None])
    else:
        raise TypeError(f"cannot factorise a {type(layer).__name__}")
    if layer.bias is not None:
        new.a.bias.data.copy_(layer.bias.detach())
    return new, kept


def choose_rank(layer: nn.Module, rank: int | None = None, energy_threshold: float | None = None) -> int:
    """``rank`` itself (checked against the weight) or the smallest rank keeping ``energy_threshold``."""
    w = weight_matrix(layer)
    if rank is not None:
        if not 1 <= rank <= min(w.shape):
            raise ValueError(f"rank {rank} is larger than min(out, in) = {min(w.shape)} of this "
                             f"{w.shape[0]} x {w.shape[1]} weight" if rank > 0 else f"rank must be >= 1, not {rank}")
        return rank
    if energy_threshold is None:
        raise ValueError("give a rank or an energy threshold")
    return rank_for_energy(torch.linalg.svdvals(w.double()), energy_threshold)


def worth_factorizing(out_dim: int, in_dim: int, rank: int, shrinkage_threshold: float) -> bool:
    """Kaldi's rule: factorise only if ``rank (out + in) <= shrinkage_threshold * out * in``."""
    return svd_params(out_dim, in_dim, rank) <= shrinkage_threshold * out_dim * in_dim


def spec(rank: int, layer: nn.Module) -> dict:
    return {"method": "svd_conv1d" if isinstance(layer, nn.Conv1d) else "svd_linear", "rank": int(rank)}


def relative_error(w: torch.Tensor, approx: torch.Tensor) -> float:
    """``||w - approx||_F / ||w||_F``."""
    w, approx = w.detach().double(), approx.detach().double()
    return float(torch.linalg.norm(w - approx) / max(float(torch.linalg.norm(w)), 1e-30))


__all__ = ["weight_matrix", "rank_for_energy", "svd_factors", "svd_params", "factorize_layer", "choose_rank", "worth_factorizing", "spec", "relative_error"]
