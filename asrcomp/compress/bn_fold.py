"""Batch-norm folding (a tool of MPEG NNR, ISO/IEC 15938-17): running statistics into the affine.

In eval mode a BatchNorm computes ``(x - mean) / sqrt(var + eps) * weight + bias``, four
vectors for one per-channel scale and shift. :func:`fold_batch_norms` rewrites each so that
``mean`` is 0 and ``var`` 1 (constants: a packed file stores each as one value) and ``weight``
/ ``bias`` carry the scale and shift: the model decodes as before, at half the bytes of its
batch norms. Training such a model again starts its statistics from that identity.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def fold_batch_norms(model: nn.Module) -> list[str]:
    """Fold every affine BatchNorm's running statistics into its weight and bias, in place; the
    names of the folded modules. Eval-mode outputs stay the same (to float32 rounding)."""
    done = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if not (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine and m.running_var is not None):
                continue
            inv = torch.rsqrt(m.running_var.double() + m.eps)
            scale = m.weight.double() * inv  # what multiplies x
            shift = m.bias.double() - m.running_mean.double() * scale
            m.weight.copy_(scale * math.sqrt(1 + m.eps))  # the module divides by sqrt(1 + eps) now
            m.bias.copy_(shift)
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
            done.append(name)
    return done
