"""Speakers (local/synth/voices.py) and one-utterance synthesis (local/synth/audio.py)."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest

from local.synth import audio
from local.synth.audio import add_noise, read_wav, synthesize
from local.synth.voices import (
    Speaker,
    VoiceInventory,
    discover_voices,
    make_speakers,
    speaker_id,
    split_speakers,
)

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
HAVE_FLITE = shutil.which("flite") is not None
HAVE_SOX = shutil.which("sox") is not None
needs_espeak = pytest.mark.skipif(not (HAVE_ESPEAK and HAVE_SOX), reason="espeak-ng or sox not installed")
needs_flite = pytest.mark.skipif(not (HAVE_FLITE and HAVE_SOX), reason="flite or sox not installed")
needs_both = pytest.mark.skipif(not (HAVE_ESPEAK and HAVE_FLITE), reason="espeak-ng or flite not installed")

SENTENCE = "please switch off the kitchen lights"  # 6 words


def _espeak_speaker(variant="m3", pitch=45, rate=160, voice="en-us"):
    return Speaker(speaker_id("espeak", voice, variant, pitch, rate), "espeak", voice, variant, pitch, rate)


def _flite_speaker(voice="slt", cents=150, rate=105):
    return Speaker(speaker_id("flite", voice, "", cents, rate), "flite", voice, "", cents, rate)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x.astype(np.float64) / 32768.0) ** 2)))


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Point tempfile at an empty directory so leftovers can be seen."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


# --------------------------------------------------------------------------- synthesis


@pytest.mark.parametrize("make", [
    pytest.param(_espeak_speaker, marks=needs_espeak, id="espeak-m3"),
    pytest.param(lambda: _espeak_speaker("", 60, 190, "en-gb-scotland"), marks=needs_espeak, id="espeak-plain"),
    pytest.param(_flite_speaker, marks=needs_flite, id="flite-slt-pitch"),
    pytest.param(lambda: _flite_speaker("kal", -200, 92), marks=needs_flite, id="flite-kal-8k"),
])
def test_synthesize_sentence(make, tmp_path, private_tmp):
    spk = make()
    out = tmp_path / "sub" / "utt.wav"
    dur = synthesize(spk, SENTENCE, out)
    x, sr = read_wav(out)
    assert sr == 16000
    assert x.dtype == np.int16 and x.ndim == 1
    assert dur == pytest.approx(len(x) / 16000)
    assert 0.8 < dur < 6.0, dur
    assert _rms(x) > 0.02  # about -34 dBFS; normalised output is -24 dBFS
    # silence trimmed to the fixed margin: the first and last 0.1 s are quiet
    edge = int(0.1 * sr)
    assert _rms(x[:edge]) < 0.1 * _rms(x) and _rms(x[-edge:]) < 0.1 * _rms(x)
    assert list(private_tmp.iterdir()) == []  # temporary files removed
    assert [p.name for p in out.parent.iterdir()] == ["utt.wav"]  # written atomically, nothing left over


@needs_espeak
def test_longer_text_gives_longer_audio(tmp_path):
    spk = _espeak_speaker()
    short = synthesize(spk, "hello", tmp_path / "a.wav")
    long = synthesize(spk, SENTENCE + " " + SENTENCE, tmp_path / "b.wav")
    assert 0.3 < short < 1.5
    assert long > 2.5 * short


@needs_espeak
def test_pitch_and_rate_change_the_audio(tmp_path):
    base = synthesize(_espeak_speaker(rate=140), SENTENCE, tmp_path / "a.wav")
    fast = synthesize(_espeak_speaker(rate=220), SENTENCE, tmp_path / "b.wav")
    assert fast < 0.8 * base
    synthesize(_espeak_speaker(pitch=20, rate=140), SENTENCE, tmp_path / "c.wav")
    assert (tmp_path / "a.wav").read_bytes() != (tmp_path / "c.wav").read_bytes()


@pytest.mark.parametrize("make", [
    pytest.param(_espeak_speaker, marks=needs_espeak, id="espeak"),
    pytest.param(_flite_speaker, marks=needs_flite, id="flite"),
])
def test_deterministic_with_room_and_noise(make, tmp_path):
    spk = make()
    a, b, c = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"
    da = synthesize(spk, SENTENCE, a, snr_db=15, room=True, seed=7)
    db = synthesize(spk, SENTENCE, b, snr_db=15, room=True, seed=7)
    dc = synthesize(spk, SENTENCE, c, snr_db=15, room=True, seed=8)
    assert da == db == dc
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    xa, _ = read_wav(a)
    xc, _ = read_wav(c)
    assert np.mean(xa != xc) > 0.5  # not a few samples: different noise and room throughout


@needs_espeak
def test_room_changes_audio_and_is_seeded(tmp_path):
    spk = _espeak_speaker()
    synthesize(spk, SENTENCE, tmp_path / "dry.wav")
    synthesize(spk, SENTENCE, tmp_path / "r1.wav", room=True, seed=1)
    synthesize(spk, SENTENCE, tmp_path / "r2.wav", room=True, seed=2)
    dry, _ = read_wav(tmp_path / "dry.wav")
    r1, _ = read_wav(tmp_path / "r1.wav")
    r2, _ = read_wav(tmp_path / "r2.wav")
    assert len(dry) == len(r1) == len(r2)
    assert not np.array_equal(dry, r1) and not np.array_equal(r1, r2)
    # reverberation fills the gaps: the quietest 10% of 20 ms frames get louder relative to the mean
    def floor(x):
        f = x[: len(x) // 320 * 320].astype(np.float64).reshape(-1, 320)
        e = np.sort(np.mean(f ** 2, axis=1))
        return e[len(e) // 10] / e.mean()
    assert floor(r1) > floor(dry)


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
@needs_espeak
def test_snr_of_added_noise(snr, tmp_path):
    spk = _espeak_speaker()
    clean_p, noisy_p = tmp_path / "clean.wav", tmp_path / "noisy.wav"
    synthesize(spk, SENTENCE, clean_p, room=True, seed=3)
    synthesize(spk, SENTENCE, noisy_p, room=True, seed=3, snr_db=snr)
    clean, _ = read_wav(clean_p)
    noisy, _ = read_wav(noisy_p)
    clean = clean.astype(np.float64)
    noisy = noisy.astype(np.float64)
    # noisy = g * (s + n) and clean = g' * s: project out the (scaled) clean signal
    alpha = np.dot(noisy, clean) / np.dot(clean, clean)
    noise = noisy - alpha * clean
    measured = 10 * np.log10(np.sum((alpha * clean) ** 2) / np.sum(noise ** 2))
    assert measured == pytest.approx(snr, abs=0.5)


def test_add_noise_snr_and_seed():
    rng_sig = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    sig = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.1 * rng_sig.standard_normal(len(t)))
    for snr in (-5.0, 5.0, 30.0):
        noisy = add_noise(sig, snr, np.random.default_rng(1))
        n = noisy - sig
        assert 10 * np.log10(np.mean(sig ** 2) / np.mean(n ** 2)) == pytest.approx(snr, abs=1e-6)
    a = add_noise(sig, 10, np.random.default_rng(5))
    b = add_noise(sig, 10, np.random.default_rng(5))
    c = add_noise(sig, 10, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    with pytest.raises(ValueError):
        add_noise(np.zeros(100), 10, np.random.default_rng(0))


def test_trim_silence_keeps_fixed_margin():
    sr = 16000
    x = np.concatenate([np.zeros(sr), 0.5 * np.ones(sr // 2), np.zeros(2 * sr)])
    y = audio.trim_silence(x, sr, margin_s=0.15)
    assert len(y) == int(0.5 * sr) + 2 * int(0.15 * sr)
    short = np.concatenate([np.zeros(160), 0.5 * np.ones(sr // 2)])  # less lead-in than the margin
    assert len(audio.trim_silence(short, sr, margin_s=0.15)) == int(0.5 * sr) + 2 * int(0.15 * sr)
    assert audio.trim_silence(np.zeros(sr), sr) is None


@needs_espeak
def test_engine_failure_raises_runtime_error_with_command(tmp_path, private_tmp):
    bad = Speaker("esp-no-such-voice-none-p50-s175", "espeak", "zzqq-nonexistent", "", 50, 175)
    with pytest.raises(RuntimeError, match=r"espeak-ng .*zzqq-nonexistent.*failed.*exit"):
        synthesize(bad, SENTENCE, tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()
    assert list(private_tmp.iterdir()) == []


@needs_espeak
def test_empty_text_rejected(tmp_path):
    with pytest.raises(ValueError):
        synthesize(_espeak_speaker(), "   ", tmp_path / "x.wav")


# --------------------------------------------------------------------------- voices and speakers


@needs_both
def test_discover_voices_skips_unusable():
    inv = discover_voices()
    assert discover_voices() is inv  # cached
    assert {"en-us", "en-gb"} <= set(inv.espeak_accents)
    assert not any(a.startswith("mb-") for a in inv.espeak_accents)  # mbrola is not installed
    assert {"", "m3", "f2"} <= set(inv.espeak_variants)
    assert not {"whisper", "whisperf"} & set(inv.espeak_variants)
    assert "slt" in inv.flite_voices and "awb_time" not in inv.flite_voices
    skipped = " ".join(name for name, _ in inv.skipped)
    assert "awb_time" in skipped


@needs_both
def test_make_speakers_60():
    a = make_speakers(60, seed=11)
    assert len(a) == 60
    ids = [s.id for s in a]
    assert len(set(ids)) == 60 and ids == sorted(ids)
    assert make_speakers(60, seed=11) == a
    assert make_speakers(60, seed=12) != a
    assert {s.engine for s in a} == {"espeak", "flite"}
    assert len({s.voice for s in a if s.engine == "espeak"}) >= 4
    assert len({s.base_voice for s in a if s.engine == "flite"}) >= 2
    for s in a:
        assert all(c.isalnum() or c in "-_+" for c in s.id), s.id
        assert not any(o != s.id and o.startswith(s.id) for o in ids)
        if s.engine == "espeak":
            assert 0 <= s.pitch <= 99 and 80 <= s.rate <= 450
    big = make_speakers(300, seed=1)
    assert len({s.id for s in big}) == 300


def _fake_inventory(flite=("awb", "kal", "kal16", "rms", "slt"), n_variants=40):
    return VoiceInventory(
        espeak_accents=("en-029", "en-gb", "en-gb-scotland", "en-us", "en-us-nyc"),
        espeak_variants=("",) + tuple(f"v{i:02d}" for i in range(n_variants)),
        flite_voices=tuple(flite),
        skipped=(),
    )


@pytest.mark.parametrize("n,n_dev,n_test,seed", [(60, 8, 8, 0), (60, 6, 10, 1), (200, 20, 20, 2), (20, 3, 3, 3)])
def test_split_speakers_holds_out_whole_voices(n, n_dev, n_test, seed):
    spk = make_speakers(n, seed, inventory=_fake_inventory())
    sp = split_speakers(spk, n_dev=n_dev, n_test=n_test, seed=seed)
    assert set(sp) == {"train", "dev", "test"}
    ids = {k: {s.id for s in v} for k, v in sp.items()}
    assert ids["train"] | ids["dev"] | ids["test"] == {s.id for s in spk}
    assert sum(map(len, ids.values())) == n  # a partition
    bases = {k: {s.base_voice for s in v} for k, v in sp.items()}
    assert not bases["train"] & bases["test"]
    assert not bases["train"] & bases["dev"]
    assert not bases["dev"] & bases["test"]
    assert any(b.startswith("fl-") for b in bases["test"])
    assert any(b.startswith("fl-") for b in bases["train"])
    assert n_test <= len(sp["test"]) <= n_test + 4
    assert n_dev <= len(sp["dev"]) <= n_dev + 4
    assert split_speakers(spk, n_dev, n_test, seed) == sp
    assert split_speakers(list(reversed(spk)), n_dev, n_test, seed) == sp


def test_kal_and_kal16_are_one_base_voice():
    spk = make_speakers(60, 0, inventory=_fake_inventory())
    kal = {s.base_voice for s in spk if s.voice in ("kal", "kal16")}
    assert kal == {"fl-kal"}
    sp = split_speakers(spk, 8, 8, seed=4)
    where = {k for k, v in sp.items() for s in v if s.voice in ("kal", "kal16")}
    assert len(where) == 1


@needs_both
def test_split_real_speakers():
    sp = split_speakers(make_speakers(60, 5), n_dev=6, n_test=8, seed=5)
    train = {s.base_voice for s in sp["train"]}
    assert not train & {s.base_voice for s in sp["test"] + sp["dev"]}
    assert any(s.engine == "flite" for s in sp["test"])


def test_split_too_few_voices():
    one_flite = make_speakers(60, 0, inventory=_fake_inventory(flite=("slt",)))
    with pytest.raises(ValueError, match="flite"):
        split_speakers(one_flite, 5, 5, seed=0)
    few = make_speakers(8, 0, inventory=_fake_inventory())
    with pytest.raises(ValueError, match="too few"):
        split_speakers(few, n_dev=4, n_test=4, seed=0)
    tiny = make_speakers(60, 0, inventory=_fake_inventory(n_variants=1))  # 2 espeak base voices
    with pytest.raises(ValueError, match="too few"):
        split_speakers(tiny, n_dev=30, n_test=20, seed=0)
    with pytest.raises(ValueError):
        split_speakers(make_speakers(60, 0, inventory=_fake_inventory()), n_dev=5, n_test=0, seed=0)


def test_split_with_a_chosen_test_flite_voice_and_no_dev_flite():
    spk = make_speakers(84, 3, inventory=_fake_inventory())
    fl_bases = sorted({s.base_voice for s in spk if s.engine == "flite"})
    chosen = fl_bases[-1]
    parts = split_speakers(spk, n_dev=8, n_test=12, seed=3, test_flite=chosen, dev_flite=False)
    assert {s.base_voice for s in parts["test"] if s.engine == "flite"} == {chosen}
    assert not any(s.engine == "flite" for s in parts["dev"])
    assert {s.base_voice for s in parts["train"] if s.engine == "flite"} == set(fl_bases) - {chosen}
    with pytest.raises(ValueError, match="not a flite base voice"):
        split_speakers(spk, n_dev=8, n_test=12, seed=3, test_flite="fl-nosuchvoice")
