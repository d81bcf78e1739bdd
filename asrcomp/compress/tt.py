"""Tensor-train matrix (TT-matrix) layers (Novikov et al. 2015, "Tensorizing Neural Networks").

``W[(o_1..o_d), (c_1..c_d)] = G_1[:, o_1, c_1, :] G_2[:, o_2, c_2, :] ... G_d[:, o_d, c_d, :]``
with cores ``G_k: (r_{k-1}, o_k, c_k, r_k)``, ``r_0 = r_d = 1``. The layer type is
:class:`~asrcomp.nnet.factorized.TtDense` (its ranks: ``tt_ranks``, ``tt_full_ranks``); this
module initialises it by TT-SVD of the trained weight (TensorLy's ``tensor_train_matrix``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from asrcomp.compress.dense import tensor_of
from asrcomp.nnet.factorized import check_shapes


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
