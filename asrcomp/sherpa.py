"""Decode a data dir with sherpa-onnx (``asrcomp decode-sherpa``): the runtime a model is deployed with.

sherpa-onnx's offline recogniser is given an exported dir (``asrcomp export-onnx``: model.onnx
with the ``zipformer2_ctc`` conventions, tokens.txt) and the recipe's ``TLG.fst``. It reads the
WAV files itself, computes its own fbank (kaldi-native-fbank, the options ``asrcomp`` uses) and
runs its Kaldi FasterDecoder over the graph. The graph convention is the one ``make_graph``
writes: input label = token id + 1, so blank (token 0) is label 1 and 0 is epsilon (sherpa-onnx's
``offline-ctc-fst-decoder.cc`` skips label 0 and ``blank_id + 1`` with ``blank_id = 0`` and
subtracts 1 from the others), so ``TLG.fst`` is used as it is. Words come back as output
labels, mapped through the graph's ``words.txt``.

sherpa-onnx kills the process (exit 255, or a segfault) on a bad model, metadata or FST
instead of raising, so :func:`decode_sherpa` checks the inputs first (clear :class:`InputError`)
and runs the recogniser in a child process (``python -m asrcomp.sherpa``): whatever it dies of is
reported as one error with its last messages, never as a dead parent.

Writes ``<onnx-dir>/sherpa_<set>_<graph>/`` (or ``sherpa_<set>_greedy/`` without a graph; not
``decode_*``, which are onnxruntime's decodes that ``asrcomp compare`` reads): ``hyp.txt``, ``wer``, ``errs`` and ``rtf`` (wall-clock seconds of sherpa-onnx, fbank +
network + search, one thread, one utterance at a time, over audio seconds).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from asrcomp.datadir import read_data_dir, read_table
from asrcomp.decode import tokens_to_words
from asrcomp.decode_dir import _phone_refs
from asrcomp.features import read_audio
from asrcomp.lang import read_symbol_table
from asrcomp.modeldir import check_token_set, read_model_yaml, read_token_lines
from asrcomp.score import read_text, write_scoring
from asrcomp.utils import InputError, atomic_open

log = logging.getLogger(__name__)

# FeatureExtractorConfig options sherpa-onnx's Python API exposes; the rest must be its defaults
SHERPA_FIXED = {"frame_length_ms": 25.0, "frame_shift_ms": 10.0}


def _onnx_vocab(onnx_path: Path) -> tuple[dict[str, str], int | None]:
    import onnx

    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(onnx_path, f"not a readable ONNX model: {e}", fix="rerun asrcomp export-onnx") from e
    meta = {p.key: p.value for p in proto.metadata_props}
    outs = proto.graph.output
    dims = outs[0].type.tensor_type.shape.dim if outs else []
    v = dims[2].dim_value if len(dims) == 3 and dims[2].HasField("dim_value") else None
    ins = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if len(ins) != 2 or len(outs) != 2:
        raise InputError(onnx_path, f"has inputs {ins} and {len(outs)} outputs; sherpa-onnx's zipformer2_ctc type "
                         "needs (x (N,T,F), x_lens (N,)) -> (log_probs (N,T',V), log_probs_len (N,))",
                         fix="export it with asrcomp export-onnx")
    return meta, v


def validate(onnx_dir: str | os.PathLike, graph_dir: str | os.PathLike | None) -> dict:
    """Everything sherpa-onnx would die of, checked in Python; returns the model.yaml of ``onnx_dir``."""
    onnx_dir = Path(onnx_dir)
    model = onnx_dir / "model.onnx"
    if not model.is_file():
        raise InputError(model, "model not found", fix="run asrcomp export-onnx <model-dir> <onnx-dir> first")
    cfg = read_model_yaml(onnx_dir)
    meta, vocab = _onnx_vocab(model)
    if meta.get("model_type") != "zipformer2_ctc":
        raise InputError(model, f"metadata model_type is {meta.get('model_type')!r}, not 'zipformer2_ctc' "
                         "(sherpa-onnx would exit without a message)", fix="export it with asrcomp export-onnx")
    if vocab is None:
        raise InputError(model, "output 0 has no static vocabulary dimension (sherpa-onnx reads the vocabulary "
                         "size from it)", fix="export it with asrcomp export-onnx")
    tokens = read_token_lines(onnx_dir / "tokens.txt")
    if len(tokens) != vocab:
        raise InputError(onnx_dir / "tokens.txt", f"has {len(tokens)} tokens, the model outputs {vocab}",
                         fix="copy the model dir's tokens.txt")
    feats = cfg.get("features", {}) or {}
    for k, want in SHERPA_FIXED.items():
        if float(feats.get(k, want)) != want:
            raise InputError(onnx_dir / "model.yaml", f"features {k}={feats[k]} but sherpa-onnx's Python API "
                             f"fixes it at {want}", fix="train with the standard fbank options")
    if graph_dir is not None:
        import kaldifst

        graph_dir = Path(graph_dir)
        tlg = graph_dir / "TLG.fst"
        if not tlg.is_file():
            raise InputError(tlg, "decoding graph not found (sherpa-onnx would crash on it)",
                             fix="run steps/make_graph.sh, or pass the graph dir holding TLG.fst")
        if not (graph_dir / "words.txt").is_file():
            raise InputError(graph_dir / "words.txt", "word table not found", fix="run steps/make_graph.sh")
        check_token_set(onnx_dir, graph_dir / "tokens.txt")
        try:
            fst = kaldifst.StdVectorFst.read(str(tlg))
        except Exception as e:  # noqa: BLE001
            raise InputError(tlg, f"not a readable OpenFst graph: {e}", fix="rerun steps/make_graph.sh") from e
        if fst.start < 0:
            raise InputError(tlg, "graph has no start state", fix="rerun steps/make_graph.sh")
        top = max((a.ilabel for s in range(fst.num_states) for a in kaldifst.ArcIterator(fst, s)), default=0)
        if top > vocab:
            raise InputError(tlg, f"input label {top} > {vocab}: labels must be token id + 1 for the model's "
                             f"{vocab} tokens", fix="rebuild the graph from the model's lang dir")
    return cfg


def _recognizer(model: str, tokens: str, feats: dict, graph: str, max_active: int, threads: int):
    from sherpa_onnx.lib._sherpa_onnx import (FeatureExtractorConfig, OfflineCtcFstDecoderConfig, OfflineModelConfig,
                                              OfflineRecognizer, OfflineRecognizerConfig,
                                              OfflineZipformerCtcModelConfig)

    feat = FeatureExtractorConfig(sampling_rate=int(feats.get("sample_rate", 16000)),
                                  feature_dim=int(feats.get("num_mel_bins", 80)),
                                  low_freq=float(feats.get("low_freq", 20.0)),
                                  high_freq=float(feats.get("high_freq", -400.0)),
                                  dither=float(feats.get("dither", 0.0)), normalize_samples=True,
                                  snip_edges=bool(feats.get("snip_edges", False)))
    mc = OfflineModelConfig(zipformer_ctc=OfflineZipformerCtcModelConfig(model=model), tokens=tokens,
                            num_threads=threads, debug=False, provider="cpu")
    rc = OfflineRecognizerConfig(feat_config=feat, model_config=mc, decoding_method="greedy_search",
                                 ctc_fst_decoder_config=OfflineCtcFstDecoderConfig(graph=graph, max_active=max_active))
    return OfflineRecognizer(rc)


def _worker(job_path: str) -> None:
    """Child process: decode the job's utterances, one JSON line each, then a summary line."""
    import time

    import numpy as np

    job = json.loads(Path(job_path).read_text())
    t0 = time.perf_counter()
    rec = _recognizer(job["model"], job["tokens"], job["features"], job["graph"], job["max_active"], job["threads"])
    load = time.perf_counter() - t0
    sr = int(job["features"].get("sample_rate", 16000))
    secs, audio = 0.0, 0.0
    with open(job["out"], "w", encoding="utf-8") as out:
        for utt, spec, line in job["utts"]:
            samples = read_audio(spec, utt, Path(job["wav_scp"]), line, sr)
            t0 = time.perf_counter()
            s = rec.create_stream()
            s.accept_waveform(sr, np.ascontiguousarray(samples, dtype=np.float32))
            rec.decode_stream(s)
            r = s.result
            secs += time.perf_counter() - t0
            audio += len(samples) / sr
            out.write(json.dumps({"utt": utt, "words": list(r.words), "tokens": list(r.tokens)}) + "\n")
        out.write(json.dumps({"summary": {"decode_s": secs, "audio_s": audio, "load_s": load}}) + "\n")


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with status {rc}"


def run_sherpa(onnx_dir: Path, cfg: dict, utts: list[tuple[str, str, int | None]], wav_scp: Path,
               graph_dir: Path | None, max_active: int = 7000, threads: int = 1) -> tuple[list[dict], dict]:
    """Run the recogniser in a child process; ``(per-utterance results, timing summary)``.

    RuntimeError, with what the child printed last, if sherpa-onnx dies.
    """
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "out.jsonl"
        job = {"model": str(onnx_dir / "model.onnx"), "tokens": str(onnx_dir / "tokens.txt"),
               "graph": str(Path(graph_dir) / "TLG.fst") if graph_dir is not None else "",
               "max_active": int(max_active), "threads": int(threads), "features": cfg.get("features", {}) or {},
               "utts": utts, "wav_scp": str(wav_scp), "out": str(out)}
        (Path(td) / "job.json").write_text(json.dumps(job))
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        p = subprocess.run([sys.executable, "-m", "asrcomp.sherpa", str(Path(td) / "job.json")],
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            tail = "\n".join((p.stderr or p.stdout or "").strip().splitlines()[-8:])
            raise RuntimeError(f"sherpa-onnx {_describe_exit(p.returncode)} decoding with {onnx_dir}/model.onnx"
                               + (f" and {job['graph']}" if job["graph"] else "") + f"; its last messages:\n{tail}")
        lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    if not lines or "summary" not in lines[-1]:
        raise RuntimeError(f"sherpa-onnx stopped before the end of {wav_scp}")
    return lines[:-1], lines[-1]["summary"]


def decode_sherpa(onnx_dir: str | os.PathLike, data_dir: str | os.PathLike, graph_dir: str | os.PathLike | None,
                  max_active: int = 7000, threads: int = 1) -> dict:
    """Decode and score ``data_dir`` with sherpa-onnx; returns ``{"wer": WerStats, "rtf": float, "dir": Path}``."""
    onnx_dir, data_dir = Path(onnx_dir), Path(data_dir)
    cfg = validate(onnx_dir, graph_dir)
    data = read_data_dir(data_dir)
    wav_scp = data.path / "wav.scp"
    line_of = {u: i for i, u in enumerate(read_table(wav_scp, max_fields=None), 1)}
    utts = [(u, data.wav_scp[u], line_of.get(u)) for u in data.utts]
    results, summary = run_sherpa(onnx_dir, cfg, utts, wav_scp, Path(graph_dir) if graph_dir else None,
                                  max_active, threads)
    name = data.path.resolve().name
    if graph_dir is not None:
        id2word = {i: w for w, i in read_symbol_table(Path(graph_dir) / "words.txt").items()}
        hyps = {r["utt"]: [id2word[i] for i in r["words"]] for r in results}
        out = onnx_dir / f"sherpa_{name}_{Path(graph_dir).resolve().name}"
        refs = read_text(data.path / "text")
    else:
        tok2id = read_symbol_table(onnx_dir / "tokens.txt")
        id2tok = {i: t for t, i in tok2id.items()}
        ttype = cfg["tokens"]["token_type"]
        # sherpa-onnx returns token strings (byte-fallback pieces rewritten as <0x..>): map back to ids
        hyps = {r["utt"]: tokens_to_words([tok2id[t] for t in r["tokens"] if t in tok2id], id2tok, ttype)
                for r in results}
        out = onnx_dir / f"sherpa_{name}_greedy"
        refs = read_text(data.path / "text")
        if ttype == "phone":
            refs = _phone_refs(refs, onnx_dir, cfg)
    out.mkdir(parents=True, exist_ok=True)
    stats = write_scoring(out, refs, hyps)
    rtf = summary["decode_s"] / max(summary["audio_s"], 1e-9)
    with atomic_open(out / "rtf", "w") as f:
        f.write(f"RTF {rtf:.4f} sherpa-onnx {summary['decode_s']:.2f}s (fbank + network + search) "
                f"audio {summary['audio_s']:.1f}s threads {threads} load {summary['load_s']:.2f}s\n")
    log.info("%s: %s RTF %.4f", out, stats.kaldi_line(), rtf)
    return {"wer": stats, "rtf": rtf, "dir": out}


if __name__ == "__main__":
    _worker(sys.argv[1])
