"""Choosing the layers a compression stage factorises, by name pattern.

The factorised layer types, and the functions that swap them into a model and record that
in ``arch["factorized"]`` (``restructure``, ``replace_layer``), are in
:mod:`asrcomp.nnet.factorized`, so that ``build_model`` rebuilds any compressed model.
"""

from __future__ import annotations

import re

from torch import nn


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the plain Linear and Conv1d layers of ``model``, in order."""
    return [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv1d)]


def match_layers(model: nn.Module, pattern: str) -> list[str]:
    """Linear/Conv1d layer names that fully match the regular expression ``pattern``.

    ValueError when nothing matches, listing the layers there are.
    """
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"layer pattern {pattern!r} is not a regular expression: {e}") from e
    names = weight_layers(model)
    hit = [n for n in names if rx.fullmatch(n)]
    if not hit:
        raise ValueError(f"layer pattern {pattern!r} matches no Linear/Conv1d layer; the model has: "
                         f"{', '.join(names)}")
    return hit
