"""Kaldi-compatible log-mel filterbank features (kaldi-native-fbank), kaldiio storage, CMVN.

``make_fbank`` writes, for a data dir ``data/<set>``:

    <feat_dir>/raw_fbank_<set>.ark   features (Kaldi compressed matrices)
    data/<set>/feats.scp             utt -> ark offset (written last: it marks completion)
    data/<set>/utt2num_frames
    data/<set>/cmvn.scp + <feat_dir>/cmvn_<set>.ark   Kaldi CMVN stats, per speaker or global
    data/<set>/fbank.yaml            the extraction options, copied into every model dir

CMVN is applied when features are read (Kaldi's ``apply-cmvn`` on the fly), with the stats of
the utterance's speaker (``cmvn: speaker``), of the whole set (``global``), of the utterance
itself (``utterance``: no stats file; what an offline runtime without speaker information can
compute, so a model trained so deploys with no mismatch) or not at all (``none``).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from asrcomp.datadir import DataDir, read_data_dir, read_table, write_table
from asrcomp.utils import InputError, atomic_open, options_from_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FbankConfig:
    """Extraction options; the same at train and test time (stored in the model dir)."""

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0  # 0: features are deterministic
    snip_edges: bool = False  # lhotse/icefall convention: T = round(duration / shift)
    low_freq: float = 20.0
    high_freq: float = -400.0
    # Samples are scaled to [-1, 1] (lhotse and sherpa-onnx), not Kaldi's int16 range.
    cmvn: str = "speaker"  # speaker | global | utterance | none
    norm_vars: bool = True

    @classmethod
    def from_dict(cls, d: dict, where="fbank config") -> "FbankConfig":
        return options_from_dict(cls, d, where, "fbank")


def compute_fbank(samples: np.ndarray, cfg: FbankConfig) -> np.ndarray:
    """Log-mel fbank of a mono waveform (float in [-1, 1]) -> ``(T, num_mel_bins)`` float32."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = cfg.sample_rate
    opts.frame_opts.frame_length_ms = cfg.frame_length_ms
    opts.frame_opts.frame_shift_ms = cfg.frame_shift_ms
    opts.frame_opts.dither = cfg.dither
    opts.frame_opts.snip_edges = cfg.snip_edges
    opts.mel_opts.num_bins = cfg.num_mel_bins
    opts.mel_opts.low_freq = cfg.low_freq
    opts.mel_opts.high_freq = cfg.high_freq
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(cfg.sample_rate, samples.astype(np.float32).tolist())
    fbank.input_finished()
    n = fbank.num_frames_ready
    if n == 0:
        return np.zeros((0, cfg.num_mel_bins), dtype=np.float32)
    return np.stack([fbank.get_frame(i) for i in range(n)]).astype(np.float32)


def read_audio(spec: str, utt: str, wav_scp: Path, line: int | None, sample_rate: int) -> np.ndarray:
    """Read one ``wav.scp`` entry (a path or a ``cmd |`` pipe) as float32 in [-1, 1].

    Errors name the ``wav.scp`` line: missing or unreadable audio, more than one
    channel, or a sample rate other than the config's.
    """
    import soundfile as sf

    try:
        if spec.rstrip().endswith("|"):
            out = subprocess.run(spec.rstrip()[:-1], shell=True, capture_output=True, check=True).stdout
            data, sr = sf.read(io.BytesIO(out), dtype="float32", always_2d=True)
        else:
            data, sr = sf.read(spec, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, subprocess.CalledProcessError, sf.LibsndfileError) as e:
        raise InputError(wav_scp, f"cannot read audio for '{utt}' ({spec}): {e}", line,
                         "check the path, or regenerate the corpus") from e
    if data.shape[1] != 1:
        raise InputError(wav_scp, f"'{utt}' has {data.shape[1]} channels, expected 1", line,
                         "downmix with sox (remix -)")
    if sr != sample_rate:
        raise InputError(wav_scp, f"'{utt}' is sampled at {sr} Hz but the fbank config says {sample_rate} Hz",
                         line, f"resample with 'sox in.wav -r {sample_rate} out.wav' or set sample_rate")
    return data[:, 0]


def _fbank_job(args):
    utts, specs, lines, wav_scp, cfg = args
    return [(u, compute_fbank(read_audio(s, u, wav_scp, ln, cfg.sample_rate), cfg))
            for u, s, ln in zip(utts, specs, lines)]


def make_fbank(data_dir: str | os.PathLike, feat_dir: str | os.PathLike, cfg: FbankConfig = FbankConfig(),
               nj: int = 1, batch: int = 16) -> Path:
    """Extract fbank for every utterance of ``data_dir`` with ``nj`` processes; returns feats.scp.

    Features newer than ``wav.scp`` and made with ``cfg`` are kept as they are; made with other
    CMVN options only (``cmvn``, ``norm_vars``), they keep their frames and get new CMVN stats
    and ``fbank.yaml`` (Kaldi's compute-cmvn-stats without make-fbank); otherwise they are
    extracted again. So a recipe rerun after its config's ``fbank:`` changed does what it says."""
    import kaldiio
    from tqdm import tqdm

    data = read_data_dir(data_dir)
    feat_dir = Path(feat_dir).resolve()
    feat_dir.mkdir(parents=True, exist_ok=True)
    name = data.path.resolve().name
    wav_scp = data.path / "wav.scp"
    feats_scp, yaml_path = data.path / "feats.scp", data.path / "fbank.yaml"
    if feats_scp.is_file() and yaml_path.is_file() and feats_scp.stat().st_mtime > wav_scp.stat().st_mtime:
        old, new = asdict(load_fbank_config(data.path)), asdict(cfg)
        if old == new:
            log.info("%s: features already made with these options", name)
            return feats_scp
        if {k: v for k, v in old.items() if k not in CMVN_OPTIONS} == \
                {k: v for k, v in new.items() if k not in CMVN_OPTIONS}:
            compute_cmvn_stats(data, feat_dir, cfg, feats_scp)
            with atomic_open(yaml_path, "w") as f:
                yaml.safe_dump(new, f, sort_keys=False)
            log.info("%s: features kept, CMVN changed from %s to %s", name,
                     {k: old[k] for k in CMVN_OPTIONS}, {k: new[k] for k in CMVN_OPTIONS})
            return feats_scp
    line_of = {u: i for i, u in enumerate(read_table(wav_scp, max_fields=None), 1)}
    utts = data.utts
    jobs = [(utts[i:i + batch], [data.wav_scp[u] for u in utts[i:i + batch]],
             [line_of[u] for u in utts[i:i + batch]], wav_scp, cfg) for i in range(0, len(utts), batch)]
    (data.path / "feats.scp").unlink(missing_ok=True)  # stale features must not look complete
    ark = feat_dir / f"raw_fbank_{name}.ark"
    tmp_scp = data.path / ".feats.scp.tmp"
    num_frames: dict[str, str] = {}
    ctx = get_context("fork")
    with ctx.Pool(nj) as pool, kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}", compression_method=2) as w, \
            tqdm(total=len(utts), desc=f"fbank {name}", unit="utt", mininterval=5) as bar:
        for results in pool.imap(_fbank_job, jobs):
            for utt, feats in results:
                if len(feats) == 0:
                    raise InputError(wav_scp, f"'{utt}' is shorter than one frame", line_of[utt])
                w(utt, feats)
                num_frames[utt] = str(len(feats))
            bar.update(len(results))
    write_table(data.path / "utt2num_frames", num_frames)
    with atomic_open(data.path / "fbank.yaml", "w") as f:
        yaml.safe_dump(asdict(cfg), f, sort_keys=False)
    compute_cmvn_stats(data, feat_dir, cfg, tmp_scp)
    os.replace(tmp_scp, data.path / "feats.scp")
    log.info("%s: %d utterances, %d frames", name, len(utts), sum(map(int, num_frames.values())))
    return data.path / "feats.scp"


def compute_cmvn_stats(data: DataDir, feat_dir: Path, cfg: FbankConfig, feats_scp: Path) -> None:
    """Kaldi-format CMVN stats ``(2, D+1)``: [sum x, count; sum x^2, 0], per speaker or one global."""
    import kaldiio

    name = data.path.resolve().name
    if cfg.cmvn not in CMVN_MODES:
        raise ValueError(f"cmvn must be one of {', '.join(CMVN_MODES)}, not {cfg.cmvn!r}")
    if cfg.cmvn in ("utterance", "none"):  # no stats file: computed per utterance when read, or none
        (data.path / "cmvn.scp").unlink(missing_ok=True)
        return
    feats = kaldiio.load_scp(str(feats_scp))
    groups = data.spk2utt if cfg.cmvn == "speaker" else {"global": data.utts}
    ark = feat_dir / f"cmvn_{name}.ark"
    tmp = data.path / ".cmvn.scp.tmp"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp}") as w:
        for key, utts in groups.items():
            d = cfg.num_mel_bins
            stats = np.zeros((2, d + 1), dtype=np.float64)
            for u in utts:
                x = feats[u].astype(np.float64)
                stats[0, :d] += x.sum(0)
                stats[1, :d] += (x * x).sum(0)
                stats[0, d] += len(x)
            w(key, stats)
    if cfg.cmvn == "global":
        # every speaker points at the one global entry, so readers need no special case
        glob = read_table(tmp)["global"]
        write_table(tmp, {spk: glob for spk in data.spk2utt})
    os.replace(tmp, data.path / "cmvn.scp")


CMVN_MODES = ("speaker", "global", "utterance", "none")
CMVN_OPTIONS = ("cmvn", "norm_vars")  # applied when features are read: changing them keeps the frames


def utterance_stats(feats: np.ndarray) -> np.ndarray:
    """Kaldi CMVN stats ``(2, D+1)`` of one utterance's ``(T, D)`` features."""
    x = feats.astype(np.float64)
    return np.stack([np.r_[x.sum(0), len(x)], np.r_[(x * x).sum(0), 0.0]])


def normalise(feats: np.ndarray, cfg: "FbankConfig", stats: np.ndarray | None) -> np.ndarray:
    """``(T, D)`` features as a model reads them under ``cfg.cmvn``: ``stats`` are the speaker's
    (or the global) CMVN stats; with ``utterance`` the utterance's own; with ``none`` unchanged."""
    if cfg.cmvn == "utterance":
        stats = utterance_stats(feats)
    if cfg.cmvn == "none" or stats is None:
        return feats
    return apply_cmvn(feats, stats, cfg.norm_vars)


def apply_cmvn(feats: np.ndarray, stats: np.ndarray, norm_vars: bool = True) -> np.ndarray:
    """Normalise ``(T, D)`` features with Kaldi CMVN stats ``(2, D+1)``."""
    d = feats.shape[1]
    count = stats[0, d]
    mean = stats[0, :d] / count
    out = feats - mean
    if norm_vars:
        var = np.maximum(stats[1, :d] / count - mean * mean, 1e-10)
        out = out / np.sqrt(var)
    return out.astype(np.float32)


def load_fbank_config(data_dir: str | os.PathLike) -> FbankConfig:
    p = Path(data_dir) / "fbank.yaml"
    if not p.is_file():
        raise InputError(p, "feature options missing", fix="run steps/make_fbank.sh on this data dir")
    return FbankConfig.from_dict(yaml.safe_load(p.read_text()), where=p)


def iter_features(data_dir: str | os.PathLike, utts: list[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, CMVN-normalised features)`` in utterance order."""
    import kaldiio

    data = read_data_dir(data_dir, need_features=True)
    cfg = load_fbank_config(data.path)
    feats = kaldiio.load_scp(str(data.path / "feats.scp"))
    cmvn = kaldiio.load_scp(str(data.path / "cmvn.scp")) if cfg.cmvn in ("speaker", "global") else None
    for u in utts if utts is not None else data.utts:
        yield u, normalise(feats[u], cfg, cmvn[data.utt2spk[u]] if cmvn is not None else None)
