"""The peers of ``pack``: what a user gets in two lines, as decodable model dirs (``asrcomp peer``).

- ``fp16``: every floating tensor rounded to float16, ``torch.save`` + zstd;
- ``int8``: every weight with >= 2 dims quantised symmetrically per output channel (dim 0) to
  int8 -- ``q = round(w / s)``, ``s = max|w| / 127`` over the channel -- with float32 scales;
  biases, batchnorm and other small tensors stay float32 (as PyTorch's and onnxruntime's
  dynamic quantisation leave them); ``torch.save`` + zstd.

The out dir is a model dir like any other: ``final.pt`` holds the *dequantised* float32
weights, so it decodes with ``steps/decode.sh`` and its WER is the peer's; the compressed
file (``model.fp16.zst`` / ``model.int8.zst``) is what a deployment ships, its size is
``packed_bytes`` in model.yaml (the bytes column of the comparison table), the size before
zstd ``peer_bytes_before_zstd``. :func:`load_peer` reads the file back into exactly the
weights of ``final.pt`` (tested).
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import torch

from asrcomp.compress.codes import decode_entry
from asrcomp.modeldir import load_model_dir, save_model_dir
from asrcomp.utils import InputError, atomic_open

log = logging.getLogger(__name__)

KINDS = ("fp16", "int8")
ZSTD_LEVEL = 19
FORMAT = "asrcomp-peer-1"


def file_name(kind: str) -> str:
    return f"model.{kind}.zst"


def quantise_state(state: dict[str, torch.Tensor], kind: str) -> dict:
    """The stored form of ``state``: float16 tensors, or int8 codes + per-channel scales."""
    if kind not in KINDS:
        raise ValueError(f"unknown peer kind {kind!r}: one of {KINDS}")
    out = {}
    for name, t in state.items():
        t = t.detach().cpu()
        if not t.is_floating_point():
            out[name] = t.clone()
        elif kind == "fp16":
            out[name] = t.half()
        elif t.dim() >= 2:
            w = t.float().reshape(t.shape[0], -1)
            scale = w.abs().amax(dim=1) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
            out[name] = {"q": q.reshape(t.shape), "scale": scale, "dtype": str(t.dtype).replace("torch.", "")}
        else:
            out[name] = t.clone()
    return out


def dequantise_state(stored: dict) -> dict[str, torch.Tensor]:
    """Float32 (or the original dtype) tensors of :func:`quantise_state`'s output (or of
    :func:`asrcomp.compress.quant.quantise_state`'s: bit-packed codes, a table, per-channel scales,
    :func:`asrcomp.compress.codes.decode_entry`)."""
    out = {}
    for name, v in stored.items():
        if isinstance(v, dict) and "codes" in v:  # bit-packed codes of asrcomp quantize
            out[name] = decode_entry(v)
        elif isinstance(v, dict):
            q, scale = v["q"], v["scale"]
            w = q.float().reshape(q.shape[0], -1) * scale[:, None]
            out[name] = w.reshape(q.shape).to(getattr(torch, v["dtype"]))
        elif v.dtype == torch.float16:
            out[name] = v.float()
        else:
            out[name] = v
    return out


def write_peer(path, stored: dict, kind: str, level: int = ZSTD_LEVEL) -> tuple[int, int]:
    """``torch.save`` + zstd into ``path``; returns (bytes before zstd, bytes written)."""
    import zstandard

    buf = io.BytesIO()
    torch.save({"format": FORMAT, "kind": kind, "state": stored}, buf)
    raw = buf.getvalue()
    data = zstandard.ZstdCompressor(level=level).compress(raw)
    with atomic_open(path, "wb") as f:
        f.write(data)
    return len(raw), len(data)


def load_peer(path) -> tuple[str, dict[str, torch.Tensor]]:
    """``(kind, dequantised state dict)`` of a peer file; InputError naming it if it is not one."""
    import zstandard

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "peer model file not found", fix="run asrcomp peer to create it")
    try:
        raw = zstandard.ZstdDecompressor().decompress(path.read_bytes())
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError("not an asrcomp peer file")
        return obj["kind"], dequantise_state(obj["state"])
    except (zstandard.ZstdError, RuntimeError, ValueError, KeyError, EOFError) as e:
        raise InputError(path, f"not a readable peer model: {e}", fix="recreate it with asrcomp peer") from e


def make_peer(src_dir, out_dir, kind: str, level: int = ZSTD_LEVEL) -> Path:
    """Write the ``kind`` peer of model dir ``src_dir`` into ``out_dir`` (a decodable model dir)."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if kind not in KINDS:
        raise InputError("--kind", f"unknown peer kind {kind!r}", fix=f"one of {', '.join(KINDS)}")
    if src_dir.resolve() == out_dir.resolve():
        raise InputError(out_dir, "output model dir is the input model dir", fix="write to a new dir")
    t0 = time.time()
    model, meta = load_model_dir(src_dir)
    state = model.state_dict()
    stored = quantise_state(state, kind)
    model.load_state_dict(dequantise_state(stored))
    out_dir.mkdir(parents=True, exist_ok=True)
    raw, size = write_peer(out_dir / file_name(kind), stored, kind, level)
    _, back = load_peer(out_dir / file_name(kind))
    bad = [k for k, v in model.state_dict().items() if not torch.equal(v, back[k])]
    if bad:
        raise RuntimeError(f"peer self-check failed: {bad[:3]} do not round-trip")
    fp32 = sum(t.numel() * t.element_size() for t in state.values())
    record = {"stage": f"peer-{kind}", "src": str(src_dir), "kind": kind, "zstd_level": level}
    bpe = src_dir / "bpe.model"
    save_model_dir(out_dir, model, src_dir / "tokens.txt", features=meta.get("features", {}),
                   history=list(meta.get("history") or []) + [record], bpe_model=bpe if bpe.is_file() else None,
                   extra={"packed_bytes": size, "packed_file": file_name(kind), "peer_bytes_before_zstd": raw})
    log.info("%s peer of %s: %s bytes (%s before zstd -%d), %.1fx smaller than the fp32 tensors, in %.1f s",
             kind, src_dir, f"{size:,}", f"{raw:,}", level, fp32 / size, time.time() - t0)
    return out_dir
