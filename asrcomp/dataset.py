"""lhotse as the data path of training and decoding (icefall's ``asr_datamodule.py``, our way).

A Kaldi data dir with features (``feats.scp``, ``cmvn.scp``, ``text``, ``utt2spk``) stays the
interchange format on disk. Beside ``feats.scp`` we keep a lazy lhotse manifest,
``<data>/feats_cuts.jsonl.gz``: one ``MonoCut`` per utterance, its transcript and speaker in a
supervision, its features attached as lhotse ``Features(storage_type="kaldiio",
storage_path="<ark>:<offset>")`` -- what ``lhotse.kaldi.load_kaldi_data_dir`` makes of a
``feats.scp``, so plain lhotse reads the manifest too. The manifest is (re)built when missing or
older than ``feats.scp`` / ``text`` / ``utt2spk``, streaming over those files (sorted, as Kaldi
keeps them) and written in a seeded global shuffle through bounded chunks (icefall pre-shuffles
its training manifests, ``*-shuf.jsonl.gz``), so building it does not hold the corpus in memory
either. A data dir that cannot be written gets its manifest under ``$ASRCOMP_CACHE``
(default ``~/.cache/asrcomp/cuts``).

Training reads the manifest lazily (``CutSet.from_jsonl_lazy``); batches come from lhotse's
``DynamicBucketingSampler`` (``max_duration`` = ``max_frames`` x frame shift: the padded frames
of a batch, as before), shuffled per epoch from ``(seed, epoch)`` so a resumed run sees the same
batches, each DDP rank taking its own share (the sampler's ``rank`` / ``world_size``). Features
are read per batch (kaldiio) and CMVN'd per speaker; only the sampler's buffer of cut
descriptions and the speakers' CMVN stats stay in memory, so a training process's peak RSS does
not grow with the corpus.

lhotse's own reader for ``storage_type="kaldiio"`` needs the ``kaldi_native_io`` package; when
that is not installed, importing this module registers a kaldiio-based reader under the same
name (same storage layout), so ``cut.load_features()`` works either way.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from asrcomp.features import FbankConfig, load_fbank_config, normalise
from asrcomp.lang import UNK_WORD, Lang, load_lang
from asrcomp.utils import InputError

log = logging.getLogger(__name__)

CUTS_NAME = "feats_cuts.jsonl.gz"
SOURCES = ("feats.scp", "text", "utt2spk", "utt2num_frames", "fbank.yaml")  # the manifest is rebuilt when one is newer
SHUFFLE_CHUNK = 20000  # cuts per in-memory chunk of the bounded-memory shuffle
SAMPLER_BUFFER = 10000  # cuts the bucketing sampler holds (lhotse's DynamicBucketer default)
NUM_BUCKETS = 30  # icefall's --num-buckets; measured padding on speechocean762 train_sp (5000 frames): 10 buckets 92.6 % real frames, 30: 97.3 % (the previous batching 90.3 %)


# ----------------------------------------------------------------------------- lhotse storage


def _register_kaldiio_reader() -> None:
    from lhotse.features import io as lio

    try:
        import kaldi_native_io  # noqa: F401  (lhotse's own KaldiReader works)
        return
    except ImportError:
        pass

    class KaldiioArkReader(lio.FeaturesReader):
        """lhotse's ``kaldiio`` storage read with the ``kaldiio`` package:
        ``storage_path`` = ``<ark>:<offset>`` (or a ``feats.scp`` with ``storage_key`` = utterance)."""

        name = "kaldiio"

        def __init__(self, storage_path, *args, **kwargs):
            super().__init__()
            self.storage_path = str(storage_path)

        def read(self, key: str, left_offset_frames: int = 0, right_offset_frames: int | None = None) -> np.ndarray:
            import kaldiio

            if self.storage_path.endswith(".scp"):
                arr = kaldiio.load_scp(self.storage_path)[key]
            else:
                arr = kaldiio.load_mat(self.storage_path)
            return arr[left_offset_frames:right_offset_frames]

    lio.READER_BACKENDS["kaldiio"] = KaldiioArkReader


_register_kaldiio_reader()


def load_cut_features(cut) -> np.ndarray:
    """``(T, F)`` float32 features of a cut: kaldiio arks directly, any other lhotse storage
    (e.g. icefall's lilcom) through ``cut.load_features()``."""
    f = cut.features
    if f.storage_type == "kaldiio" and not f.storage_path.endswith(".scp"):
        import kaldiio

        return np.require(kaldiio.load_mat(f.storage_path), np.float32, "W")  # writable, for torch
    return cut.load_features()


# ----------------------------------------------------------------------------- the manifest


def _cache_dir() -> Path:
    return Path(os.environ.get("ASRCOMP_CACHE", Path.home() / ".cache" / "asrcomp" / "cuts"))


def _stale(manifest: Path, data_dir: Path) -> bool:
    if not manifest.is_file():
        return True
    t = manifest.stat().st_mtime_ns
    return any((data_dir / s).is_file() and (data_dir / s).stat().st_mtime_ns > t for s in SOURCES)


def _table_lines(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line, key, value)`` of a Kaldi table, streamed; keys must be sorted (Kaldi's C order)."""
    prev = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                raise InputError(path, "empty line", lineno, "remove it")
            key, value = parts[0], parts[1].strip() if len(parts) > 1 else ""
            if prev is not None and key <= prev:
                raise InputError(path, f"'{key}' is out of order or repeated (after '{prev}')", lineno,
                                 f"sort it as Kaldi does: LC_ALL=C sort -u {path} -o {path}")
            prev = key
            yield lineno, key, value


class _Joined:
    """Look up a table's value for ascending keys: streaming through it when it is sorted (as
    Kaldi keeps its tables), else (a feats.scp written in another order) from a dict of it."""

    def __init__(self, path: Path, required: bool = True):
        self.path, self.required, self.table = path, required, None
        if not path.is_file():
            self.it, self.cur = iter(()), None
            return
        try:
            for _ in _table_lines(path):
                pass
        except InputError:
            log.info("%s is not sorted: reading it whole to build the manifest", path)
            self.table = {}
            with open(path, encoding="utf-8") as f:
                for line in f:
                    k, _, v = line.strip().partition(" ")
                    self.table[k] = v.strip()
            self.it, self.cur = iter(()), None
            return
        self.it = _table_lines(path)
        self.cur = next(self.it, None)

    def get(self, key: str) -> str | None:
        if self.table is not None:
            return self.table.pop(key, None)
        while self.cur is not None and self.cur[1] < key:
            if self.required and self.path.name == "text":
                raise InputError(self.path, f"utterance '{self.cur[1]}' is not in utt2spk", self.cur[0],
                                 "make text and utt2spk list the same utterances")
            self.cur = next(self.it, None)
        if self.cur is not None and self.cur[1] == key:
            value, self.cur = self.cur[2], next(self.it, None)
            return value
        return None

    def leftover(self) -> str | None:
        """A key never asked for (text: an utterance utt2spk lacks)."""
        if self.table:
            return next(iter(self.table))
        return self.cur[1] if self.cur is not None else None


def _cut_dicts(data_dir: Path) -> Iterator[dict]:
    """The manifest's cuts (as dicts) in utterance order, streamed over the data dir's tables."""
    import kaldiio
    from lhotse import Features, MonoCut, SupervisionSegment

    cfg = load_fbank_config(data_dir)
    shift = cfg.frame_shift_ms / 1000
    text, feats = _Joined(data_dir / "text"), _Joined(data_dir / "feats.scp")
    nframes = _Joined(data_dir / "utt2num_frames", required=False)
    for lineno, utt, spk in _table_lines(data_dir / "utt2spk"):
        if not utt.startswith(spk):
            raise InputError(data_dir / "utt2spk", f"utterance '{utt}' does not start with its speaker id '{spk}'",
                             lineno, "prefix utterance ids with the speaker id")
        words, ark = text.get(utt), feats.get(utt)
        if not words:
            raise InputError(data_dir / "text", f"utterance '{utt}' of utt2spk has no transcript",
                             fix="make text and utt2spk list the same utterances")
        if ark is None:
            raise InputError(data_dir / "feats.scp", f"utterance '{utt}' has no features",
                             fix="rerun steps/make_fbank.sh on this data dir")
        n = nframes.get(utt)
        if n is not None:
            num_frames, dim = int(n), cfg.num_mel_bins
        else:  # no utt2num_frames: read the matrix once for its shape
            num_frames, dim = kaldiio.load_mat(ark).shape
        dur = round(num_frames * shift, 6)
        sup = SupervisionSegment(id=utt, recording_id=utt, start=0.0, duration=dur, channel=0, text=words,
                                 speaker=spk)
        f = Features(type="kaldi-fbank", num_frames=num_frames, num_features=dim, frame_shift=shift,
                     sampling_rate=cfg.sample_rate, start=0.0, duration=dur, storage_type="kaldiio",
                     storage_path=ark, storage_key=utt, recording_id=utt, channels=0)
        yield MonoCut(id=utt, start=0.0, duration=dur, channel=0, supervisions=[sup], features=f).to_dict()
    if text.leftover() is not None:
        raise InputError(data_dir / "text", f"utterance '{text.leftover()}' is not in utt2spk",
                         fix="make text and utt2spk list the same utterances")


def write_feature_cuts(data_dir: str | os.PathLike, out: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``out`` (jsonl.gz) for ``data_dir``, in a seeded shuffle of bounded memory: every
    cut goes to one of ``ceil(N / SHUFFLE_CHUNK)`` temporary chunks at random, each chunk is then
    shuffled in memory and appended."""
    data_dir, out = Path(data_dir), Path(out)
    n = sum(1 for _ in _table_lines(data_dir / "utt2spk"))  # also: is it sorted
    k = max(1, -(-n // SHUFFLE_CHUNK))
    rng = random.Random(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    chunks = [tmp.with_name(f"{tmp.name}.{i}") for i in range(k)]
    try:
        handles = [open(c, "w", encoding="utf-8") for c in chunks]
        try:
            for d in _cut_dicts(data_dir):
                handles[rng.randrange(k)].write(json.dumps(d, ensure_ascii=False) + "\n")
        finally:
            for h in handles:
                h.close()
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as g:
            for c in chunks:
                lines = c.read_text(encoding="utf-8").splitlines(keepends=True)
                rng.shuffle(lines)
                g.writelines(lines)
                c.unlink()
        os.replace(tmp, out)
    finally:
        for p in (tmp, *chunks):
            p.unlink(missing_ok=True)
    return out


def feature_cuts(data_dir: str | os.PathLike) -> Path:
    """The data dir's lazy feature manifest, (re)built first when missing or stale."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(data_dir, "data dir not found")
    for name in ("text", "utt2spk"):
        if not (data_dir / name).is_file():
            raise InputError(data_dir / name, "missing from the data dir",
                             fix="a data dir needs wav.scp, text and utt2spk; rerun data preparation")
    if not (data_dir / "feats.scp").is_file():
        raise InputError(data_dir / "feats.scp", "features are missing",
                         fix="run the feature stage first (steps/make_fbank.sh)")
    here = data_dir / CUTS_NAME
    import hashlib

    cached = _cache_dir() / f"{hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16]}_{CUTS_NAME}"
    for path in (here, cached):
        if not _stale(path, data_dir):
            return path
    if os.access(data_dir, os.W_OK):
        return write_feature_cuts(data_dir, here)
    log.info("%s is read-only: writing its feature manifest to %s", data_dir, cached)
    return write_feature_cuts(data_dir, cached)


def lazy_cuts(data_dir: str | os.PathLike):
    """The data dir's cuts as a lazy lhotse ``CutSet``."""
    from lhotse import CutSet

    return CutSet.from_jsonl_lazy(feature_cuts(data_dir))


# ----------------------------------------------------------------------------- CTC data


def read_cmvn(data_dir: Path) -> dict[str, np.ndarray] | None:
    """``{speaker: Kaldi CMVN stats (2, D+1)}`` from ``cmvn.scp``, or None when the features have none
    (``cmvn: none``, or ``utterance``: stats of each utterance, computed when it is read)."""
    import kaldiio

    cfg = load_fbank_config(data_dir)
    if cfg.cmvn not in ("speaker", "global"):
        return None
    p = data_dir / "cmvn.scp"
    if not p.is_file():
        raise InputError(p, "CMVN stats are missing", fix="rerun steps/make_fbank.sh on this data dir")
    out: dict[str, np.ndarray] = {}
    with open(p, encoding="utf-8") as f:
        for line in f:
            spk, ark = line.split(maxsplit=1)
            out[spk] = kaldiio.load_mat(ark.strip())
    return out


def target_ok(n_frames: int, y: list[int], subsampling_factor: int) -> bool:
    """CTC needs as many output frames as target tokens plus repeats."""
    repeats = sum(1 for a, b in zip(y, y[1:]) if a == b)
    return (n_frames - 1) // subsampling_factor + 1 >= len(y) + repeats


@dataclass
class CtcCuts:
    """A data dir as a lazy CutSet with token targets: what training and validation read.

    Holds the manifest path, the lang, the speakers' CMVN stats and counts from one streaming
    pass (utterances, frames, OOV words, utterances too short for CTC) -- never the features.
    """

    data_dir: Path
    manifest: Path
    lang: Lang
    subsampling_factor: int
    fbank: FbankConfig
    frame_shift: float
    cmvn: dict | None
    num_utts: int = 0
    num_frames: int = 0
    dropped: int = 0
    oov: Counter = field(default_factory=Counter)

    # -- cuts
    def targets_of(self, cut) -> list[int]:
        return self.lang.words_to_token_ids(cut.supervisions[0].text.split(), map_oov=True)

    def _usable(self, cut) -> bool:
        return target_ok(cut.features.num_frames, self.targets_of(cut), self.subsampling_factor)

    def cuts(self):
        """The usable cuts, lazily (too-short ones filtered out)."""
        from lhotse import CutSet

        return CutSet.from_jsonl_lazy(self.manifest).filter(self._usable)

    def features(self, cut) -> np.ndarray:
        stats = self.cmvn[cut.supervisions[0].speaker] if self.cmvn is not None else None
        return normalise(load_cut_features(cut), self.fbank, stats)

    # -- batches
    def sampler(self, max_frames: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1):
        """lhotse's DynamicBucketingSampler over the usable cuts: padded frames per batch
        <= ``max_frames`` (a longer utterance is a batch of its own); call ``set_epoch``."""
        return make_sampler(self.cuts(), max_frames * self.frame_shift, seed, shuffle, rank, world, self.num_utts)

    def collate(self, cuts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read and pad a batch: features ``(N, T, F)``, lengths ``(N,)``, concatenated targets, target lengths."""
        feats = [torch.from_numpy(self.features(c)) for c in cuts]
        x_lens = torch.tensor([len(f) for f in feats], dtype=torch.int64)
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        ys = [self.targets_of(c) for c in cuts]
        y = torch.tensor([t for y_ in ys for t in y_], dtype=torch.int64)
        y_lens = torch.tensor([len(y_) for y_ in ys], dtype=torch.int64)
        return x, x_lens, y, y_lens

    # -- small-set conveniences (tests, benches): materialise ids and targets, not features
    @property
    def utts(self) -> list[str]:
        return [c.id for c in self.cuts()]

    @property
    def targets(self) -> list[list[int]]:
        return [self.targets_of(c) for c in self.cuts()]

    def lengths(self) -> list[int]:
        return [c.features.num_frames for c in self.cuts()]


class CollateDataset(torch.utils.data.Dataset):
    """Map-style dataset for a lhotse sampler (as icefall's K2SpeechRecognitionDataset): a
    CutSet in, a padded batch out; lets a DataLoader read batches in worker processes."""

    def __init__(self, data: CtcCuts):
        self.data = data

    def __getitem__(self, cuts):
        return self.data.collate(cuts)


def make_sampler(cuts, max_duration: float, seed: int, shuffle: bool, rank: int, world: int, num_cuts: int):
    """lhotse's DynamicBucketingSampler: ``NUM_BUCKETS`` duration buckets (fewer for a tiny set),
    padded duration per batch <= ``max_duration``, shuffled from ``seed`` + epoch, ``rank``'s
    share of every ``world`` batches (all ranks get as many; drop_last=False)."""
    from lhotse.dataset import DynamicBucketingSampler

    buckets = {"num_buckets": min(NUM_BUCKETS, num_cuts)} if num_cuts >= 2 else {"duration_bins": []}
    with warnings.catch_warnings():  # an eager CutSet (tests, make_batches) is fine here
        warnings.simplefilter("ignore", UserWarning)
        return DynamicBucketingSampler(cuts, max_duration=max_duration + 1e-6, shuffle=shuffle,
                                       buffer_size=SAMPLER_BUFFER, seed=seed, rank=rank, world_size=world,
                                       drop_last=False, **buckets)


def load_ctc_cuts(data_dir: str | os.PathLike, lang_dir: str | os.PathLike, subsampling_factor: int) -> CtcCuts:
    """A data dir for CTC training: its lazy manifest (built if needed), one streaming pass
    counting utterances, frames, OOV words (read as <UNK>, logged) and utterances too short for
    their transcripts (dropped, logged)."""
    from lhotse import CutSet

    data_dir = Path(data_dir)
    manifest = feature_cuts(data_dir)
    cfg = load_fbank_config(data_dir)
    lang = load_lang(lang_dir)
    data = CtcCuts(data_dir, manifest, lang, subsampling_factor, cfg, cfg.frame_shift_ms / 1000,
                   read_cmvn(data_dir))
    words = 0
    for c in CutSet.from_jsonl_lazy(manifest):
        ws = c.supervisions[0].text.split()
        words += len(ws)
        data.oov.update(w for w in ws if w not in lang.lexicon)
        if data._usable(c):
            data.num_utts += 1
            data.num_frames += c.features.num_frames
        else:
            data.dropped += 1
        if data.cmvn is not None and c.supervisions[0].speaker not in data.cmvn:
            raise InputError(data_dir / "cmvn.scp", f"speaker '{c.supervisions[0].speaker}' has no CMVN stats",
                             fix="rerun steps/make_fbank.sh on this data dir")
    if data.oov:
        log.warning("%s: %d of %d words (%d types, e.g. %s) are not in %s: read as %s", data_dir / "text",
                    sum(data.oov.values()), words, len(data.oov),
                    ", ".join(w for w, _ in data.oov.most_common(5)), lang.path / "lexicon.txt", UNK_WORD)
    if data.dropped:
        log.warning("%s: dropped %d utterances too short for their transcripts", data_dir, data.dropped)
    if not data.num_utts:
        raise InputError(data_dir, "no usable utterances", fix="check the transcripts and features")
    return data


def iter_cut_features(data_dir: str | os.PathLike, job: int = 1, nj: int = 1) -> Iterator[tuple[str, np.ndarray]]:
    """``(utt, CMVN'd features)`` of every ``nj``-th utterance (``job`` = 1..nj) in the manifest's
    order, read lazily: what decoding reads."""
    from lhotse import CutSet

    data_dir = Path(data_dir)
    manifest = feature_cuts(data_dir)
    cfg = load_fbank_config(data_dir)
    cmvn = read_cmvn(data_dir)
    for i, c in enumerate(CutSet.from_jsonl_lazy(manifest)):
        if i % nj != job - 1:
            continue
        yield c.id, normalise(load_cut_features(c), cfg, cmvn[c.supervisions[0].speaker] if cmvn is not None else None)
