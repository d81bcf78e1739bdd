"""Decode a data dir with a model dir (``asrcomp decode``) and score it.

Writes ``<model-dir>/decode_<set>_<graph>/`` (TLG search) and
``<model-dir>/decode_<set>_greedy/`` (CTC greedy, no LM), each with ``hyp.txt``,
``wer``, ``errs`` and ``rtf`` (real-time factor on one thread: network + search
seconds over audio seconds; features are precomputed and not counted).

Features are read lazily from the data dir's lhotse manifest (``asrcomp/dataset.py``).
Split into ``--nj`` jobs: job ``j`` of ``n`` decodes every n-th utterance and
writes ``hyp.<j>.txt`` / ``rtf.<j>.yaml``; ``merge_and_score`` combines them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import yaml

from asrcomp.datadir import read_table, write_table
from asrcomp.dataset import iter_cut_features
from asrcomp.decode import DecodeOptions, TlgDecoder, ctc_greedy, tokens_to_words
from asrcomp.features import load_fbank_config
from asrcomp.lang import UNK_WORD, read_lexicon, read_symbol_table
from asrcomp.modeldir import check_token_set, load_model_dir, read_model_yaml
from asrcomp.score import read_text, write_scoring
from asrcomp.utils import InputError, atomic_open

log = logging.getLogger(__name__)


def decode_dirs(model_dir: Path, data_dir: Path, graph_dir: Path | None) -> dict[str, Path]:
    """Output dirs: ``{"tlg": .../decode_<set>_<graph>, "greedy": .../decode_<set>_greedy}``."""
    name = Path(data_dir).resolve().name
    out = {"greedy": Path(model_dir) / f"decode_{name}_greedy"}
    if graph_dir is not None:
        out["tlg"] = Path(model_dir) / f"decode_{name}_{Path(graph_dir).resolve().name}"
    return out


def check_features_match(model_cfg: dict, data_dir: Path, model_dir: Path) -> None:
    """The data's fbank options must be the ones the model was trained on."""
    data_feats = asdict(load_fbank_config(data_dir))
    diff = {k: (v, data_feats.get(k)) for k, v in model_cfg.get("features", {}).items() if data_feats.get(k) != v}
    if diff:
        k, (want, got) = next(iter(diff.items()))
        raise InputError(Path(data_dir) / "fbank.yaml", f"feature option {k}={got!r} but the model in {model_dir} "
                         f"was trained with {k}={want!r}", fix="rerun steps/make_fbank.sh with the model's options")


def decode_job(model_dir: str | os.PathLike, data_dir: str | os.PathLike, graph_dir: str | os.PathLike | None,
               job: int = 1, nj: int = 1, opts: DecodeOptions | None = None) -> dict[str, Path]:
    """Decode utterances ``job-1, job-1+nj, ...`` of ``data_dir``; one thread, batch of one."""
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    torch.set_num_threads(1)
    model, cfg = load_model_dir(model_dir)
    check_features_match(cfg, data_dir, model_dir)
    outs = decode_dirs(model_dir, data_dir, graph_dir)
    decoder = None
    if graph_dir is not None:
        check_token_set(model_dir, Path(graph_dir) / "tokens.txt")
        decoder = TlgDecoder(graph_dir, opts)
    id2tok = {i: t for t, i in read_symbol_table(model_dir / "tokens.txt").items()}
    token_type = cfg["tokens"]["token_type"]
    durations = read_durations(data_dir)
    hyps: dict[str, dict[str, str]] = {k: {} for k in outs}
    secs = {"nnet": 0.0, "search": 0.0, "audio": 0.0}
    for utt, x in iter_cut_features(data_dir, job, nj):  # lazily, from the data dir's lhotse manifest
        t0 = time.perf_counter()
        lp = log_probs_of(model, x)
        t1 = time.perf_counter()
        if decoder is not None:
            hyps["tlg"][utt] = " ".join(decoder.decode(lp))
        t2 = time.perf_counter()
        hyps["greedy"][utt] = " ".join(tokens_to_words(ctc_greedy(lp), id2tok, token_type))
        secs["nnet"] += t1 - t0
        secs["search"] += t2 - t1
        secs["audio"] += durations.get(utt, len(x) * cfg.get("frame_shift_ms", 10) / 1000)
    for kind, d in outs.items():
        d.mkdir(parents=True, exist_ok=True)
        write_table(d / f"hyp.{job}.txt", {u: h or "" for u, h in hyps[kind].items()})
        with atomic_open(d / f"rtf.{job}.yaml", "w") as f:
            s = dict(secs, search=secs["search"] if kind == "tlg" else 0.0)
            yaml.safe_dump(s, f)
    return outs


def merge_and_score(model_dir: str | os.PathLike, data_dir: str | os.PathLike, graph_dir, nj: int) -> dict:
    """Merge the jobs' hypotheses and timings, score, write ``wer``/``errs``/``hyp.txt``/``rtf``.

    Returns ``{kind: {"wer": WerStats, "rtf": float}}``. For a phone model the
    greedy output is phones: it is scored against the lexicon-expanded reference
    (a token error rate) and written as ``ter`` instead of ``wer``.
    """
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    cfg = read_model_yaml(model_dir)
    refs = read_text(data_dir / "text")
    results = {}
    for kind, d in decode_dirs(model_dir, data_dir, graph_dir).items():
        hyps: dict[str, list[str]] = {}
        secs = {"nnet": 0.0, "search": 0.0, "audio": 0.0}
        for j in range(1, nj + 1):
            hp, rp = d / f"hyp.{j}.txt", d / f"rtf.{j}.yaml"
            if not hp.is_file() or not rp.is_file():
                raise InputError(hp, f"decoding job {j} of {nj} did not finish", fix=f"see {d}/log/ and rerun")
            hyps.update({u: t.split() for u, t in read_table(hp, max_fields=None, allow_empty_value=True).items()})
            for k, v in yaml.safe_load(rp.read_text()).items():
                secs[k] += v
        the_refs = refs
        if kind == "greedy" and cfg["tokens"]["token_type"] == "phone":
            the_refs = _phone_refs(refs, model_dir, cfg)
        stats = write_scoring(d, the_refs, hyps)
        if kind == "greedy" and cfg["tokens"]["token_type"] == "phone":
            os.replace(d / "wer", d / "ter")
        rtf = (secs["nnet"] + secs["search"]) / max(secs["audio"], 1e-9)
        with atomic_open(d / "rtf", "w") as f:
            f.write(f"RTF {rtf:.4f} nnet {secs['nnet']:.2f}s search {secs['search']:.2f}s "
                    f"audio {secs['audio']:.1f}s threads 1\n")
        for j in range(1, nj + 1):
            (d / f"hyp.{j}.txt").unlink()
            (d / f"rtf.{j}.yaml").unlink()
        log.info("%s: %s RTF %.4f", d, stats.kaldi_line(), rtf)
        results[kind] = {"wer": stats, "rtf": rtf, "dir": d}
    return results


def decode(model_dir, data_dir, graph_dir, opts: DecodeOptions | None = None) -> dict:
    """One-job decode and score (what ``steps/decode.sh --nj 1`` does)."""
    decode_job(model_dir, data_dir, graph_dir, 1, 1, opts)
    return merge_and_score(model_dir, data_dir, graph_dir, 1)


def read_durations(data_dir: str | os.PathLike) -> dict[str, float]:
    """``{utt: seconds}`` from the data dir's ``utt2dur``; empty when it has none."""
    p = Path(data_dir) / "utt2dur"
    return {u: float(v) for u, v in read_table(p).items()} if p.is_file() else {}


def _phone_refs(refs: dict[str, list[str]], model_dir: Path, cfg: dict) -> dict[str, list[str]]:
    """The reference words expanded into phones (first pronunciation; <UNK>'s for unknown words)
    with the model dir's own lexicon.txt (a model dir written before it held one: the first lang
    dir its history names that still exists)."""
    path = Path(model_dir) / "lexicon.txt"
    if not path.is_file():
        old = [Path(h["lang_dir"]) / "lexicon.txt" for h in cfg.get("history", []) if h.get("lang_dir")]
        old = [p for p in old if p.is_file()]
        if not old:
            raise InputError(path, "a phone model dir needs its lexicon to score the greedy phone output",
                             fix="rerun the stage that wrote this model dir (it copies the lang dir's lexicon.txt), "
                                 "or copy the lang dir's lexicon.txt into it")
        path = old[0]
    lex: dict[str, list[str]] = {}
    for w, p in read_lexicon(path):
        lex.setdefault(w, p)
    unk = lex.get(UNK_WORD, [])
    return {u: [p for w in ws for p in lex.get(w, unk)] for u, ws in refs.items()}


# Utterances are padded to a multiple of this many frames (the models mask padding, so the
# log-posteriors are the same): PyTorch's oneDNN convolutions build a primitive for every new
# input length, which cost a channel-pruned TDNN more than its convolutions did. Measured on 200
# random 1-10 s inputs, one thread (2026-12-01): the pruned TDNN 24-27 ms per 10 s of audio
# unpadded, 16-17 ms at 32 frames; the 384-wide TDNN 32-37 ms either way.
PAD_FRAMES = 32


def log_probs_of(model, feats: np.ndarray, pad_frames: int = PAD_FRAMES) -> np.ndarray:
    """``(T', V)`` log-posteriors of one utterance's ``(T, F)`` features (run padded to a multiple of
    ``pad_frames`` frames, the padding's outputs dropped)."""
    t = len(feats)
    x = torch.zeros(1, -(-t // pad_frames) * pad_frames, feats.shape[1], dtype=torch.float32)
    x[0, :t] = torch.from_numpy(feats)
    with torch.no_grad():
        lp, lens = model(x, torch.tensor([t]))
    return lp[0, : int(lens[0])].numpy()
