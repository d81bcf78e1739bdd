"""WER and onnxruntime RTF of exported models over a range of TLG beams: speed at equal accuracy.

    cd egs/synth && python ../../bench/beam_rtf.py exp/default/tdnn_onnx_int8 exp/default/tdnn_svd_tt_onnx_int8 \
        data/default/test data/default/lang_phone_3gram --beams 8,10,12,14,16 [--max-active 7000,1000]

Runs each export's network once per utterance (onnxruntime, one thread, batch 1; timed), then
searches the cached log-posteriors at every beam, ``--max-active`` cap and ``--acoustic-scales``
factor (on top of what the exports baked in), the models interleaved setting by setting so that a
drift in the machine's speed hits them alike. Prints one line per export and setting: the Kaldi
%WER line, network and search seconds and the RTF (network + search over audio seconds, as
``asrcomp decode-onnx``). A factorised model whose posteriors are flatter keeps more tokens in
the beam; this shows whether a narrower beam buys its speed back at the baseline's WER.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from asrcomp.decode import DecodeOptions, TlgDecoder
from asrcomp.onnx_export import onnx_posteriors
from asrcomp.score import compute_wer, read_text


def network_outputs(onnx_dir: str, data_dir: str) -> tuple[dict[str, np.ndarray], float, float]:
    """(utt -> log-posteriors (T', V), network seconds, audio seconds) of one export on a data dir."""
    lps, secs, audio = {}, 0.0, 0.0
    for utt, lp, nnet, dur in onnx_posteriors(onnx_dir, data_dir):
        lps[utt], secs, audio = lp, secs + nnet, audio + dur
    return lps, secs, audio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("onnx_dirs", nargs="+")
    p.add_argument("data_dir")
    p.add_argument("graph_dir")
    p.add_argument("--beams", default="8,10,12,14,16")
    p.add_argument("--max-active", default="7000", help="tokens kept per frame, e.g. 7000,2000,500: a cap "
                   "that binds trims the flatter posteriors' extra tokens")
    p.add_argument("--acoustic-scales", default="1.0", help="on top of what the exports baked in, e.g. 1.0,1.25")
    a = p.parse_args()
    refs = read_text(f"{a.data_dir}/text")
    outs = {d: network_outputs(d, a.data_dir) for d in a.onnx_dirs}
    for scale, max_active, beam in itertools.product(map(float, a.acoustic_scales.split(",")),
                                                     map(int, a.max_active.split(",")), map(float, a.beams.split(","))):
        decoder = TlgDecoder(a.graph_dir, DecodeOptions(beam=beam, max_active=max_active, acoustic_scale=scale))
        for d, (lps, nnet, audio) in outs.items():
            t0 = time.perf_counter()
            hyps = {u: decoder.decode(lp) for u, lp in lps.items()}
            search = time.perf_counter() - t0
            stats, _ = compute_wer(refs, hyps)
            print(f"{d} scale {scale:g} max-active {max_active} beam {beam:g} {stats.kaldi_line()} "
                  f"network {nnet:.2f} s search {search:.2f} s RTF {(nnet + search) / audio:.4f}", flush=True)


if __name__ == "__main__":
    main()
