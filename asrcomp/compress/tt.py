"""Tensor-train matrix (TT-matrix) layers (Novikov et al. 2015, "Tensorizing Neural Networks").

``W[(o_1..o_d), (c_1..c_d)] = G_1[:, o_1, c_1, :] G_2[:, o_2, c_2, :] ... G_d[:, o_d, c_d, :]``
with cores ``G_k: (r_{k-1}, o_k, c_k, r_k)``, ``r_0 = r_d = 1``. Initialised by TT-SVD of
the trained weight (TensorLy's ``tensor_train_matrix``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from asrcomp.compress.dense import FactorizedDense, check_shapes, tensor_of


def full_ranks(row_shape: list[int], col_shape: list[int]) -> list[int]:
    """The largest useful TT ranks: ``r_k = min(prod of the first k mode pairs, prod of the rest)``."""
    pairs = [o * c for o, c in zip(row_shape, col_shape)]
    return [1] + [min(math.prod(pairs[:k]), math.prod(pairs[k:])) for k in range(1, len(pairs))] + [1]


def normalize_ranks(ranks: int | list[int], row_shape: list[int], col_shape: list[int], cap: bool = True) -> list[int]:
    """``ranks`` as ``[1, r_1, ..., r_{d-1}, 1]``, each capped at its full rank (unless not ``cap``: then as
    asked, so a caller can tell and log a cap); an int means all inner ranks."""
    d = len(row_shape)
    if len(col_shape) != d:
        raise ValueError(f"TT-matrix needs as many row modes as column modes, not {row_shape} and {col_shape}")
    inner = [int(ranks)] * (d - 1) if isinstance(ranks, int) else list(ranks)
    if len(inner) == d + 1 and inner[0] == inner[-1] == 1:
        inner = inner[1:-1]
    if len(inner) != d - 1 or min(inner, default=1) < 1:
        raise ValueError(f"TT ranks {ranks!r}: need {d - 1} inner ranks >= 1 for {d} modes")
    if not cap:
        return [1] + inner + [1]
    full = full_ranks(row_shape, col_shape)
    return [1] + [min(r, c) for r, c in zip(inner, full[1:-1])] + [1]


def tt_params(row_shape: list[int], col_shape: list[int], ranks: list[int]) -> int:
    return sum(ranks[k] * o * c * ranks[k + 1] for k, (o, c) in enumerate(zip(row_shape, col_shape)))


def tt_svd(w: torch.Tensor, row_shape: list[int], col_shape: list[int], ranks: list[int]) -> list[np.ndarray]:
    """TT-matrix cores of the ``(out, in)`` weight ``w`` at ``ranks`` (TensorLy's TT-SVD)."""
    import tensorly as tl
    from tensorly.decomposition import tensor_train_matrix

    check_shapes(row_shape, col_shape, *w.shape)
    with tl.backend_context("numpy"):  # another library (e.g. tltorch) may have switched the global backend
        return [np.asarray(f) for f in tensor_train_matrix(tensor_of(w, row_shape, col_shape), ranks).factors]


def cores_to_matrix(cores: list[np.ndarray]) -> np.ndarray:
    """The dense ``(out, in)`` matrix of TT-matrix cores (for error reports)."""
    import tensorly as tl

    with tl.backend_context("numpy"):
        t = tl.tt_matrix_to_tensor(cores)
    d = len(cores)
    return np.asarray(t).reshape(math.prod(t.shape[:d]), -1)


class TtDense(FactorizedDense):
    """TT-matrix Linear/Conv1d: the input is contracted with one core at a time."""

    def __init__(self, in_features: int, out_features: int, bias: bool, conv: dict | None,
                 row_shape: list[int], col_shape: list[int], ranks: list[int]):
        super().__init__(in_features, out_features, bias, conv)
        check_shapes(row_shape, col_shape, out_features, in_features)
        self.row_shape, self.col_shape = list(row_shape), list(col_shape)
        self.ranks = normalize_ranks(ranks, row_shape, col_shape)
        self.cores = nn.ParameterList(
            nn.Parameter(torch.randn(self.ranks[k], o, c, self.ranks[k + 1]) / math.sqrt(c * self.ranks[k]))
            for k, (o, c) in enumerate(zip(row_shape, col_shape)))

    def spec(self) -> dict:
        return {"method": "tt", "row_shape": self.row_shape, "col_shape": self.col_shape, "ranks": self.ranks}

    def set_cores(self, cores: list[np.ndarray]) -> None:
        for p, c in zip(self.cores, cores):
            p.data.copy_(torch.from_numpy(np.ascontiguousarray(c)).to(p.dtype))

    def apply_rows(self, x: torch.Tensor) -> torch.Tensor:
        m = x.shape[0]
        c_rest, o_done = self.in_features, 1
        t = x.reshape(m, 1, c_rest, 1, 1)
        for core, c in zip(self.cores, self.col_shape):
            c_rest //= c
            # t: (M, c_k, C_rest, O_done, r_{k-1}) x core (r_{k-1}, o_k, c_k, r_k) -> (M, C_rest, O_done, o_k, r_k)
            t = torch.einsum("mcCOr,rocs->mCOos", t.reshape(m, c, c_rest, o_done, -1), core)
            o_done *= core.shape[1]
        return t.reshape(m, self.out_features)

    def row_flops(self) -> int:
        total, c_rest, o_done = 0, self.in_features, 1
        for k, (o, c) in enumerate(zip(self.row_shape, self.col_shape)):
            c_rest //= c
            total += 2 * c_rest * o_done * self.ranks[k] * c * o * self.ranks[k + 1]
            o_done *= o
        return total
