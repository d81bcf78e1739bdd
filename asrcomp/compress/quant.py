"""Low-bit linear quantisation beside k-means weight sharing (``asrcomp quantize``).

Every floating weight with >= 2 dims (the ones ``peer --kind int8`` quantises) becomes codes
from a small table ``lut`` times a per-output-channel scale: ``w[c, j] = scale[c] * lut[code[c, j]]``
(the bit-packed stored form and its decoding: :mod:`asrcomp.compress.codes`).

- ``--bits 8`` / ``--bits 4`` (``int8`` / ``int4``): symmetric per output channel (dim 0),
  ``s = max|w_c| / q``, ``q = 2**(b-1) - 1`` (127 / 7), ``code = round(w / s)`` in ``-q..q``:
  the error is at most half a step ``s / 2`` of the channel (as PyTorch's and onnxruntime's
  per-channel weight quantisation; 2q + 1 levels, the -2**(b-1) code unused so 0 is exact).
- ``--bits 2`` (``ternary``, Trained Ternary Quantization, Zhu et al. 2017, with the threshold of
  Ternary Weight Networks, Li & Liu 2016): per tensor ``delta = 0.7 mean|w|``, weights above
  ``delta`` become ``W_p`` (the mean of them), below ``-delta`` ``-W_n`` (the mean of their
  magnitudes), the rest 0: exactly three values per tensor, asymmetric as in TTQ. Stored five
  trits per byte (1.6 bits per weight; log2 3 = 1.585).
- ``--bits 1`` (``binary``, XNOR-Net's binary weights / BWN, Rastegari et al. 2016): ``sign(w)``
  times ``alpha_c = mean|w_c|`` per output channel (the L2-optimal scale), 1 bit per weight.

As XNOR-Net, TTQ and DoReFa do, the first and the last layer stay at 8 bits under ``--bits 2``
and ``--bits 1`` (``--keep`` regex, default ``^layers\\.0\\.|^output\\.``; ``--keep none``
quantises them too). Biases, batchnorm and other 1-dim tensors are stored as float16 (as
``pack`` stores them). Codes are bit-packed (8 / 4 / 1.6 / 1 bits per weight), then the
whole state goes through ``peers``' ``torch.save`` + zstd writer (``model.<kind>.zst``, read
back by :func:`asrcomp.compress.peers.load_peer`); its size is ``packed_bytes`` in model.yaml.
``final.pt`` holds exactly the dequantised weights (checked before anything is written), so
the out dir decodes like any model dir.

Optional fine-tuning (``--epochs N``) trains with the straight-through estimator (BinaryConnect,
XNOR-Net, DoReFa, TTQ): the forward and backward passes see the quantised weights, the
optimiser's update lands on full-precision shadow weights (``fit``'s ``after_step`` hook adds
the update the optimiser made to the quantised weights to the shadows and re-quantises them).
Departures: the gradient passes unchanged (identity STE, as TWN; no clipping, since max
scaling never saturates) and TTQ's ``W_p`` / ``W_n`` are re-estimated from the shadow weights
every step rather than learnt by their own gradients.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

import torch
from torch import nn

from asrcomp.compress import peers
from asrcomp.compress.codes import dequantise, pack_codes
from asrcomp.guards import NonFiniteError, check_model_finite
from asrcomp.modeldir import check_token_set, load_model_dir, save_model_dir
from asrcomp.train import FitHooks, fit
from asrcomp.utils import InputError

log = logging.getLogger(__name__)

KINDS = {8: "int8", 4: "int4", 2: "ternary", 1: "binary"}
KEEP_LOW_BITS = r"^layers\.0\.|^output\."  # first and last layer of the TDNN / DNN (factorised forms too)
KEEP_BITS = 8
TWN_DELTA = 0.7  # Ternary Weight Networks' threshold: 0.7 mean|w|


def kind_of(bits: int) -> str:
    if bits not in KINDS:
        raise InputError("--bits", f"{bits} is not one of {sorted(KINDS)}",
                         fix="8 or 4 (linear per channel), 2 (ternary), 1 (binary)")
    return KINDS[bits]


# ----------------------------------------------------------------------------- quantisers (torch)


def quantise(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(codes int64 (out, rest), lut float32, scale float32 (out,))`` of weight ``w`` (dim 0 = output channel)."""
    x = w.detach().float().reshape(w.shape[0], -1)
    one = torch.ones(x.shape[0], dtype=torch.float32, device=x.device)
    if bits in (8, 4):
        q = 2 ** (bits - 1) - 1
        s = x.abs().amax(dim=1) / q
        s = torch.where(s > 0, s, one)
        codes = torch.round(x / s[:, None]).clamp_(-q, q).long() + q
        return codes, torch.arange(-q, q + 1, dtype=torch.float32, device=x.device), s
    if bits == 2:
        a = x.abs()
        delta = TWN_DELTA * a.mean()
        pos, neg = x > delta, x < -delta
        zero = torch.zeros((), device=x.device)
        wp = x[pos].mean() if bool(pos.any()) else zero
        wn = a[neg].mean() if bool(neg.any()) else zero
        codes = pos.long() * 2 + (~pos & ~neg).long()  # 0: -W_n, 1: 0, 2: W_p
        return codes, torch.stack([-wn, zero, wp]).float(), one
    if bits == 1:
        alpha = x.abs().mean(dim=1)
        return (x >= 0).long(), torch.tensor([-1.0, 1.0], device=x.device), alpha
    raise ValueError(f"bits must be one of {sorted(KINDS)}, not {bits}")


def fake_quant(w: torch.Tensor, bits: int) -> torch.Tensor:
    """The quantised values of ``w`` in its shape and dtype."""
    return dequantise(*quantise(w, bits)).reshape(w.shape).to(w.dtype)


def encode_entry(w: torch.Tensor, bits: int) -> dict:
    """The stored form of one weight: bit-packed codes, the lut, per-channel scales (float32)."""
    codes, lut, scale = quantise(w, bits)
    return {"codes": torch.from_numpy(pack_codes(codes.cpu().numpy(), len(lut))), "levels": len(lut),
            "shape": list(w.shape), "lut": lut.cpu(), "scale": scale.cpu(), "bits": bits,
            "dtype": str(w.dtype).replace("torch.", "")}


# ----------------------------------------------------------------------------- plan and STE fine-tuning


def plan_bits(model: nn.Module, bits: int, keep: str | None = None) -> dict[str, int]:
    """``{parameter name: bits}`` for every floating weight with >= 2 dims; ``keep`` ones at 8 bits."""
    if keep is None:
        keep = KEEP_LOW_BITS if bits <= 2 else ""
    if keep in ("none", "None"):
        keep = ""
    try:
        pat = re.compile(keep) if keep else None
    except re.error as e:
        raise InputError("--keep", f"{keep!r} is not a regular expression: {e}", fix="e.g. '^output\\.'") from e
    return {n: (max(bits, KEEP_BITS) if pat and pat.search(n) else bits)
            for n, p in model.named_parameters() if p.is_floating_point() and p.dim() >= 2}


class SteHooks:
    """``fit`` hooks for straight-through-estimator training of the quantised weights.

    The model's weights are always ``fake_quant(shadow)``; after each optimiser step the
    change the optimiser made to them is added to the full-precision ``shadow`` weights,
    which are then quantised again into the model.
    """

    def __init__(self, model: nn.Module, bits: dict[str, int]):
        self.bits = bits
        params = dict(model.named_parameters())
        self.shadow = {n: params[n].detach().clone() for n in bits}
        self.applied: dict[str, torch.Tensor] = {}
        self._requantise(model)

    @torch.no_grad()
    def _requantise(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for n, b in self.bits.items():
            p = params[n]
            self.shadow[n] = self.shadow[n].to(p.device)
            q = fake_quant(self.shadow[n], b)
            p.copy_(q)
            self.applied[n] = q

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for n in self.bits:
            p = params[n]
            self.shadow[n] = self.shadow[n].to(p.device) + (p.detach() - self.applied[n].to(p.device))
        self._requantise(model)

    def state_dict(self) -> dict:
        """The shadow weights, checkpointed with the fine-tuning (``FitHooks.state``) so a resumed run goes on
        from them rather than from their quantised values."""
        return {"shadow": {n: s.detach().cpu() for n, s in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.bits):
            raise ValueError(f"shadow weights for {sorted(state['shadow'])}, this run quantises {sorted(self.bits)}")
        self.shadow = {n: t.clone() for n, t in state["shadow"].items()}
        self.applied = {n: fake_quant(t, self.bits[n]) for n, t in self.shadow.items()}

    def entries(self) -> dict[str, dict]:
        """The stored form of every quantised weight, from the shadows (the model holds their fake_quant)."""
        return {n: encode_entry(self.shadow[n].cpu(), b) for n, b in self.bits.items()}


# ----------------------------------------------------------------------------- the stage


def quantise_state(state: dict[str, torch.Tensor], bits: dict[str, int], entries: dict[str, dict] | None = None
                   ) -> dict:
    """The stored form of ``state``: packed entries for ``bits``' tensors, float16 for other floating ones."""
    out = {}
    for name, t in state.items():
        t = t.detach().cpu()
        if name in bits:
            out[name] = entries[name] if entries and name in entries else encode_entry(t, bits[name])
        elif t.is_floating_point():
            out[name] = t.half()
        else:
            out[name] = t.clone()
    return out


def quantize_model_dir(src_dir, out_dir, bits: int, keep: str | None = None, epochs: int = 0, tcfg=None,
                       train_dir=None, valid_dir=None, lang_dir=None, level: int = peers.ZSTD_LEVEL) -> Path:
    """Write the ``bits``-bit linear quantisation of model dir ``src_dir`` into ``out_dir`` (decodable);
    with ``epochs`` > 0, STE fine-tuning first (needs ``tcfg`` and the train / valid / lang dirs)."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    kind = kind_of(bits)
    if src_dir.resolve() == out_dir.resolve():
        raise InputError(out_dir, "output model dir is the input model dir", fix="write to a new dir")
    if epochs > 0:
        if not (train_dir and valid_dir and lang_dir) or tcfg is None:
            raise InputError("quantize", "fine-tuning needs <train-data> <valid-data> <lang-dir>",
                             fix="pass them, or --epochs 0")
        check_token_set(src_dir, Path(lang_dir) / "tokens.txt")
    t0 = time.time()
    model, meta = load_model_dir(src_dir)
    try:
        check_model_finite(model, grads=False)
    except NonFiniteError as e:
        raise InputError(src_dir / "final.pt", str(e), fix="retrain or repair the source model") from e
    plan = plan_bits(model, bits, keep)
    history = list(meta.get("history") or [])
    record = {"stage": f"quant-{kind}", "src": str(src_dir), "bits": bits,
              "keep": keep if keep is not None else (KEEP_LOW_BITS if bits <= 2 else ""), "epochs": epochs,
              "zstd_level": level, "bits_per_tensor": plan}
    entries = None
    if epochs > 0:
        ste = SteHooks(model, plan)
        fit(model, out_dir / "ste", train_dir, valid_dir, lang_dir, dataclasses.replace(tcfg, epochs=epochs, avg=1),
            hooks=FitHooks(after_step=ste.after_step, state={"ste": ste}, identity={"bits": plan}),
            history=history, stage=dict(record, stage="quant-ste"))
        model.cpu()
        entries = ste.entries()
        record["fine_tuned_in"] = str(out_dir / "ste")
    model.eval()
    state = model.state_dict()
    stored = quantise_state(state, plan, entries)
    model.load_state_dict(peers.dequantise_state(stored))
    if entries is not None:  # the trained model held exactly the quantised shadows
        moved = max(float((state[n].float() - model.state_dict()[n].float()).abs().max()) for n in plan)
        log.info("largest change from the fine-tuned weights to the stored ones: %.3g", moved)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = peers.file_name(kind)
    raw, size = peers.write_peer(out_dir / name, stored, kind, level)
    _, back = peers.load_peer(out_dir / name)
    got = model.state_dict()
    bad = [k for k, v in got.items() if not torch.equal(v, back[k])]
    if bad:
        raise RuntimeError(f"quantize self-check failed: {bad[:3]} do not round-trip")
    n_q = sum(state[n].numel() for n in plan)
    code_bytes = sum(int(v["codes"].numel()) for k, v in stored.items() if k in plan)
    fp32 = sum(t.numel() * t.element_size() for t in state.values())
    bpe = src_dir / "bpe.model"
    save_model_dir(out_dir, model, src_dir / "tokens.txt", features=meta.get("features", {}),
                   history=history + [record], bpe_model=bpe if bpe.is_file() else None,
                   extra={"packed_bytes": size, "packed_file": name, "peer_bytes_before_zstd": raw,
                          "quant_code_bytes": code_bytes, "quant_weights": n_q,
                          "packed_bits_per_param": round(8 * size / max(sum(t.numel() for t in state.values()), 1), 3)})
    log.info("%s quantisation of %s: %d weights in %d tensors as %s code bytes (%.2f bits each); file %s bytes "
             "(%s before zstd -%d), %.1fx smaller than the fp32 tensors, in %.1f s", kind, src_dir, n_q, len(plan),
             f"{code_bytes:,}", 8 * code_bytes / max(n_q, 1), f"{size:,}", f"{raw:,}", level, fp32 / size,
             time.time() - t0)
    return out_dir


__all__ = ["KINDS", "quantise", "fake_quant", "encode_entry", "plan_bits", "SteHooks", "quantise_state",
           "quantize_model_dir"]
