"""The ``.acz`` file of ``asrcomp pack``: every tensor of a state dict, coded, in one checksummed file.

Quantised tensors (see :mod:`asrcomp.compress.share`) are stored as a float32 codebook and
their cluster indices, Huffman- (:mod:`asrcomp.compress.huffman`) or ANS-coded
(:mod:`asrcomp.compress.ans`); a sparse one (at least ``SPARSE_MIN_ZEROS`` exact zeros) only
its non-zero values, their positions sent as gaps between them (the paper's relative
indices: a gap larger than ``2**g - 1`` is sent as filler symbols 0, each meaning "advance
2**g - 1"). Other floating tensors are stored as float16 when that holds them exactly, every
other tensor raw -- or, when packed with ``small_bits`` 8, a constant tensor as its one value
and a floating one as 8-bit codes on a power-of-two grid, when that holds it exactly.

File layout (little-endian)::

    b"ASRCACZ\\0"  u32 version  u32 header length  zlib(JSON header)  payload  SHA-256

Version 1: Huffman streams; version 2: ANS streams (one shared word array; the header
names the coder and the constriction that wrote it). Both are read.

The header holds what the caller puts in it (:func:`asrcomp.compress.pack.pack`: the
model.yaml architecture, token table, fbank options, history, where the bpe.model bytes lie
in the payload) and per tensor its name, shape, dtype, kind and where its codebook,
canonical code lengths, block offsets and bitstreams lie in the payload. The SHA-256 covers
everything before it: a truncated or corrupted file is an InputError.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from asrcomp.compress import ans, huffman
from asrcomp.compress.share import SPARSE_MIN_ZEROS, grid_codes, grid_values, is_constant
from asrcomp.utils import InputError, atomic_open

MAGIC = b"ASRCACZ\0"
VERSION = 1  # Huffman-coded streams
VERSION_ANS = 2  # ANS-coded streams
CODERS = ("huffman", "ans")


class _Payload:
    def __init__(self):
        self.buf = bytearray()

    def put(self, data) -> list[int]:
        data = bytes(data)
        off = len(self.buf)
        self.buf += data
        return [off, len(data)]


def _stream_entry(enc: huffman.Encoded, pay: _Payload) -> dict:
    return {"count": enc.count, "block": enc.block, "single": enc.single,
            "lengths": pay.put(enc.lengths.astype(np.uint8).tobytes()),
            "offsets": pay.put(enc.offsets.astype("<u4").tobytes()),
            "data": pay.put(enc.data)}


def _stream_of(d: dict, payload: memoryview) -> huffman.Encoded:
    def get(ref, dtype):
        off, n = ref
        return np.frombuffer(payload[off:off + n], dtype=dtype)
    return huffman.Encoded(get(d["lengths"], np.uint8), bytes(get(d["data"], np.uint8)), int(d["count"]),
                           int(d["block"]), get(d["offsets"], "<u4"), int(d["single"]))


def _gap_symbols(pos: np.ndarray, g: int) -> np.ndarray:
    """Gap stream of sorted non-zero positions: symbol s in 1..M = advance s; 0 = advance M (filler)."""
    M = (1 << g) - 1
    gaps = np.diff(np.concatenate([[-1], pos]))
    fill = (gaps - 1) // M
    rem = gaps - fill * M
    n = len(gaps) + int(fill.sum())
    out = np.zeros(n, dtype=np.int64)  # fillers are 0
    ends = np.cumsum(fill + 1) - 1
    out[ends] = rem
    return out


def _positions(sym: np.ndarray, g: int) -> np.ndarray:
    M = (1 << g) - 1
    adv = np.where(sym == 0, M, sym)
    return (np.cumsum(adv) - 1)[sym != 0]


def _choose_gap_bits(pos: np.ndarray) -> int:
    """The g in 1..16 minimising the Huffman-coded gap stream plus its code table (one byte per
    symbol up to the largest used). Entropy would be the wrong yardstick: at small g the
    stream is nearly all fillers, whose entropy is far below the 1 bit/symbol Huffman needs."""
    best = None
    gaps, counts = np.unique(np.diff(np.concatenate([[-1], pos])), return_counts=True)
    for g in range(1, 17):
        M = (1 << g) - 1
        fill = (gaps - 1) // M
        rem = gaps - fill * M
        hist = np.bincount(rem, weights=counts, minlength=M + 1).astype(np.int64)
        hist[0] = int((fill * counts).sum())
        lengths = huffman.code_lengths(hist)
        bits = int((hist * lengths).sum()) + 8 * (int(np.flatnonzero(hist)[-1]) + 1)
        if best is None or bits < best[0]:
            best = (bits, g)
        if fill.sum() == 0:  # a larger g only grows the table
            break
    return best[1]


def encode_state(state: dict[str, torch.Tensor], quantised: set[str], bits: dict[str, int],
                 index_bits: int | None = None, coder: str = "huffman",
                 small_bits: int = 16) -> tuple[list[dict], _Payload, list[dict]]:
    """Header entries, payload and size statistics of every tensor of ``state``.

    ``small_bits`` 8: a tensor not quantised whose elements are all equal is stored as that one
    value (in the header), another floating one as 8-bit codes on its power-of-two grid
    (:func:`asrcomp.compress.share.grid_codes`) when it lies on it; 16 (the default): float16.

    The streams are coded with ``coder`` (huffman or ans); the statistics give what both
    coders spend (Huffman's from its code lengths, ANS's from coding, both exact), so the
    report compares them. Without constriction installed, a Huffman pack reports no ANS sizes.
    """
    if coder not in CODERS:
        raise ValueError(f"unknown coder {coder!r}: one of {CODERS}")
    pay, entries, stats = _Payload(), [], []
    streams: list[tuple[dict, str, np.ndarray, int]] = []  # (entry, key, symbols, alphabet): coded below
    for name, t in state.items():
        t = t.detach().cpu()
        e = {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
        st = {"tensor": name, "shape": "x".join(map(str, t.shape)) or "scalar", "params": t.numel(),
              "fp32_B": t.numel() * t.element_size()}
        if name in quantised:
            w = t.flatten().numpy()
            nz = w != 0
            sparse = w.size > 0 and (1 - nz.mean()) >= SPARSE_MIN_ZEROS
            vals = w[nz] if sparse else w
            book, idx = np.unique(vals, return_inverse=True)
            if len(book) > (1 << 16):
                raise ValueError(f"{name}: {len(book)} distinct values, not quantised to <= 16 bits")
            e.update(kind="quant", layout="sparse" if sparse else "dense",
                     codebook=pay.put(book.astype("<f4").tobytes()))
            b = bits.get(name, max(1, int(np.ceil(np.log2(max(len(book), 2))))))
            st.update(kind="quant", bits=b, sparsity=round(1 - float(nz.mean()), 4) if w.size else 0.0,
                      codebook_B=4 * len(book))
            streams.append((e, "idx", idx.ravel(), len(book)))
            if sparse:
                pos = np.flatnonzero(nz)
                g = index_bits or (_choose_gap_bits(pos) if len(pos) else 1)
                e["gap_bits"] = g
                gs = _gap_symbols(pos, g)
                streams.append((e, "gap", gs, 1 << g))
                st["gap_symbols"] = len(gs)
                st["gap_bits"] = g
            entries.append(e)
        elif small_bits == 8 and is_constant(t) and bool(torch.isfinite(t.double()).all()):
            e.update(kind="const", value=t.flatten()[0].item())
            st.update(kind="const", bits=0, stored_B=0)
            entries.append(e)
        elif small_bits == 8 and t.is_floating_point() and t.numel() and bool(torch.isfinite(t).all()) \
                and (grid := _exact_grid(t.numpy(), small_bits)) is not None:
            ex, k0, codes = grid
            e.update(kind="grid", exp=ex, k0=k0, data=pay.put(codes.astype("u1").tobytes()))
            st.update(kind="grid", bits=small_bits, stored_B=codes.size)
            entries.append(e)
        elif t.is_floating_point() and bool((torch.isfinite(t.half()) | ~torch.isfinite(t)).all()) \
                and torch.equal(t.half().to(t.dtype), t):
            e.update(kind="half", data=pay.put(t.half().numpy().astype("<f2").tobytes()))
            st.update(kind="float16", stored_B=t.numel() * 2)
            entries.append(e)
        else:
            arr = t.numpy()
            e.update(kind="raw", data=pay.put(arr.astype(arr.dtype.newbyteorder("<")).tobytes()))
            st.update(kind="raw", stored_B=arr.nbytes)
            entries.append(e)
        stats.append(st)
    by_name = {s["tensor"]: s for s in stats}
    metas = None
    try:
        words, metas = ans.encode_many([sym for _, _, sym, _ in streams])
    except ImportError:
        if coder == "ans":
            raise
    for k, (e, key, sym, alphabet) in enumerate(streams):
        s = by_name[e["name"]]
        s[f"{key}_entropy_bits"] = round(huffman.entropy_bits(sym), 1)
        if coder == "huffman":
            enc = huffman.encode(sym, alphabet)
            e[key] = _stream_entry(enc, pay)
            hbits, htable = enc.nbits, len(enc.lengths) + 4 * len(enc.offsets)
        else:
            hbits, htable = huffman.cost(sym, alphabet)
        s[f"{key}_huffman_bits"], s[f"{key}_huffman_table_B"] = hbits, htable
        if metas is not None:
            m = metas[k]
            table = ans.table_bytes(m) if len(m.symbols) > 1 else b""  # one symbol: no model needed
            s[f"{key}_ans_bits"], s[f"{key}_ans_table_B"] = m.bits, len(table)
        if coder == "ans":
            e[key] = {"coder": "ans", "seq": k, "count": m.count, "single": m.single, "crc": m.crc,
                      "counts": pay.put(table)}
    if coder == "ans" and streams:
        ref = pay.put(words.astype("<u4").tobytes())  # one stack for every stream
        for e, key, _, _ in streams:
            e[key]["data"] = ref
    return entries, pay, stats


def _exact_grid(x: np.ndarray, bits: int) -> tuple[int, int, np.ndarray] | None:
    """``x``'s grid codes when they decode to exactly ``x`` (the model was rounded to it), else None."""
    grid = grid_codes(x, bits)
    return grid if np.array_equal(grid_values(*grid), x.astype(np.float32)) else None


def coded_bytes(w, coder: str = "huffman", index_bits: int | None = None) -> int:
    """Bytes one quantised tensor (its shared values, any shape) takes in the payload of a file
    :func:`encode_state` writes with ``coder``: float32 codebook, index stream and (sparse) gap
    stream, and the coder's tables -- the tensor's ``huffman_B`` / ``ans_B`` in pack_report.tsv.

    Exact for Huffman (:func:`huffman.cost` gives what :func:`huffman.encode` spends); for ANS
    the streams are coded alone here, in the file on one stack shared with the other tensors,
    which moves each stream's size by a few bits.
    """
    w = np.asarray(w, dtype=np.float32).ravel()
    nz = w != 0
    sparse = w.size > 0 and (1 - nz.mean()) >= SPARSE_MIN_ZEROS
    vals = w[nz] if sparse else w
    book, idx = np.unique(vals, return_inverse=True)
    streams = [(idx.ravel(), len(book))]
    if sparse:
        pos = np.flatnonzero(nz)
        g = index_bits or (_choose_gap_bits(pos) if len(pos) else 1)
        streams.append((_gap_symbols(pos, g), 1 << g))
    total = 4 * len(book)
    if coder == "huffman":
        for sym, alphabet in streams:
            bits, table = huffman.cost(sym, alphabet)
            total += (bits + 7) // 8 + table
    elif coder == "ans":
        _, metas = ans.encode_many([sym for sym, _ in streams])
        for m in metas:
            total += (m.bits + 7) // 8 + (len(ans.table_bytes(m)) if len(m.symbols) > 1 else 0)
    else:
        raise ValueError(f"unknown coder {coder!r}: one of {CODERS}")
    return total


def decode_state(entries: list[dict], payload: memoryview) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encode_state` (all Huffman streams decoded in one batch)."""
    refs, streams, ans_refs, ans_streams = [], [], [], []
    for e in entries:
        if e["kind"] == "quant":
            for key in ("idx", "gap"):
                if key in e and e[key].get("coder") == "ans":
                    ans_refs.append((e["name"], key))
                    ans_streams.append(e[key])
                elif key in e:
                    refs.append((e["name"], key))
                    streams.append(_stream_of(e[key], payload))
    decoded = dict(zip(refs, huffman.decode_many(streams)))
    if ans_streams:
        decoded.update(_decode_ans(ans_refs, ans_streams, payload))
    out = {}
    for e in entries:
        dtype = getattr(torch, e["dtype"])
        shape = tuple(e["shape"])
        n = int(np.prod(shape, dtype=np.int64))
        if e["kind"] == "quant":
            off, nb = e["codebook"]
            book = np.frombuffer(payload[off:off + nb], dtype="<f4")
            idx = decoded[(e["name"], "idx")]
            if len(idx) and idx.max() >= len(book):
                raise ValueError(f"{e['name']}: index outside the codebook")
            if e["layout"] == "dense":
                w = book[idx]
            else:
                pos = _positions(decoded[(e["name"], "gap")], int(e["gap_bits"]))
                if len(pos) != len(idx) or (len(pos) and pos[-1] >= n):
                    raise ValueError(f"{e['name']}: positions do not match the values")
                w = np.zeros(n, dtype=np.float32)
                w[pos] = book[idx]
            if w.size != n:
                raise ValueError(f"{e['name']}: {w.size} values for shape {shape}")
            t = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)).to(dtype)
        elif e["kind"] == "const":
            t = torch.full(shape, e["value"], dtype=dtype)
        elif e["kind"] == "grid":
            off, nb = e["data"]
            codes = np.frombuffer(payload[off:off + nb], dtype="u1")
            if codes.size != n:
                raise ValueError(f"{e['name']}: {codes.size} values for shape {shape}")
            t = torch.from_numpy(grid_values(int(e["exp"]), int(e["k0"]), codes)).to(dtype)
        else:
            off, nb = e["data"]
            np_dtype = "<f2" if e["kind"] == "half" else torch.empty(0, dtype=dtype).numpy().dtype.newbyteorder("<")
            arr = np.frombuffer(payload[off:off + nb], dtype=np_dtype)
            if arr.size != n:
                raise ValueError(f"{e['name']}: {arr.size} values for shape {shape}")
            t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="))).to(dtype)
        out[e["name"]] = t.reshape(shape)
    return out


def _decode_ans(refs: list, ds: list[dict], payload: memoryview) -> dict:
    """The ANS streams (``{(tensor, key): symbols}``): popped off their shared stack in ``seq`` order."""
    def get(ref, dtype):
        off, n = ref
        return np.frombuffer(payload[off:off + n], dtype=dtype)

    if len({tuple(d["data"]) for d in ds}) != 1:
        raise ValueError("ANS streams must share one word array")
    order = sorted(range(len(ds)), key=lambda i: int(ds[i]["seq"]))
    metas = [ans.AnsStream(*ans.table_from_bytes(bytes(get(ds[i]["counts"], np.uint8))), int(ds[i]["count"]),
                           int(ds[i]["single"]), int(ds[i]["crc"])) for i in order]
    out = ans.decode_many(get(ds[0]["data"], "<u4").astype(np.uint32), metas)
    return {refs[i]: sym for i, sym in zip(order, out)}


def write_packed(path, header: dict, entries: list[dict], pay: _Payload) -> tuple[bytes, int]:
    """The file's bytes (written atomically to ``path`` when given) and the header size."""
    head = zlib.compress(json.dumps(dict(header, tensors=entries), separators=(",", ":")).encode(), 9)
    version = VERSION_ANS if header.get("coder") == "ans" else VERSION
    body = MAGIC + struct.pack("<II", version, len(head)) + head + bytes(pay.buf)
    data = body + hashlib.sha256(body).digest()
    if path is not None:
        with atomic_open(path, "wb") as f:
            f.write(data)
    return data, len(MAGIC) + 8 + len(head)


def read_packed(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(header, state dict)`` of a packed file; InputError naming it if it is not intact."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "packed model not found", fix="run steps/pack.sh to create it")
    data = path.read_bytes()
    fix = "the file is truncated or corrupted: copy it again or rerun steps/pack.sh"
    if data[:len(MAGIC)] != MAGIC:
        raise InputError(path, "not an asrcomp packed model (bad magic bytes)", fix=fix)
    if len(data) < len(MAGIC) + 8 + 32:
        raise InputError(path, f"truncated: only {len(data)} bytes", fix=fix)
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise InputError(path, "SHA-256 checksum mismatch", fix=fix)
    version, hlen = struct.unpack_from("<II", body, len(MAGIC))
    if version not in (VERSION, VERSION_ANS):
        raise InputError(path, f"format version {version}, this asrcomp reads {VERSION} and {VERSION_ANS}",
                         fix="unpack it with the asrcomp version that packed it")
    start = len(MAGIC) + 8
    try:
        header = json.loads(zlib.decompress(body[start:start + hlen]))
        state = decode_state(header["tensors"], memoryview(body)[start + hlen:])
    except ImportError as e:
        raise InputError(path, str(e), fix="pip install constriction (the file is ANS-coded)") from e
    except (ValueError, KeyError, zlib.error, IndexError) as e:  # checksum fine but content not ours
        raise InputError(path, f"malformed packed model: {e}", fix=fix) from e
    return header, state


def payload_part(path, ref: list[int]) -> bytes:
    """The payload bytes at ``ref`` (``[offset, length]``, as :meth:`_Payload.put` gives) of a packed file."""
    body = Path(path).read_bytes()
    off, n = ref
    start = len(MAGIC) + 8 + struct.unpack_from("<I", body, len(MAGIC) + 4)[0]
    return body[start + off:start + off + n]
