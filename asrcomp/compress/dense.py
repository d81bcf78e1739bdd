"""Base of the tensorised layers (TT, Tucker, CP): a Linear or Conv1d with a factored weight.

The weight is the ``out x in`` matrix of the layer (``in = C_in * K`` for a Conv1d,
in-major) viewed as a ``2d``-mode tensor ``(o_1..o_d, c_1..c_d)`` with ``prod(o) = out``
and ``prod(c) = in``. Subclasses implement ``apply_rows(x: (M, in)) -> (M, out)`` by
contracting ``x`` with the factors one mode at a time, never forming the weight, and
``row_flops()``: the FLOPs that contraction spends per row. A Conv1d is applied to its
unfolded input patches (im2col), so the same ``apply_rows`` serves both.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


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


def check_shapes(row_shape: list[int], col_shape: list[int], out_dim: int, in_dim: int, name: str = "layer"):
    if math.prod(row_shape) != out_dim or math.prod(col_shape) != in_dim:
        raise ValueError(f"{name}: shapes {'x'.join(map(str, row_shape))},{'x'.join(map(str, col_shape))} "
                         f"multiply to {math.prod(row_shape)} x {math.prod(col_shape)}, but the weight is "
                         f"{out_dim} x {in_dim}")


def geometry(base: nn.Module) -> dict:
    """In/out sizes of a Linear or Conv1d and, for a Conv1d, its kernel, stride, dilation, padding."""
    if isinstance(base, nn.Linear):
        return {"in_features": base.in_features, "out_features": base.out_features, "conv": None}
    if isinstance(base, nn.Conv1d):
        if base.groups != 1 or not isinstance(base.padding, tuple):
            raise ValueError("only ungrouped Conv1d with numeric padding can be tensorised")
        return {"in_features": base.in_channels * base.kernel_size[0], "out_features": base.out_channels,
                "conv": {"in_channels": base.in_channels, "kernel": base.kernel_size[0], "stride": base.stride[0],
                         "dilation": base.dilation[0], "padding": base.padding[0]}}
    raise TypeError(f"cannot tensorise a {type(base).__name__}")


class FactorizedDense(nn.Module):
    """A Linear (``(..., in) -> (..., out)``) or Conv1d (``(N, C, T) -> (N, out, T')``) with a factored weight."""

    def __init__(self, in_features: int, out_features: int, bias: bool, conv: dict | None):
        super().__init__()
        self.in_features, self.out_features, self.conv = in_features, out_features, conv
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    rank_key = "ranks"  # the spec key the subclass's last constructor argument comes from

    @classmethod
    def from_spec(cls, base: nn.Module, spec: dict) -> "FactorizedDense":
        """An untrained layer of ``spec``'s shapes and ranks standing for the Linear/Conv1d ``base``."""
        g = geometry(base)
        return cls(g["in_features"], g["out_features"], base.bias is not None, g["conv"], spec["row_shape"],
                   spec["col_shape"], spec[cls.rank_key])

    def apply_rows(self, x: torch.Tensor) -> torch.Tensor:  # (M, in) -> (M, out)
        raise NotImplementedError

    def row_flops(self) -> int:
        raise NotImplementedError

    def call_flops(self) -> int:
        """FLOPs spent once per call regardless of the rows (e.g. products of small factors)."""
        return 0

    def weight(self) -> torch.Tensor:
        """The dense ``(out, in)`` weight the factors stand for (for tests and error reports only)."""
        return self.apply_rows(torch.eye(self.in_features, dtype=self._dtype())).T

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if c["padding"]:
            x = nn.functional.pad(x, (c["padding"], c["padding"]))
        span = (c["kernel"] - 1) * c["dilation"] + 1
        p = x.unfold(2, span, c["stride"])[..., ::c["dilation"]]  # (N, C, T', K)
        return p.permute(0, 2, 1, 3).reshape(-1, self.in_features)  # rows (n, t), columns (C, K) in-major

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            y = self.apply_rows(x.reshape(-1, self.in_features)).reshape(*x.shape[:-1], self.out_features)
            return y + self.bias if self.bias is not None else y
        n = x.shape[0]
        y = self.apply_rows(self._patches(x))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(n, -1, self.out_features).transpose(1, 2)

    def rows_of(self, inputs, output) -> int:
        return output.numel() // self.out_features

    def flops(self, inputs, output) -> int:
        rows = self.rows_of(inputs, output)
        return rows * (self.row_flops() + (self.out_features if self.bias is not None else 0)) + self.call_flops()


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


__all__ = ["factor_dims", "parse_shapes", "check_shapes", "geometry", "FactorizedDense", "tensor_of",
           "uniform_ranks_search"]
