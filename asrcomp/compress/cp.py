"""CP (CANDECOMP/PARAFAC) factorisation of a weight viewed as a ``2d``-mode tensor (Lebedev et al. 2015).

``W[(o_1..o_d), (c_1..c_d)] = sum_r lambda_r prod_k A_k[o_k, r] prod_k B_k[c_k, r]``. The
forward pass is ``x -> x KR(B) -> * lambda -> KR(A)^T`` where ``KR`` is the Khatri-Rao
product of the (small) factors: an ``in x R`` and an ``out x R`` matrix, built per call
and counted. Initialised by TensorLy's ALS ``parafac``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from asrcomp.compress.dense import FactorizedDense, check_shapes, tensor_of


def cp_params(row_shape, col_shape, rank: int) -> int:
    return rank * (sum(row_shape) + sum(col_shape) + 1)


def cp_factors(w: torch.Tensor, row_shape, col_shape, rank: int, seed: int = 0, n_iter_max: int = 100):
    """``(weights: (R,), [A_1..A_d, B_1..B_d])`` of the ``(out, in)`` weight (numpy, float64)."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    check_shapes(row_shape, col_shape, *w.shape)
    with tl.backend_context("numpy"):
        cp = parafac(tensor_of(w, row_shape, col_shape), rank=rank, init="random", random_state=seed,
                     n_iter_max=n_iter_max, normalize_factors=True)
    return np.asarray(cp.weights), [np.asarray(f) for f in cp.factors]


def khatri_rao(factors) -> torch.Tensor:
    """``(prod n_k, R)`` with row ``(i_1..i_d)`` (row-major) = ``prod_k F_k[i_k]``."""
    out = factors[0]
    for f in factors[1:]:
        out = (out[:, None, :] * f[None, :, :]).reshape(-1, f.shape[1])
    return out


class CpDense(FactorizedDense):
    rank_key = "rank"

    def __init__(self, in_features: int, out_features: int, bias: bool, conv: dict | None,
                 row_shape: list[int], col_shape: list[int], rank: int):
        super().__init__(in_features, out_features, bias, conv)
        check_shapes(row_shape, col_shape, out_features, in_features)
        if int(rank) < 1:
            raise ValueError(f"CP rank must be >= 1, not {rank}")
        self.row_shape, self.col_shape, self.rank = list(row_shape), list(col_shape), int(rank)
        self.weights = nn.Parameter(torch.ones(self.rank) / math.sqrt(self.rank))
        self.row_factors = nn.ParameterList(nn.Parameter(torch.randn(o, self.rank) / math.sqrt(o))
                                            for o in row_shape)
        self.col_factors = nn.ParameterList(nn.Parameter(torch.randn(c, self.rank) / math.sqrt(c))
                                            for c in col_shape)

    def spec(self) -> dict:
        return {"method": "cp", "row_shape": self.row_shape, "col_shape": self.col_shape, "rank": self.rank}

    def set_factors(self, weights: np.ndarray, factors: list[np.ndarray]) -> None:
        self.weights.data.copy_(torch.from_numpy(weights).to(self.weights.dtype))
        for p, f in zip(list(self.row_factors) + list(self.col_factors), factors):
            p.data.copy_(torch.from_numpy(np.ascontiguousarray(f)).to(p.dtype))

    def apply_rows(self, x: torch.Tensor) -> torch.Tensor:
        z = (x @ khatri_rao(list(self.col_factors))) * self.weights  # (M, R)
        return z @ khatri_rao(list(self.row_factors)).T  # (M, out)

    def row_flops(self) -> int:
        return 2 * self.rank * (self.in_features + self.out_features) + self.rank

    def call_flops(self) -> int:
        # Khatri-Rao products: one multiply per element of each partial product
        def kr(shape):
            return sum(math.prod(shape[:k + 1]) * self.rank for k in range(1, len(shape)))
        return kr(self.row_shape) + kr(self.col_shape)
