"""LibriSpeech data prep (lhotse recipe) on a generated miniature of the corpus layout."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from asrcomp.datadir import read_data_dir
from asrcomp.features import read_audio
from asrcomp.utils import InputError
from local.librispeech.data_prep import prepare

TRANS = {("dev-clean", "84", "121123"): ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"],
         ("dev-clean", "174", "50561"): ["THE STAIRCASE CREAKED"],
         ("train-clean-5", "1088", "134315"): ["AS YOU KNOW", "AND AS I HAVE SAID"]}


def make_librispeech(root):
    expected = {}
    for (part, spk, ch), lines in TRANS.items():
        d = root / part / spk / ch
        d.mkdir(parents=True)
        rows = []
        for i, t in enumerate(lines):
            utt = f"{spk}-{ch}-{i:04d}"
            x = (np.random.default_rng(len(utt) + i + int(spk)).standard_normal(4000 + 800 * i) * 1500).astype(np.int16)
            sf.write(d / f"{utt}.flac", x, 16000, subtype="PCM_16")
            rows.append(f"{utt} {t}\n")
            expected.setdefault(part.replace("-", "_"), {})[utt] = (spk, t, x)
        (d / f"{spk}-{ch}.trans.txt").write_text("".join(rows))
    return expected


def test_librispeech_miniature(tmp_path):
    expected = make_librispeech(tmp_path / "LibriSpeech")
    lm = tmp_path / "lm.txt"
    lm.write_text("the staircase was old\nyou hear\n")
    counts = prepare(tmp_path / "LibriSpeech", tmp_path / "data", ["dev-clean", "train-clean-5"], ["train-clean-5"], lm)
    assert counts == {"dev_clean": 3, "train_clean_5": 2}
    from lhotse import CutSet

    for name, utts in expected.items():
        d = read_data_dir(tmp_path / "data" / name)
        assert d.utts == sorted(utts)
        assert d.text == {u: v[1] for u, v in utts.items()} and d.utt2spk == {u: v[0] for u, v in utts.items()}
        cuts = CutSet.from_file(tmp_path / "data" / "manifests" / f"librispeech_{name}_cuts.jsonl.gz").to_eager()
        for u, (_, _, x) in utts.items():
            y = read_audio(d.wav_scp[u], u, d.path / "wav.scp", None, 16000)
            np.testing.assert_array_equal(np.round(y * 32768).astype(np.int16), x)
            np.testing.assert_array_equal(np.round(cuts[u].load_audio()[0] * 32768).astype(np.int16), x)
    lm_lines = (tmp_path / "data/local/lm_text.txt").read_text().splitlines()
    assert lm_lines == ["THE STAIRCASE WAS OLD", "YOU HEAR", "AS YOU KNOW", "AND AS I HAVE SAID"]
    assert "STAIRCASE" in (tmp_path / "data/local/vocab.txt").read_text().split()


def test_missing_part_is_named(tmp_path):
    make_librispeech(tmp_path / "LibriSpeech")
    with pytest.raises(InputError, match=r"test-clean: part test-clean not found"):
        prepare(tmp_path / "LibriSpeech", tmp_path / "data", ["test-clean"], [])
