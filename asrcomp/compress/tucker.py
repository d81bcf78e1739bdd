"""Tucker factorisation of a weight viewed as a ``2d``-mode tensor (Kim et al. 2016 use Tucker-2 on conv kernels).

``W = core x_1 U_1 ... x_d U_d x_{d+1} V_1 ... x_{2d} V_d`` with ``core: (p_1..p_d, q_1..q_d)``,
row factors ``U_k: (o_k, p_k)`` and column factors ``V_k: (c_k, q_k)``. The forward pass
projects the input onto the ``V_k`` one mode at a time, applies the core as one
``(Q, P)`` matrix, and expands with the ``U_k``. Initialised by TensorLy's HOOI ``tucker``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from asrcomp.compress.dense import FactorizedDense, check_shapes, tensor_of


def normalize_ranks(ranks: int | list[int], row_shape: list[int], col_shape: list[int], cap: bool = True) -> list[int]:
    """``[p_1..p_d, q_1..q_d]``, each capped at its mode size (unless not ``cap``: then as asked, so a
    caller can tell and log a cap); an int means the same rank for every mode."""
    dims = list(row_shape) + list(col_shape)
    r = [int(ranks)] * len(dims) if isinstance(ranks, int) else [int(v) for v in ranks]
    if len(r) != len(dims) or min(r) < 1:
        raise ValueError(f"Tucker ranks {ranks!r}: need {len(dims)} ranks >= 1 (one per mode)")
    return [min(a, b) for a, b in zip(r, dims)] if cap else r


def tucker_params(row_shape, col_shape, ranks) -> int:
    dims = list(row_shape) + list(col_shape)
    return math.prod(ranks) + sum(n * r for n, r in zip(dims, ranks))


def tucker_factors(w: torch.Tensor, row_shape, col_shape, ranks, seed: int = 0):
    """``(core, [U_1..U_d, V_1..V_d])`` of the ``(out, in)`` weight (numpy, float64)."""
    import tensorly as tl
    from tensorly.decomposition import tucker

    check_shapes(row_shape, col_shape, *w.shape)
    with tl.backend_context("numpy"):
        core, factors = tucker(tensor_of(w, row_shape, col_shape), rank=list(ranks), random_state=seed)
    return np.asarray(core), [np.asarray(f) for f in factors]


def _mode_product(t: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """Contract axis ``axis`` of ``t`` (size m.shape[0]) with ``m: (n, r)``, result on the same axis (size r)."""
    return (t.movedim(axis, -1) @ m).movedim(-1, axis)


class TuckerDense(FactorizedDense):
    def __init__(self, in_features: int, out_features: int, bias: bool, conv: dict | None,
                 row_shape: list[int], col_shape: list[int], ranks: list[int]):
        super().__init__(in_features, out_features, bias, conv)
        check_shapes(row_shape, col_shape, out_features, in_features)
        self.row_shape, self.col_shape = list(row_shape), list(col_shape)
        self.ranks = normalize_ranks(ranks, row_shape, col_shape)
        d = len(row_shape)
        self.core = nn.Parameter(torch.randn(*self.ranks) / math.sqrt(math.prod(self.ranks[d:])))
        self.row_factors = nn.ParameterList(nn.Parameter(torch.linalg.qr(torch.randn(o, p))[0])
                                            for o, p in zip(row_shape, self.ranks[:d]))
        self.col_factors = nn.ParameterList(nn.Parameter(torch.linalg.qr(torch.randn(c, q))[0])
                                            for c, q in zip(col_shape, self.ranks[d:]))

    def spec(self) -> dict:
        return {"method": "tucker", "row_shape": self.row_shape, "col_shape": self.col_shape, "ranks": self.ranks}

    def set_factors(self, core: np.ndarray, factors: list[np.ndarray]) -> None:
        d = len(self.row_shape)
        self.core.data.copy_(torch.from_numpy(core).to(self.core.dtype))
        for p, f in zip(list(self.row_factors) + list(self.col_factors), factors[:d] + factors[d:]):
            p.data.copy_(torch.from_numpy(np.ascontiguousarray(f)).to(p.dtype))

    def apply_rows(self, x: torch.Tensor) -> torch.Tensor:
        m, d = x.shape[0], len(self.row_shape)
        t = x.reshape(m, *self.col_shape)
        for k, v in enumerate(self.col_factors):
            t = _mode_product(t, v, k + 1)  # c_k -> q_k
        p = math.prod(self.ranks[:d])
        t = t.reshape(m, -1) @ self.core.reshape(p, -1).T  # (M, Q) -> (M, P)
        t = t.reshape(m, *self.ranks[:d])
        for k, u in enumerate(self.row_factors):
            t = _mode_product(t, u.T, k + 1)  # p_k -> o_k
        return t.reshape(m, self.out_features)

    def row_flops(self) -> int:
        d = len(self.row_shape)
        dims, total = list(self.col_shape), 0
        for k, q in enumerate(self.ranks[d:]):
            total += 2 * math.prod(dims) * q  # each output element sums over c_k
            dims[k] = q
        total += 2 * math.prod(self.ranks[d:]) * math.prod(self.ranks[:d])
        dims = list(self.ranks[:d])
        for k, o in enumerate(self.row_shape):
            dims[k] = o
            total += 2 * math.prod(dims) * self.ranks[k]
        return total
