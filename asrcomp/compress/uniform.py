"""Entropy-coded uniform quantisation: the other way to share weights, beside k-means.

k-means (:mod:`asrcomp.compress.kmeans`) places ``2**bits`` levels to minimise the error for
a fixed *number* of levels. Once the indices are entropy-coded, what counts is the error for a
given *entropy*, and there a uniform grid with many levels beats it (entropy-constrained scalar
quantisation: Gish & Pierce 1968; the uniform reconstruction quantiser of MPEG NNR / DeepCABAC,
Wiedemann et al. 2020): at about 2 bits per weight the grid spends its bits on the many small
weights, k-means on four levels.

Width ``b`` here names the step ``rms(values) * 2**(2 - b)``: about ``b`` bits per weight of
index entropy for a bell-shaped tensor at high rates (differential entropy ``log2(rms) + ~2``),
fewer at low ones; the pack stage's bit allocation measures each width's real bytes.
:func:`quantize_grid` takes the step itself: pack's ``allocation: equal-step`` gives every
shared tensor one step, the MSE-optimal split of a byte budget at high rates (equal distortion
per weight), which needs no data.
"""

from __future__ import annotations

import numpy as np

from asrcomp.compress.kmeans import check_bits, check_finite


def uniform_step(values: np.ndarray, bits: int) -> float:
    """Grid step of width ``bits`` for ``values``: ``rms * 2**(2 - bits)`` (1.0 when all are 0)."""
    rms = float(np.sqrt(np.mean(np.square(values, dtype=np.float64)))) if values.size else 0.0
    return rms * 2.0 ** (2 - bits) if rms > 0 else 1.0


def quantize_uniform(values: np.ndarray, bits: int, name: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """``(codebook float32, index int64)``: ``values`` rounded to the multiples of
    :func:`uniform_step` they are nearest to; the codebook holds the used multiples, sorted.
    Non-finite ``values`` are refused (ValueError naming ``name``)."""
    check_bits(bits)
    check_finite(values, name)
    return quantize_grid(values, uniform_step(values, bits), name)


def quantize_grid(values: np.ndarray, step: float, name: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_uniform` on a given grid ``step`` (> 0), e.g. one step shared by every
    tensor of a model, as MPEG NNR's single quantisation parameter."""
    check_finite(values, name)
    if not step > 0:
        raise ValueError(f"{name}: grid step must be > 0, got {step}")
    k = np.rint(np.asarray(values, dtype=np.float64) / step).astype(np.int64)
    used, idx = np.unique(k, return_inverse=True)
    book, inv = np.unique((used * step).astype(np.float32), return_inverse=True)  # float32 may merge levels
    return book, inv.ravel()[idx.ravel()]
