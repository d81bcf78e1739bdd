"""lhotse as the data path (issue 14, item 2): a data dir's lazy feature manifest, the bucketing
sampler's batches (padded frames, seeded, per DDP rank), features read per batch equal to the
Kaldi reader's, and decoding reading the same manifest. Tiny generated data only."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from asrcomp import dataset
from asrcomp.dataset import CUTS_NAME, feature_cuts, iter_cut_features, lazy_cuts, load_cut_features
from asrcomp.features import FbankConfig, iter_features, make_fbank
from asrcomp.train import batches, collate, load_ctc_data, make_batches
from asrcomp.utils import InputError

from tiny_corpus import make_tiny_corpus


@pytest.fixture
def fbank_dir(tone_data_dir, tmp_path) -> Path:
    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(num_mel_bins=20), nj=1)  # per-speaker CMVN
    return tone_data_dir


def test_manifest_matches_the_data_dir_and_its_features(fbank_dir):
    path = feature_cuts(fbank_dir)
    assert path == fbank_dir / CUTS_NAME
    cuts = lazy_cuts(fbank_dir)
    assert cuts.is_lazy
    ref = dict(iter_features(fbank_dir))  # the Kaldi reader: feats.scp + cmvn.scp
    by_id = {c.id: c for c in cuts}
    assert set(by_id) == set(ref)
    nframes = dict(line.split() for line in (fbank_dir / "utt2num_frames").read_text().splitlines())
    for utt, c in by_id.items():
        assert c.features.num_frames == int(nframes[utt]) == len(ref[utt])
        assert c.supervisions[0].text == "SHOW THE SHIPS" and c.supervisions[0].speaker == utt.split("-")[0]
        assert c.features.storage_type == "kaldiio"
        raw = load_cut_features(c)
        assert np.array_equal(raw, c.load_features())  # lhotse's own loader reads the same storage
    assert {u: x for u, x in iter_cut_features(fbank_dir)}.keys() == ref.keys()
    assert all(np.array_equal(x, ref[u]) for u, x in iter_cut_features(fbank_dir))  # CMVN'd, bit for bit
    # two decoding jobs read disjoint halves
    halves = [[u for u, _ in iter_cut_features(fbank_dir, j, 2)] for j in (1, 2)]
    assert sorted(halves[0] + halves[1]) == sorted(ref) and not set(halves[0]) & set(halves[1])


def test_manifest_is_rebuilt_when_the_features_change(fbank_dir):
    path = feature_cuts(fbank_dir)
    t0 = path.stat().st_mtime_ns
    assert feature_cuts(fbank_dir).stat().st_mtime_ns == t0  # up to date: not rewritten
    time.sleep(0.01)
    scp = fbank_dir / "feats.scp"
    lines = scp.read_text().splitlines()
    scp.write_text("\n".join(lines[:-1]) + "\n")  # one utterance lost its features
    with pytest.raises(InputError, match=r"feats.scp: utterance 'spkB-002' has no features.*make_fbank"):
        feature_cuts(fbank_dir)
    scp.write_text("\n".join(lines) + "\n")
    assert feature_cuts(fbank_dir).stat().st_mtime_ns > t0


def test_unsorted_or_incomplete_data_dirs_are_clear_errors(fbank_dir, tmp_path):
    u2s = fbank_dir / "utt2spk"
    good = u2s.read_text()
    u2s.write_text("\n".join(reversed(good.splitlines())) + "\n")
    with pytest.raises(InputError, match=r"utt2spk:2: 'spkB-001' is out of order.*LC_ALL=C sort"):
        feature_cuts(fbank_dir)
    u2s.write_text(good)
    (fbank_dir / "feats.scp").unlink()
    with pytest.raises(InputError, match=r"feats.scp: features are missing.*steps/make_fbank.sh"):
        feature_cuts(fbank_dir)


def test_read_only_data_dir_gets_its_manifest_in_the_cache(fbank_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ASRCOMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dataset.os, "access", lambda p, mode: Path(p) != fbank_dir)  # root may write anywhere
    path = feature_cuts(fbank_dir)
    assert path.parent == tmp_path / "cache" and not (fbank_dir / CUTS_NAME).exists()
    assert feature_cuts(fbank_dir) == path


def test_shuffled_in_bounded_chunks_and_deterministic(tmp_path, monkeypatch):
    c = make_tiny_corpus(tmp_path)
    monkeypatch.setattr(dataset, "SHUFFLE_CHUNK", 3)  # 8 utterances -> 3 chunks
    a = dataset.write_feature_cuts(c["train"], tmp_path / "a.jsonl.gz")
    b = dataset.write_feature_cuts(c["train"], tmp_path / "b.jsonl.gz")
    ids = [ln.split('"id": "')[1].split('"')[0] for ln in gzip.open(a, "rt")]
    assert gzip.open(a, "rt").read() == gzip.open(b, "rt").read()
    assert sorted(ids) == sorted(line.split()[0] for line in (c["train"] / "utt2spk").read_text().splitlines())
    assert ids != sorted(ids)
    assert not list(tmp_path.glob(".*tmp*"))  # no chunk left behind


def test_sampler_batches_are_padded_frames_seeded_and_split_between_ranks(tmp_path):
    c = make_tiny_corpus(tmp_path)
    data = load_ctc_data(c["train"], c["lang"], 3)
    lengths = dict(zip(data.utts, data.lengths()))
    assert data.num_utts == len(lengths) > 4 and data.num_frames == sum(lengths.values())
    epoch = [[cut.id for cut in b] for b in batches(data, 200, seed=1, epoch=3)]
    assert epoch == [[cut.id for cut in b] for b in batches(data, 200, seed=1, epoch=3)]
    assert epoch != [[cut.id for cut in b] for b in batches(data, 200, seed=1, epoch=4)]
    assert sorted(u for b in epoch for u in b) == sorted(lengths)
    assert all(max(lengths[u] for u in b) * len(b) <= 200 for b in epoch)
    # two DDP ranks: as many batches each, together every utterance
    ranks = [[[cut.id for cut in b] for b in batches(data, 200, 1, 3, rank=r, world=2)] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    assert sorted(u for r in ranks for b in r for u in b) == sorted(lengths)
    # a batch reads its features: padded, lengths, targets
    b = next(iter(batches(data, 200, 1, 3)))
    x, x_lens, y, y_lens = collate(data, b)
    assert x.shape == (len(b), int(x_lens.max()), 20) and x.dtype == torch.float32
    assert int(y_lens.sum()) == len(y) and all(n == cut.features.num_frames for n, cut in zip(x_lens, b))


def test_make_batches_over_lengths():
    lengths = [100 + (i * 37) % 400 for i in range(200)]
    b1 = make_batches(lengths, 2000, seed=1, epoch=3)
    assert b1 == make_batches(lengths, 2000, seed=1, epoch=3) != make_batches(lengths, 2000, seed=1, epoch=4)
    assert sorted(i for b in b1 for i in b) == list(range(200))
    assert all(max(lengths[i] for i in b) * len(b) <= 2000 for b in b1)
    assert all(max(lengths[i] for i in b) * (len(b) + 1) > 2000 for b in b1[:5]) or len(b1) < 40


def test_data_holds_no_features(tmp_path):
    """What training keeps of a data dir: the manifest path, counts and CMVN stats -- no arrays
    of frames (they are read per batch)."""
    c = make_tiny_corpus(tmp_path)
    data = load_ctc_data(c["train"], c["lang"], 3)
    held = [v for v in vars(data).values() if isinstance(v, (np.ndarray, list))]
    assert held == [] and data.cmvn is None


def test_dataloader_workers_train_the_same_weights(tmp_path):
    """num_workers (DataLoader processes reading the batches) changes where batches are read, not
    what is trained: torch.equal weights."""
    from asrcomp.lang import load_lang
    from asrcomp.nnet import build_model
    from asrcomp.train import fit

    from tiny_corpus import ARCH, tiny_cfg

    c = make_tiny_corpus(tmp_path)
    states = []
    for workers in (0, 2):
        torch.manual_seed(0)
        model = build_model(dict(ARCH, num_tokens=load_lang(c["lang"]).num_tokens))
        exp = fit(model, tmp_path / f"w{workers}", c["train"], c["valid"], c["lang"],
                  tiny_cfg(epochs=2, spec_augment=True, num_workers=workers))
        states.append(torch.load(exp / "final.pt", weights_only=True))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
