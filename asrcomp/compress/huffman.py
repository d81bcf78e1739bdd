"""Canonical Huffman coding of integer symbol streams, vectorised with numpy.

Why our own coder: the maintained pure-Python packages (``dahuffman``, ``huffman``)
build codes fine but encode and decode one symbol (dahuffman: one bit) per
Python-loop step, ~1-10 M symbols/s (measured for this project, see DESIGN.md),
and neither stores a canonical code as bare code lengths. Here:

- code lengths come from a heap-built Huffman tree, limited to ``max_len`` bits
  (counts are halved until the limit holds: a standard heuristic whose loss is
  negligible and which only triggers on extreme distributions);
- codes are canonical, so a code is fully described by its code lengths;
- encoding is a few numpy passes (each code's <= 4 bytes summed into place with bincount);
- the stream is cut into blocks of ``block`` symbols whose start bit offsets are
  stored (32 bits per block, < 0.01 bit/symbol for the default 4096), so decoding
  runs all blocks of all streams at once: one numpy step per symbol *position in a
  block*, a table lookup of ``max_len`` bits for every block in parallel.

A stream with one distinct symbol costs 0 bits per symbol (its code length is 0).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

MAX_CODE_LEN = 24  # table lookup needs 2**L entries per stream; 7 + 24 bits fit a 64-bit window
DEFAULT_BLOCK = 4096


def code_lengths(counts: np.ndarray, max_len: int | None = None) -> np.ndarray:
    """Huffman code lengths (uint8) for symbol ``counts``; 0 for unused symbols.

    One used symbol gets length 0 (nothing needs to be sent). ``max_len``
    defaults to ``max(16, bits needed for the alphabet + 4)``, at most MAX_CODE_LEN.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    lengths = np.zeros(n, dtype=np.uint8)
    used = np.flatnonzero(counts > 0)
    if len(used) <= 1:
        return lengths
    if max_len is None:
        max_len = min(MAX_CODE_LEN, max(16, int(np.ceil(np.log2(len(used)))) + 4))
    if (1 << max_len) < len(used):
        raise ValueError(f"max_len {max_len} cannot code {len(used)} symbols")
    c = counts[used].copy()
    while True:
        ln = _tree_lengths(c)
        if ln.max() <= max_len:
            break
        c = np.maximum(c // 2, 1)
    lengths[used] = ln
    return lengths


def _tree_lengths(c: np.ndarray) -> np.ndarray:
    """Depths of the leaves of a Huffman tree over weights ``c`` (all > 0, len >= 2)."""
    heap = [(int(w), i) for i, w in enumerate(c)]
    heapq.heapify(heap)
    parent = list(range(len(c)))  # leaves 0..n-1, internal nodes appended
    nxt = len(c)
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = nxt
        parent[b] = nxt
        parent.append(nxt)  # root points to itself until it gets a parent
        heapq.heappush(heap, (w1 + w2, nxt))
        nxt += 1
    depth = np.zeros(nxt, dtype=np.int64)
    for node in range(nxt - 2, -1, -1):  # parents have larger ids: fill from the root down
        depth[node] = depth[parent[node]] + 1
    return depth[:len(c)]


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values (uint64) for ``lengths``: shorter codes first, ties by symbol."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.uint64)
    order = np.lexsort((np.arange(len(lengths)), lengths))
    order = order[lengths[order] > 0]
    code, prev = 0, 0
    for s in order:  # at most the alphabet size, not the stream length
        ln = int(lengths[s])
        code <<= ln - prev
        codes[s] = code
        code += 1
        prev = ln
    return codes


@dataclass
class Encoded:
    """One coded stream: its code lengths, bytes, symbol count and block start offsets."""

    lengths: np.ndarray  # uint8, one per symbol of the alphabet (trailing unused ones may be cut)
    data: bytes
    count: int
    block: int
    offsets: np.ndarray  # uint32 bit offset of each block after the first
    single: int = 0  # the symbol of a stream coded with no bits (lengths all 0, count > 0)
    nbits: int = 0  # bits used (the data is padded to whole bytes)


def encode(symbols: np.ndarray, alphabet: int | None = None, block: int = DEFAULT_BLOCK,
           lengths: np.ndarray | None = None) -> Encoded:
    """Huffman-code ``symbols`` (non-negative ints < ``alphabet``)."""
    symbols = np.asarray(symbols).astype(np.int64, copy=False).ravel()
    if symbols.size and symbols.min() < 0:
        raise ValueError("symbols must be non-negative")
    if alphabet is None:
        alphabet = int(symbols.max()) + 1 if symbols.size else 0
    if symbols.size and symbols.max() >= alphabet:
        raise ValueError(f"symbol {int(symbols.max())} outside the alphabet of {alphabet}")
    if lengths is None:
        lengths = code_lengths(np.bincount(symbols, minlength=alphabet))
    lengths = np.asarray(lengths, dtype=np.uint8)
    nz = np.flatnonzero(lengths)
    lengths = lengths[:nz[-1] + 1] if len(nz) else lengths[:0]
    n = symbols.size
    nblocks = (n + block - 1) // block
    if len(nz) == 0:  # empty stream or one distinct symbol: no bits at all
        if n and np.any(symbols != symbols[0]):
            raise ValueError("a zero-length code cannot code more than one symbol")
        return Encoded(lengths, b"", n, block, np.zeros(max(nblocks - 1, 0), dtype=np.uint32),
                       single=int(symbols[0]) if n else 0)
    if n and np.any(lengths[np.minimum(symbols, len(lengths) - 1)] == 0) or symbols.max(initial=0) >= len(lengths):
        raise ValueError("a symbol of the stream has no code")
    codes = canonical_codes(lengths)
    ln = lengths[symbols].astype(np.int64)
    cv = codes[symbols]
    ends = np.cumsum(ln)
    total = int(ends[-1]) if n else 0
    # each code (<= 24 bits) starting at bit offset st spans <= 4 bytes from byte st >> 3: place it
    # in a 32-bit window and add its 4 bytes in with bincount (codes never overlap, so + is |)
    st = ends - ln
    win = cv << (np.uint64(32) - ln.astype(np.uint64) - (st & 7).astype(np.uint64))
    byte0 = st >> 3
    nbytes = (total + 7) // 8
    acc = np.zeros(nbytes + 4, dtype=np.int64)
    for b in range(4):
        part = ((win >> np.uint64(24 - 8 * b)) & np.uint64(255)).astype(np.float64)
        acc += np.bincount(byte0 + b, weights=part, minlength=nbytes + 4).astype(np.int64)
    data = acc[:nbytes].astype(np.uint8).tobytes()
    offsets = ends[block - 1:n - 1:block].astype(np.uint32) if nblocks > 1 else np.zeros(0, np.uint32)
    if total >= 1 << 32:
        raise ValueError("stream too long for 32-bit block offsets")
    return Encoded(lengths, data, n, block, offsets, nbits=total)


def decode(enc: Encoded) -> np.ndarray:
    """The symbols of one coded stream (int64)."""
    return decode_many([enc])[0]


def decode_many(streams: list[Encoded]) -> list[np.ndarray]:
    """Decode several streams at once: all their blocks advance together, one symbol per step."""
    outs: list[np.ndarray | None] = [None] * len(streams)
    coded = []
    for i, e in enumerate(streams):
        if e.count == 0:
            outs[i] = np.zeros(0, dtype=np.int64)
        elif not np.any(e.lengths):
            outs[i] = np.full(e.count, e.single, dtype=np.int64)
        else:
            coded.append(i)
    if not coded:
        return outs  # type: ignore[return-value]
    # one byte buffer with every stream, tables concatenated, and per-block state
    bufs, tsym, tlen = [], [], []
    blk_bit, blk_cnt, blk_out, blk_tab, blk_L = [], [], [], [], []
    byte_base, tab_base, out_base = 0, 0, 0
    for i in coded:
        e = streams[i]
        L = int(e.lengths.max())
        sym_t, len_t = _decode_table(e.lengths, L)
        nb = (e.count + e.block - 1) // e.block
        if len(e.offsets) != nb - 1:
            raise ValueError(f"stream has {len(e.offsets)} block offsets, expected {nb - 1}")
        starts = np.concatenate([[0], e.offsets.astype(np.int64)]) + byte_base * 8
        blk_bit.append(starts)
        cnt = np.full(nb, e.block, dtype=np.int64)
        cnt[-1] = e.count - e.block * (nb - 1)
        blk_cnt.append(cnt)
        blk_out.append(out_base + e.block * np.arange(nb, dtype=np.int64))
        blk_tab.append(np.full(nb, tab_base, dtype=np.int64))
        blk_L.append(np.full(nb, L, dtype=np.uint64))
        bufs.append(np.frombuffer(e.data, dtype=np.uint8))
        tsym.append(sym_t)
        tlen.append(len_t)
        byte_base += len(e.data)
        tab_base += len(sym_t)
        out_base += e.count
    buf = np.concatenate(bufs + [np.zeros(8, dtype=np.uint8)])
    win = np.lib.stride_tricks.sliding_window_view(buf, 8)
    tsym_a, tlen_a = np.concatenate(tsym), np.concatenate(tlen).astype(np.int64)
    p = np.concatenate(blk_bit)
    cnt, obase = np.concatenate(blk_cnt), np.concatenate(blk_out)
    tbase, shift = np.concatenate(blk_tab), np.uint64(64) - np.concatenate(blk_L)
    out = np.empty(out_base + 1, dtype=np.int64)  # last slot: where finished blocks write
    trash = out_base
    limit = len(buf) * 8 - 64
    for k in range(int(cnt.max())):
        active = k < cnt
        pc = np.minimum(p, limit)
        w = win[pc >> 3].copy().view(">u8").ravel().astype(np.uint64)
        v = (w << (pc & 7).astype(np.uint64)) >> shift
        entry = tbase + v.astype(np.int64)
        out[np.where(active, obase + k, trash)] = tsym_a[entry]
        p = p + np.where(active, tlen_a[entry], 0)
    flat = out[:-1]
    base = 0
    for i in coded:
        n = streams[i].count
        outs[i] = flat[base:base + n].copy()
        base += n
    if np.any(np.concatenate([outs[i] for i in coded]) < 0):
        raise ValueError("invalid code in the bitstream")
    return outs  # type: ignore[return-value]


def _decode_table(lengths: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """For every L-bit window: the symbol whose code starts it (-1 if none) and that code's length."""
    codes = canonical_codes(lengths)
    sym = np.full(1 << L, -1, dtype=np.int64)
    ln = np.zeros(1 << L, dtype=np.uint8)
    for s in np.flatnonzero(lengths):
        li = int(lengths[s])
        lo = int(codes[s]) << (L - li)
        sym[lo:lo + (1 << (L - li))] = s
        ln[lo:lo + (1 << (L - li))] = li
    return sym, ln


def entropy_bits(symbols: np.ndarray) -> float:
    """Zero-order entropy of the stream times its length: the bound for any symbol-by-symbol code."""
    symbols = np.asarray(symbols).ravel()
    if symbols.size == 0:
        return 0.0
    c = np.bincount(symbols.astype(np.int64))
    c = c[c > 0].astype(np.float64)
    p = c / c.sum()
    return float(-(c * np.log2(p)).sum())


def cost(symbols: np.ndarray, alphabet: int | None = None, block: int = DEFAULT_BLOCK) -> tuple[int, int]:
    """``(bits, table bytes)`` that :func:`encode` would spend on ``symbols``, without coding them:
    the code bits, and the stored code lengths plus 32-bit block offsets."""
    symbols = np.asarray(symbols).astype(np.int64, copy=False).ravel()
    if symbols.size == 0:
        return 0, 0
    counts = np.bincount(symbols, minlength=alphabet or 0)
    lengths = code_lengths(counts)
    nz = np.flatnonzero(lengths)
    if len(nz) == 0:
        return 0, 0
    nblocks = (symbols.size + block - 1) // block
    return int((counts * lengths).sum()), int(nz[-1]) + 1 + 4 * (nblocks - 1)
