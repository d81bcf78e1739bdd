"""onnxruntime speed (one thread, batch 1, network only) of the recipe's TDNN and its factorised forms.

Random weights, the default TDNN of ``egs/speechocean762/conf/default.yaml`` (80-dim fbank, hidden
384, 7 layers, subsampling 3, 42 tokens); each variant is exported with ``asrcomp.onnx_export``,
quantised to dynamic int8 (and with ``--static`` static QDQ int8, calibrated on random features),
and every model is run on the same 10 s of input (1000 frames), the models interleaved round by
round so that a change in the machine's load hits them all alike (each round runs a model twice
and times the second run: warm, as in a decoder). Prints a markdown table: the
weights the MatMul/Conv nodes read, model.onnx bytes, and ms per 10 s of audio, median and
interquartile range over the rounds, as thread CPU time (``time.thread_time``: what the run cost,
steadier on a shared machine than wall time, which is given too) -- and the load average before
and after. ``--profile`` adds onnxruntime's per-node profile (each node's fastest of 10 runs,
summed per op type). ``--compare A/model.onnx ...`` times other exports in the same rounds
(e.g. those of an older ``asrcomp``).

Usage: ``OMP_NUM_THREADS=1 python bench/onnx_rtf.py [--reps 30] [--all] [--static] [--profile]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asrcomp.compress.stage import apply_svd, apply_tensorization
from asrcomp.datadir import write_data_dir
from asrcomp.modeldir import save_model_dir
from asrcomp.nnet import build_model
from asrcomp.onnx_export import _session, export_onnx, quantize, weight_report

CONTEXTS = [[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1], [-3, 0, 3], [-3, 0, 3], [-3, 0, 3], [-3, 0, 3]]
HIDDEN = r"layers\.[1-6]\.conv"


def _svd(m):
    apply_svd(m, "output", rank=12)


def _tt(m):  # the recipe's modes at hidden 384: in-modes (C, K), the graph's tap-major path
    shapes = "4x96,384x3" if m.hidden_dim == 384 else f"4x{m.hidden_dim // 4},{m.hidden_dim}x3"
    apply_tensorization(m, "tt", HIDDEN, modes=2, shapes=shapes, ranks=47 * m.hidden_dim // 384)


def _tt_interleaved(m):  # the recipe's split before 2026-12-01: in-modes (288, 4) need the taps interleaved
    shapes = "4x96,288x4" if m.hidden_dim == 384 else None
    apply_tensorization(m, "tt", HIDDEN, modes=2, shapes=shapes, ranks=56 * m.hidden_dim // 384)


VARIANTS = {  # the recipe's chain first (compress.svd, compress.tt), then other factorisations (--all)
    "baseline": [],
    "svd output r12": [_svd],
    "tt 4x96,384x3 r47": [_tt],
    "svd + tt (chain)": [_svd, _tt],
    "tt 4x96,288x4 r56 (before)": [_tt_interleaved],
    "svd hidden r96": [lambda m: apply_svd(m, HIDDEN, rank=96)],
    "tucker-2 r96": [lambda m: apply_tensorization(m, "tucker", HIDDEN, ranks=[96, 96, 3])],
    "cp r64": [lambda m: apply_tensorization(m, "cp", HIDDEN, modes=2, ranks=64)],
}
DEFAULT = ["baseline", "svd output r12", "tt 4x96,384x3 r47", "svd + tt (chain)", "tt 4x96,288x4 r56 (before)"]


def _calib_dir(root: Path, n: int = 8) -> Path:
    """A data dir of ``n`` random 3 s utterances (raw-fbank-like levels) for static calibration."""
    import kaldiio

    rng = np.random.default_rng(1)
    utts = [f"s-{i:02d}" for i in range(n)]
    d = root / "calib"
    write_data_dir(d, {u: "/dev/null" for u in utts}, {u: "A" for u in utts}, {u: "s" for u in utts})
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for u in utts:
            w(u, (rng.normal(size=(300, 80)) * 3 + 10).astype(np.float32))
    return d


def profile(onnx_path: Path, feed: dict, runs: int = 10) -> dict[str, tuple[float, int]]:
    """``{op type: (ms, nodes)}``: each node's fastest of ``runs`` runs, summed per op type."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / "onnx_rtf_profile")
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, feed)
    f = sess.end_profiling()
    durs = collections.defaultdict(list)
    for e in json.load(open(f)):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            durs[(e["args"]["op_name"], e["name"])].append(e["dur"] / 1000)
    os.remove(f)
    ops: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
    for (op, _), d in durs.items():
        ops[op][0] += min(d)
        ops[op][1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(ops.items(), key=lambda kv: -kv[1][0])}


def time_models(paths: list[Path], feed: dict, reps: int) -> dict[Path, dict[str, np.ndarray]]:
    """ms per call of every model, interleaved: round r runs each model twice and times the second
    (as a decoder runs one model utterance after utterance, its weights warm in the caches)."""
    sessions = [_session(p, threads=1) for p in paths]
    out = {p: {"cpu": [], "wall": []} for p in paths}
    for _ in range(reps):
        for p, s in zip(paths, sessions):
            s.run(None, feed)
            t0, c0 = time.perf_counter(), time.thread_time()
            s.run(None, feed)
            out[p]["cpu"].append(1000 * (time.thread_time() - c0))
            out[p]["wall"].append(1000 * (time.perf_counter() - t0))
    return {p: {k: np.array(v) for k, v in d.items()} for p, d in out.items()}


def _cell(t: dict[str, np.ndarray], scale: float) -> str:
    c, w = t["cpu"] * scale, t["wall"] * scale
    q1, q3 = np.percentile(c, [25, 75])
    return f"{np.median(c):.1f} [{q1:.1f}–{q3:.1f}] ({np.median(w):.0f})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=30, help="interleaved rounds")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--tokens", type=int, default=42)
    p.add_argument("--all", action="store_true", help="also SVD of the hidden layers, Tucker-2 and CP")
    p.add_argument("--static", action="store_true", help="also static QDQ int8 (random-feature calibration)")
    p.add_argument("--profile", action="store_true", help="onnxruntime per-op-type times of each model")
    p.add_argument("--compare", nargs="*", default=[], help="other model.onnx files timed in the same rounds")
    a = p.parse_args()
    torch.set_num_threads(1)
    names = list(VARIANTS) if a.all else DEFAULT
    x = np.random.default_rng(0).normal(size=(1, int(a.seconds * 100), 80)).astype(np.float32)
    feed = {"x": x, "x_lens": np.array([x.shape[1]], dtype=np.int64)}
    kinds = ["float32", "int8 dynamic"] + (["int8 static"] if a.static else [])
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        tok = td / "tokens.txt"
        tok.write_text("".join(f"t{i} {i}\n" for i in range(a.tokens)))
        calib = _calib_dir(td) if a.static else None
        models: dict[str, dict[str, Path]] = {}
        info = {}
        for name in names:
            torch.manual_seed(0)
            arch = dict(type="tdnn", feat_dim=80, num_tokens=a.tokens, hidden_dim=a.hidden, contexts=CONTEXTS,
                        subsample_at=1, subsampling_factor=3, dropout=0.0)
            model = build_model(arch).eval()
            for f in VARIANTS[name]:
                f(model)
            d = save_model_dir(td / name.replace(" ", "_"), model, tok, features={"cmvn": "none"})
            o = export_onnx(d, td / (d.name + "_onnx"))
            m = {"float32": o / "model.onnx", "int8 dynamic": quantize(o, td / (d.name + "_int8")) / "model.onnx"}
            if a.static:
                m["int8 static"] = quantize(o, td / (d.name + "_s8"), mode="static", calib_dir=calib,
                                            calib_utts=8) / "model.onnx"
            models[name] = m
            info[name] = (weight_report(o / "model.onnx")["weights"], {k: v.stat().st_size for k, v in m.items()})
        for c in a.compare:
            models[c] = {"float32": Path(c)}
            info[c] = (weight_report(c)["weights"], {"float32": Path(c).stat().st_size})
        paths = [p for m in models.values() for p in m.values()]
        load0 = os.getloadavg()
        t = time_models(paths, feed, a.reps)
        load1 = os.getloadavg()
        scale = 10.0 / a.seconds
        print(f"\nonnxruntime {_ort_version()}, 1 thread, batch 1, {a.seconds:g} s input; ms per 10 s of audio: "
              f"thread CPU time median [IQR] (wall median) over {a.reps} interleaved rounds; "
              f"{os.cpu_count()} CPUs, load average {load0[0]:.2f} before, {load1[0]:.2f} after\n")
        print("| model | MatMul/Conv weights | " + " | ".join(f"{k} bytes" for k in kinds) + " | "
              + " | ".join(f"{k} ms" for k in kinds) + " |")
        print("| --- | ---: | " + " | ".join(["---:"] * (2 * len(kinds))) + " |")
        for name, m in models.items():
            w, b = info[name]
            print(f"| {name} | {w:,} | " + " | ".join(f"{b[k]:,}" if k in b else "–" for k in kinds) + " | "
                  + " | ".join(_cell(t[m[k]], scale) if k in m else "–" for k in kinds) + " |")
        if a.profile:
            for name, m in models.items():
                for k, path in m.items():
                    prof = profile(path, feed)
                    total = sum(v[0] for v in prof.values())
                    ops = ", ".join(f"{op} {ms * scale:.2f} ({n})" for op, (ms, n) in prof.items()
                                    if ms * scale >= 0.05)
                    print(f"\n{name}, {k}: {total * scale:.1f} ms per 10 s summed over nodes; per op type: {ops}")


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()
