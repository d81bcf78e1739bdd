"""The ``asrcomp compress svd|tt`` stage: factorise layers of a model dir, report, fine-tune, save.

Each factorisation is a pure function ``model -> per-layer reports`` that swaps the
layers in place (:func:`apply_svd`, :func:`apply_tensorization`); :func:`compress_model_dir`
wraps one of them with loading, logging, fine-tuning (``asrcomp.train.fit``) and saving.
Everything that can be wrong with the options is found before the output dir is touched.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from asrcomp.compress import cp, svd, tt, tucker
from asrcomp.compress.dense import factor_dims, parse_shapes, uniform_ranks_search
from asrcomp.compress.layers import match_layers
from asrcomp.modeldir import check_token_set, load_model_dir, save_model_dir
from asrcomp.nnet import count_params
from asrcomp.nnet.factorized import (CpDense, TtDense, TuckerDense, check_shapes, geometry, get_module,
                                     replace_layer, tt_full_ranks, tt_ranks, tucker_ranks)
from asrcomp.train import fit, load_ctc_data, validation_loss
from asrcomp.utils import InputError

log = logging.getLogger(__name__)


def apply_svd(model: nn.Module, layers: str = "output", rank: int | None = None,
              energy_threshold: float | None = None, shrinkage_threshold: float = 1.0) -> list[dict]:
    """Replace each Linear/Conv1d matching ``layers`` by its truncated SVD (two layers ``b`` then ``a``).

    Rank from ``rank`` or ``energy_threshold``; a layer whose factorised form would have more
    than ``shrinkage_threshold`` times its weights is left alone (reported as skipped).
    """
    plans = []
    for name in match_layers(model, layers):  # check every layer before changing any
        layer = get_module(model, name)
        out_dim, in_dim = svd.weight_matrix(layer).shape
        try:
            k = svd.choose_rank(layer, rank, energy_threshold)
        except ValueError as e:
            raise ValueError(f"layer {name}: {e}") from e
        plans.append((name, layer, out_dim, in_dim, k))
    reports = []
    for name, layer, out_dim, in_dim, k in plans:
        r = {"layer": name, "method": "svd", "shape": f"{out_dim}x{in_dim}", "rank": k,
             "params_before": out_dim * in_dim, "params_after": out_dim * in_dim}
        if not svd.worth_factorizing(out_dim, in_dim, k, shrinkage_threshold):
            r.update(skipped=f"rank {k} keeps {svd.svd_params(out_dim, in_dim, k)} > {shrinkage_threshold} x "
                             f"{out_dim * in_dim} weights")
            reports.append(r)
            continue
        new, kept = svd.factorize_layer(layer, k)
        approx = new.a.weight.reshape(out_dim, k) @ new.b.weight.reshape(k, in_dim)
        r.update(kept_energy=round(kept, 5), params_after=svd.svd_params(out_dim, in_dim, k),
                 rel_error=round(svd.relative_error(svd.weight_matrix(layer), approx), 5))
        replace_layer(model, name, new, svd.spec(k, layer))
        reports.append(r)
    return reports


def parse_ranks(text: str | int | None) -> int | list[int] | None:
    """``"16"`` -> 16 (every rank), ``"16:24"`` -> [16, 24] (one per inner bond / mode)."""
    if text is None or isinstance(text, int):
        return text
    try:
        vals = [int(v) for v in str(text).split(":")]
    except ValueError as e:
        raise ValueError(f"ranks {text!r}: expected an integer or integers joined by ':'") from e
    return vals[0] if len(vals) == 1 else vals


def _factorize(method: str, w: torch.Tensor, base: nn.Module, row_shape, col_shape, ranks, seed: int):
    """An initialised TT / Tucker / CP module standing for ``base`` (weight matrix ``w``)."""
    g = geometry(base)
    bias = base.bias is not None
    if method == "tt":
        ranks = tt_ranks(ranks, row_shape, col_shape)
        m = TtDense(g["in_features"], g["out_features"], bias, g["conv"], row_shape, col_shape, ranks)
        m.set_cores(tt.tt_svd(w, row_shape, col_shape, ranks))
    elif method == "tucker":
        ranks = tucker_ranks(ranks, row_shape, col_shape)
        m = TuckerDense(g["in_features"], g["out_features"], bias, g["conv"], row_shape, col_shape, ranks)
        m.set_factors(*tucker.tucker_factors(w, row_shape, col_shape, ranks, seed))
    elif method == "cp":
        if not isinstance(ranks, int):
            raise ValueError("CP takes one rank (--ranks R)")
        m = CpDense(g["in_features"], g["out_features"], bias, g["conv"], row_shape, col_shape, ranks)
        m.set_factors(*cp.cp_factors(w, row_shape, col_shape, ranks, seed))
    else:
        raise ValueError(f"unknown method {method!r}: tt, tucker or cp")
    if bias:
        m.bias.data.copy_(base.bias.detach())
    return m


def _norm_ranks(method: str, ranks, row_shape, col_shape):
    """ValueError for malformed ranks (wrong count, < 1) before anything is decomposed."""
    if method == "tt":
        return tt_ranks(ranks, row_shape, col_shape)
    if method == "tucker":
        return tucker_ranks(ranks, row_shape, col_shape)
    if int(ranks) < 1:
        raise ValueError(f"CP rank must be >= 1, not {ranks}")
    return ranks


def _rel_error(m, w: torch.Tensor) -> float:
    with torch.no_grad():
        return svd.relative_error(w, m.weight())


def factor_params(method: str, row_shape, col_shape, ranks) -> int:
    """Weights of the ``method`` factors (bias aside) at ``ranks`` after capping, as the layer would hold."""
    if method == "tt":
        return tt.tt_params(row_shape, col_shape, tt_ranks(ranks, row_shape, col_shape))
    if method == "tucker":
        return tucker.tucker_params(row_shape, col_shape, tucker_ranks(ranks, row_shape, col_shape))
    return cp.cp_params(row_shape, col_shape, ranks)


def largest_shrinking_rank(method: str, row_shape, col_shape, limit: float) -> int:
    """The largest uniform rank whose factors hold at most ``limit`` weights; 0 if even rank 1 does not."""
    if method == "cp":
        return int(limit // (sum(row_shape) + sum(col_shape) + 1))
    top = max(tt_full_ranks(row_shape, col_shape)) if method == "tt" else max(list(row_shape) + list(col_shape))
    if factor_params(method, row_shape, col_shape, 1) > limit:
        return 0
    return uniform_ranks_search(1, top + 1, lambda r: -1 if factor_params(method, row_shape, col_shape, r) > limit
                                else 1) - 1  # the first rank over the limit, minus one (top + 1: none is)


def check_shrinks(name: str, method: str, row_shape, col_shape, ranks, n_before: int,
                  shrinkage_threshold: float, why: str = "") -> int:
    """Kaldi's shrinkage rule (``apply-svd --shrinkage-threshold``) for TT, Tucker and CP: the factors
    may hold at most ``shrinkage_threshold`` times the layer's weights. Returns their weight count;
    ValueError naming the layer, both counts and the largest uniform rank that would shrink it."""
    n_after = factor_params(method, row_shape, col_shape, ranks)
    limit = shrinkage_threshold * n_before
    if n_after <= limit:
        return n_after
    best = largest_shrinking_rank(method, row_shape, col_shape, limit)
    modes = f"{'x'.join(map(str, row_shape))},{'x'.join(map(str, col_shape))}"
    hint = (f"the largest uniform rank that shrinks it is {best} ({factor_params(method, row_shape, col_shape, best)}"
            f" weights)" if best else f"no rank shrinks it with modes {modes}: try more modes or other shapes")
    capped = _capped(method, row_shape, col_shape, ranks)
    asked = _rank_text(ranks) + (f", capped to {_rank_text(capped)}" if capped else "") + why
    raise ValueError(f"layer {name}: {method} rank {asked} (modes {modes}) gives {n_after} weights, "
                     f"not fewer than the {n_before} of the dense layer (shrinkage threshold {shrinkage_threshold}: "
                     f"at most {int(limit)}); {hint}")


def _rank_text(ranks) -> str:
    return ":".join(map(str, ranks)) if isinstance(ranks, (list, tuple)) else str(ranks)


def _capped(method: str, row_shape, col_shape, ranks) -> list[int] | None:
    """The TT / Tucker ranks actually used when ``ranks`` exceed what the modes allow, else None."""
    if method not in ("tt", "tucker"):
        return None
    norm = tt_ranks if method == "tt" else tucker_ranks
    asked, got = (norm(ranks, row_shape, col_shape, cap=c) for c in (False, True))
    return None if asked == got else got


def log_rank_cap(name: str, method: str, row_shape, col_shape, ranks) -> list[int] | None:
    """Warn when TT / Tucker ranks are capped at what the mode shapes allow; the capped ranks, or None."""
    got = _capped(method, row_shape, col_shape, ranks)
    if got is None:
        return None
    asked = (tt_ranks if method == "tt" else tucker_ranks)(ranks, row_shape, col_shape, cap=False)
    log.warning("layer %s: %s ranks %s capped to %s (the most modes %s,%s allow)", name, method,
                _rank_text(asked), _rank_text(got), "x".join(map(str, row_shape)), "x".join(map(str, col_shape)))
    return got


def apply_tensorization(model: nn.Module, method: str = "tt", layers: str = r"layers\.\d+\.(conv|linear)",
                        modes: int = 3, shapes: str | None = None, ranks: int | list[int] | None = None,
                        rel_error: float | None = None, seed: int = 0, shrinkage_threshold: float = 1.0) -> list[dict]:
    """Replace each matching Linear/Conv1d by a TT-matrix, Tucker or CP layer initialised from its weight.

    Mode shapes from ``shapes`` (``"8x8x6,12x12x8"``), else for tucker the Tucker-2 modes
    (out; in, kernel), else the most balanced ``modes``-way factorisation of each layer's dims; ranks from ``ranks`` or, for tt and tucker, the
    smallest uniform rank whose relative error ``||W - W'|| / ||W||`` is within ``rel_error``.
    A rank capped at what the modes allow is logged; factors holding more than ``shrinkage_threshold``
    times the layer's weights are refused (ValueError; with ``ranks`` before any layer changes).
    """
    if method not in ("tt", "tucker", "cp"):
        raise ValueError(f"unknown method {method!r}: tt, tucker or cp")
    if ranks is None and rel_error is None:
        raise ValueError("give --ranks or --rel-error")
    if ranks is None and method == "cp":
        raise ValueError("CP needs --ranks R (its ALS fit is too slow to search ranks)")
    plans = []
    for name in match_layers(model, layers):
        layer = get_module(model, name)
        w = svd.weight_matrix(layer)
        out_dim, in_dim = w.shape
        if shapes:
            row_shape, col_shape = parse_shapes(shapes)
        elif method == "tucker":  # Tucker-2 (Kim et al. 2016): output and input channels, kernel taps kept
            conv = geometry(layer)["conv"]
            row_shape, col_shape = [out_dim], [conv["in_channels"], conv["kernel"]] if conv else [in_dim]
        else:
            row_shape, col_shape = factor_dims(out_dim, modes), factor_dims(in_dim, modes)
        check_shapes(row_shape, col_shape, out_dim, in_dim, name=f"layer {name}")
        if ranks is not None:  # refuse a growing layer before any (slow) decomposition
            if method == "cp" and not isinstance(ranks, int):
                raise ValueError("CP takes one rank (--ranks R)")
            _norm_ranks(method, ranks, row_shape, col_shape)
            check_shrinks(name, method, row_shape, col_shape, ranks, w.numel(), shrinkage_threshold)
        plans.append((name, layer, w, row_shape, col_shape))
    reports = []
    for name, layer, w, row_shape, col_shape in plans:
        r_use = ranks
        if r_use is None:
            top = max(tt_full_ranks(row_shape, col_shape)) if method == "tt" else max(row_shape + col_shape)
            r_use = uniform_ranks_search(1, top, lambda r: _rel_error(
                _factorize(method, w, layer, row_shape, col_shape, r, seed), w) - rel_error)
            check_shrinks(name, method, row_shape, col_shape, r_use, w.numel(), shrinkage_threshold,
                          why=f" (the smallest within relative error {rel_error})")
        capped = log_rank_cap(name, method, row_shape, col_shape, r_use)
        m = _factorize(method, w, layer, row_shape, col_shape, r_use, seed)
        n_after = sum(p.numel() for n, p in m.named_parameters() if n != "bias")
        reports.append({"layer": name, "method": method, "shape": f"{w.shape[0]}x{w.shape[1]}",
                        "modes": f"{'x'.join(map(str, row_shape))},{'x'.join(map(str, col_shape))}",
                        "rank": ":".join(map(str, m.spec().get("ranks", [m.spec().get("rank")]))),
                        "params_before": w.numel(), "params_after": n_after,
                        "rel_error": round(_rel_error(m, w), 5)})
        if capped:
            reports[-1]["rank_asked"] = _rank_text(r_use)
        replace_layer(model, name, m, m.spec())
    return reports


def log_reports(reports: list[dict]) -> None:
    before = sum(r["params_before"] for r in reports)
    after = sum(r["params_after"] for r in reports)
    for r in reports:
        log.info("%s", "  ".join(f"{k}={v}" for k, v in r.items()))
    log.info("factorised layers: %d -> %d weights (%.2fx fewer)", before, after, before / max(after, 1))


def compress_model_dir(src_dir: str | os.PathLike, out_dir: str | os.PathLike, transform, record: dict,
                       train_dir, valid_dir, lang_dir, cfg, checkpoint: str | os.PathLike | None = None) -> Path:
    """Load ``src_dir``, apply ``transform(model) -> reports``, fine-tune for ``cfg.epochs`` and save ``out_dir``.

    ``checkpoint``: start from this ``epoch-N.pt`` of ``src_dir``'s training instead of its
    ``final.pt`` (restructuring part-way through training, then training on: the SVD
    paper's approach 2). ``transform`` raises ValueError for bad options; nothing is written then.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if src_dir.resolve() == out_dir.resolve():
        raise InputError(out_dir, "output model dir is the input model dir", fix="write to a new dir")
    model, meta = load_model_dir(src_dir)
    check_token_set(src_dir, Path(lang_dir) / "tokens.txt")
    if checkpoint is not None:
        try:
            model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
        except (OSError, KeyError, RuntimeError) as e:
            raise InputError(checkpoint, f"not a training checkpoint of {src_dir}: {e}",
                             fix="pass an epoch-N.pt written by the training of that model dir") from e
        record = dict(record, checkpoint=str(checkpoint))
    n_before = count_params(model)
    valid = load_ctc_data(valid_dir, lang_dir, model.subsampling_factor)
    loss_before = validation_loss(model, valid, cfg.max_frames, "cpu")
    try:
        reports = transform(model)
    except ValueError as e:
        raise InputError(src_dir, str(e), fix="check the layer pattern, shapes and ranks") from e
    log_reports(reports)
    loss_after = validation_loss(model, valid, cfg.max_frames, "cpu")
    log.info("model: %d -> %d parameters; valid CTC loss %.4f -> %.4f per token before fine-tuning",
             n_before, count_params(model), loss_before, loss_after)
    record = dict(record, source=str(src_dir), layers=reports, valid_loss_before=round(loss_before, 5),
                  valid_loss_factorised=round(loss_after, 5))
    if cfg.epochs > 0:
        return fit(model, out_dir, train_dir, valid_dir, lang_dir, cfg, history=meta.get("history"), stage=record)
    return save_model_dir(out_dir, model, src_dir / "tokens.txt", features=meta["features"],
                          history=list(meta.get("history", [])) + [record],
                          bpe_model=src_dir / "bpe.model" if (src_dir / "bpe.model").is_file() else None)
