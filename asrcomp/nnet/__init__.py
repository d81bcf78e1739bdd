"""Acoustic models for CTC: ``tdnn`` and ``dnn``, built from a plain ``arch`` dict.

Every model maps ``(x: (N, T, F) float32, x_lens: (N,) int64)`` to
``(log_probs: (N, T', V), out_lens: (N,))`` (log-softmax over V tokens, blank = 0)
and has ``subsampling_factor``, ``num_tokens``, ``feat_dim`` and ``arch()``.
"""

from __future__ import annotations

import inspect

from torch import nn

from asrcomp.nnet.dnn import DEFAULT_DNN, Dnn
from asrcomp.nnet.factorized import restructure
from asrcomp.nnet.flops import flops_per_second
from asrcomp.nnet.tdnn import DEFAULT_TDNN, Tdnn
from asrcomp.nnet.tdnnf import Tdnnf

MODELS: dict[str, type[nn.Module]] = {"tdnn": Tdnn, "dnn": Dnn, "tdnnf": Tdnnf}

__all__ = ["MODELS", "DEFAULT_TDNN", "DEFAULT_DNN", "Tdnn", "Dnn", "build_model", "arch_of", "count_params",
           "flops_per_second"]


def build_model(arch: dict) -> nn.Module:
    """The model that ``arch`` (``{"type": ..., **constructor options}``) describes.

    ``arch["factorized"]`` (written by the compression stages) names layers replaced
    by factorised modules; they are rebuilt with the recorded shapes and ranks.
    ValueError names an unknown type, unknown options, or missing required ones.
    """
    if not isinstance(arch, dict):
        raise ValueError(f"arch must be a dict with a 'type' key, not {type(arch).__name__}")
    kind = arch.get("type")
    if kind not in MODELS:
        raise ValueError(f"unknown model type {kind!r}; known: {', '.join(sorted(MODELS))}")
    cls = MODELS[kind]
    params = inspect.signature(cls.__init__).parameters
    opts = {k: v for k, v in arch.items() if k not in ("type", "factorized")}
    unknown = sorted(set(opts) - set(params) - {"self"})
    if unknown:
        raise ValueError(f"{kind}: unknown option(s) {', '.join(unknown)}; known: "
                         f"{', '.join(p for p in params if p != 'self')}")
    missing = [p for p, v in params.items() if p != "self" and v.default is inspect.Parameter.empty
               and p not in opts]
    if missing:
        raise ValueError(f"{kind}: missing option(s) {', '.join(missing)}")
    model = cls(**opts)
    if arch.get("factorized"):
        restructure(model, arch["factorized"])
    return model


def arch_of(model: nn.Module) -> dict:
    """``model.arch()`` plus the factorised layers a compression stage put in."""
    arch = model.arch()
    if getattr(model, "factorized", None):
        arch["factorized"] = {k: dict(v) for k, v in model.factorized.items()}
    return arch


def count_params(model: nn.Module) -> int:
    """Number of parameters (elements of all parameter tensors, shared ones once)."""
    return sum(p.numel() for p in model.parameters())
