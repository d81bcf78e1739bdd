import shutil

import numpy as np
import pytest

from asrcomp.datadir import read_data_dir
from asrcomp.features import FbankConfig, make_fbank, read_audio
from asrcomp.perturb import perturb_data_dir_speed
from tests.conftest import write_tone_wav

pytestmark = pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")


def _peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def test_three_way_speed_perturbation_changes_tempo_and_pitch(tone_data_dir, tmp_path):
    (tone_data_dir / "spk2group").write_text("spkA child\nspkB adult\n")
    dst = tmp_path / "data" / "train_sp"
    d = perturb_data_dir_speed(tone_data_dir, dst, [0.9, 1.0, 1.1])
    src = read_data_dir(tone_data_dir)
    assert len(d.utts) == 3 * len(src.utts) == 18
    # Kaldi's ids: originals kept, copies prefixed by factor, each copy its own speaker
    assert d.utt2spk["sp0.9-spkA-001"] == "sp0.9-spkA" and d.utt2spk["spkA-001"] == "spkA"
    assert sorted(read_data_dir(dst).spk2utt) == ["sp0.9-spkA", "sp0.9-spkB", "sp1.1-spkA", "sp1.1-spkB",
                                                   "spkA", "spkB"]
    assert d.text["sp1.1-spkB-002"] == src.text["spkB-002"]
    assert d.wav_scp["spkA-000"] == src.wav_scp["spkA-000"]
    # speaker tables follow the copies' speaker ids; tables the source lacks are not invented
    assert (dst / "spk2group").read_text().splitlines() == [
        "sp0.9-spkA child", "sp0.9-spkB adult", "sp1.1-spkA child", "sp1.1-spkB adult", "spkA child", "spkB adult"]
    assert not (dst / "spk2age").exists()

    # spkB-002: 1.0 s of 600 Hz. Speed f: 1/f as long, f times the pitch, same sample rate.
    orig = read_audio(d.wav_scp["spkB-002"], "spkB-002", dst / "wav.scp", None, 16000)
    assert len(orig) == 16000 and abs(_peak_hz(orig) - 600) < 5
    for f in (0.9, 1.1):
        utt = f"sp{f:g}-spkB-002"
        x = read_audio(d.wav_scp[utt], utt, dst / "wav.scp", None, 16000)
        assert abs(len(x) - 16000 / f) < 0.002 * 16000
        assert abs(_peak_hz(x) - 600 * f) < 5

    # the pipes feed feature extraction directly: frame counts scale by 1/f
    make_fbank(dst, tmp_path / "fbank", FbankConfig(), nj=2)
    frames = dict(line.split() for line in (dst / "utt2num_frames").read_text().splitlines())
    assert int(frames["spkB-002"]) == 100
    assert abs(int(frames["sp0.9-spkB-002"]) - 111) <= 1 and abs(int(frames["sp1.1-spkB-002"]) - 91) <= 1


def test_perturbing_a_pipe_chains_sox(tone_data_dir, tmp_path):
    from asrcomp.perturb import speed_perturbed_spec

    wav = read_data_dir(tone_data_dir).wav_scp["spkA-002"]
    pipe = speed_perturbed_spec(f"cat {wav} |", 1.1)
    assert pipe.startswith(f"cat {wav} | sox -R -D -t wav - -t wav - speed 1.1")
    x = read_audio(pipe, "u", tmp_path / "wav.scp", None, 16000)
    assert abs(len(x) - 16000 / 1.1) < 0.002 * 16000


def test_a_speed_copy_reads_the_same_samples_every_time(tmp_path):
    # sox dithers a 16-bit output with a new random seed per run unless told otherwise: a rerun of
    # a recipe then extracted features of other samples and trained another model
    from asrcomp.perturb import speed_perturbed_spec

    wav = tmp_path / "speech.wav"
    write_tone_wav(wav, 1.0, 440)
    for spec in (str(wav), f"cat {wav} |"):
        pipe = speed_perturbed_spec(spec, 0.9)
        reads = [read_audio(pipe, "u", tmp_path / "wav.scp", None, 16000) for _ in range(3)]
        assert all(np.array_equal(reads[0], r) for r in reads[1:])
        # what the old pipe (no -R -D) gave: a different last bit on every read
        old = pipe.replace("sox -R -D ", "sox ")
        a, b = (read_audio(old, "u", tmp_path / "wav.scp", None, 16000) for _ in range(2))
        assert not np.array_equal(a, b) and np.abs(a - b).max() < 4 / 32768


@pytest.mark.parametrize("factors", [[], [0.9, 0.9], [1.0, -1.1], [0.0]])
def test_bad_speed_factors_are_refused_before_writing(tone_data_dir, tmp_path, factors):
    with pytest.raises(ValueError, match="distinct and positive"):
        perturb_data_dir_speed(tone_data_dir, tmp_path / "sp", factors)
    assert not (tmp_path / "sp").exists()


def test_cli_names_bad_factors_and_the_fix(tone_data_dir, tmp_path, capsys):
    from asrcomp.cli import main

    assert main(["perturb-speed", "--factors", "0.9 fast", str(tone_data_dir), str(tmp_path / "sp")]) == 2
    err = capsys.readouterr().err
    assert "--factors: '0.9 fast'" in err and "fix: distinct positive speeds" in err
    assert not (tmp_path / "sp").exists()
