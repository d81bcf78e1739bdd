"""Forward time of the TDNN before and after structured channel pruning (``asrcomp prune-channels``).

    python bench/prune_channels_rtf.py [--model-dir exp/tdnn] [--keep 0.5] [--seconds 10] [--batch 1] [--reps 20]

The model: ``--model-dir``'s TDNN, or the default TDNN (hidden 384, 6 layers, 80-dim features,
41 tokens) with random batch-norm scales. Its channels are cut to ``--keep`` by
:func:`asrcomp.compress.channels.select_channels` (global |gamma| threshold, per-layer floor) and
:func:`~asrcomp.compress.channels.shrink_tdnn`; both models then run a forward pass over random input
(``--batch`` utterances of ``--seconds`` s, as decoding does with batch 1) on one thread, eval mode,
no autograd. Printed per model: widths, parameters, FLOPs per second of audio, the median (and
min) forward time over ``--reps`` repeats after two warm-up passes, and the real-time factor.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from asrcomp.compress.channels import channel_scores, select_channels, shrink_tdnn, widths
from asrcomp.modeldir import load_model_dir
from asrcomp.nnet import DEFAULT_TDNN, build_model, count_params, flops_per_second


def forward_times(model, x, lens, reps: int) -> list[float]:
    out = []
    with torch.inference_mode():
        for _ in range(2):
            model(x, lens)
        for _ in range(reps):
            t = time.perf_counter()
            model(x, lens)
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir")
    p.add_argument("--keep", type=float, default=0.5)
    p.add_argument("--min-layer-keep", type=float, default=0.1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if a.model_dir:
        model, _ = load_model_dir(a.model_dir)
    else:
        model = build_model(dict(DEFAULT_TDNN, feat_dim=80, num_tokens=41, dropout=0.0))
        with torch.no_grad():
            for layer in model.layers:
                layer.bn.weight.uniform_(0.0, 1.0)
    model.eval()
    small = shrink_tdnn(model, select_channels(channel_scores(model), a.keep, a.min_layer_keep)).eval()
    frames = int(round(a.seconds * 100))
    x = torch.randn(a.batch, frames, model.feat_dim)
    lens = torch.full((a.batch,), frames, dtype=torch.int64)
    audio = a.batch * a.seconds
    print(f"torch {torch.__version__}, 1 thread, input {a.batch} x {frames} frames ({audio:g} s of audio), "
          f"{a.reps} repeats")
    print(f"{'model':8} {'widths':32} {'params':>9} {'MFLOP/s':>8} {'median ms':>9} {'min ms':>7} {'RTF':>7}")
    res = {}
    for name, m in (("full", model), (f"keep {a.keep:g}", small)):
        t = forward_times(m, x, lens, a.reps)
        res[name] = (statistics.median(t), min(t))
        print(f"{name:8} {str(widths(m)):32} {count_params(m):9d} {flops_per_second(m) / 1e6:8.1f} "
              f"{1e3 * res[name][0]:9.2f} {1e3 * res[name][1]:7.2f} {res[name][0] / audio:7.4f}")
    (full_med, full_min), (cut_med, cut_min) = res.values()
    print(f"speed-up: {full_med / cut_med:.2f}x median, {full_min / cut_min:.2f}x min; "
          f"FLOPs {flops_per_second(model) / flops_per_second(small):.2f}x fewer")


if __name__ == "__main__":
    main()
