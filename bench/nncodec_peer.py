"""NNCodec 2.1 (Fraunhofer HHI's MPEG NNR / ISO/IEC 15938-17 codec: dependent quantisation +
DeepCABAC, no retraining) as a peer of ``pack``: the peer to beat (issue 16).

Reads a model dir, codes its whole state dict with NNCodec at quantisation parameter ``--qp``
into one bitstream, ``<out>/model.nnc``, decodes that file back and writes ``<out>`` as a
decodable model dir, exactly as ``asrcomp peer`` does (:func:`asrcomp.compress.peers.make_peer`):
``final.pt`` holds the *decoded* weights (so ``steps/decode.sh`` gives the peer's WER) and
model.yaml's ``packed_bytes`` is what a deployment ships (the bytes column of ``asrcomp
compare``), its history the source's plus one ``peer-nncodec`` record.

What goes where, nothing left out of the byte count:

- tensors with >= 2 dims ("weight" in NNR): one absolute step for all of them, about
  ``2**(qp/2**qp_density)`` (qp_density 2: qp -20 -> 1/32, -26 -> 3/256, -32 -> 1/256; no
  per-tensor scale, so a tensor of small values, e.g. a TT core, loses relatively more), with
  dependent (trellis-coded) quantisation: each value lands on one of two interleaved grids of
  spacing 2 steps, the trellis choosing the grid, so it is off by less than 2 steps (checked,
  as is that the decoded file gives exactly the encoder's reconstruction);
- every other float tensor (biases, batch-norm scale/shift and running statistics): NNCodec's
  ``nonweight_qp`` (-75 by default: step 2.4e-6), in the same bitstream;
- integer tensors (``num_batches_tracked``) that fit int32: NNCodec's lossless integer path, in
  the bitstream (a 0-dim tensor travels as shape (1,) and is reshaped back);
- anything NNCodec cannot take (an int beyond int32, an empty or complex tensor) is stored exactly
  in ``model.nnc_rest.zst`` (``torch.save`` + zstd, as peers.py does) and its bytes are added to
  ``packed_bytes``; the split is logged (none of this repo's models has any).

The codec is driven through ``nncodec.nnc_core`` (numpy + the C++ DeepCABAC extension), with the
steps and defaults of ``nncodec.nnc.compress`` / ``decompress`` for a parameter dict (the
defaults of NNCodec's network front-end ``nncodec.nn``: dependent quantisation, parameter
optimisation, row skipping): on this repo's speechocean762 models the bitstreams are
byte-identical to ``nncodec.nnc.compress(params, qp=..., row_skipping=True)``'s. ``nncodec.nnc``
itself imports NNCodec's image-classification demos (torchvision, opencv, scikit-learn, h5py),
which this needs none of. Not used: NNCodec's batch-norm folding, LSA, IOQ and opt_qp, which
need its PyTorch model wrapper, training data or both.

NNCodec is not a dependency of the project: install it beside it, in a venv that sees the
project's packages (torch, asrcomp) through a .pth file, e.g.::

    python3.11 -m venv /tmp/nncvenv
    printf '%s\\n' "$PWD/.venv/lib/python3.11/site-packages" "$PWD" \\
        > /tmp/nncvenv/lib/python3.11/site-packages/asrcomp_project.pth
    MAX_JOBS=1 /tmp/nncvenv/bin/pip install --no-deps nncodec==2.1.3   # builds DeepCABAC: needs g++

(``--no-deps``: NNCodec's requirements pin numpy<2 and pull torchvision, opencv, pandas ... for its
demos; none is needed here, and it runs on the project's numpy 2.) Then::

    /tmp/nncvenv/bin/python bench/nncodec_peer.py --qp -26 [--qp-density 2] [--nonweight-qp -75] \\
        <src-model-dir> <out-model-dir>

The log (command line, per-tensor bytes from the bitstream's units, total bytes, encode/decode
seconds, max abs weight error in steps of the qp) is printed and written to
``<out-model-dir>/log/nncodec.log``.
"""

from __future__ import annotations

import argparse
import copy
import io
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

PACKED_FILE = "model.nnc"
REST_FILE = "model.nnc_rest.zst"
ZSTD_LEVEL = 19
INSTALL_FIX = ("pip install --no-deps nncodec  (NNCodec 2.1.3, into a venv beside the project's: "
               "see the doc-string of bench/nncodec_peer.py)")


class Log:
    """print(..., flush=True) and the same line appended to a file."""

    def __init__(self, path: Path | None = None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")

    def __call__(self, msg: str = "") -> None:
        print(msg, flush=True)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(msg + "\n")


def import_nncodec():
    """``(nncodec.nnc_core, version)``; SystemExit naming the fix if NNCodec is not importable."""
    try:
        from nncodec import nnc_core  # noqa: F401 - also loads the compiled deepCABAC extension
        from nncodec.nnc_core import approximator, coder, nnr_model  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"error: NNCodec is not importable by {sys.executable}: {e}\n"
                         f"fix: {INSTALL_FIX}") from e
    try:
        from importlib.metadata import version
        ver = version("nncodec")
    except Exception:  # noqa: BLE001 - a source checkout on sys.path has no metadata
        ver = "unknown"
    return nnc_core, ver


def step_of(qp: int, qp_density: int) -> float:
    """NNR's quantisation step of ``qp`` (DeepCABAC's ``quantLayer``/``dequantLayer``)."""
    k = 1 << qp_density
    return (k + (qp & (k - 1))) * 2.0 ** ((qp >> qp_density) - qp_density)


def nnr_units(nnc_core, bitstream: bytes) -> list[tuple[str, int]]:
    """``(unit type, bytes)`` of each NNR unit of ``bitstream``, in order: the size field that
    starts each unit (1 flag bit, then 15 or 31 bits: the unit's bytes) and the 6-bit type."""
    units, pos = [], 0
    while pos < len(bitstream):
        b = bitstream[pos:pos + 4]
        if b[0] >> 7:
            size, at = int.from_bytes(b[:4], "big") & 0x7FFFFFFF, 4
        else:
            size, at = int.from_bytes(b[:2], "big") & 0x7FFF, 2
        if size <= at:
            raise RuntimeError(f"not an NNR bitstream: unit of {size} bytes at byte {pos}")
        kind = nnc_core.hls.NnrUnitType(bitstream[pos + at] >> 2).name
        units.append((kind, size))
        pos += size
    if pos != len(bitstream):
        raise RuntimeError(f"NNR units end at byte {pos}, the bitstream at {len(bitstream)}")
    return units


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, np.ndarray], dict, dict[str, torch.Tensor]]:
    """``(NNCodec parameters, how to restore each, the rest)``: float tensors as float32 arrays,
    integer and bool ones that fit as int32 arrays (0-dim ones as shape (1,)); the rest are
    tensors NNCodec cannot code, kept exactly."""
    params, restore, rest = {}, {}, {}
    i32 = torch.iinfo(torch.int32)
    for name, t in state.items():
        t = t.detach().cpu()
        if t.numel() == 0 or t.is_complex():
            rest[name] = t.clone()
            continue
        if t.is_floating_point():
            a = t.float().numpy()
        elif t.dtype == torch.bool or (int(t.min()) >= i32.min and int(t.max()) <= i32.max):
            a = t.to(torch.int32).numpy()
        else:
            rest[name] = t.clone()
            continue
        params[name] = np.ascontiguousarray(a.reshape(1) if t.dim() == 0 else a)
        restore[name] = (t.dtype, tuple(t.shape))
    return params, restore, rest


def encode(nnc_core, params: dict[str, np.ndarray], qp: int, qp_density: int, nonweight_qp: int,
           use_dq: bool = True, param_opt: bool = True, row_skipping: bool = True) -> tuple[bytes, dict]:
    """``(bitstream, encoder's quantised data)``: the steps of ``nncodec.nnc.compress(params, ...)``
    with its defaults (codebook_mode 0, scan_order 0, lambda_scale 0, cabac_unary_length_minus1 10,
    no opt_qp / ioq / lsa / bnf / fine-tuning / differences)."""
    model = nnc_core.nnr_model.NNRModel(params)
    approx_data = nnc_core.approximator.init_approx_data(params, model.model_info, qp_density=qp_density,
                                                         scan_order=0)
    info = nnc_core.approximator.ApproxInfo(approx_data, model.model_info, "uniform", 0, qp, False, not use_dq,
                                            10, 0, nonweight_qp=nonweight_qp, qp_per_tensor=None,
                                            int_quant_bw=False).approx_info
    enc_info = {"cabac_unary_length_minus1": 10, "param_opt_flag": param_opt, "partial_data_counter": 0,
                "general_profile_idc": 1, "node_id_present_flag": 1, "device_id": 0,
                "mps_parent_signalling_enabled_flag": 0, "parent_node_id_present_flag": 0,
                "temporal_context_modeling_flag": 0, "row_skip_enabled_flag": 1 if row_skipping else 0,
                "pre_signalling": 0}
    approx_enc = nnc_core.approximator.approx(info, model.model_info, approx_data, enc_info)
    bitstream, _ = nnc_core.coder.encode(enc_info=enc_info, model_info=model.model_info, approx_data=approx_enc,
                                         approx_param_base=None, update_base_param=False, tool_if=None)
    return bytes(bitstream), approx_enc


def encoder_reconstruction(nnc_core, approx_enc: dict) -> dict[str, np.ndarray]:
    """The weights the encoder's quantised levels stand for (what a decoder must reproduce)."""
    rec = copy.deepcopy(approx_enc)
    nnc_core.approximator.rec(rec)
    return rec["parameters"]


def decode(nnc_core, bitstream: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """``(parameters, NNCodec's header statistics)``: the steps of ``nncodec.nnc.decompress(bitstream)``."""
    model_info = {"parameter_type": {}, "parameter_dimensions": {}, "parameter_index": {}, "block_identifier": {},
                  "topology_storage_format": None, "topology_compression_format": None,
                  "performance_maps": {"mps": {}, "lps": {}},
                  "performance_map_flags": {f"{a}_{b}": {} for b in ("sparsification_flag", "pruning_flag",
                                                                     "unification_flag",
                                                                     "decomposition_performance_map_flag")
                                            for a in ("mps", "lps")}}
    hls_stats, oob = {}, {}
    data = nnc_core.coder.decode(bytearray(bitstream), model_info, hls_stats=hls_stats, oob_dict=oob)
    nnc_core.approximator.rec(data)
    data = nnc_core.approximator.recompose_params(model_info, data)
    return data["parameters"], hls_stats


def restore_state(decoded: dict[str, np.ndarray], restore: dict, rest: dict[str, torch.Tensor]) -> dict:
    out = {}
    for name, (dtype, shape) in restore.items():
        out[name] = torch.from_numpy(np.array(decoded[name])).reshape(shape).to(dtype)
    out.update(rest)
    return out


def write_rest(path: Path, rest: dict[str, torch.Tensor]) -> int:
    """``torch.save`` + zstd of the tensors NNCodec cannot code; returns the bytes written."""
    import zstandard

    from asrcomp.utils import atomic_open

    buf = io.BytesIO()
    torch.save(rest, buf)
    data = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(buf.getvalue())
    with atomic_open(path, "wb") as f:
        f.write(data)
    return len(data)


def nncodec_peer(src_dir, out_dir, qp: int, qp_density: int = 2, nonweight_qp: int = -75,
                 log: Log | None = None) -> Path:
    """Write the NNCodec peer of model dir ``src_dir`` at ``qp`` into ``out_dir`` (a decodable model dir)."""
    from asrcomp.modeldir import load_model_dir, save_model_dir
    from asrcomp.utils import InputError, atomic_open

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    log = log or Log()
    nnc_core, version = import_nncodec()
    if src_dir.resolve() == out_dir.resolve():
        raise InputError(out_dir, "output model dir is the input model dir", fix="write to a new dir")
    if not 0 <= qp_density <= 7:
        raise InputError("--qp-density", f"{qp_density} is outside NNR's range", fix="an integer 0..7 (default 2)")
    t0 = time.time()
    model, meta = load_model_dir(src_dir)
    state = model.state_dict()
    params, restore, rest = split_state(state)
    log(f"NNCodec {version}; {src_dir}: {len(state)} tensors, {sum(t.numel() for t in state.values()):,} values "
        f"({len(params)} coded by NNCodec, {len(rest)} kept beside it)")
    w_step, o_step = step_of(qp, qp_density), step_of(nonweight_qp, qp_density)
    log(f"qp {qp} (step {w_step:.6g}) for tensors of >= 2 dims, nonweight_qp {nonweight_qp} (step {o_step:.3g}) "
        f"for other float tensors, qp_density {qp_density}, dependent quantisation")

    t, c = time.time(), time.process_time()  # wall and CPU: on a busy machine only the CPU time means much
    bitstream, approx_enc = encode(nnc_core, params, qp, qp_density, nonweight_qp)
    enc_s, enc_cpu = time.time() - t, time.process_time() - c
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / PACKED_FILE, "wb") as f:
        f.write(bitstream)
    rest_bytes = write_rest(out_dir / REST_FILE, rest) if rest else 0
    if not rest and (out_dir / REST_FILE).exists():
        (out_dir / REST_FILE).unlink()  # stale from an earlier run
    nnc_bytes = (out_dir / PACKED_FILE).stat().st_size

    t, c = time.time(), time.process_time()
    decoded, _ = decode(nnc_core, (out_dir / PACKED_FILE).read_bytes())
    dec_s, dec_cpu = time.time() - t, time.process_time() - c
    if list(decoded) != list(params):
        raise RuntimeError(f"NNCodec self-check failed: decoded tensors {list(decoded)[:3]}... "
                           f"are not the encoded {list(params)[:3]}...")
    enc_rec = encoder_reconstruction(nnc_core, approx_enc)
    bad = [n for n in params if not np.array_equal(np.asarray(decoded[n]), np.asarray(enc_rec[n]))]
    if bad:
        raise RuntimeError(f"NNCodec self-check failed: {bad[:3]} decode to other values than the encoder's")
    back = restore_state(decoded, restore, rest)

    units = nnr_units(nnc_core, bitstream)
    ndu = [b for k, b in units if k == "NNR_NDU"]
    head = {}
    for k, b in units:
        if k != "NNR_NDU":
            head[k] = head.get(k, 0) + b
    per_tensor = len(ndu) == len(params)  # one data unit per tensor (no blocks), in the dict's order
    log(f"{'tensor':40s} {'shape':>16s} {'coded as':>14s} {'unit bytes':>10s} {'bits/value':>10s} {'step':>9s} "
        f"{'max|err|':>9s} {'err/step':>8s} {'rel rms err':>11s}")
    worst, groups, fails, se, sw = 0.0, {}, [], 0.0, 0.0
    for i, (name, w) in enumerate(state.items()):
        g = back[name]
        if name in rest:
            kind, step, nb = "rest (exact)", 0.0, None
        elif not w.is_floating_point():
            kind, step = "int32", 0.0
        elif w.dim() >= 2:
            kind, step = f"weight qp {int(approx_enc['qp'][name])}", step_of(int(approx_enc["qp"][name]), qp_density)
        else:
            kind, step = f"other qp {int(approx_enc['qp'][name])}", step_of(int(approx_enc["qp"][name]), qp_density)
        nb = ndu[list(params).index(name)] if per_tensor and name in params else None
        if w.is_floating_point() and w.numel():
            err = (g.double() - w.double()).abs()
            e = float(err.max())
            rel = float(err.pow(2).mean().sqrt() / w.double().pow(2).mean().sqrt().clamp_min(1e-30))
            if e >= 2 * step * (1 + 1e-5) + 1e-6 * float(w.abs().max()):
                fails.append(f"{name}: {e:.3g} >= 2 steps of {step:.3g}")
            if w.dim() >= 2:
                worst = max(worst, e)
                se, sw = se + float(err.pow(2).sum()), sw + float(w.double().pow(2).sum())
        else:
            e, rel = (0.0 if torch.equal(g, w) else float("inf")), 0.0
            if e:
                fails.append(f"{name}: changed")
        key = "weights (>= 2 dims)" if w.is_floating_point() and w.dim() >= 2 else "other tensors"
        gsum = groups.setdefault(key, [0, 0])
        gsum[0] += w.numel()
        gsum[1] += nb or 0
        bits = f"{8 * nb / w.numel():.3f}" if nb is not None else "-"
        log(f"{name:40s} {str(tuple(w.shape)):>16s} {kind:>14s} {nb if nb is not None else '-':>10} {bits:>10s} "
            f"{step:9.3g} {e:9.3g} {(e / step if step else 0.0):8.3f} {rel:11.3g}")
    if not per_tensor:
        log(f"(NNCodec reported {len(ndu)} data units for {len(params)} tensors: per-tensor bytes not shown)")
    if fails:
        raise RuntimeError("NNCodec round trip is off by 2 steps of the qp or more: " + "; ".join(fails[:5]))

    total = nnc_bytes + rest_bytes
    fp32 = sum(t.numel() * t.element_size() for t in state.values())
    log(f"bitstream {PACKED_FILE}: {nnc_bytes:,} bytes = headers {sum(head.values()):,} "
        f"({', '.join(f'{k} {v}' for k, v in head.items())}) + tensor units {sum(ndu):,}")
    for key, (n, b) in groups.items():
        if per_tensor:
            log(f"  {key}: {n:,} values in {b:,} bytes ({8 * b / max(n, 1):.3f} bits/value)")
    log(f"beside the bitstream ({REST_FILE}, exact): {rest_bytes:,} bytes for {len(rest)} tensors"
        + (f" ({', '.join(rest)})" if rest else ""))
    log(f"packed_bytes {total:,} ({fp32 / total:.1f}x smaller than the {fp32:,} bytes of the tensors as stored); "
        f"encode {enc_s:.2f} s (CPU {enc_cpu:.2f} s), decode {dec_s:.2f} s (CPU {dec_cpu:.2f} s); "
        f"max abs error of the >= 2-dim weights {worst:.4g} = {worst / w_step:.3f} steps of {w_step:.4g} "
        f"(bound: < 2), their relative rms error {(se / max(sw, 1e-30)) ** 0.5:.4f}; "
        f"decoded == encoder's reconstruction: yes")

    model.load_state_dict(back)
    record = {"stage": "peer-nncodec", "src": str(src_dir), "kind": "nncodec", "qp": qp, "qp_density": qp_density,
              "nonweight_qp": nonweight_qp, "nncodec_version": version}
    bpe = src_dir / "bpe.model"
    extra = {"packed_bytes": total, "packed_file": PACKED_FILE,
             "nncodec": {"version": version, "qp": qp, "qp_density": qp_density, "nonweight_qp": nonweight_qp,
                         "step": w_step, "bitstream_bytes": nnc_bytes, "rest_bytes": rest_bytes,
                         "rest_file": REST_FILE if rest else None, "encode_seconds": round(enc_s, 3),
                         "encode_cpu_seconds": round(enc_cpu, 3), "decode_seconds": round(dec_s, 3),
                         "decode_cpu_seconds": round(dec_cpu, 3), "max_abs_weight_error": worst,
                         "rel_rms_weight_error": (se / max(sw, 1e-30)) ** 0.5}}
    save_model_dir(out_dir, model, src_dir / "tokens.txt", features=meta.get("features", {}),
                   history=list(meta.get("history") or []) + [record], bpe_model=bpe if bpe.is_file() else None,
                   extra=extra)
    log(f"wrote {out_dir} in {time.time() - t0:.1f} s")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qp", type=int, required=True, help="NNR quantisation parameter of the >= 2-dim weights "
                    "(e.g. -20, -26, -32: lower is finer)")
    ap.add_argument("--qp-density", type=int, default=2, help="qp steps per doubling of the step are 2**this "
                    "(default 2, NNCodec's)")
    ap.add_argument("--nonweight-qp", type=int, default=-75, help="qp of the other float tensors (biases, "
                    "batch norm; default -75, NNCodec's)")
    ap.add_argument("src_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    a = ap.parse_args(argv)
    import_nncodec()  # before anything is written: SystemExit naming the fix
    if a.src_dir.resolve() == a.out_dir.resolve():
        print(f"error: {a.out_dir}: output model dir is the input model dir (fix: write to a new dir)", flush=True)
        return 2
    torch.set_num_threads(1)
    log = Log(a.out_dir / "log" / "nncodec.log")
    args = sys.argv[1:] if argv is None else argv
    log("# " + " ".join(shlex.quote(str(x)) for x in [sys.executable, __file__, *args]))
    from asrcomp.utils import InputError

    try:
        nncodec_peer(a.src_dir, a.out_dir, a.qp, a.qp_density, a.nonweight_qp, log=log)
    except InputError as e:
        log(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
