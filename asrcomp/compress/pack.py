"""Deep Compression (Han, Mao, Dally, ICLR 2016) as ``asrcomp pack`` / ``asrcomp unpack``.

``pack`` reads a model dir and writes a model dir holding ``model.acz``, one binary file:

1. (optional) magnitude pruning to a target sparsity per tensor, then retraining with the
   pruned weights held at zero (:mod:`asrcomp.compress.prune`); ``prune_schedule: agp``
   prunes gradually during the retraining instead (Zhu & Gupta's cubic schedule);
2. per-tensor k-means weight sharing, ``bits`` per tensor chosen by name pattern
   (:mod:`asrcomp.compress.kmeans`) -- or, with ``target_bytes``, chosen from the measured
   validation-loss increase of each width under that byte budget
   (:mod:`asrcomp.compress.alloc`, table in ``bit_allocation.tsv``; or, ``quantizer: uniform``
   with ``allocation: equal-step``, one uniform grid step for every tensor, the finest whose
   file fits the budget) -- then fine-tuning of the
   centroids: each weight's gradient is replaced by the sum over its cluster and after every
   step each weight is re-set to its cluster's mean, so the weights stay exactly tied (and
   pruned ones exactly 0). That is Deep Compression's trained quantisation: the exact gradient
   of each centroid, no straight-through estimator needed (:class:`~asrcomp.compress.share.ShareHooks`);
   ``finetune_mode: ste`` instead trains latent weights straight through the sharing and
   re-assigns them to the nearest centroid after every step (:class:`~asrcomp.compress.share.SteShareHooks`;
   the bit allocation then leaves ``STE_RESERVE`` of the budget for the streams' change);
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
stored raw. ``fold_bn`` first folds each batch norm's statistics into its scale and shift
(:mod:`asrcomp.compress.bn_fold`); ``small_bits: 8`` then stores the constant tensors this
leaves as one value each and the others as 8-bit codes on a power-of-two grid
(:func:`asrcomp.compress.share.grid_codes`), rounding the model to that grid the same way.

The options added after the first version (AGP, bit allocation, ``seed``) are written into the
file's history only when set, so a pack under the original options writes the same bytes as
before them (tested against recorded SHA-256s).

The parts, by job: this module holds the options (:class:`PackConfig`, :func:`build_configs`)
and the drivers (:func:`pack`, :func:`unpack`); :mod:`asrcomp.compress.alloc` the bit
allocation; :mod:`asrcomp.compress.share` the weight
sharing and the hooks that keep it through fine-tuning; :mod:`asrcomp.compress.pack_format`
the ``.acz`` file (layout, streams, checksum); :mod:`asrcomp.compress.pack_report`
``pack_report.tsv``. The header ``pack`` writes holds the model.yaml architecture, token
table (and bpe.model bytes, in the payload), fbank options and history.
"""

from __future__ import annotations

import copy
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

from asrcomp.compress.alloc import (TABLE_NAME, device_of, format_table, grid_widths, plan_bits, plan_step,
                                    sensitivity_batches, write_table)
from asrcomp.compress.ans import library_version
from asrcomp.compress.bn_fold import fold_batch_norms
from asrcomp.compress.distill import DistillLoss, check_compatible
from asrcomp.compress.kmeans import check_bits
from asrcomp.compress.pack_format import CODERS, encode_state, payload_part, read_packed, write_packed
from asrcomp.compress.pack_report import format_report, ratio_text, report_rows, write_report
from asrcomp.compress.prune import GradualMaskHooks, MaskHooks, prune_model, sparsity_of
from asrcomp.compress.share import QUANTIZERS, SMALL_BITS, quantised_names, round_small, share_weights
from asrcomp.modeldir import check_token_set, load_model_dir, save_model_dir
from asrcomp.nnet import build_model
from asrcomp.train import FitHooks, TrainConfig, fit, state_digest
from asrcomp.utils import InputError, atomic_open, options_from_dict

log = logging.getLogger(__name__)

PACKED_NAME = "model.acz"
REPORT_NAME = "pack_report.tsv"
SCHEDULES = ("oneshot", "agp")
ALLOCATIONS = ("sensitivity", "equal-step")
FINETUNE_MODES = ("tied", "ste")
# the fraction of target_bytes the sensitivity allocation leaves free under finetune_mode ste, whose
# re-assignments change the coded streams (synth seed 0: the file grew 1.0 % over its trial pack)
STE_RESERVE = 0.02
# PackConfig's options before the plan options (AGP, bit allocation, seed): always in the history
ORIGINAL_OPTIONS = ("bits", "bits_output", "prune_sparsity", "prune_epochs", "finetune_epochs", "lr", "index_bits",
                    "coder", "train")


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
    # gradual pruning (AGP, Zhu & Gupta 2017): "agp" raises the sparsity from prune_initial_sparsity
    # to prune_sparsity over prune_ramp_epochs (default prune_epochs - 1, at least 1) of the
    # retraining, masks recomputed every prune_every optimiser steps (default: 10 updates);
    # "oneshot" prunes to prune_sparsity at once before the retraining
    prune_schedule: str = "oneshot"
    prune_initial_sparsity: float = 0.0
    prune_ramp_epochs: int | None = None
    prune_every: int | None = None
    # bit allocation: with target_bytes, the widths per tensor (from bits_choices) minimising the
    # summed measured validation-loss increase with model.acz <= target_bytes; bits is then unused
    target_bytes: int | None = None
    bits_choices: str | int = "2,3,4,5,6"
    sensitivity_batches: int = 4  # validation batches the sensitivity is measured on
    # how target_bytes is met: "sensitivity" (the widths above) or, with the uniform quantizer,
    # "equal-step": one grid step for every shared tensor (MPEG NNR's single quantisation
    # parameter), the finest whose file fits; it measures nothing, so needs no validation data
    allocation: str = "sensitivity"
    seed: int | None = None  # training seed of the retraining and fine-tuning (default: the train config's)
    # the tensors not shared: fold_bn folds batch-norm statistics into scale and shift (mean 0 and
    # var 1 are then constants); small_bits 8 stores constants as one value and the rest as 8-bit
    # codes on a power-of-two grid, 16 as float16
    fold_bn: bool = False
    small_bits: int = 16
    # kmeans (Deep Compression) or uniform: an entropy-coded uniform grid, width b the step
    # rms * 2**(2 - b) (asrcomp.compress.uniform)
    quantizer: str = "kmeans"
    # a teacher of the retraining and fine-tuning (quantised distillation, Polino et al. 2018; Mishra &
    # Marr's Apprentice 2018): loss (1 - a) CTC + a T^2 KL, as asrcomp distill. The teacher is the
    # input model as it was before pruning, or the model dir ``teacher`` (e.g. the chain's baseline)
    distill_alpha: float = 0.0
    distill_temperature: float = 2.0
    teacher: str | None = None
    # the fine-tuning after sharing: "tied" (Deep Compression: the centroids learn, assignments
    # fixed) or "ste" (straight-through on latent weights that may change cluster: SteShareHooks)
    finetune_mode: str = "tied"

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
            for b in self.bits_choice_list():
                check_bits(b)
        except ValueError as e:
            raise InputError(where, str(e), fix="bits 1-16 (e.g. --bits 5 --bits-output 4 or "
                             "--bits 'output=4,default=5'), sparsity 0 <= s < 1") from e
        self._check_plan(where)
        if self.coder not in CODERS:
            raise InputError(where, f"unknown coder {self.coder!r}", fix="coder: huffman or ans")
        if self.quantizer not in QUANTIZERS:
            raise InputError(where, f"unknown quantizer {self.quantizer!r}", fix="quantizer: kmeans or uniform")
        if self.small_bits not in SMALL_BITS:
            raise InputError(where, f"small_bits {self.small_bits!r} is not one of {SMALL_BITS}",
                             fix="small_bits: 16 (float16) or 8")

    def _check_plan(self, where) -> None:
        bad = None
        if self.prune_schedule not in SCHEDULES:
            bad = f"prune_schedule {self.prune_schedule!r} is not one of {', '.join(SCHEDULES)}"
        elif not 0.0 <= self.prune_initial_sparsity < 1.0:
            bad = f"prune_initial_sparsity must be in [0, 1), got {self.prune_initial_sparsity}"
        elif self.prune_every is not None and self.prune_every < 1:
            bad = f"prune_every must be >= 1 optimiser step, got {self.prune_every}"
        elif self.prune_schedule == "agp" and any(s > 0 for _, s in self.sparsity_rules()) and \
                not 1 <= self.ramp_epochs() <= self.prune_epochs:
            bad = (f"agp needs 1 <= prune_ramp_epochs <= prune_epochs, got {self.ramp_epochs()} and "
                   f"{self.prune_epochs}")
        elif self.target_bytes is not None and self.target_bytes < 1:
            bad = f"target_bytes must be a positive byte count, got {self.target_bytes}"
        elif self.sensitivity_batches < 1:
            bad = f"sensitivity_batches must be >= 1, got {self.sensitivity_batches}"
        elif self.allocation not in ALLOCATIONS:
            bad = f"allocation {self.allocation!r} is not one of {', '.join(ALLOCATIONS)}"
        elif self.allocation == "equal-step" and (self.quantizer != "uniform" or self.target_bytes is None):
            bad = "allocation equal-step needs quantizer uniform and target_bytes"
        elif self.finetune_mode not in FINETUNE_MODES:
            bad = f"finetune_mode {self.finetune_mode!r} is not one of {', '.join(FINETUNE_MODES)}"
        elif not 0.0 <= self.distill_alpha <= 1.0 or self.distill_temperature <= 0:
            bad = (f"distill_alpha must be in [0, 1] and distill_temperature > 0, got {self.distill_alpha} and "
                   f"{self.distill_temperature}")
        elif self.teacher is not None and self.distill_alpha == 0:
            bad = f"teacher {self.teacher} is unused with distill_alpha 0"
        if bad:
            raise InputError(where, bad, fix="prune_schedule oneshot|agp (agp retrains: prune_epochs >= 1), "
                             "prune_ramp_epochs 1..prune_epochs, target_bytes > 0, allocation sensitivity or "
                             "equal-step (with --quantizer uniform), distill_alpha 0..1 (> 0 with a teacher)")

    def ramp_epochs(self) -> int:
        return self.prune_ramp_epochs if self.prune_ramp_epochs is not None else max(1, self.prune_epochs - 1)

    def bits_choice_list(self) -> list[int]:
        """``bits_choices`` as sorted widths: ``"2,3,4"`` (or space-separated), ``"2-6"``, a list or one int."""
        spec = self.bits_choices
        parts = spec if isinstance(spec, (list, tuple)) else re.split(r"[,\s]+", str(spec).strip())
        vals = []
        for part in parts:
            lo, dash, hi = str(part).strip().partition("-")
            try:
                vals += list(range(_int(lo), _int(hi) + 1)) if dash else [_int(lo)]
            except ValueError as e:
                raise ValueError(f"bits_choices: {part!r} is not a width or a range like 2-6") from e
        if not vals:
            raise ValueError("bits_choices: empty")
        return sorted(set(vals))

    def history_options(self) -> dict:
        """The options recorded in the packed file's history: the original ones always, each
        later one only when set (a pack under the original options writes the same bytes)."""
        out, default = {}, PackConfig()
        for k, v in dataclasses.asdict(self).items():
            if k in ORIGINAL_OPTIONS or v != getattr(default, k):
                out[k] = v
        return out

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
    """``(PackConfig, TrainConfig)`` from a recipe config (``pack:``, or the recipes' ``compress.pack:``,
    and ``train:``) and flags."""
    d = (yaml.safe_load(Path(conf).read_text()) if conf else {}) or {}
    popts = dict(d.get("pack") or (d.get("compress") or {}).get("pack") or {})
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
    if missing and pcfg.target_bytes is None:
        raise InputError("--bits", f"no bits for {', '.join(missing)}", fix="add a default, e.g. 'default=5'")
    sparsity = {n: resolve(srules, n, 0.0) for n in names}
    kd = _teacher(model, pcfg, lang_dir)
    training = pcfg.prune_epochs > 0 or pcfg.finetune_epochs > 0
    measuring = pcfg.target_bytes is not None and pcfg.allocation == "sensitivity"
    if training or measuring:
        if not (train_dir and valid_dir and lang_dir):
            raise InputError("pack", "fine-tuning and --target-bytes need <train-data> <valid-data> <lang-dir>",
                             fix="pass them, or set --prune-epochs 0 --finetune-epochs 0 and no --target-bytes")
        check_token_set(src_dir, Path(lang_dir) / "tokens.txt")
    if tcfg is None:
        tcfg = TrainConfig()
    if pcfg.seed is not None:
        tcfg = dataclasses.replace(tcfg, seed=pcfg.seed)
    history = list(meta.get("history") or [])
    options = pcfg.history_options()
    sub = []
    t0 = time.time()
    if any(s > 0 for s in sparsity.values()):
        if pcfg.prune_schedule == "agp":
            sub.append(_prune_gradually(model, sparsity, pcfg, tcfg, out_dir, train_dir, valid_dir, lang_dir, history,
                                        kd))
        else:
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
                    hooks=FitHooks(loss=kd[0], after_backward=mh.after_backward, after_step=mh.after_step,
                                   state={"masks": mh}, identity={"sparsity": sparsity, **kd[1]}),
                    history=history, stage={"stage": "pack-prune", "sparsity": sparsity, **kd[1]})
                sub.append(str(out_dir / "prune"))
    plan, step = None, None
    if pcfg.target_bytes is not None:
        final_sub = sub + ([str(out_dir / "quant")] if pcfg.finetune_epochs > 0 else [])
        if pcfg.allocation == "equal-step":
            step, plan = _plan_step(model, names, sparsity, pcfg, src_dir, meta, history, options, final_sub)
        else:
            bits, plan = _allocate(model, names, sparsity, pcfg, tcfg, valid_dir, lang_dir, src_dir, meta,
                                   history, options, final_sub)
    t1 = time.time()
    sh = share_weights(model, bits, pcfg.quantizer, step, ste=pcfg.finetune_mode == "ste")
    if step is not None:
        bits = grid_widths(model, names)
    log.info("%s weight sharing of %d tensors in %.2f s", pcfg.quantizer, len(bits), time.time() - t1)
    if pcfg.finetune_epochs > 0:
        fit(model, out_dir / "quant", train_dir, valid_dir, lang_dir,
            dataclasses.replace(tcfg, epochs=pcfg.finetune_epochs),
            hooks=FitHooks(loss=kd[0], after_backward=sh.after_backward, after_step=sh.after_step, state={"share": sh},
                           identity={"bits": bits, "sparsity": sparsity, "grid_step": step, **kd[1],
                                     **({"finetune_mode": "ste"} if pcfg.finetune_mode == "ste" else {})}),
            history=history, stage={"stage": "pack-finetune", "bits": bits, **kd[1]})
        sub.append(str(out_dir / "quant"))
    model.cpu().eval()
    sh.after_step(model)  # exact ties (and zeros) whatever training did last
    _store_small(model, names, pcfg)
    state = model.state_dict()

    this = _history_entry(src_dir, options, bits, sparsity, sub, step)
    t2 = time.time()
    data, head_bytes, header, stats = _encode(state, names, bits, pcfg, meta, src_dir, history + [this])
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
    extra = {"packed_bytes": len(data), "packed_file": PACKED_NAME,
             "packed_bytes_without_bpe": total["weights_bytes"],
             "packed_bits_per_param": round(8 * len(data) / max(total["params"], 1), 3),
             "pack_seconds": round(time.time() - t0, 2)}
    if plan is not None:
        rows_a, info = plan
        info["packed_bytes"] = len(data)
        if rows_a is not None:
            write_table(out_dir / TABLE_NAME, rows_a, info)
            log.info("bit allocation: target %s bytes, estimate %s (rest of the file %s + chosen tensors), trial "
                     "pack %s, packed %s bytes (%s the target)", f"{info['target_bytes']:,}",
                     f"{info['estimated_bytes']:,}", f"{info['rest_bytes']:,}", f"{info['trial_bytes']:,}",
                     f"{len(data):,}", "within" if len(data) <= info["target_bytes"] else "OVER")
        else:
            log.info("equal-step allocation: target %s bytes, grid step %.6g, trial pack %s, packed %s bytes (%s the "
                     "target)", f"{info['target_bytes']:,}", step, f"{info['trial_bytes']:,}", f"{len(data):,}",
                     "within" if len(data) <= info["target_bytes"] else "OVER")
        if len(data) > info["target_bytes"]:
            log.warning("the fine-tuned model packs to %d bytes, over the target %d: fine-tuning changed a "
                        "stream (merged or zeroed centroids)", len(data), info["target_bytes"])
        extra["bit_allocation"] = info
    save_model_dir(out_dir, model, tokens_txt=src_dir / "tokens.txt", features=meta.get("features", {}),
                   history=history + [this], bpe_model=_bpe(src_dir), extra=extra)
    return out_dir


def _store_small(model, names, pcfg: PackConfig) -> None:
    """The tensors not shared, in place, as the file stores them (batch norms folded first, if asked)."""
    if pcfg.fold_bn:
        folded = fold_batch_norms(model)
        log.debug("folded the statistics of %d batch norms", len(folded))
    round_small(model, set(names), pcfg.small_bits)


def _bpe(src_dir: Path) -> Path | None:
    bpe = src_dir / "bpe.model"
    return bpe if bpe.is_file() else None


def _history_entry(src_dir, options: dict, bits: dict, sparsity: dict, sub: list[str], step=None) -> dict:
    entry = {"stage": "pack", "src": str(src_dir), **options, "bits_per_tensor": bits,
             "sparsity_per_tensor": {n: s for n, s in sparsity.items() if s > 0}, "fine_tuned_in": sub}
    if step is not None:
        entry["grid_step"] = step
    return entry


def _encode(state, names, bits, pcfg: PackConfig, meta: dict, src_dir: Path, history: list[dict]):
    """``(file bytes, header bytes, header, per-tensor statistics)`` of the ``.acz`` of ``state``."""
    tokens_txt = src_dir / "tokens.txt"
    bpe = _bpe(src_dir)
    header = {"arch": meta["arch"], "tokens_txt": tokens_txt.read_text(encoding="utf-8"),
              "token_type": meta["tokens"]["token_type"], "features": meta.get("features", {}),
              "history": history, "bpe_model": None}
    if pcfg.coder == "ans":
        header.update(coder="ans", ans_library=library_version())
    entries, pay, stats = encode_state(state, set(names), bits, pcfg.index_bits, pcfg.coder, pcfg.small_bits)
    if bpe is not None:
        header["bpe_model"] = pay.put(zlib.compress(bpe.read_bytes(), 9))
    data, head_bytes = write_packed(None, header, entries, pay)
    return data, head_bytes, header, stats


def _teacher(model, pcfg: PackConfig, lang_dir) -> tuple[DistillLoss | None, dict]:
    """The retraining's loss and its identity: CTC (``None, {}``), or distillation from the model dir
    ``pcfg.teacher`` or else from a frozen copy of ``model`` as it is now (the input, before pruning
    and sharing)."""
    if pcfg.distill_alpha == 0:
        return None, {}
    ident = {"distill_alpha": pcfg.distill_alpha, "distill_temperature": pcfg.distill_temperature}
    if pcfg.teacher is None:
        teacher = copy.deepcopy(model)
    else:
        tdir = Path(pcfg.teacher)
        if not (tdir / "model.yaml").is_file():
            raise InputError("--teacher", f"{tdir} is not a model dir (no model.yaml)",
                             fix="name a trained model dir, e.g. the chain's baseline exp/<config>/tdnn")
        teacher, tmeta = load_model_dir(tdir)
        if lang_dir is not None:
            check_compatible(tdir, tmeta, model, Path(lang_dir))
        ident.update(teacher=str(tdir), teacher_weights=state_digest(teacher))
    return DistillLoss(teacher, pcfg.distill_alpha, pcfg.distill_temperature), ident


def _prune_gradually(model, sparsity, pcfg: PackConfig, tcfg: TrainConfig, out_dir: Path, train_dir, valid_dir,
                     lang_dir, history, kd) -> str:
    """AGP (:class:`GradualMaskHooks`) over the prune retraining; final.pt averages only the
    checkpoints taken at the final masks (the epochs from the end of the ramp on)."""
    ramp = pcfg.ramp_epochs()
    gh = GradualMaskHooks(sparsity, pcfg.prune_initial_sparsity, ramp, pcfg.prune_every)
    gh.prune_initial(model)
    avg = min(tcfg.avg, pcfg.prune_epochs - ramp + 1) if tcfg.avg > 0 else tcfg.avg
    if avg != tcfg.avg:
        log.info("AGP: final.pt of the prune retraining averages the last %d epoch(s) (those at the final "
                 "masks), not %d", avg, tcfg.avg)
    fit(model, out_dir / "prune", train_dir, valid_dir, lang_dir,
        dataclasses.replace(tcfg, epochs=pcfg.prune_epochs, avg=avg,
                            start_epoch=tcfg.start_epoch if tcfg.start_epoch <= 1 or pcfg.finetune_epochs == 0 else 0),
        hooks=FitHooks(loss=kd[0], after_backward=gh.after_backward, after_step=gh.after_step, begin=gh.begin,
                       state={"masks": gh}, identity={"sparsity": sparsity, "prune_schedule": gh.identity(), **kd[1]}),
        history=history, stage={"stage": "pack-prune", "sparsity": sparsity, **gh.identity(), **kd[1]})
    got = {n: round(sparsity_of(model.get_parameter(n)), 4) for n in gh.final}
    log.info("AGP done: sparsity per tensor %s", got)
    return str(out_dir / "prune")


def _trial_bytes(model, names, bits: dict, step: float | None, sparsity, pcfg: PackConfig, src_dir: Path,
                 meta: dict, history: list[dict], options: dict, final_sub: list[str]) -> int:
    """Bytes of the file pack would write for a copy of ``model`` shared with ``bits`` (or one
    uniform grid ``step``) and no fine-tuning: the allocations' trial pack."""
    m = copy.deepcopy(model).cpu()
    share_weights(m, bits, pcfg.quantizer, step)
    if step is not None:
        bits = grid_widths(m, names)
    _store_small(m, names, pcfg)
    this = _history_entry(src_dir, options, bits, sparsity, final_sub, step)
    return len(_encode(m.state_dict(), names, bits, pcfg, meta, src_dir, history + [this])[0])


def _allocate(model, names, sparsity, pcfg: PackConfig, tcfg: TrainConfig, valid_dir, lang_dir, src_dir: Path,
              meta: dict, history: list[dict], options: dict, final_sub: list[str]):
    """Widths per tensor under ``pcfg.target_bytes`` (:func:`asrcomp.compress.alloc.plan_bits`):
    ``(bits, (table rows, info))``; the trial packs share k-means and header with the real one."""
    widths = pcfg.bits_choice_list()
    t = time.time()
    data = sensitivity_batches(valid_dir, lang_dir, model, tcfg, pcfg.sensitivity_batches)

    def file_bytes(bits: dict) -> int:
        return _trial_bytes(model, names, bits, None, sparsity, pcfg, src_dir, meta, history, options, final_sub)

    target = pcfg.target_bytes
    if pcfg.finetune_mode == "ste":
        target = int(target * (1 - STE_RESERVE))
        log.info("bit allocation under %s bytes: %.0f %% of the target left for the STE fine-tuning's re-assignments",
                 f"{target:,}", 100 * STE_RESERVE)
    try:
        bits, rows, info = plan_bits(model, names, widths, target, data, device_of(tcfg), file_bytes,
                                     pcfg.coder, pcfg.index_bits, quantizer=pcfg.quantizer)
        if target != pcfg.target_bytes:
            info.update(target_bytes=int(pcfg.target_bytes), allocation_target_bytes=target)
    except ValueError as e:
        raise InputError("--target-bytes", str(e), fix="raise the target, allow fewer bits (--bits-choices), "
                         "or prune more") from e
    model.cpu()
    for line in format_table(rows):
        log.info("%s", line)
    log.info("bit allocation in %.1f s over %d validation batches: base loss %.4f, predicted increase %.4f; "
             "widths %s", time.time() - t, len(data), info["base_loss"], info["predicted_delta_loss"],
             ", ".join(f"{n} {b}" for n, b in bits.items()))
    return bits, (rows, info)


def _plan_step(model, names, sparsity, pcfg: PackConfig, src_dir: Path, meta: dict, history: list[dict],
               options: dict, final_sub: list[str]):
    """The one uniform grid step of ``allocation: equal-step`` (:func:`asrcomp.compress.alloc.plan_step`):
    ``(step, (None, info))``; the trial packs share grid and header with the real one."""
    t = time.time()

    def file_bytes(step: float) -> int:
        return _trial_bytes(model, names, dict.fromkeys(names), step, sparsity, pcfg, src_dir, meta, history,
                            options, final_sub)

    weights = [model.get_parameter(n).detach().cpu().numpy() for n in names]
    try:
        step, nbytes, trials = plan_step(weights, pcfg.target_bytes, file_bytes)
    except ValueError as e:
        raise InputError("--target-bytes", str(e), fix="raise the target, or prune") from e
    log.info("equal-step allocation in %.1f s, %d trial packs: step %.6g, %s bytes", time.time() - t,
             len(trials), step, f"{nbytes:,}")
    info = {"allocation": "equal-step", "target_bytes": int(pcfg.target_bytes), "grid_step": float(step),
            "trial_bytes": int(nbytes), "trials": len(trials)}
    return step, (None, info)


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
