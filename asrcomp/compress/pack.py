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

The parts, by job: this module holds the options (:class:`PackConfig`, :func:`build_configs`)
and the drivers (:func:`pack`, :func:`unpack`); :mod:`asrcomp.compress.share` the weight
sharing and the hooks that keep it through fine-tuning; :mod:`asrcomp.compress.pack_format`
the ``.acz`` file (layout, streams, checksum); :mod:`asrcomp.compress.pack_report`
``pack_report.tsv``. The header ``pack`` writes holds the model.yaml architecture, token
table (and bpe.model bytes, in the payload), fbank options and history.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from asrcomp.compress.ans import library_version
from asrcomp.compress.kmeans import check_bits
from asrcomp.compress.pack_format import CODERS, encode_state, payload_part, read_packed, write_packed
from asrcomp.compress.pack_report import format_report, ratio_text, report_rows, write_report
from asrcomp.compress.prune import MaskHooks, prune_model
from asrcomp.compress.share import quantised_names, round_small_to_half, share_weights
from asrcomp.modeldir import check_token_set, load_model_dir, save_model_dir
from asrcomp.nnet import build_model
from asrcomp.train import FitHooks, TrainConfig, fit
from asrcomp.utils import InputError, atomic_open, options_from_dict

log = logging.getLogger(__name__)

PACKED_NAME = "model.acz"
REPORT_NAME = "pack_report.tsv"


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


# ----------------------------------------------------------------------------- drivers


def build_configs(conf: str | None, flags: dict, train_set: list[str] | None = None):
    """``(PackConfig, TrainConfig)`` from a recipe config (``pack:`` and ``train:``) and flags."""
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
             total["huffman_bits"], ratio_text(total["huffman_bits"], total["entropy_bits"]) or "-",
             total["ans_bits"], ratio_text(total["ans_bits"] or 0, total["entropy_bits"]) or "-")
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
            bpe = Path(td) / "bpe.model"
            bpe.write_bytes(zlib.decompress(payload_part(packed, header["bpe_model"])))
        save_model_dir(out_dir, model, tok, features=header["features"], history=header["history"],
                       bpe_model=bpe, extra={"packed_bytes": packed.stat().st_size,
                                             "unpacked_from": str(packed)})
    log.info("unpacked %s into %s in %.2f s", packed, out_dir, time.time() - t0)
    return out_dir
