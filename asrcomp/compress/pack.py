"""Deep Compression (Han, Mao, Dally, ICLR 2016) as ``asrcomp pack`` / ``asrcomp unpack``.

``pack`` reads a model dir and writes a model dir holding ``model.acz``, one binary file:

1. (optional) magnitude pruning to a target sparsity per tensor, then retraining with the
   pruned weights held at zero (:mod:`asrcomp.compress.prune`);
2. per-tensor k-means weight sharing, ``bits`` per tensor chosen by name pattern
   (:mod:`asrcomp.compress.kmeans`), then fine-tuning of the centroids: each weight's
   gradient is replaced by the sum over its cluster and after every step each weight is
   re-set to its cluster's mean, so the weights stay exactly tied (and pruned ones exactly 0);
3. Huffman coding (:mod:`asrcomp.compress.huffman`) of the cluster indices and, for sparse
   tensors, of the gaps between non-zero positions (the paper's relative indices: a gap
   larger than ``2**g - 1`` is sent as filler symbols 0, each meaning "advance 2**g - 1");
   or, with ``coder: ans`` (``--coder ans``), ANS coding of the same streams
   (:mod:`asrcomp.compress.ans`, within 0.1 % of their entropy). ``pack_report.tsv``
   gives both coders' sizes whichever the file uses.

Tensors are treated generically by state-dict name, so factorised layers (SVD, TT cores,
Tucker/CP factors) pack like any other: every floating *parameter* with >= 2 dims or more
than 1024 elements is quantised; every other floating tensor (biases, batchnorm
parameters and running statistics) is stored as float16 -- pack rounds them to float16
itself before writing ``final.pt``, so the packed model dir and ``unpack`` agree bit for
bit (a tensor that float16 cannot hold, |x| > 65504, stays float32); integer tensors are
stored raw.

File layout (little-endian)::

    b"ASRCACZ\\0"  u32 version  u32 header length  zlib(JSON header)  payload  SHA-256

Version 1: Huffman streams; version 2: ANS streams (one shared word array; the header
names the coder and the constriction that wrote it). Both are read.

The header holds the model.yaml architecture, token table (and bpe.model bytes, in the
payload), fbank options, history, and per tensor its name, shape, dtype, kind and where its
codebook, canonical code lengths, block offsets and bitstreams lie in the payload. The
SHA-256 covers everything before it: a truncated or corrupted file is an InputError.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asrcomp.compress import huffman
from asrcomp.compress.kmeans import check_bits, quantize
from asrcomp.compress.prune import MaskHooks, prune_model
from asrcomp.utils import InputError, atomic_open, options_from_dict

log = logging.getLogger(__name__)

MAGIC = b"ASRCACZ\0"
VERSION = 1  # Huffman-coded streams
VERSION_ANS = 2  # ANS-coded streams
CODERS = ("huffman", "ans")
PACKED_NAME = "model.acz"
REPORT_NAME = "pack_report.tsv"
MAX_SMALL = 1024  # floating tensors with < 2 dims and at most this many elements are stored as float16
SPARSE_MIN_ZEROS = 0.1  # a quantised tensor with at least this fraction of exact zeros keeps them (pruned)


# ----------------------------------------------------------------------------- options


@dataclass
class PackConfig:
    """Options of ``asrcomp pack`` (config section ``pack:``; flags override)."""

    bits: str | int = 5  # "5" or "regex=bits,...,default=bits" (re.search on state-dict names)
    bits_output: int | None = 4  # shorthand for a rule "^output\\.=N" before the default; None: off
    prune_sparsity: str | float = 0.0  # fraction pruned, same pattern syntax as bits
    prune_epochs: int = 0  # retraining epochs after pruning
    finetune_epochs: int = 0  # centroid fine-tuning epochs after k-means
    lr: float | None = None  # fine-tuning learning rate; default: train lr / 10
    index_bits: int | None = None  # gap symbol bits for sparse tensors; None: chosen per tensor
    coder: str = "huffman"  # entropy coder of the index and gap streams: huffman | ans
    train: dict = dataclasses.field(default_factory=dict)  # TrainConfig overrides for fine-tuning

    @classmethod
    def from_dict(cls, d: dict | None, where="pack config") -> "PackConfig":
        cfg = options_from_dict(cls, d, where, "pack")
        cfg.check(where)
        return cfg

    def check(self, where="pack config") -> None:
        try:
            for _, b in self.bits_rules():
                check_bits(b)
            for _, s in self.sparsity_rules():
                if not 0.0 <= s < 1.0:
                    raise ValueError(f"prune sparsity must be in [0, 1), got {s}")
            if self.index_bits is not None and not 1 <= self.index_bits <= 16:
                raise ValueError(f"index_bits must be from 1 to 16, got {self.index_bits}")
            if self.prune_epochs < 0 or self.finetune_epochs < 0:
                raise ValueError("epochs must be >= 0")
        except ValueError as e:
            raise InputError(where, str(e), fix="bits 1-16 (e.g. --bits 5 --bits-output 4 or "
                             "--bits 'output=4,default=5'), sparsity 0 <= s < 1") from e
        if self.coder not in CODERS:
            raise InputError(where, f"unknown coder {self.coder!r}", fix="coder: huffman or ans")

    def bits_rules(self) -> list[tuple[str, int]]:
        rules = parse_spec(self.bits, int, "bits")
        if self.bits_output is not None:  # after the explicit patterns, before the default
            at = len(rules) - (rules[-1][0] == "")
            rules.insert(at, (r"^output\.", int(self.bits_output)))
        return rules

    def sparsity_rules(self) -> list[tuple[str, float]]:
        return parse_spec(self.prune_sparsity, float, "prune sparsity")


def parse_spec(spec, cast, what: str) -> list[tuple[str, object]]:
    """``"5"`` -> ``[("", 5)]``; ``"output=4,layers\\.0=6,default=5"`` -> rules, default last."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return [("", cast(spec))]
    rules, default = [], None
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, val = part.rpartition("=")
        try:
            v = cast(val) if cast is float else _int(val)
        except ValueError as e:
            raise ValueError(f"{what}: {part!r} is not 'pattern=value' or a value") from e
        if not eq or key == "default":
            default = v
        else:
            try:
                re.compile(key)
            except re.error as e:
                raise ValueError(f"{what}: {key!r} is not a regular expression: {e}") from e
            rules.append((key, v))
    if default is not None:
        rules.append(("", default))
    if not rules:
        raise ValueError(f"{what}: empty specification")
    return rules


def _int(s: str) -> int:
    f = float(s)
    if f != int(f):
        raise ValueError(s)
    return int(f)


def resolve(rules, name: str, fallback=None):
    """The value of the first rule whose pattern is found in ``name``."""
    for pat, v in rules:
        if re.search(pat, name):
            return v
    return fallback


def quantised_names(model: nn.Module) -> list[str]:
    """Parameters that get k-means weight sharing: floating, >= 2 dims or > MAX_SMALL elements."""
    return [n for n, p in model.named_parameters()
            if p.is_floating_point() and (p.dim() >= 2 or p.numel() > MAX_SMALL)]


# ----------------------------------------------------------------------------- weight sharing


class ShareHooks:
    """FitHooks callbacks keeping each quantised parameter tied to its clusters.

    ``assign[name]``: flat int64 cluster index per weight, ``k`` (one past the clusters)
    for pruned weights, which stay exactly 0.
    """

    def __init__(self, assign: dict[str, torch.Tensor], k: dict[str, int]):
        self.assign, self.k = assign, k
        self._dev: dict = {}

    def state_dict(self) -> dict:
        """Assignments and cluster counts, checkpointed with the fine-tuning (``FitHooks.state``);
        the codebooks are the tied weights themselves, in the model's state."""
        return {"assign": {n: a.cpu() for n, a in self.assign.items()}, "k": dict(self.k)}

    def load_state_dict(self, state: dict) -> None:
        if set(state["assign"]) != set(self.assign):
            raise ValueError(f"assignments for {sorted(state['assign'])}, this run shares {sorted(self.assign)}")
        self.assign = {n: a.long() for n, a in state["assign"].items()}
        self.k = {n: int(k) for n, k in state["k"].items()}
        self._dev = {}

    def _items(self, model):
        params = dict(model.named_parameters())
        for name, a in self.assign.items():
            p = params[name]
            key = (name, p.device)
            if key not in self._dev:
                a = a.to(p.device)
                cnt = torch.bincount(a, minlength=self.k[name] + 1).to(p.dtype)
                self._dev[key] = (a, cnt)
            yield name, p, *self._dev[key]

    def after_backward(self, model: nn.Module) -> None:
        for name, p, a, _ in self._items(model):
            if p.grad is None:
                continue
            g = torch.zeros(self.k[name] + 1, dtype=p.grad.dtype, device=p.device)
            g.scatter_add_(0, a, p.grad.flatten())
            g[-1] = 0  # pruned weights get no gradient
            p.grad.copy_(g[a].view_as(p.grad))

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for name, p, a, cnt in self._items(model):
            s = torch.zeros(self.k[name] + 1, dtype=p.dtype, device=p.device)
            s.scatter_add_(0, a, p.flatten())
            mean = s / cnt.clamp(min=1)
            mean[-1] = 0
            p.copy_(mean[a].view_as(p))


def share_weights(model: nn.Module, bits: dict[str, int]) -> ShareHooks:
    """k-means each named parameter in place (pruned zeros stay 0); the hooks that keep it so."""
    params = dict(model.named_parameters())
    assign, ks = {}, {}
    with torch.no_grad():
        for name, b in bits.items():
            p = params[name]
            w = p.detach().cpu().flatten().numpy().astype(np.float64)
            nz = w != 0
            sparse = (1 - nz.mean()) >= SPARSE_MIN_ZEROS
            vals = w[nz] if sparse else w
            book, idx = quantize(vals, b, name=name) if vals.size else (np.zeros(0, np.float32), np.zeros(0, np.int64))
            k = len(book)
            a = np.full(w.size, k, dtype=np.int64)
            if sparse:
                a[nz] = idx
            else:
                a[:] = idx
            new = np.append(book, np.float32(0))[a]
            p.copy_(torch.from_numpy(new).view_as(p).to(p.device, p.dtype))
            assign[name], ks[name] = torch.from_numpy(a), k
    return ShareHooks(assign, ks)


def round_small_to_half(model: nn.Module, quantised: set[str]) -> None:
    """Round every non-quantised floating tensor (params and buffers) to float16 values in place."""
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name in quantised or not t.is_floating_point():
                continue
            h = t.half()
            if bool((torch.isfinite(h) | ~torch.isfinite(t)).all()):
                t.data.copy_(h.to(t.dtype))


# ----------------------------------------------------------------------------- file format


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
                 index_bits: int | None = None, coder: str = "huffman") -> tuple[list[dict], _Payload, list[dict]]:
    """Header entries, payload and size statistics of every tensor of ``state``.

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
        from asrcomp.compress import ans

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
    from asrcomp.compress import ans

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


# ----------------------------------------------------------------------------- drivers


def build_configs(conf: str | None, flags: dict, train_set: list[str] | None = None):
    """``(PackConfig, TrainConfig)`` from a recipe config (``pack:`` and ``train:``) and flags."""
    import yaml

    from asrcomp.train import TrainConfig

    d = (yaml.safe_load(Path(conf).read_text()) if conf else {}) or {}
    popts = dict(d.get("pack") or {})
    popts.update({k: v for k, v in flags.items() if v is not None})
    where = conf or "pack options"
    pcfg = PackConfig.from_dict(popts, where=where)
    topts = dict(d.get("train") or {})
    topts.pop("arch", None)
    topts.update(pcfg.train)
    for kv in train_set or []:
        k, _, v = kv.partition("=")
        topts[k] = yaml.safe_load(v)
    if pcfg.lr is not None:
        topts["lr"] = pcfg.lr
    elif "lr" not in pcfg.train:
        topts["lr"] = TrainConfig.from_dict(topts, where).lr / 10
    return pcfg, TrainConfig.from_dict(topts, where=where)


def pack(src_dir, out_dir, pcfg: PackConfig, tcfg=None, train_dir=None, valid_dir=None, lang_dir=None) -> Path:
    """Prune (optional), share weights, fine-tune, and write ``out_dir`` with ``model.acz``."""
    from asrcomp.modeldir import check_token_set, load_model_dir, save_model_dir
    from asrcomp.train import FitHooks, fit

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    pcfg.check()
    model, meta = load_model_dir(src_dir)
    names = quantised_names(model)
    brules, srules = pcfg.bits_rules(), pcfg.sparsity_rules()
    bits = {n: resolve(brules, n) for n in names}
    missing = [n for n, b in bits.items() if b is None]
    if missing:
        raise InputError("--bits", f"no bits for {', '.join(missing)}", fix="add a default, e.g. 'default=5'")
    sparsity = {n: resolve(srules, n, 0.0) for n in names}
    training = pcfg.prune_epochs > 0 or pcfg.finetune_epochs > 0
    if training:
        if not (train_dir and valid_dir and lang_dir):
            raise InputError("pack", "fine-tuning needs <train-data> <valid-data> <lang-dir>",
                             fix="pass them, or set --prune-epochs 0 --finetune-epochs 0")
        check_token_set(src_dir, Path(lang_dir) / "tokens.txt")
    history = list(meta.get("history") or [])
    options = {k: v for k, v in dataclasses.asdict(pcfg).items()}
    sub = []
    t0 = time.time()
    if any(s > 0 for s in sparsity.values()):
        masks = prune_model(model, sparsity)
        log.info("pruned %d tensors: %s", len(masks),
                 ", ".join(f"{n} {sparsity[n]:.2f}" for n in masks))
        if pcfg.prune_epochs > 0:
            mh = MaskHooks(masks)
            # --start-epoch N > 1 names an epoch of the k-means fine-tuning; 1 begins both anew
            fit(model, out_dir / "prune", train_dir, valid_dir, lang_dir,
                dataclasses.replace(tcfg, epochs=pcfg.prune_epochs,
                                    start_epoch=tcfg.start_epoch if tcfg.start_epoch <= 1 or
                                    pcfg.finetune_epochs == 0 else 0),
                hooks=FitHooks(after_backward=mh.after_backward, after_step=mh.after_step, state={"masks": mh},
                               identity={"sparsity": sparsity}),
                history=history, stage={"stage": "pack-prune", "sparsity": sparsity})
            sub.append(str(out_dir / "prune"))
    t1 = time.time()
    sh = share_weights(model, bits)
    log.info("k-means weight sharing of %d tensors in %.2f s", len(bits), time.time() - t1)
    if pcfg.finetune_epochs > 0:
        fit(model, out_dir / "quant", train_dir, valid_dir, lang_dir,
            dataclasses.replace(tcfg, epochs=pcfg.finetune_epochs),
            hooks=FitHooks(after_backward=sh.after_backward, after_step=sh.after_step, state={"share": sh},
                           identity={"bits": bits, "sparsity": sparsity}),
            history=history, stage={"stage": "pack-finetune", "bits": bits})
        sub.append(str(out_dir / "quant"))
    model.cpu().eval()
    sh.after_step(model)  # exact ties (and zeros) whatever training did last
    round_small_to_half(model, set(names))
    state = model.state_dict()

    this = {"stage": "pack", "src": str(src_dir), **options, "bits_per_tensor": bits,
            "sparsity_per_tensor": {n: s for n, s in sparsity.items() if s > 0}, "fine_tuned_in": sub}
    tokens_txt = src_dir / "tokens.txt"
    bpe = src_dir / "bpe.model"
    t2 = time.time()
    header = {"arch": meta["arch"], "tokens_txt": tokens_txt.read_text(encoding="utf-8"),
              "token_type": meta["tokens"]["token_type"], "features": meta.get("features", {}),
              "history": history + [this], "bpe_model": None}
    if pcfg.coder == "ans":
        from asrcomp.compress.ans import library_version

        header.update(coder="ans", ans_library=library_version())
    entries, pay, stats = encode_state(state, set(names), bits, pcfg.index_bits, pcfg.coder)
    if bpe.is_file():
        header["bpe_model"] = pay.put(zlib.compress(bpe.read_bytes(), 9))
    data, head_bytes = write_packed(None, header, entries, pay)
    t3 = time.time()
    # self-check before anything is written: the file decodes to exactly this model
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / PACKED_NAME
        tmp.write_bytes(data)
        _, back = read_packed(tmp)
    bad = [k for k in state if not torch.equal(state[k], back[k])]
    if bad:
        raise RuntimeError(f"pack self-check failed: {bad} do not round-trip")
    rows, total = report_rows(stats, len(data), head_bytes, len(header["tokens_txt"]),
                              pay_bpe=header["bpe_model"][1] if header["bpe_model"] else 0, coder=pcfg.coder)
    log.info("packed %d tensors in %.2f s (encode %.2f s, %s): %s bytes, %.1fx smaller than fp32; "
             "%s bytes without the bpe.model copy (%.1fx)", len(state), time.time() - t2, t3 - t2, pcfg.coder,
             f"{len(data):,}", total["ratio"], f"{total['weights_bytes']:,}",
             total["params"] * 4 / total["weights_bytes"])
    log.info("index and gap streams: entropy %s bits, Huffman %s (x%s), ANS %s (x%s)", total["entropy_bits"],
             total["huffman_bits"], _ratio(total["huffman_bits"], total["entropy_bits"]) or "-",
             total["ans_bits"], _ratio(total["ans_bits"] or 0, total["entropy_bits"]) or "-")
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / PACKED_NAME, "wb") as f:
        f.write(data)
    write_report(out_dir / REPORT_NAME, rows)
    for line in format_report(rows):
        log.info("%s", line)
    save_model_dir(out_dir, model, tokens_txt, features=meta.get("features", {}), history=history + [this],
                   bpe_model=bpe if bpe.is_file() else None,
                   extra={"packed_bytes": len(data), "packed_file": PACKED_NAME,
                          "packed_bytes_without_bpe": total["weights_bytes"],
                          "packed_bits_per_param": round(8 * len(data) / max(total["params"], 1), 3),
                          "pack_seconds": round(time.time() - t0, 2)})
    return out_dir


def unpack(packed, out_dir) -> Path:
    """Rebuild the model dir of a packed file (final.pt, model.yaml, tokens.txt, bpe.model)."""
    from asrcomp.modeldir import save_model_dir
    from asrcomp.nnet import build_model

    packed, out_dir = Path(packed), Path(out_dir)
    t0 = time.time()
    header, state = read_packed(packed)
    try:
        model = build_model(header["arch"])
        model.load_state_dict(state, strict=True)
    except (ValueError, TypeError, RuntimeError) as e:
        raise InputError(packed, f"its architecture does not take its tensors: {e}",
                         fix="repack the model with this asrcomp version") from e
    with tempfile.TemporaryDirectory() as td:
        tok = Path(td) / "tokens.txt"
        tok.write_text(header["tokens_txt"], encoding="utf-8")
        (Path(td) / "lang.yaml").write_text(json.dumps({"token_type": header["token_type"]}))
        bpe = None
        if header.get("bpe_model"):
            off, n = header["bpe_model"]
            body = packed.read_bytes()
            start = len(MAGIC) + 8 + struct.unpack_from("<I", body, len(MAGIC) + 4)[0]
            bpe = Path(td) / "bpe.model"
            bpe.write_bytes(zlib.decompress(body[start + off:start + off + n]))
        save_model_dir(out_dir, model, tok, features=header["features"], history=header["history"],
                       bpe_model=bpe, extra={"packed_bytes": packed.stat().st_size,
                                             "unpacked_from": str(packed)})
    log.info("unpacked %s into %s in %.2f s", packed, out_dir, time.time() - t0)
    return out_dir


# ----------------------------------------------------------------------------- report

REPORT_COLS = ["tensor", "kind", "shape", "params", "bits", "sparsity", "fp32_B", "pruned_B", "quant_B",
               "huffman_B", "ans_B", "coder", "bits_per_weight", "idx_entropy_bits", "idx_huffman_bits",
               "idx_ans_bits", "gap_bits", "gap_entropy_bits", "gap_huffman_bits", "gap_ans_bits",
               "huffman_over_entropy", "ans_over_entropy", "table_B"]


def report_rows(stats: list[dict], file_bytes: int, head_bytes: int, tokens_bytes: int, pay_bpe: int,
                coder: str = "huffman"):
    """One row per tensor plus header/total rows, bytes after each Deep Compression step.

    pruned_B: the paper's sparse estimate (32-bit value + gap_bits relative index per stored
    entry, fillers included); quant_B: fixed-width ``bits`` indices + gap indices + fp32
    codebook; huffman_B / ans_B: the tensor with each entropy coder (streams, codebook and
    the coder's tables: Huffman's code lengths and block offsets, ANS's symbol counts as
    varints). ``coder`` names the one the file uses: in the TOTAL row its
    column is the file's size, the other coder's is that size with the other streams and
    tables (the JSON header taken as equal). ``*_over_entropy``: index + gap stream bits
    over their zero-order entropy; table_B: the file's coder's tables. In the TOTAL row the
    idx_* bit columns hold index + gap streams together. The ANS streams
    share one stack, whose final state (<= 64 bits) is counted in the header row.
    """
    rows = []
    have_ans = any("idx_ans_bits" in s for s in stats if s["kind"] == "quant")
    for s in stats:
        n = s["params"]
        r = {c: "" for c in REPORT_COLS}
        r.update(tensor=s["tensor"], kind=s["kind"], shape=s["shape"], params=n, fp32_B=s["fp32_B"])
        if s["kind"] == "quant":
            gs, g = s.get("gap_symbols", 0), s.get("gap_bits", 0)
            nnz = round(n * (1 - s["sparsity"]))
            pruned = (gs * (32 + g) + 7) // 8 if g else 4 * n
            quant = ((nnz if g else n) * s["bits"] + gs * g + 7) // 8 + s["codebook_B"]
            keys = ["idx"] + (["gap"] if g else [])
            ent = sum(s[f"{k}_entropy_bits"] for k in keys)
            hb = sum(s[f"{k}_huffman_bits"] for k in keys)
            htab = sum(s[f"{k}_huffman_table_B"] for k in keys)
            huff = sum((s[f"{k}_huffman_bits"] + 7) // 8 for k in keys) + s["codebook_B"] + htab
            r.update(bits=s["bits"], sparsity=s["sparsity"], pruned_B=pruned, quant_B=quant, huffman_B=huff,
                     coder=coder, idx_entropy_bits=s["idx_entropy_bits"], idx_huffman_bits=s["idx_huffman_bits"],
                     huffman_over_entropy=_ratio(hb, ent), gap_bits=g or "",
                     gap_entropy_bits=s.get("gap_entropy_bits", ""), gap_huffman_bits=s.get("gap_huffman_bits", ""))
            r["_ent"], r["_hb"], r["_tab"] = ent, hb, {"huffman": htab}
            if have_ans:
                ab = sum(s[f"{k}_ans_bits"] for k in keys)
                atab = sum(s[f"{k}_ans_table_B"] for k in keys)
                r.update(ans_B=(ab + 7) // 8 + s["codebook_B"] + atab, idx_ans_bits=s["idx_ans_bits"],
                         gap_ans_bits=s.get("gap_ans_bits", ""), ans_over_entropy=_ratio(ab, ent))
                r["_ab"], r["_tab"]["ans"] = ab, atab
            r["table_B"] = r["_tab"][coder]
        else:
            r.update(bits=16 if s["kind"] == "float16" else 8 * s["fp32_B"] // max(n, 1), pruned_B=s["fp32_B"],
                     quant_B=s["stored_B"], huffman_B=s["stored_B"], ans_B=s["stored_B"] if have_ans else "")
        rows.append(r)
    col = f"{coder}_B"
    data_bytes = sum(r[col] for r in rows)
    other = file_bytes - data_bytes - pay_bpe  # magic, version, zlib'd JSON header, SHA-256 (+ ANS final state)
    for r in rows:
        r["bits_per_weight"] = round(8 * r[col] / max(r["params"], 1), 3)
    params = sum(r["params"] for r in rows)
    fp32 = sum(r["fp32_B"] for r in rows)
    head = {c: "" for c in REPORT_COLS}
    head.update(tensor="(header+checksum)", kind="meta", params=0, fp32_B=0, pruned_B=other, quant_B=other,
                huffman_B=other, ans_B=other if have_ans else "", table_B=head_bytes + 32, bits_per_weight="")
    bpe = {c: "" for c in REPORT_COLS}
    bpe.update(tensor="(bpe.model zlib)", kind="meta", params=0, fp32_B=0, pruned_B=pay_bpe, quant_B=pay_bpe,
               huffman_B=pay_bpe, ans_B=pay_bpe if have_ans else "", bits_per_weight="")
    tot = {c: "" for c in REPORT_COLS}
    q = [r for r in rows if r["kind"] == "quant"]
    ent, hb = sum(r["_ent"] for r in q), sum(r["_hb"] for r in q)
    ab = sum(r["_ab"] for r in q) if have_ans else None
    tot.update(tensor="TOTAL", kind=f"{fp32 / file_bytes:.1f}x", params=params, fp32_B=fp32, coder=coder,
               pruned_B=sum(r["pruned_B"] for r in rows) + other + pay_bpe,
               quant_B=sum(r["quant_B"] for r in rows) + other + pay_bpe,
               huffman_B=sum(r["huffman_B"] for r in rows) + other + pay_bpe,
               bits_per_weight=round(8 * file_bytes / max(params, 1), 3),
               idx_entropy_bits=round(ent, 1), idx_huffman_bits=hb,
               huffman_over_entropy=_ratio(hb, ent), table_B=sum(r["table_B"] or 0 for r in q))
    if have_ans:
        tot.update(ans_B=sum(r["ans_B"] for r in rows) + other + pay_bpe, ans_over_entropy=_ratio(ab, ent),
                   idx_ans_bits=ab)
    tot[col] = file_bytes
    for r in rows:
        for k in ("_ent", "_hb", "_ab", "_tab"):
            r.pop(k, None)
    return rows + [head] + ([bpe] if pay_bpe else []) + [tot], {
        "ratio": fp32 / file_bytes, "params": params, "weights_bytes": file_bytes - pay_bpe,
        "entropy_bits": round(ent, 1), "huffman_bits": hb, "ans_bits": ab}


def _ratio(a, b) -> str:
    return f"{a / b:.4f}" if b else ""


def write_report(path, rows) -> None:
    with atomic_open(path, "w") as f:
        f.write("\t".join(REPORT_COLS) + "\n")
        for r in rows:
            f.write("\t".join(str(r[c]) for c in REPORT_COLS) + "\n")


def format_report(rows) -> list[str]:
    cols = ["tensor", "kind", "params", "bits", "sparsity", "fp32_B", "pruned_B", "quant_B", "huffman_B", "ans_B",
            "bits_per_weight", "huffman_over_entropy", "ans_over_entropy"]
    w = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(w[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).rjust(w[c]) for c in cols) for r in rows]
    return lines
