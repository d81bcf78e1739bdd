"""Bit-packed low-bit weight codes: the stored form of ``asrcomp quantize``, and its decoding.

A weight is codes from a small table ``lut`` times a per-output-channel scale,
``w[c, j] = scale[c] * lut[code[c, j]]``; the codes are bit-packed (five trits per byte, or
``8 / bits`` codes per byte). :mod:`asrcomp.compress.quant` makes them
(``encode_entry``); :mod:`asrcomp.compress.peers` reads them back out of a peer file
(:func:`decode_entry`).
"""

from __future__ import annotations

import numpy as np
import torch


def dequantise(codes: torch.Tensor, lut: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale[c] * lut[codes[c, j]]`` (float32, shape of ``codes``): the one formula both paths use."""
    return scale[:, None] * lut[codes]


def code_bits(levels: int) -> float:
    """Stored bits per code: 1.6 for three levels (five per byte), else the next of 1, 2, 4, 8 bits."""
    if levels == 3:
        return 1.6
    return next(b for b in (1, 2, 4, 8) if levels <= 1 << b)


def pack_codes(codes: np.ndarray, levels: int) -> np.ndarray:
    """``codes`` (ints in ``0..levels-1``) as uint8 bytes: five trits per byte, or ``8 / bits`` codes per byte."""
    c = np.asarray(codes, dtype=np.int64).ravel()
    if c.size and (c.min() < 0 or c.max() >= levels):
        raise ValueError(f"codes outside 0..{levels - 1}")
    per, base = (5, 3) if levels == 3 else (8 // int(code_bits(levels)), 1 << int(code_bits(levels)))
    c = np.concatenate([c, np.zeros(-len(c) % per, dtype=np.int64)]).reshape(-1, per)
    return (c * base ** np.arange(per)).sum(axis=1).astype(np.uint8)


def unpack_codes(data: np.ndarray, levels: int, n: int) -> np.ndarray:
    """The first ``n`` codes of :func:`pack_codes`'s bytes (int64)."""
    per, base = (5, 3) if levels == 3 else (8 // int(code_bits(levels)), 1 << int(code_bits(levels)))
    d = np.asarray(data, dtype=np.int64)
    return ((d[:, None] // base ** np.arange(per)) % base).ravel()[:n]


def decode_entry(e: dict) -> torch.Tensor:
    """The weight of :func:`asrcomp.compress.quant.encode_entry` (exactly ``fake_quant`` of the encoded weight)."""
    shape = list(e["shape"])
    n = int(np.prod(shape))
    codes = torch.from_numpy(unpack_codes(e["codes"].numpy(), int(e["levels"]), n)).reshape(shape[0], -1)
    return dequantise(codes, e["lut"], e["scale"]).reshape(shape).to(getattr(torch, e["dtype"]))


__all__ = ["dequantise", "code_bits", "pack_codes", "unpack_codes", "decode_entry"]
