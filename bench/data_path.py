"""Peak RSS and training throughput of the data path, at 1x and kx a training set.

Builds, under ``--work``, copies of a features data dir holding its utterances 1 and ``--copies``
times (new utterance and speaker ids ``c<j>-...``; feats.scp / cmvn.scp entries point at the
source's arks, nothing is written into the source), then trains the recipe's TDNN on each for
``--steps`` optimiser steps in a fresh process per run and reports, per run:

- ``peak_rss_mb``: the training process's peak resident set (VmHWM), data loading included;
- ``frames_per_s``: real (unpadded) input frames per second over steps ``--skip``..``--steps``,
  each step timed from one loss call to the next (reading and padding the batch, SpecAugment,
  forward, backward, optimiser);
- ``setup_s``: process start to the first step (imports, reading the data / counting batches).

``--code DIR`` runs the same workers on another checkout of asrcomp (e.g. the commit before
the lhotse data path, ``git worktree add /tmp/base <commit>``), so "today" and "new" are measured
back to back under the same conditions: ``--code`` runs alternate with this checkout's.

    python bench/data_path.py --src egs/speechocean762/data/default/train_sp \\
        --lang egs/speechocean762/data/default/lang_phone --code /tmp/base --work /tmp/dp_bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TDNN = {"type": "tdnn", "hidden_dim": 384, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1], [-3, 0, 3],
                                                          [-3, 0, 3], [-3, 0, 3], [-3, 0, 3]],
        "subsample_at": 1, "subsampling_factor": 3, "dropout": 0.1}


def _table(path: Path) -> list[tuple[str, str]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition(" ")
            out.append((k, v.strip()))
    return out


def make_copies(src: Path, dst: Path, copies: int, limit: int | None = None) -> Path:
    """``dst``: ``src``'s utterances (the first ``limit`` of them) ``copies`` times, ids ``c<j>-<id>``."""
    if (dst / "feats.scp").is_file():
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    utt2spk = _table(src / "utt2spk")[:limit]
    keep = {u for u, _ in utt2spk}
    spks = {s for _, s in utt2spk}
    files = {"utt2spk": utt2spk, "text": _table(src / "text"), "feats.scp": _table(src / "feats.scp"),
             "wav.scp": _table(src / "wav.scp")}
    if (src / "utt2num_frames").is_file():
        files["utt2num_frames"] = _table(src / "utt2num_frames")
    for name, rows in files.items():
        with open(dst / name, "w", encoding="utf-8") as f:
            for j in range(copies):
                for k, v in rows:
                    if k in keep:
                        v = f"c{j}-{v}" if name == "utt2spk" else v
                        f.write(f"c{j}-{k} {v}\n")
    with open(dst / "cmvn.scp", "w", encoding="utf-8") as f:
        for j in range(copies):
            for k, v in _table(src / "cmvn.scp"):
                if k in spks:
                    f.write(f"c{j}-{k} {v}\n")
    spk2utt: dict[str, list[str]] = {}
    for j in range(copies):
        for u, s in utt2spk:
            spk2utt.setdefault(f"c{j}-{s}", []).append(f"c{j}-{u}")
    with open(dst / "spk2utt", "w", encoding="utf-8") as f:
        for s in sorted(spk2utt):
            f.write(f"{s} {' '.join(spk2utt[s])}\n")
    (dst / "fbank.yaml").write_text((src / "fbank.yaml").read_text())
    for name in files:  # Kaldi order (C locale) for every table
        rows = sorted(_table(dst / name))
        (dst / name).write_text("".join(f"{k} {v}\n" for k, v in rows))
    rows = sorted(_table(dst / "cmvn.scp"))
    (dst / "cmvn.scp").write_text("".join(f"{k} {v}\n" for k, v in rows))
    return dst


def worker(a) -> None:
    """One training run in this process; prints one JSON line."""
    t_start = time.perf_counter()
    import torch

    import asrcomp
    from asrcomp.lang import load_lang
    from asrcomp.nnet import build_model
    from asrcomp.train import FitHooks, TrainConfig, ctc_loss_sum, fit

    class Done(Exception):
        pass

    times, frames, padded = [], [], []

    def loss(model, x, x_lens, y, y_lens):
        times.append(time.perf_counter())
        if len(times) > a.steps:
            raise Done
        frames.append(int(x_lens.sum()))
        padded.append(int(x.shape[0] * x.shape[1]))
        return ctc_loss_sum(model, x, x_lens, y, y_lens)

    lang = load_lang(a.lang)
    torch.manual_seed(0)
    model = build_model(dict(TDNN, feat_dim=80, num_tokens=a.num_tokens or lang.num_tokens))
    cfg = TrainConfig(epochs=1, max_frames=a.max_frames, lr=2e-3, warmup_steps=50, avg=1, seed=0,
                      num_threads=a.threads, device="cpu", start_epoch=1)
    try:
        fit(model, a.exp, a.train, a.valid, a.lang, cfg, hooks=FitHooks(loss=loss))
    except Done:
        pass
    s = a.skip
    hwm = [ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM")][0]
    print(json.dumps({
        "code": str(Path(asrcomp.__file__).resolve().parents[1]), "train": str(a.train),
        "threads": a.threads, "max_frames": a.max_frames, "outputs": model.output.out_features if hasattr(
            model, "output") else None, "steps": len(frames), "peak_rss_mb": round(int(hwm.split()[1]) / 1024, 1),
        "frames_per_s": round(sum(frames[s:a.steps]) / (times[a.steps] - times[s]), 1),
        "padded_frames_per_s": round(sum(padded[s:a.steps]) / (times[a.steps] - times[s]), 1),
        "setup_s": round(times[0] - t_start, 1)}), flush=True)


def run_worker(code: Path, train: Path, a, exp: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS=str(a.threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--train", str(train), "--valid", str(a.valid),
           "--lang", str(a.lang), "--exp", str(exp), "--steps", str(a.steps), "--skip", str(a.skip),
           "--threads", str(a.threads), "--max-frames", str(a.max_frames), "--num-tokens", str(a.num_tokens)]
    r = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"worker failed ({code}, {train}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, help="a features data dir (read only)")
    p.add_argument("--lang", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/dp_bench"))
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--limit", type=int, help="only the first N utterances of --src (smoke tests)")
    p.add_argument("--code", type=Path, help="another asrcomp checkout to measure beside this one")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--skip", type=int, default=10, help="warm-up steps left out of frames/s")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-frames", type=int, default=5000)
    p.add_argument("--num-tokens", type=int, default=0,
                   help="size the output layer for this many tokens (e.g. 500 for BPE-500; targets stay the lang's)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--valid", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--exp", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a)
    a.src, a.lang, a.work = a.src.resolve(), a.lang.resolve(), a.work.resolve()
    a.code = a.code.resolve() if a.code else None
    a.work.mkdir(parents=True, exist_ok=True)
    sets = {k: make_copies(a.src, a.work / f"train_x{k}", k, a.limit) for k in (1, a.copies)}
    a.valid = make_copies(a.src, a.work / "valid", 1, limit=100)
    for d in [a.valid, *sets.values()]:  # the lhotse manifests, built once (what stage 1 or a first run does)
        t0 = time.time()
        r = subprocess.run([sys.executable, "-c", "import resource, sys; from asrcomp.dataset import feature_cuts; "
                            "feature_cuts(sys.argv[1]); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
                            str(d)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                           text=True, check=True)
        print(json.dumps({"manifest": str(d), "build_s": round(time.time() - t0, 1),
                          "build_peak_rss_mb": round(int(r.stdout.split()[-1]) / 1024, 1)}), flush=True)
    codes = {"new": ROOT} | ({"today": a.code} if a.code else {})
    for rep in range(a.repeats):
        for k, train in sets.items():
            for name, code in (codes.items() if rep % 2 == 0 else reversed(codes.items())):
                res = run_worker(code, train, a, a.work / f"exp_{name}_x{k}")
                print(json.dumps({"version": name, "copies": k, **res}), flush=True)


if __name__ == "__main__":
    main()
