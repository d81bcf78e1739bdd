"""onnxruntime RTF (one thread, batch 1, network only) of the default TDNN and its factorised forms.

Random weights, the recipe's default TDNN shape (80-dim fbank, hidden 384, 41 phone tokens); each
model is exported with ``asrcomp.onnx_export`` and run on 10 s of input, repeated. Prints a
markdown table: weights the MatMul/Conv nodes read, model.onnx bytes, and RTF for float32 and
dynamic int8. Usage: ``OMP_NUM_THREADS=1 python bench/onnx_rtf.py [--reps 20] [--hidden 384]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asrcomp.compress.stage import apply_svd, apply_tensorization
from asrcomp.modeldir import save_model_dir
from asrcomp.nnet import DEFAULT_TDNN, build_model
from asrcomp.onnx_export import _session, export_onnx, quantize, weight_report


def rtf(onnx_path: Path, seconds: float, reps: int) -> float:
    sess = _session(onnx_path, threads=1)
    x = np.random.default_rng(0).normal(size=(1, int(seconds * 100), 80)).astype(np.float32)
    feed = {"x": x, "x_lens": np.array([x.shape[1]], dtype=np.int64)}
    sess.run(None, feed)
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sess.run(None, feed)
        best.append(time.perf_counter() - t0)
    return float(np.median(best)) / seconds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--tokens", type=int, default=41)
    a = p.parse_args()
    torch.set_num_threads(1)
    hidden = r"layers\.[1-5]\.conv"
    variants = {
        "baseline": None,
        "svd output r24": lambda m: apply_svd(m, "output", rank=24),
        "svd hidden r96": lambda m: apply_svd(m, hidden, rank=96),
        "tt r16": lambda m: apply_tensorization(m, "tt", hidden, modes=3, ranks=16),
        "tt r32": lambda m: apply_tensorization(m, "tt", hidden, modes=3, ranks=32),
        "tucker-2 r96": lambda m: apply_tensorization(m, "tucker", hidden, ranks=[96, 96, 3]),
        "cp r64": lambda m: apply_tensorization(m, "cp", hidden, modes=2, ranks=64),
    }
    print("| model | MatMul/Conv weights | model.onnx bytes | int8 bytes | RTF fp32 | RTF int8 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        tok = td / "tokens.txt"
        tok.write_text("".join(f"t{i} {i}\n" for i in range(a.tokens)))
        for name, f in variants.items():
            torch.manual_seed(0)
            arch = dict(DEFAULT_TDNN, feat_dim=80, num_tokens=a.tokens, hidden_dim=a.hidden, dropout=0.0)
            model = build_model(arch).eval()
            if f:
                f(model)
            d = save_model_dir(td / name.replace(" ", "_"), model, tok, features={"cmvn": "none"})
            o = export_onnx(d, td / (d.name + "_onnx"))
            q = quantize(o, td / (d.name + "_int8"))
            w = weight_report(o / "model.onnx")["weights"]
            print(f"| {name} | {w:,} | {(o / 'model.onnx').stat().st_size:,} | {(q / 'model.onnx').stat().st_size:,} "
                  f"| {rtf(o / 'model.onnx', 10, a.reps):.4f} | {rtf(q / 'model.onnx', 10, a.reps):.4f} |", flush=True)


if __name__ == "__main__":
    main()
