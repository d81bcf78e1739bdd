"""Structured channel pruning of the TDNN with real speed-ups (``asrcomp prune-channels``).

Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network
Slimming"): the BatchNorm scale ``gamma_c`` of a hidden channel says how much the channel
matters, so

1. **sparsity training** -- ``sparsity_epochs`` of CTC fine-tuning (``asrcomp.train.fit``) with an
   L1 penalty ``l1 * sum_c |gamma_c|`` on the scales of every hidden layer (``layers.<i>.bn``).
   It enters as its subgradient ``l1 * sign(gamma)``, added to the scales' gradients by fit's
   ``after_backward`` hook (:class:`BnL1Hooks`, as the paper's own ``updateBN`` does). fit
   back-propagates the loss per token, so this is the gradient of ``CTC / tokens + l1 * sum|gamma|``;
   the logged train loss stays plain CTC, comparable with the other stages;
2. **selection** (:func:`select_channels`) -- one global threshold on ``|gamma|`` over all hidden
   layers keeps ``round(keep * total)`` channels, after a per-layer floor (the largest
   ``max(1, ceil(min_layer_keep * C_i))`` of every layer) so that no layer collapses;
3. **shrinking** (:func:`shrink_tdnn`) -- the layers are rebuilt physically smaller: layer i's conv
   output channels and its BatchNorm, and layer i+1's conv input channels (dim 1 of its
   ``(out, in, taps)`` weight) or the output Linear's input features. The model's arch records
   the widths (``Tdnn(layer_dims=...)``), so ``build_model`` rebuilds it from model.yaml, and every
   matrix product is smaller (FLOPs and time fall with the widths);
4. **fine-tuning** -- ``epochs`` of plain CTC training of the smaller model, as every stage does.

What is exact and what is not. A layer is conv -> ReLU -> BatchNorm -> dropout, so in eval mode a
channel's output is ``gamma_c * (relu_c - mean_c) / sqrt(var_c + eps) + beta_c``: with ``gamma_c = 0``
it is the constant ``beta_c``, not 0 (and for any ``gamma_c`` ``beta_c`` is its mean under the
running statistics, so the best constant). Removing the channel therefore folds ``beta_c`` into the
next layer's bias: ``b'_o = b_o + sum_c beta_c * sum_k W[o, c, k]`` (summed over the kernel taps k)
for a next conv, ``b' = b + W[:, removed] @ beta[removed]`` for the output Linear.

- For the output Linear the fold is exact on every frame.
- For a next conv it is exact on every frame whose taps all fall inside the utterance. Within
  ``padding`` frames of an utterance's start or end (1 frame for a ``[-1, 0, 1]`` context, at that
  layer's input frame rate) some taps read the zero padding (the TDNN zeroes outputs beyond an
  utterance's length), where the removed channel contributed 0, not ``beta_c``: the folded bias
  adds ``beta_c * W[o, c, k]`` for those taps too. That error then spreads to the later layers'
  edge frames only (the network's total context). A static bias cannot do better; the
  fine-tuning after the cut absorbs it.
- Channels pruned with ``gamma_c != 0`` lose their varying part ``gamma_c (relu_c - mean_c) / sigma_c``
  (the approximation the sparsity training makes small).

Only a plain TDNN is pruned (Conv1d at ``layers.<i>.conv``, BatchNorm1d at ``layers.<i>.bn``, Linear
``output``): a model with factorised layers (svd / tt) is refused with the layer named -- put
``prune_channels`` before svd and tt in the chain. DNN models are refused too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch
from torch import nn

from asrcomp.modeldir import check_token_set, load_model_dir, save_model_dir
from asrcomp.nnet import build_model, count_params, flops_per_second
from asrcomp.nnet.tdnn import Tdnn
from asrcomp.train import FitHooks, fit, load_ctc_data, validation_loss
from asrcomp.utils import InputError

log = logging.getLogger(__name__)

MIN_LAYER_KEEP = 0.1  # default per-layer floor: the largest 10 % (at least one) of every layer stay
CHAIN_HINT = "put prune_channels before svd and tt in the chain, e.g. chain: [prune_channels, svd, tt, distill, pack]"


# ----------------------------------------------------------------------------- checks and scores


def check_prunable(model: nn.Module) -> None:
    """ValueError unless ``model`` is a plain :class:`Tdnn`: ``nn.Conv1d`` (with bias) at ``layers.<i>.conv``,
    affine ``nn.BatchNorm1d`` with running statistics at ``layers.<i>.bn``, ``nn.Linear`` (with bias) ``output``.

    The message names the first layer that is not, e.g. a factorised one left by svd / tt.
    """
    if not isinstance(model, Tdnn):
        kind = model.arch().get("type") if hasattr(model, "arch") else type(model).__name__
        raise ValueError(f"prune_channels works on TDNN models (Conv1d layers with batch norm), not {kind!r}")
    factorised = sorted(getattr(model, "factorized", None) or {})
    for i, layer in enumerate(model.layers):
        name = f"layers.{i}.conv"
        if name in factorised or type(layer.conv) is not nn.Conv1d or layer.conv.bias is None:
            raise ValueError(f"layer {name} is a {type(layer.conv).__name__}, not a plain Conv1d with bias "
                             f"(factorised by an earlier stage?): prune_channels shrinks plain Conv1d layers; "
                             f"{CHAIN_HINT}")
        bn = layer.bn
        if type(bn) is not nn.BatchNorm1d or not bn.affine or not bn.track_running_stats:
            raise ValueError(f"layers.{i}.bn is not an affine BatchNorm1d with running statistics")
    if "output" in factorised or type(model.output) is not nn.Linear or model.output.bias is None:
        raise ValueError(f"layer output is a {type(model.output).__name__}, not a plain Linear with bias "
                         f"(factorised by svd?): {CHAIN_HINT}")


def gamma_names(model: nn.Module) -> list[str]:
    """Parameter names of the hidden layers' BatchNorm scales: ``["layers.0.bn.weight", ...]``."""
    return [f"layers.{i}.bn.weight" for i in range(len(model.layers))]


def channel_scores(model: nn.Module) -> list[torch.Tensor]:
    """``|gamma|`` of every hidden layer's BatchNorm: a list of ``(C_i,)`` float32 CPU tensors, layer order."""
    return [layer.bn.weight.detach().abs().float().cpu() for layer in model.layers]


def bn_l1(model: nn.Module) -> torch.Tensor:
    """The penalty's sum: ``sum_i sum_c |gamma_ic|`` over the hidden layers (scalar, differentiable)."""
    return sum(layer.bn.weight.abs().sum() for layer in model.layers)


class BnL1Hooks:
    """``after_backward`` for :class:`asrcomp.train.FitHooks`: adds ``l1 * sign(gamma)`` to the gradient of
    every named BatchNorm scale -- the subgradient of ``l1 * sum|gamma|`` (network slimming's ``updateBN``)."""

    def __init__(self, l1: float, names: list[str]):
        self.l1, self.names = float(l1), list(names)

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for n in self.names:
            p = params[n]
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.add_(torch.sign(p), alpha=self.l1)


# ----------------------------------------------------------------------------- selection


def layer_floors(dims: list[int], min_layer_keep: float) -> list[int]:
    """Per layer, the channels always kept: ``min(C_i, max(1, ceil(min_layer_keep * C_i)))``."""
    if not 0.0 <= min_layer_keep <= 1.0:
        raise ValueError(f"min_layer_keep must be in [0, 1], not {min_layer_keep}")
    return [min(c, max(1, math.ceil(min_layer_keep * c - 1e-9))) for c in dims]


def channel_budget(dims: list[int], keep: float, min_layer_keep: float = MIN_LAYER_KEEP) -> int:
    """Channels kept in all for widths ``dims``: ``round(keep * sum(dims))``; ValueError when ``keep`` is
    outside ``(0, 1]`` or below what the per-layer floors already keep."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1], not {keep}")
    total, floor = sum(dims), sum(layer_floors(dims, min_layer_keep))
    k = int(round(keep * total))
    if k < floor:
        raise ValueError(f"keep {keep} ({k} of {total} channels) is below the per-layer floor: min_layer_keep "
                         f"{min_layer_keep} keeps at least {floor} (a fraction {floor / total:.3f}); "
                         f"raise keep or lower min_layer_keep")
    return k


def select_channels(scores: list[torch.Tensor], keep: float, min_layer_keep: float = MIN_LAYER_KEEP
                    ) -> list[torch.Tensor]:
    """Which channels of each layer to keep: a list of sorted int64 index tensors, ``(K_i,)`` per layer.

    ``scores``: ``(C_i,)`` per layer (``|gamma|``). Exactly :func:`channel_budget` channels are kept:
    first each layer's ``layer_floors`` highest-scoring ones, then the highest scores over all layers
    (one global threshold). Ties go to the earlier layer and the lower index (deterministic).
    """
    dims = [len(s) for s in scores]
    budget = channel_budget(dims, keep, min_layer_keep)
    floors = layer_floors(dims, min_layer_keep)
    chosen = []
    rest_score, rest_layer, rest_idx = [], [], []
    for i, (s, f) in enumerate(zip(scores, floors)):
        order = torch.argsort(-s.float(), stable=True)
        mask = torch.zeros(len(s), dtype=torch.bool)
        mask[order[:f]] = True
        chosen.append(mask)
        rest = order[f:]
        rest_score.append(s.float()[rest])
        rest_layer.append(torch.full((len(rest),), i, dtype=torch.int64))
        rest_idx.append(rest)
    score, layer, idx = torch.cat(rest_score), torch.cat(rest_layer), torch.cat(rest_idx)
    pick = torch.argsort(-score, stable=True)[:budget - sum(floors)]  # cat order: earlier layer, higher score
    for i, c in zip(layer[pick].tolist(), idx[pick].tolist()):
        chosen[i][c] = True
    return [m.nonzero().flatten() for m in chosen]


def global_threshold(scores: list[torch.Tensor], kept: list[torch.Tensor]) -> float:
    """The largest score of a removed channel (0.0 if none was removed): every kept channel above the floor
    scores at least this."""
    removed = [s[_complement(k, len(s))] for s, k in zip(scores, kept)]
    vals = torch.cat(removed) if removed else torch.zeros(0)
    return float(vals.max()) if vals.numel() else 0.0


def _complement(kept: torch.Tensor, n: int) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[kept] = False
    return mask.nonzero().flatten()


# ----------------------------------------------------------------------------- shrinking


@torch.no_grad()
def shrink_tdnn(model: Tdnn, kept: list[torch.Tensor]) -> Tdnn:
    """A new, physically smaller :class:`Tdnn` (CPU, eval mode) keeping channels ``kept[i]`` of hidden layer i.

    ``kept``: one sorted int64 index tensor ``(K_i,)`` per hidden layer (:func:`select_channels`).
    Layer i: conv weight ``(C_i, C_{i-1}, taps) -> (K_i, K_{i-1}, taps)``, conv bias and the four
    BatchNorm tensors ``(C_i,) -> (K_i,)``; output Linear weight ``(V, C_L) -> (V, K_L)``. Each removed
    channel's constant ``beta_c`` is folded into the next layer's bias (``beta_c`` times the next
    weights summed over taps): exact wherever all taps fall inside the utterance (see the module
    doc-string). ``model`` is not changed.
    """
    check_prunable(model)
    if len(kept) != len(model.layers):
        raise ValueError(f"kept: {len(kept)} index lists for {len(model.layers)} layers")
    kept = [torch.as_tensor(k, dtype=torch.int64).cpu() for k in kept]
    for i, (k, layer) in enumerate(zip(kept, model.layers)):
        c = layer.conv.out_channels
        if k.numel() == 0 or k.unique().numel() != k.numel() or int(k.min()) < 0 or int(k.max()) >= c:
            raise ValueError(f"kept[{i}]: need distinct channel indices in 0..{c - 1}, at least one")
    kept = [k.sort().values for k in kept]
    new = build_model(dict(model.arch(), layer_dims=[len(k) for k in kept]))
    new.eval()

    def fold(w: torch.Tensor, b: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight ``(out, C_i[, taps])`` and bias ``(out,)`` of the layer after hidden layer i, with
        layer i's removed channels folded into the bias and sliced away from the weight (dim 1)."""
        bn = model.layers[i].bn
        gone = _complement(kept[i], bn.num_features)
        beta = bn.bias.detach().float().cpu()[gone]  # (R,): what a removed channel outputs at gamma = 0
        w = w.detach().float().cpu()
        per_channel = w[:, gone].sum(dim=2) if w.dim() == 3 else w[:, gone]  # (out, R): summed over taps
        return w[:, kept[i]], b.detach().float().cpu() + per_channel @ beta

    for i, (old, lay) in enumerate(zip(model.layers, new.layers)):
        w, b = old.conv.weight.detach().float().cpu(), old.conv.bias.detach().float().cpu()
        if i > 0:
            w, b = fold(w, b, i - 1)
        k = kept[i]
        lay.conv.weight.copy_(w[k])
        lay.conv.bias.copy_(b[k])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(lay.bn, name).copy_(getattr(old.bn, name).detach().cpu()[k])
        lay.bn.num_batches_tracked.copy_(old.bn.num_batches_tracked)
    w, b = fold(model.output.weight, model.output.bias, len(model.layers) - 1)
    new.output.weight.copy_(w)
    new.output.bias.copy_(b)
    return new


def widths(model: Tdnn) -> list[int]:
    """Output channels of every hidden layer."""
    return [layer.conv.out_channels for layer in model.layers]


# ----------------------------------------------------------------------------- the stage


def prune_channels_model_dir(src_dir, out_dir, keep: float, l1: float = 1e-4, sparsity_epochs: int = 0,
                             epochs: int = 0, min_layer_keep: float = MIN_LAYER_KEEP, tcfg=None, train_dir=None,
                             valid_dir=None, lang_dir=None) -> Path:
    """Channel-prune the TDNN of model dir ``src_dir`` to a fraction ``keep`` of its hidden channels, into ``out_dir``.

    ``sparsity_epochs`` of CTC + ``l1 * sum|gamma|`` training first (model dir ``out_dir/sparsity``),
    then the cut, then ``epochs`` of CTC fine-tuning (in ``out_dir``; with 0 the cut model is saved
    as is). Training needs ``tcfg`` (a TrainConfig: lr, batch size, ...) and the data / lang dirs;
    ``tcfg.start_epoch`` applies to the fine-tuning after the cut (the sparsity training resumes,
    or with 1 restarts too). Bad options and unprunable models are InputErrors before anything is written.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if src_dir.resolve() == out_dir.resolve():
        raise InputError(out_dir, "output model dir is the input model dir", fix="write to a new dir")
    if l1 < 0:
        raise InputError("--l1", f"{l1} is negative", fix="e.g. 1e-4 (0: no sparsity penalty)")
    if sparsity_epochs < 0 or epochs < 0:
        raise InputError("--epochs", "epoch counts must be >= 0", fix="e.g. --sparsity-epochs 2 --epochs 2")
    training = sparsity_epochs > 0 or epochs > 0
    if training:
        if not (train_dir and valid_dir and lang_dir) or tcfg is None:
            raise InputError("prune-channels", "training (sparsity or fine-tuning epochs) needs <train-data> "
                             "<valid-data> <lang-dir>", fix="pass them, or --sparsity-epochs 0 --epochs 0")
        check_token_set(src_dir, Path(lang_dir) / "tokens.txt")
    model, meta = load_model_dir(src_dir)
    try:
        check_prunable(model)
        channel_budget(widths(model), keep, min_layer_keep)
    except ValueError as e:
        raise InputError(src_dir, str(e), fix=CHAIN_HINT if "chain" in str(e) else
                         "prune a TDNN model dir with keep in (0, 1] above the per-layer floor") from e
    history = list(meta.get("history") or [])
    record = {"stage": "prune_channels", "source": str(src_dir), "keep": keep, "l1": l1,
              "sparsity_epochs": sparsity_epochs, "epochs": epochs, "min_layer_keep": min_layer_keep}
    valid = load_ctc_data(valid_dir, lang_dir, model.subsampling_factor) if training else None

    def valid_loss(m: nn.Module) -> float | None:
        return round(validation_loss(m, valid, tcfg.max_frames, "cpu"), 5) if valid is not None else None

    if sparsity_epochs > 0:
        record["valid_loss_source"] = valid_loss(model)
        hooks = BnL1Hooks(l1, gamma_names(model))
        scfg = dataclasses.replace(tcfg, epochs=sparsity_epochs, avg=1,
                                   start_epoch=tcfg.start_epoch if tcfg.start_epoch <= 1 else 0)
        fit(model, out_dir / "sparsity", train_dir, valid_dir, lang_dir, scfg,
            hooks=FitHooks(after_backward=hooks.after_backward, identity={"bn_l1": l1}),
            history=history, stage=dict(record, stage="prune_channels-sparsity"))
        model.cpu().eval()
        record["sparsity_trained_in"] = str(out_dir / "sparsity")
    scores = channel_scores(model)
    kept = select_channels(scores, keep, min_layer_keep)
    thr = global_threshold(scores, kept)
    for i, (s, k) in enumerate(zip(scores, kept)):
        log.info("layers.%d: |gamma| mean %.4f, median %.4f, %d of %d below 1e-2; keeps %d of %d channels", i,
                 float(s.mean()), float(s.median()), int((s < 1e-2).sum()), len(s), len(k), len(s))
    new = shrink_tdnn(model, kept)
    wb, wa = widths(model), widths(new)
    fb, fa = flops_per_second(model.eval()), flops_per_second(new)
    pb, pa = count_params(model), count_params(new)
    log.info("widths %s -> %s (%d -> %d channels, keep %.3f; global |gamma| threshold %.4g)", wb, wa, sum(wb),
             sum(wa), sum(wa) / sum(wb), thr)
    log.info("FLOPs per second of audio %s -> %s (%.2fx fewer); parameters %s -> %s (%.2fx fewer)", f"{fb:,}",
             f"{fa:,}", fb / max(fa, 1), f"{pb:,}", f"{pa:,}", pb / max(pa, 1))
    record.update(widths_before=wb, widths_after=wa, gamma_threshold=round(thr, 6), flops_before=fb, flops_after=fa,
                  params_before=pb, params_after=pa)
    if valid is not None:
        record.update(valid_loss_before_cut=valid_loss(model), valid_loss_after_cut=valid_loss(new))
        log.info("valid CTC loss per token %.4f -> %.4f at the cut", record["valid_loss_before_cut"],
                 record["valid_loss_after_cut"])
    if epochs > 0:
        fcfg = dataclasses.replace(tcfg, epochs=epochs, avg=max(1, min(tcfg.avg, epochs)))
        return fit(new, out_dir, train_dir, valid_dir, lang_dir, fcfg, history=history, stage=record)
    bpe = src_dir / "bpe.model"
    return save_model_dir(out_dir, new, src_dir / "tokens.txt", features=meta.get("features", {}),
                          history=history + [record], bpe_model=bpe if bpe.is_file() else None)


__all__ = ["check_prunable", "gamma_names", "channel_scores", "bn_l1", "BnL1Hooks", "layer_floors", "channel_budget",
           "select_channels", "global_threshold", "shrink_tdnn", "widths", "prune_channels_model_dir"]
