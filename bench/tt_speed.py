"""Speed and fit of the factorised layers on one hidden TDNN layer (384 x 384 x 3, dilation 3).

    python bench/tt_speed.py [--model-dir egs/synth/exp/default/tdnn] [--layer layers.3.conv]

For each factorisation at about 5x fewer weights: weights, FLOPs per output frame, relative
error ||W - W'|| / ||W|| of the trained weight (with --model-dir), and the measured time of a
forward and a forward+backward pass over a batch of 40 x 100 frames on one thread.
When TensorLy-Torch is installed (``pip install tensorly-torch``; not a dependency), its
``FactorizedLinear`` with ``factorization="blocktt"`` is timed on the same shapes as a Linear
on the 4000 unfolded frames, for the choice between its TT layer and ours.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from asrcomp.compress import svd
from asrcomp.compress.stage import _factorize, _rel_error


def timed(fn, reps: int = 5) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir")
    p.add_argument("--layer", default="layers.3.conv")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    conv = nn.Conv1d(384, 384, 3, dilation=3, padding=3)
    if a.model_dir:
        from asrcomp.modeldir import load_model_dir

        conv = load_model_dir(a.model_dir)[0].get_submodule(a.layer)
    w = svd.weight_matrix(conv)
    x = torch.randn(40, conv.in_channels, 100, requires_grad=True)
    cases = [("dense", None, None, None)]
    cases += [("svd", "svd", None, 57), ("tucker2", "tucker", ([384], [384, 3]), 80),
              ("tt d=3 balanced", "tt", ([8, 8, 6], [12, 12, 8]), 28), ("tt d=3 balanced", "tt", ([8, 8, 6], [12, 12, 8]), 8),
              ("tt d=2 4x96,288x4", "tt", ([4, 96], [288, 4]), 56), ("tt d=2 4x96,384x3", "tt", ([4, 96], [384, 3]), 47)]
    print(f"{'layer':22} {'rank':>5} {'weights':>8} {'MFLOP/frame':>11} {'rel.err':>7} {'fwd s':>6} {'fwd+bwd s':>9}")
    for name, method, shapes, rank in cases:
        if method is None:
            m, flops = conv, 2 * w.numel()
        elif method == "svd":
            m, _ = svd.factorize_layer(conv, rank)
            flops = 2 * rank * sum(w.shape)
        else:
            m = _factorize(method, w, conv, shapes[0], shapes[1], rank, 0)
            flops = m.row_flops()
        n = sum(p.numel() for n_, p in m.named_parameters() if "bias" not in n_)
        err = 0.0 if method is None else (svd.relative_error(w, m.a.weight.reshape(384, -1) @ m.b.weight.reshape(rank, -1))
                                          if method == "svd" else _rel_error(m, w))
        with torch.no_grad():
            fwd = timed(lambda: m(x))
        both = timed(lambda: m(x).sum().backward())
        print(f"{name:22} {rank or '':>5} {n:8d} {flops / 1e6:11.3f} {err:7.3f} {fwd:6.3f} {both:9.3f}")
    try:
        import tltorch
    except ImportError:
        return
    rows = torch.randn(4000, w.shape[1], requires_grad=True)
    for name, method, shapes, rank in cases:
        if method != "tt":
            continue
        ours = _factorize(method, w, nn.Linear(w.shape[1], w.shape[0]), shapes[0], shapes[1], rank, 0)
        theirs = tltorch.FactorizedLinear(tuple(shapes[1]), tuple(shapes[0]), factorization="blocktt",
                                          rank=[1] + [rank] * (len(shapes[0]) - 1) + [1], implementation="factorized")
        for who, m in (("asrcomp TtDense", ours), ("tltorch blocktt", theirs)):
            with torch.no_grad():
                fwd = timed(lambda: m(rows))
            both = timed(lambda: m(rows).sum().backward())
            print(f"{who + ' ' + name[3:]:38} {rank:>5} fwd {fwd:6.3f} fwd+bwd {both:6.3f} (Linear on 4000 rows)")


if __name__ == "__main__":
    main()
