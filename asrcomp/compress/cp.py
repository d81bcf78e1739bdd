"""CP (CANDECOMP/PARAFAC) factorisation of a weight viewed as a ``2d``-mode tensor (Lebedev et al. 2015).

``W[(o_1..o_d), (c_1..c_d)] = sum_r lambda_r prod_k A_k[o_k, r] prod_k B_k[c_k, r]``. The
forward pass is ``x -> x KR(B) -> * lambda -> KR(A)^T`` where ``KR`` is the Khatri-Rao
product of the (small) factors: an ``in x R`` and an ``out x R`` matrix, built per call
and counted. The layer type is :class:`~asrcomp.nnet.factorized.CpDense`; this module
initialises it by TensorLy's ALS ``parafac``.
"""

from __future__ import annotations

import numpy as np
import torch

from asrcomp.compress.dense import tensor_of
from asrcomp.nnet.factorized import check_shapes


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
