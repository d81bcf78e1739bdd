"""Sweep the CTC blank penalty (and acoustic scale) of TLG decoding on a data dir.

    cd egs/synth && python ../../bench/blank_penalty.py exp/default/tdnn data/default/dev \
        data/default/lang_phone_3gram --penalties 0,1,2,3,4,5

Computes the network's log-posteriors once, decodes them at every setting and prints
the Kaldi %WER line for each, with the TLG search's time (one thread); pick the setting on
dev, report test with it.
"""

from __future__ import annotations

import argparse
import time

import torch

from asrcomp.decode import DecodeOptions, TlgDecoder
from asrcomp.decode_dir import log_probs_of
from asrcomp.features import iter_features
from asrcomp.modeldir import load_model_dir
from asrcomp.score import compute_wer, read_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("data_dir")
    p.add_argument("graph_dir")
    p.add_argument("--penalties", default="0,1,2,3")
    p.add_argument("--scales", default="1.0")
    a = p.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model_dir(a.model_dir)
    lps = {u: log_probs_of(model, x) for u, x in iter_features(a.data_dir)}
    refs = read_text(f"{a.data_dir}/text")
    for scale in map(float, a.scales.split(",")):
        for pen in map(float, a.penalties.split(",")):
            dec = TlgDecoder(a.graph_dir, DecodeOptions(acoustic_scale=scale, blank_penalty=pen))
            t0 = time.thread_time()
            hyps = {u: dec.decode(lp) for u, lp in lps.items()}
            secs = time.thread_time() - t0
            stats, _ = compute_wer(refs, hyps)
            print(f"acoustic_scale {scale} blank_penalty {pen} {stats.kaldi_line()} search {secs:.2f} s", flush=True)


if __name__ == "__main__":
    main()
