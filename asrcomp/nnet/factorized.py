"""Factorised layers: a Linear or Conv1d whose weight is held as factors, and their rebuild.

The compression stages (:mod:`asrcomp.compress`) compute the factors; this module holds the
layer types themselves, so that :func:`asrcomp.nnet.build_model` rebuilds any compressed
model from its ``arch`` without the decomposition code:

- :class:`LowRankLinear`, :class:`LowRankConv1d`: a truncated SVD ``W ~= A B``, two layers
  ``b`` (in -> rank, no bias) then ``a`` (rank -> out, the original bias); a Conv1d's ``b``
  keeps the original kernel, stride and dilation, its ``a`` is a 1x1 Conv1d;
- :class:`FactorizedDense`: the base of the tensorised layers. The weight is the ``out x in``
  matrix of the layer (``in = C_in * K`` for a Conv1d, in-major) viewed as a ``2d``-mode
  tensor ``(o_1..o_d, c_1..c_d)`` with ``prod(o) = out`` and ``prod(c) = in``. Subclasses
  implement ``apply_rows(x: (M, in)) -> (M, out)`` by contracting ``x`` with the factors one
  mode at a time, never forming the weight, and ``row_flops()``: the FLOPs that contraction
  spends per row. A Conv1d is applied to its unfolded input patches (im2col), so the same
  ``apply_rows`` serves both;
- :class:`TtDense` (tensor-train matrix, Novikov et al. 2015), :class:`TuckerDense`
  (Kim et al. 2016), :class:`CpDense` (CANDECOMP/PARAFAC, Lebedev et al. 2015).

A factorised model is the base model (``arch`` without ``factorized``) with some modules
replaced. ``arch["factorized"]`` maps each replaced module's name (as in ``named_modules``,
e.g. ``layers.3.conv`` or ``output``) to the spec of its replacement,
``{"method": "svd_linear" | "svd_conv1d" | "tt" | "tucker" | "cp", ...shapes and ranks}``.
:func:`restructure` applies such a mapping with freshly initialised factors, so
``build_model`` followed by ``load_state_dict`` rebuilds any compressed model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# ----------------------------------------------------------------------------- module surgery


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def factorized_class(method: str):
    classes = {"svd_linear": LowRankLinear, "svd_conv1d": LowRankConv1d, "tt": TtDense, "tucker": TuckerDense,
               "cp": CpDense}
    if method not in classes:
        raise ValueError(f"unknown factorisation {method!r}; known: {', '.join(sorted(classes))}")
    return classes[method]


def restructure(model: nn.Module, factorized: dict[str, dict]) -> nn.Module:
    """Replace each named layer of ``model`` by an (untrained) factorised module of the given spec.

    Records the mapping on ``model.factorized`` (so ``arch_of`` can write it back).
    """
    done = dict(getattr(model, "factorized", None) or {})
    for name, spec in factorized.items():
        try:
            base = get_module(model, name)
        except AttributeError as e:
            raise ValueError(f"factorized layer {name!r} is not a module of the model") from e
        set_module(model, name, factorized_class(spec["method"]).from_spec(base, spec))
        done[name] = dict(spec)
    model.factorized = done
    return model


def replace_layer(model: nn.Module, name: str, module: nn.Module, spec: dict) -> None:
    """Put an already initialised factorised ``module`` at ``name`` and record its ``spec``."""
    set_module(model, name, module)
    model.factorized = dict(getattr(model, "factorized", None) or {}, **{name: dict(spec)})


# ----------------------------------------------------------------------------- SVD


class LowRankLinear(nn.Module):
    """``a(b(x))``: Linear ``in -> rank`` (no bias) then Linear ``rank -> out``."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.b = nn.Linear(in_features, rank, bias=False)
        self.a = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    def from_spec(cls, base: nn.Linear, spec: dict) -> "LowRankLinear":
        return cls(base.in_features, base.out_features, int(spec["rank"]), base.bias is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(self.b(x))


class LowRankConv1d(nn.Module):
    """``a(b(x))``: Conv1d ``in -> rank`` with the original kernel, then a 1x1 Conv1d ``rank -> out``."""

    def __init__(self, base: nn.Conv1d, rank: int):
        super().__init__()
        if base.groups != 1:
            raise ValueError("SVD of a grouped Conv1d is not supported")
        self.rank = rank
        self.b = nn.Conv1d(base.in_channels, rank, base.kernel_size[0], stride=base.stride, padding=base.padding,
                           dilation=base.dilation, bias=False)
        self.a = nn.Conv1d(rank, base.out_channels, 1, bias=base.bias is not None)

    @classmethod
    def from_spec(cls, base: nn.Conv1d, spec: dict) -> "LowRankConv1d":
        return cls(base, int(spec["rank"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(self.b(x))


# ----------------------------------------------------------------------------- tensorised layers


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


# ----------------------------------------------------------------------------- TT-matrix


def tt_full_ranks(row_shape: list[int], col_shape: list[int]) -> list[int]:
    """The largest useful TT ranks: ``r_k = min(prod of the first k mode pairs, prod of the rest)``."""
    pairs = [o * c for o, c in zip(row_shape, col_shape)]
    return [1] + [min(math.prod(pairs[:k]), math.prod(pairs[k:])) for k in range(1, len(pairs))] + [1]


def tt_ranks(ranks: int | list[int], row_shape: list[int], col_shape: list[int], cap: bool = True) -> list[int]:
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
    full = tt_full_ranks(row_shape, col_shape)
    return [1] + [min(r, c) for r, c in zip(inner, full[1:-1])] + [1]


class TtDense(FactorizedDense):
    """TT-matrix Linear/Conv1d: the input is contracted with one core at a time.

    ``W[(o_1..o_d), (c_1..c_d)] = G_1[:, o_1, c_1, :] G_2[:, o_2, c_2, :] ... G_d[:, o_d, c_d, :]``
    with cores ``G_k: (r_{k-1}, o_k, c_k, r_k)``, ``r_0 = r_d = 1``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, conv: dict | None,
                 row_shape: list[int], col_shape: list[int], ranks: list[int]):
        super().__init__(in_features, out_features, bias, conv)
        check_shapes(row_shape, col_shape, out_features, in_features)
        self.row_shape, self.col_shape = list(row_shape), list(col_shape)
        self.ranks = tt_ranks(ranks, row_shape, col_shape)
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


# ----------------------------------------------------------------------------- Tucker


def tucker_ranks(ranks: int | list[int], row_shape: list[int], col_shape: list[int], cap: bool = True) -> list[int]:
    """``[p_1..p_d, q_1..q_d]``, each capped at its mode size (unless not ``cap``: then as asked, so a
    caller can tell and log a cap); an int means the same rank for every mode."""
    dims = list(row_shape) + list(col_shape)
    r = [int(ranks)] * len(dims) if isinstance(ranks, int) else [int(v) for v in ranks]
    if len(r) != len(dims) or min(r) < 1:
        raise ValueError(f"Tucker ranks {ranks!r}: need {len(dims)} ranks >= 1 (one per mode)")
    return [min(a, b) for a, b in zip(r, dims)] if cap else r


def _mode_product(t: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """Contract axis ``axis`` of ``t`` (size m.shape[0]) with ``m: (n, r)``, result on the same axis (size r)."""
    return (t.movedim(axis, -1) @ m).movedim(-1, axis)


class TuckerDense(FactorizedDense):
    """Tucker-factorised Linear/Conv1d.

    ``W = core x_1 U_1 ... x_d U_d x_{d+1} V_1 ... x_{2d} V_d`` with ``core: (p_1..p_d, q_1..q_d)``,
    row factors ``U_k: (o_k, p_k)`` and column factors ``V_k: (c_k, q_k)``. The forward pass
    projects the input onto the ``V_k`` one mode at a time, applies the core as one
    ``(Q, P)`` matrix, and expands with the ``U_k``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, conv: dict | None,
                 row_shape: list[int], col_shape: list[int], ranks: list[int]):
        super().__init__(in_features, out_features, bias, conv)
        check_shapes(row_shape, col_shape, out_features, in_features)
        self.row_shape, self.col_shape = list(row_shape), list(col_shape)
        self.ranks = tucker_ranks(ranks, row_shape, col_shape)
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


# ----------------------------------------------------------------------------- CP


def khatri_rao(factors) -> torch.Tensor:
    """``(prod n_k, R)`` with row ``(i_1..i_d)`` (row-major) = ``prod_k F_k[i_k]``."""
    out = factors[0]
    for f in factors[1:]:
        out = (out[:, None, :] * f[None, :, :]).reshape(-1, f.shape[1])
    return out


class CpDense(FactorizedDense):
    """CP-factorised Linear/Conv1d.

    ``W[(o_1..o_d), (c_1..c_d)] = sum_r lambda_r prod_k A_k[o_k, r] prod_k B_k[c_k, r]``. The
    forward pass is ``x -> x KR(B) -> * lambda -> KR(A)^T`` where ``KR`` is the Khatri-Rao
    product of the (small) factors: an ``in x R`` and an ``out x R`` matrix, built per call
    and counted.
    """

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


__all__ = ["get_module", "set_module", "factorized_class", "restructure", "replace_layer", "LowRankLinear",
           "LowRankConv1d", "check_shapes", "geometry", "FactorizedDense", "tt_full_ranks", "tt_ranks", "TtDense",
           "tucker_ranks", "TuckerDense", "khatri_rao", "CpDense"]
