"""Asymmetric numeral systems (ANS) coding of integer symbol streams, with ``constriction``.

The alternative to :mod:`asrcomp.compress.huffman` in ``pack --coder ans``. Huffman spends
a whole number of bits per symbol, so a stream whose most frequent symbol has p > 0.5
costs noticeably more than its entropy; ANS codes to within the precision of its
probability model (constriction's default: 24-bit fixed point, 32-bit words, 64-bit state).

- Every stream is modelled as i.i.d. with its own empirical distribution (zero-order, like
  the Huffman code), stored as its exact symbol counts (:func:`table_bytes`, varints): the
  decoder rebuilds the same float64 probabilities ``counts / n`` and so the same model.
- All streams of a file share one ANS stack: they are pushed last to first and popped first
  to last, so the file pays the coder's final state (<= 64 bits) once, not per tensor.
- A stream with one distinct symbol (or none) costs nothing, as in the Huffman coder.
- Each stream records a CRC-32 of its symbols: a constriction whose fixed-point model
  differs from the one that packed the file gives a clear error instead of wrong weights.

Encoding and decoding run inside constriction's Rust code (~100 M symbols/s here).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

CODER = "ans"


def _constriction():
    try:
        import constriction
    except ImportError as e:  # a clear message rather than a bare traceback
        raise ImportError("the ANS coder needs the 'constriction' package: pip install constriction") from e
    return constriction


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"constriction {version('constriction')}"
    except PackageNotFoundError:
        return "constriction (unknown version)"


@dataclass
class AnsStream:
    """One stream of a shared ANS stack: its model, length and where it sits."""

    symbols: np.ndarray  # used symbols, increasing (uint32)
    counts: np.ndarray  # their counts (uint32), the model's probabilities up to normalisation
    count: int  # number of symbols in the stream
    single: int = 0  # the symbol of a stream with one distinct symbol (no bits)
    crc: int = 0  # CRC-32 of the stream as little-endian int64
    bits: int = 0  # bits this stream added to the shared stack (num_valid_bits difference)


def _crc(sym: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(sym, dtype="<i8").tobytes())


def _model(counts: np.ndarray):
    c = _constriction()
    p = counts.astype(np.float64)
    return c.stream.model.Categorical(p / p.sum(), perfect=False)


def encode_many(streams: list[np.ndarray]) -> tuple[np.ndarray, list[AnsStream]]:
    """ANS-code ``streams`` (non-negative int arrays) into one word array (uint32) and their metadata."""
    c = _constriction()
    metas: list[AnsStream] = []
    ranks = []
    for s in streams:
        s = np.asarray(s).astype(np.int64, copy=False).ravel()
        if s.size and s.min() < 0:
            raise ValueError("symbols must be non-negative")
        used, r, counts = np.unique(s, return_inverse=True, return_counts=True)
        if len(used) and (used[-1] >= 1 << 32 or counts.max() >= 1 << 32):
            raise ValueError("symbols and counts must fit 32 bits")
        metas.append(AnsStream(used.astype(np.uint32), counts.astype(np.uint32), int(s.size),
                               single=int(used[0]) if len(used) == 1 else 0, crc=_crc(s)))
        ranks.append(r.astype(np.int32).ravel())
    coder = c.stream.stack.AnsCoder()
    for m, r in zip(reversed(metas), reversed(ranks)):  # a stack: the first stream goes on last
        if len(m.symbols) < 2:
            continue
        before = coder.num_valid_bits()
        coder.encode_reverse(r, _model(m.counts))
        m.bits = int(coder.num_valid_bits() - before)
    return np.asarray(coder.get_compressed(), dtype=np.uint32), metas


def decode_many(words: np.ndarray, metas: list[AnsStream]) -> list[np.ndarray]:
    """The streams (int64) of :func:`encode_many`'s ``words`` and ``metas``, in order."""
    c = _constriction()
    coder = c.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    out = []
    for i, m in enumerate(metas):
        if m.count == 0:
            sym = np.zeros(0, dtype=np.int64)
        elif len(m.symbols) < 2:
            sym = np.full(m.count, int(m.symbols[0]) if len(m.symbols) else m.single, dtype=np.int64)
        else:
            if len(m.symbols) != len(m.counts) or not np.all(m.counts > 0):
                raise ValueError(f"ANS stream {i}: malformed model table")
            r = np.asarray(coder.decode(_model(np.asarray(m.counts)), m.count), dtype=np.int64)
            sym = np.asarray(m.symbols, dtype=np.int64)[r]
        if _crc(sym) != m.crc:
            raise ValueError(f"ANS stream {i} does not decode to what was coded (CRC mismatch): packed with "
                             f"another constriction whose probability model differs from {library_version()}?")
        out.append(sym)
    if not coder.is_empty():
        raise ValueError("ANS data left over after the last stream")
    return out


def table_bytes(meta: AnsStream) -> bytes:
    """A stream's model as stored: the count of every symbol from 0 to the largest used one (0 for
    unused ones), each an unsigned LEB128 varint -- one byte per count below 128, like a Huffman
    code-length table, two for counts below 16384."""
    dense = np.zeros(int(meta.symbols[-1]) + 1 if len(meta.symbols) else 0, dtype=np.int64)
    dense[meta.symbols.astype(np.int64)] = meta.counts
    out = bytearray()
    for v in dense.tolist():
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def table_from_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(used symbols, counts)`` (uint32) of :func:`table_bytes`'s output."""
    dense, v, shift = [], 0, 0
    for b in data:
        v |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            if shift > 35:
                raise ValueError("ANS model table: varint too long")
        else:
            dense.append(v)
            v, shift = 0, 0
    if shift:
        raise ValueError("ANS model table: truncated varint")
    d = np.array(dense, dtype=np.int64)
    used = np.flatnonzero(d)
    return used.astype(np.uint32), d[used].astype(np.uint32)


def encode(symbols: np.ndarray) -> tuple[np.ndarray, AnsStream]:
    """One stream on its own stack."""
    words, (m,) = encode_many([symbols])
    return words, m


def decode(words: np.ndarray, meta: AnsStream) -> np.ndarray:
    return decode_many(words, [meta])[0]


def coded_bits(words: np.ndarray) -> int:
    """Size of a word array in bits (what the file stores)."""
    return 32 * len(words)
