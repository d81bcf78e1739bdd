"""Paired real-time factor of model dirs, utterance by utterance: is one model's decode faster?

    cd egs/speechocean762 && python ../../bench/paired_rtf.py exp/default/tdnn exp/default/tdnn_pc65 \
        data/default/dev data/default/lang_phone_3gram --blank-penalty 3.0 [--rounds 3] [--max-utts N]

Times what ``steps/decode.sh --nj 1`` times (one thread, batch of one, the torch network, then
the TLG search; features precomputed), but the models take turns on every utterance, the order
rotating from one utterance and round to the next, so that a drift in the machine's speed (other
jobs, clock changes: two rounds of the same decode here have differed by 13 %) hits them alike.

Prints per round and model: network, search and total seconds and the RTF; per model its Kaldi
%WER line (a check against the recipe's decode of the same set); then for every model after the
first, its total, network and search time over the first model's, summed over all rounds, with
a 95 % bootstrap interval over utterances (1000 seeded resamples of the utterances, ratio of the
resampled sums). An interval wholly below 1 says the model decodes faster on this set beyond
the noise of which utterances were drawn; the per-round ratios show what the machine adds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from asrcomp.bootstrap import ratio_interval
from asrcomp.dataset import iter_cut_features
from asrcomp.decode import DecodeOptions, TlgDecoder
from asrcomp.decode_dir import check_features_match, log_probs_of, read_durations
from asrcomp.modeldir import check_token_set, load_model_dir
from asrcomp.score import compute_wer, read_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dirs", nargs="+", help="two or more; the first is the reference")
    p.add_argument("data_dir")
    p.add_argument("graph_dir")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--max-utts", type=int, default=0, help="the first N utterances only (0: all)")
    p.add_argument("--beam", type=float, default=16.0)
    p.add_argument("--max-active", type=int, default=7000)
    p.add_argument("--acoustic-scale", type=float, default=1.0)
    p.add_argument("--blank-penalty", type=float, default=0.0)
    a = p.parse_args()
    if len(a.model_dirs) < 2:
        p.error("give at least two model dirs")
    torch.set_num_threads(1)
    data, graph = Path(a.data_dir), Path(a.graph_dir)
    models = []
    for d in a.model_dirs:
        model, cfg = load_model_dir(d)
        check_features_match(cfg, data, Path(d))
        check_token_set(Path(d), graph / "tokens.txt")
        models.append(model)
    decoder = TlgDecoder(graph, DecodeOptions(beam=a.beam, max_active=a.max_active, acoustic_scale=a.acoustic_scale,
                                              blank_penalty=a.blank_penalty))
    utts = list(iter_cut_features(data, 1, 1))
    if a.max_utts:
        utts = utts[: a.max_utts]
    dur = read_durations(data)
    audio = sum(dur.get(u, len(x) / 100) for u, x in utts)
    k, n = len(models), len(utts)
    net, search = np.zeros((a.rounds, k, n)), np.zeros((a.rounds, k, n))
    hyps: list[dict[str, list[str]]] = [{} for _ in models]
    for m in models:  # warm-up: first calls build oneDNN primitives and touch the graph
        decoder.decode(log_probs_of(m, utts[0][1]))
    for r in range(a.rounds):
        for i, (utt, x) in enumerate(utts):
            for j in range(k):
                m = (j + i + r) % k
                t0 = time.perf_counter()
                lp = log_probs_of(models[m], x)
                t1 = time.perf_counter()
                hyp = decoder.decode(lp)
                t2 = time.perf_counter()
                net[r, m, i], search[r, m, i] = t1 - t0, t2 - t1
                hyps[m][utt] = hyp
        for m, d in enumerate(a.model_dirs):
            tot = net[r, m].sum() + search[r, m].sum()
            print(f"round {r + 1} {d}: network {net[r, m].sum():.2f} s search {search[r, m].sum():.2f} s "
                  f"total {tot:.2f} s RTF {tot / audio:.4f} ({n} utterances, {audio:.1f} s of audio)", flush=True)
    refs = read_text(data / "text")
    refs = {u: refs[u] for u, _ in utts}
    for m, d in enumerate(a.model_dirs):
        print(f"{d}: {compute_wer(refs, hyps[m])[0].kaldi_line()}")
    total = net + search
    for m, d in enumerate(a.model_dirs[1:], start=1):
        for name, t in (("total", total), ("network", net), ("search", search)):
            per_utt_m, per_utt_0 = t[:, m].sum(axis=0), t[:, 0].sum(axis=0)
            lo, hi = ratio_interval(per_utt_m, per_utt_0)
            rounds = " ".join(f"{t[r, m].sum() / t[r, 0].sum():.3f}" for r in range(a.rounds))
            print(f"{d} / {a.model_dirs[0]} {name} time: {per_utt_m.sum() / per_utt_0.sum():.3f} "
                  f"[95% CI {lo:.3f}, {hi:.3f}]; per round {rounds}")


if __name__ == "__main__":
    main()
