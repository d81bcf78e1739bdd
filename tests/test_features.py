import kaldiio
import numpy as np
import pytest
import soundfile as sf

from asrcomp.features import FbankConfig, apply_cmvn, compute_fbank, iter_features, make_fbank
from asrcomp.utils import InputError
from tests.conftest import write_tone_wav


def test_fbank_matches_lhotse_extractor(tmp_path):
    from lhotse.features.kaldi.extractors import Fbank
    from lhotse.features.kaldi.extractors import FbankConfig as LhotseFbankConfig

    pcm = write_tone_wav(tmp_path / "a.wav", 1.0, 440.0)
    x = pcm.astype(np.float32) / 32768
    ours = compute_fbank(x, FbankConfig())
    theirs = Fbank(LhotseFbankConfig(num_filters=80, dither=0.0, snip_edges=False)).extract(x, 16000)
    assert ours.shape == theirs.shape == (100, 80)
    assert np.abs(ours - theirs).max() < 1e-2
    # the tone's energy sits in the right mel band: 440 Hz is in the lower bins
    assert ours[50].argmax() < 20


def test_make_fbank_parallel_equals_serial_and_cmvn(tone_data_dir, tmp_path):
    cfg = FbankConfig()
    make_fbank(tone_data_dir, tmp_path / "fbank", cfg, nj=2, batch=2)
    feats = dict(kaldiio.load_scp(str(tone_data_dir / "feats.scp")))
    frames = dict(line.split() for line in (tone_data_dir / "utt2num_frames").read_text().splitlines())
    assert sorted(feats) == sorted(frames) and len(feats) == 6
    assert int(frames["spkA-000"]) == 50 and int(frames["spkA-002"]) == 100
    # serial extraction gives the same features (up to Kaldi's lossy matrix compression)
    x, sr = sf.read(tone_data_dir.parent.parent / "wav" / "spkB-001.wav", dtype="float32")
    assert np.abs(compute_fbank(x, cfg) - feats["spkB-001"]).max() < 0.1
    # per-speaker CMVN: each speaker's normalised frames have mean 0 and unit variance
    normed = dict(iter_features(tone_data_dir))
    for spk in ("spkA", "spkB"):
        allx = np.concatenate([v for u, v in normed.items() if u.startswith(spk)])
        assert np.abs(allx.mean(0)).max() < 1e-3
        assert np.abs(allx.std(0) - 1).max() < 1e-2
    assert (tone_data_dir / "fbank.yaml").is_file()



def test_utterance_cmvn_reads_each_utterance_by_its_own_stats(tone_data_dir, tmp_path):
    """cmvn: utterance writes no stats; every reader (iter_features, the lhotse data path for
    training and for decoding) gives each utterance zero mean and unit variance on its own."""
    from asrcomp.dataset import iter_cut_features, load_ctc_cuts
    from asrcomp.lang import prepare_lang

    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(cmvn="utterance"))
    assert not (tone_data_dir / "cmvn.scp").exists()
    raw = dict(kaldiio.load_scp(str(tone_data_dir / "feats.scp")))
    normed = dict(iter_features(tone_data_dir))
    for u, x in normed.items():
        assert np.abs(x.mean(0)).max() < 1e-3 and np.abs(x.std(0) - 1).max() < 1e-2
        assert np.allclose(x, (raw[u] - raw[u].mean(0)) / raw[u].std(0), atol=1e-3)
    assert {u: x.tolist() for u, x in iter_cut_features(tone_data_dir)} == {u: x.tolist() for u, x in normed.items()}
    prepare_lang(["SHOW", "THE", "SHIPS"], tmp_path / "lang", token_type="phone")
    cuts = load_ctc_cuts(tone_data_dir, tmp_path / "lang", 1)
    for c in cuts.cuts():
        assert np.array_equal(cuts.features(c), normed[c.id])
    with pytest.raises(ValueError, match="cmvn must be one of"):
        make_fbank(tone_data_dir, tmp_path / "fbank2", FbankConfig(cmvn="speakers"))

def test_make_fbank_again_keeps_features_and_redoes_only_what_changed(tone_data_dir, tmp_path):
    """A rerun with the same options keeps everything; with another CMVN it keeps the frames and
    rewrites the stats; with another extraction option it extracts again."""
    import os
    import yaml

    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(cmvn="speaker"))
    scp = tone_data_dir / "feats.scp"
    os.utime(scp, (1e9 + 10, 2e9))  # newer than wav.scp, and a stamp a rewrite would change
    stamp = scp.stat().st_mtime
    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(cmvn="speaker"))
    assert scp.stat().st_mtime == stamp and (tone_data_dir / "cmvn.scp").is_file()
    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(cmvn="utterance"))
    assert scp.stat().st_mtime == stamp and not (tone_data_dir / "cmvn.scp").exists()
    assert yaml.safe_load((tone_data_dir / "fbank.yaml").read_text())["cmvn"] == "utterance"
    for u, x in iter_features(tone_data_dir):  # read under the new CMVN
        assert np.abs(x.mean(0)).max() < 1e-3, u
    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(cmvn="utterance", num_mel_bins=40))
    assert scp.stat().st_mtime != stamp
    assert next(iter(kaldiio.load_scp(str(scp)).values())).shape[1] == 40


def test_apply_cmvn_mean_only():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    stats = np.zeros((2, 4))
    stats[0, :3], stats[1, :3], stats[0, 3] = x.sum(0), (x * x).sum(0), 4
    assert np.allclose(apply_cmvn(x, stats, norm_vars=False), x - x.mean(0))


def test_wrong_sample_rate_names_the_line(tone_data_dir, tmp_path):
    write_tone_wav(tmp_path / "wav" / "spkA-001.wav", 0.5, 300, sr=8000)
    with pytest.raises(InputError, match=r"wav.scp:2: 'spkA-001' is sampled at 8000 Hz"):
        make_fbank(tone_data_dir, tmp_path / "fbank", nj=1)
    assert not (tone_data_dir / "feats.scp").exists()


def test_missing_wav_names_the_line(tone_data_dir, tmp_path):
    (tmp_path / "wav" / "spkB-000.wav").unlink()
    with pytest.raises(InputError, match=r"wav.scp:4: cannot read audio for 'spkB-000'"):
        make_fbank(tone_data_dir, tmp_path / "fbank", nj=2, batch=1)
    assert not (tone_data_dir / "feats.scp").exists()


def test_pipe_in_wav_scp(tone_data_dir, tmp_path):
    p = tone_data_dir / "wav.scp"
    lines = p.read_text().splitlines()
    utt, path = lines[0].split()
    lines[0] = f"{utt} cat {path} |"
    p.write_text("\n".join(lines) + "\n")
    make_fbank(tone_data_dir, tmp_path / "fbank", nj=1)
    feats = dict(kaldiio.load_scp(str(tone_data_dir / "feats.scp")))
    assert feats[utt].shape == (50, 80)
