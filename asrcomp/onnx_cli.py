"""The deployment subcommands of ``asrcomp``: export-onnx, onnx-fp16, onnx-int8, decode-onnx, decode-sherpa.

Kept out of ``cli.py`` (which only calls :func:`add_commands`).
"""

from __future__ import annotations

from asrcomp.utils import InputError

# lazy: each handler imports onnx_export / sherpa / decode inside itself, so that
# `asrcomp --help` does not load torch, onnx or sherpa-onnx.


def _export(a):
    from asrcomp.onnx_export import export_onnx

    export_onnx(a.model_dir, a.out_dir, cmvn_dir=a.cmvn_dir, acoustic_scale=a.acoustic_scale,
                blank_penalty=a.blank_penalty, cmvn=a.cmvn)


def _fp16(a):
    from asrcomp.onnx_export import to_fp16

    to_fp16(a.onnx_dir, a.out_dir)


def _int8(a):
    from asrcomp.onnx_export import quantize

    quantize(a.onnx_dir, a.out_dir, a.mode, a.calib_dir, a.calib_utts, per_channel=not a.per_tensor,
             **({} if a.float_nodes is None else {"float_nodes": a.float_nodes}))


def _decode_onnx(a):
    from asrcomp.decode import DecodeOptions
    from asrcomp.onnx_export import decode_onnx

    res = decode_onnx(a.onnx_dir, a.data_dir, a.graph_dir, DecodeOptions(beam=a.beam, max_active=a.max_active),
                      threads=a.threads)
    for r in res.values():
        print(f"{r['dir']}: {r['wer'].kaldi_line()} RTF {r['rtf']:.4f} (onnxruntime, {a.threads} thread)")


def _decode_sherpa(a):
    from asrcomp.sherpa import decode_sherpa

    try:
        r = decode_sherpa(a.onnx_dir, a.data_dir, a.graph_dir, a.max_active, a.threads)
    except RuntimeError as e:  # sherpa-onnx died in its child process: one clear error, exit status 2
        raise InputError(a.onnx_dir, str(e), fix="check the model, tokens.txt and graph with asrcomp's own "
                         "decode-onnx; rerun with sherpa-onnx's debug output for more") from e
    print(f"{r['dir']}: {r['wer'].kaldi_line()} RTF {r['rtf']:.4f} (sherpa-onnx, {a.threads} thread)")


def add_commands(add) -> None:
    """Register the subcommands with ``add(name, help=...) -> ArgumentParser`` (cli.py's helper)."""
    s = add("export-onnx", help="ONNX model dir for onnxruntime / sherpa-onnx (CMVN baked in)")
    s.add_argument("--cmvn", choices=["global", "utterance"], default="global",
                   help="CMVN in the graph instead of per-speaker: the training data's global stats, or each "
                        "utterance's own mean and variance")
    s.add_argument("--cmvn-dir", help="data dir whose CMVN stats become the model's global CMVN "
                   "(default: the training data dir in the model's history)")
    s.add_argument("--acoustic-scale", type=float, default=1.0, help="baked into the output (sherpa-onnx has none)")
    s.add_argument("--blank-penalty", type=float, default=0.0, help="subtracted from blank in the output")
    s.add_argument("model_dir", help="model dir, or a packed model.acz")
    s.add_argument("out_dir")
    s.set_defaults(func=_export)

    s = add("onnx-fp16", help="fp16-weight copy of an exported ONNX dir (half the bytes, float32 compute)")
    s.add_argument("onnx_dir")
    s.add_argument("out_dir")
    s.set_defaults(func=_fp16)

    s = add("onnx-int8", help="int8 copy of an exported ONNX dir (onnxruntime quantisation)")
    s.add_argument("--mode", choices=["dynamic", "static"], default="dynamic",
                   help="dynamic: int8 weights, activations per call; static: QDQ, activations calibrated")
    s.add_argument("--calib-dir", help="static: data dir whose features calibrate activations (training data)")
    s.add_argument("--calib-utts", type=int, default=100, help="static: utterances to calibrate on")
    s.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    s.add_argument("--float-nodes", help="regex of node names kept float32 (default '^/net/output/': the "
                   "output layer; '' quantises every node)")
    s.add_argument("onnx_dir")
    s.add_argument("out_dir")
    s.set_defaults(func=_int8)

    s = add("decode-onnx", help="decode a data dir with an ONNX dir in onnxruntime (TLG and greedy, RTF)")
    s.add_argument("--graph-dir", help="dir with TLG.fst; without it only greedy decoding")
    s.add_argument("--beam", type=float, default=16.0)
    s.add_argument("--max-active", type=int, default=7000)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("onnx_dir")
    s.add_argument("data_dir")
    s.set_defaults(func=_decode_onnx)

    s = add("decode-sherpa", help="decode a data dir's audio with sherpa-onnx and an ONNX dir (+ TLG.fst)")
    s.add_argument("--graph-dir", help="dir with TLG.fst and words.txt; without it greedy search")
    s.add_argument("--max-active", type=int, default=7000)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("onnx_dir")
    s.add_argument("data_dir")
    s.set_defaults(func=_decode_sherpa)
