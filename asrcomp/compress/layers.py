"""Finding layers by name and replacing them with factorised modules.

A factorised model is the base model (``arch`` without ``factorized``) with some
modules replaced. ``arch["factorized"]`` maps each replaced module's name (as in
``named_modules``, e.g. ``layers.3.conv`` or ``output``) to the spec of its
replacement, ``{"method": "svd" | "tt" | "tucker" | "cp", ...shapes and ranks}``.
:func:`restructure` applies such a mapping with freshly initialised factors, so
``build_model`` followed by ``load_state_dict`` rebuilds any compressed model.
"""

from __future__ import annotations

import re

from torch import nn


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


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


def factorized_class(method: str):
    from asrcomp.compress.cp import CpDense
    from asrcomp.compress.svd import LowRankConv1d, LowRankLinear
    from asrcomp.compress.tt import TtDense
    from asrcomp.compress.tucker import TuckerDense

    classes = {"svd_linear": LowRankLinear, "svd_conv1d": LowRankConv1d, "tt": TtDense, "tucker": TuckerDense,
               "cp": CpDense}
    if method not in classes:
        raise ValueError(f"unknown factorisation {method!r}; known: {', '.join(sorted(classes))}")
    return classes[method]


def restructure(model: nn.Module, factorized: dict[str, dict]) -> nn.Module:
    """Replace each named layer of ``model`` by an (untrained) factorised module of the given spec.

    Records the mapping on ``model.factorized`` (so ``arch_of`` can write it back).
    """
    done = dict(getattr(model, "factorized", None) or {})
    for name, spec in factorized.items():
        try:
            base = get_module(model, name)
        except AttributeError as e:
            raise ValueError(f"factorized layer {name!r} is not a module of the model") from e
        set_module(model, name, factorized_class(spec["method"]).from_spec(base, spec))
        done[name] = dict(spec)
    model.factorized = done
    return model


def replace_layer(model: nn.Module, name: str, module: nn.Module, spec: dict) -> None:
    """Put an already initialised factorised ``module`` at ``name`` and record its ``spec``."""
    set_module(model, name, module)
    model.factorized = dict(getattr(model, "factorized", None) or {}, **{name: dict(spec)})
