"""What the tensorisations (TT, Tucker, CP) share: mode shapes, the weight as a tensor, rank search.

The weight is the ``out x in`` matrix of the layer (``in = C_in * K`` for a Conv1d,
in-major) viewed as a ``2d``-mode tensor ``(o_1..o_d, c_1..c_d)`` with ``prod(o) = out``
and ``prod(c) = in``. The layer types themselves (``FactorizedDense`` and its subclasses)
are in :mod:`asrcomp.nnet.factorized`.
"""

from __future__ import annotations

import numpy as np
import torch


def factor_dims(n: int, d: int) -> list[int]:
    """The most balanced ``d`` factors of ``n`` (largest first), e.g. ``factor_dims(1152, 3) == [12, 12, 8]``."""
    if n < 1 or d < 1:
        raise ValueError(f"cannot factor {n} into {d} modes")
    best: tuple[float, list[int]] | None = None

    def rec(rest: int, k: int, lo: int, acc: list[int]) -> None:
        nonlocal best
        if k == 1:
            if rest >= lo:
                f = acc + [rest]
                score = max(f) / min(f)
                if best is None or score < best[0]:
                    best = (score, f)
            return
        for f in range(lo, int(round(rest ** (1 / k))) + 1):
            if rest % f == 0:
                rec(rest // f, k - 1, f, acc + [f])

    rec(n, d, 1, [])
    return sorted(best[1], reverse=True)


def parse_shapes(text: str) -> tuple[list[int], list[int]]:
    """``"8x8x6,12x12x8"`` -> ``([8, 8, 6], [12, 12, 8])`` (row modes, column modes).

    TT needs as many row as column modes; Tucker and CP take any, e.g. ``"384,384x3"``
    (Tucker-2 of a conv kernel: output channels, input channels, kernel taps).
    """
    try:
        rows, cols = text.split(",")
        r, c = [int(v) for v in rows.split("x")], [int(v) for v in cols.split("x")]
    except ValueError as e:
        raise ValueError(f"shapes {text!r}: expected OUTxOUTx..,INxINx.. (e.g. 8x8x6,12x12x8)") from e
    if min(r + c) < 1:
        raise ValueError(f"shapes {text!r}: mode sizes must be positive")
    return r, c


def tensor_of(w: torch.Tensor, row_shape: list[int], col_shape: list[int]) -> np.ndarray:
    """The ``(out, in)`` weight as a float64 ``(o_1..o_d, c_1..c_d)`` numpy tensor."""
    return w.detach().double().cpu().numpy().reshape(*row_shape, *col_shape)


def uniform_ranks_search(lo: int, hi: int, error_of) -> int:
    """Smallest r in ``[lo, hi]`` with ``error_of(r) <= 0`` (assumed monotone); ``hi`` if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if error_of(mid) <= 0:
            hi = mid
        else:
            lo = mid + 1
    return lo


__all__ = ["factor_dims", "parse_shapes", "tensor_of", "uniform_ranks_search"]
