"""Shared fixtures: small generated audio and data dirs (nothing is downloaded)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrcomp.datadir import write_data_dir
from asrcomp.decode import DecodeOptions


def write_tone_wav(path: Path, seconds: float, freq: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A tone plus a little noise, 16-bit; returns the int16 samples written."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    pcm = np.round(x * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, sr, subtype="PCM_16")
    return pcm


@pytest.fixture
def tone_data_dir(tmp_path) -> Path:
    """A 2-speaker, 6-utterance Kaldi data dir of synthetic tones."""
    wav_scp, text, utt2spk = {}, {}, {}
    for s, spk in enumerate(("spkA", "spkB")):
        for i in range(3):
            utt = f"{spk}-{i:03d}"
            wav = tmp_path / "wav" / f"{utt}.wav"
            write_tone_wav(wav, 0.5 + 0.25 * i, 200 + 300 * s + 50 * i, seed=10 * s + i)
            wav_scp[utt], text[utt], utt2spk[utt] = str(wav), "SHOW THE SHIPS", spk
    d = tmp_path / "data" / "train"
    write_data_dir(d, wav_scp, text, utt2spk)
    return d


ROOT = Path(__file__).resolve().parents[1]
TTS_TOOLS = ("espeak-ng", "flite", "sox")


SLOW_FIXTURES = {"quick_data", "quick_tdnn"}

# The quick TDNN (2 epochs) has flat posteriors: under Kaldi's max-active of 7000 one TLG decode of
# the quick test set spends ~40 s in the search, under 500 ~4 s, and the quick-corpus tests decode
# some twenty times. They check what a decode writes and that decoders agree, not a WER, so they
# search with this cap (the recipes keep 7000).
QUICK_MAX_ACTIVE = 500
QUICK_DECODE = DecodeOptions(max_active=QUICK_MAX_ACTIVE)


def pytest_collection_modifyitems(config, items):
    """Tests on the synthesised quick corpus are ``slow`` (plus any marked by hand):
    ``make test-fast`` runs the rest in a few minutes, ``make test`` (CI) everything."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_sessionstart(session):
    """Under `make test` (which installs them) missing TTS tools fail the run instead of
    silently skipping the corpus, synthesis and training tests."""
    import os

    missing = [t for t in TTS_TOOLS if not shutil.which(t)]
    if os.environ.get("ASRCOMP_REQUIRE_TTS") and missing:
        raise pytest.UsageError(f"ASRCOMP_REQUIRE_TTS is set but {missing} are not installed: run make setup")


@pytest.fixture(scope="session")
def quick_data(tmp_path_factory) -> Path:
    """egs/synth stages 0-4 on the quick config, once per test session: a real synthesised
    corpus with features, a BPE lang dir, a 3-gram LM and TLG.fst."""
    if not all(shutil.which(t) for t in TTS_TOOLS):
        pytest.skip("needs espeak-ng, flite and sox (make setup installs them)")
    data = tmp_path_factory.mktemp("recipe") / "quick"
    r = subprocess.run([str(ROOT / "egs/synth/run.sh"), "--config", "quick", "--data", str(data),
                        "--stop-stage", "4"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return data


TINY_TDNN = {"type": "tdnn", "hidden_dim": 64, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1]],
             "subsample_at": 1, "subsampling_factor": 3}


@pytest.fixture(scope="session")
def quick_tdnn(quick_data, tmp_path_factory) -> Path:
    """A tiny TDNN model dir trained for 2 epochs on the quick corpus (for the compression stages)."""
    from asrcomp.train import TrainConfig, train

    exp = tmp_path_factory.mktemp("quick_tdnn") / "tdnn"
    cfg = TrainConfig(epochs=2, max_frames=3000, lr=3e-3, warmup_steps=10, avg=1, num_threads=1, device="cpu",
                      arch=TINY_TDNN)
    train(exp, quick_data / "train", quick_data / "dev", quick_data / "lang_bpe500", cfg)
    return exp
