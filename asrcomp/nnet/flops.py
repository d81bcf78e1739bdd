"""FLOPs per second of audio, counted with forward hooks on a 1-second dummy input.

What is counted (FLOPs = 2 x multiply-accumulates, plus one add per bias element):

- ``nn.Conv1d``: per output frame actually computed (so stride and subsampling by
  earlier layers are accounted for): ``2 * C_in/groups * kernel * C_out`` (+ ``C_out``
  with bias). Frames near the edges are counted in full, as they are computed.
- ``nn.Linear``: per input row actually processed: ``2 * in * out`` (+ ``out``).
- any module whose class defines ``flops(inputs, output) -> int`` (``inputs``: the
  tuple of positional forward arguments, ``output``: what forward returned): that
  value, and its submodules are not counted separately.

Elementwise work (ReLU, BatchNorm, dropout, log-softmax, masking, splicing) is
ignored: it is small next to the matrix products and folds away at inference
(BatchNorm into the next layer). A leaf module with parameters that is none of
the above and not a norm layer raises NotImplementedError rather than being
silently counted as free.
"""

from __future__ import annotations

import torch
from torch import nn

_FREE = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)  # elementwise at inference


def has_custom_flops(module: nn.Module) -> bool:
    """True when the module's class defines a ``flops(inputs, output)`` method."""
    return callable(getattr(type(module), "flops", None))


def conv1d_flops(conv: nn.Conv1d, output: torch.Tensor) -> int:
    """FLOPs of a Conv1d call that produced ``output: (N, C_out, T_out)`` (or ``(C_out, T_out)``)."""
    out_elems = output.numel()  # N * C_out * T_out: every computed output value
    macs = out_elems * (conv.in_channels // conv.groups) * conv.kernel_size[0]
    return 2 * macs + (out_elems if conv.bias is not None else 0)


def linear_flops(linear: nn.Linear, inputs: torch.Tensor) -> int:
    """FLOPs of a Linear call on ``inputs: (..., in_features)``."""
    rows = inputs.numel() // linear.in_features
    return rows * (2 * linear.in_features * linear.out_features + (linear.out_features if linear.bias is not None
                                                                   else 0))


def _counted_modules(model: nn.Module) -> list[nn.Module]:
    """Modules whose calls are counted: custom-flops modules (not their children), Conv1d, Linear."""
    out: list[nn.Module] = []

    def walk(m: nn.Module, name: str) -> None:
        if has_custom_flops(m) or isinstance(m, (nn.Conv1d, nn.Linear)):
            out.append(m)
            return
        children = list(m.named_children())
        if not children and any(True for _ in m.parameters(recurse=False)) and not isinstance(m, _FREE):
            raise NotImplementedError(f"flops: don't know how to count {name or 'model'} "
                                      f"({type(m).__name__}); give it a flops(inputs, output) method")
        for child_name, child in children:
            walk(child, f"{name}.{child_name}" if name else child_name)

    walk(model, "")
    return out


def flops_per_second(model: nn.Module, frame_rate: float = 100.0) -> int:
    """FLOPs of one forward pass over 1 s of input (``round(frame_rate)`` frames, batch of one)."""
    n_frames = int(round(frame_rate))
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if has_custom_flops(module):
            total += int(module.flops(inputs, output))
        elif isinstance(module, nn.Conv1d):
            total += conv1d_flops(module, output)
        else:
            total += linear_flops(module, inputs[0])

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, n_frames, model.feat_dim, device=device)
    x_lens = torch.tensor([n_frames], dtype=torch.int64, device=device)
    handles = [m.register_forward_hook(hook) for m in _counted_modules(model)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x, x_lens)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
