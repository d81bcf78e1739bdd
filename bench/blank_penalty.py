"""Sweep the CTC blank penalty (and acoustic scale) of TLG decoding on a data dir.

    cd egs/synth && python ../../bench/blank_penalty.py exp/default/tdnn [exp/default/tdnn_svd ...] \
        data/default/dev data/default/lang_phone_3gram --penalties 0,1,2,3,4,5

Computes each network's log-posteriors once, decodes them at every setting and prints the
Kaldi %WER line for each, with the TLG search's time (one thread). With several model dirs it
ends with the mean WER over them per setting: a recipe decodes every row of its table with one
setting, so choose the one whose mean is lowest on dev, and report test with it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from asrcomp.decode import DecodeOptions, TlgDecoder
from asrcomp.decode_dir import log_probs_of
from asrcomp.features import iter_features
from asrcomp.modeldir import load_model_dir
from asrcomp.score import compute_wer, read_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dirs", nargs="+")
    p.add_argument("data_dir")
    p.add_argument("graph_dir")
    p.add_argument("--penalties", default="0,1,2,3")
    p.add_argument("--scales", default="1.0")
    a = p.parse_args()
    torch.set_num_threads(1)
    refs = read_text(f"{a.data_dir}/text")
    settings = [(s, b) for s in map(float, a.scales.split(",")) for b in map(float, a.penalties.split(","))]
    decoders = {k: TlgDecoder(a.graph_dir, DecodeOptions(acoustic_scale=k[0], blank_penalty=k[1])) for k in settings}
    wers = np.zeros((len(a.model_dirs), len(settings)))
    for i, m in enumerate(a.model_dirs):
        model, _ = load_model_dir(m)
        lps = {u: log_probs_of(model, x) for u, x in iter_features(a.data_dir)}
        for j, (scale, pen) in enumerate(settings):
            t0 = time.thread_time()
            hyps = {u: decoders[scale, pen].decode(lp) for u, lp in lps.items()}
            secs = time.thread_time() - t0
            stats, _ = compute_wer(refs, hyps)
            wers[i, j] = stats.wer
            print(f"{m} acoustic_scale {scale} blank_penalty {pen} {stats.kaldi_line()} search {secs:.2f} s", flush=True)
    if len(a.model_dirs) > 1:
        for j, (scale, pen) in enumerate(settings):
            best = " <- lowest" if j == int(wers.mean(axis=0).argmin()) else ""
            print(f"mean of {len(a.model_dirs)} models: acoustic_scale {scale} blank_penalty {pen} "
                  f"%WER {wers[:, j].mean():.2f}{best}")


if __name__ == "__main__":
    main()
