"""Tucker factorisation of a weight viewed as a ``2d``-mode tensor (Kim et al. 2016 use Tucker-2 on conv kernels).

``W = core x_1 U_1 ... x_d U_d x_{d+1} V_1 ... x_{2d} V_d`` with ``core: (p_1..p_d, q_1..q_d)``,
row factors ``U_k: (o_k, p_k)`` and column factors ``V_k: (c_k, q_k)``. The forward pass
projects the input onto the ``V_k`` one mode at a time, applies the core as one
``(Q, P)`` matrix, and expands with the ``U_k``. The layer type is
:class:`~asrcomp.nnet.factorized.TuckerDense` (its ranks: ``tucker_ranks``); this module
initialises it by TensorLy's HOOI ``tucker``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from asrcomp.compress.dense import tensor_of
from asrcomp.nnet.factorized import check_shapes


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
