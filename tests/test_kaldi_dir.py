"""egs/kaldi_dir: importing an existing Kaldi data dir (files and pipes) + an LM text."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrcomp.datadir import read_data_dir, read_table
from asrcomp.features import read_audio
from asrcomp.utils import InputError
from local.kaldi_dir.import_dir import import_dir, write_lm_text

ROOT = Path(__file__).resolve().parents[1]


def make_kaldi_dir(d: Path, utts: dict[str, str], pipe: bool = False) -> dict[str, np.ndarray]:
    (d / "audio").mkdir(parents=True)
    wav, text, u2s, xs = [], [], [], {}
    for i, (utt, t) in enumerate(sorted(utts.items())):
        x = (np.random.default_rng(i).standard_normal(5000 + 100 * i) * 1000).astype(np.int16)
        sf.write(d / "audio" / f"{utt}.wav", x, 16000, subtype="PCM_16")
        p = d / "audio" / f"{utt}.wav"
        wav.append(f"{utt} cat {p} |\n" if pipe and i % 2 == 0 else f"{utt} {p}\n")
        text.append(f"{utt} {t}\n")
        u2s.append(f"{utt} {utt.split('-')[0]}\n")
        xs[utt] = x
    (d / "wav.scp").write_text("".join(wav))
    (d / "text").write_text("".join(text))
    (d / "utt2spk").write_text("".join(u2s))
    return xs


def test_import_files_and_pipes(tmp_path):
    src = tmp_path / "kaldi" / "train"
    utts = {"spk1-a": "HELLO WORLD", "spk1-b": "GOOD MORNING", "spk2-a": "HELLO ZYXWQ"}
    xs = make_kaldi_dir(src, utts, pipe=True)
    d = import_dir(src, tmp_path / "data", "train")
    assert d.text == utts and d.utt2spk == {u: u.split("-")[0] for u in utts}
    assert d.wav_scp["spk1-a"].endswith("|") and not d.wav_scp["spk1-b"].endswith("|")
    assert read_table(tmp_path / "data/train/spk2utt", max_fields=None) == {"spk1": "spk1-a spk1-b", "spk2": "spk2-a"}
    from lhotse import CutSet

    cuts = CutSet.from_file(tmp_path / "data/manifests/train_cuts.jsonl.gz").to_eager()
    for u, x in xs.items():
        y = read_audio(d.wav_scp[u], u, d.path / "wav.scp", None, 16000)
        np.testing.assert_array_equal(np.round(y * 32768).astype(np.int16), x)
        np.testing.assert_array_equal(np.round(cuts[u].load_audio()[0] * 32768).astype(np.int16), x)
        assert float(read_table(tmp_path / "data/train/utt2dur")[u]) == pytest.approx(len(x) / 16000, abs=1e-3)
    lm = tmp_path / "corpus.txt"
    lm.write_text("hello there\n\ngood evening\n")
    write_lm_text(lm, [tmp_path / "data/train"], tmp_path / "data")
    assert (tmp_path / "data/local/lm_text.txt").read_text().splitlines() == \
        ["HELLO THERE", "GOOD EVENING", "HELLO WORLD", "GOOD MORNING", "HELLO ZYXWQ"]


def test_bad_dirs_are_named(tmp_path):
    src = tmp_path / "kaldi" / "dev"
    make_kaldi_dir(src, {"s1-a": "A B", "s1-b": "C"})
    (src / "utt2spk").write_text("s1-a s1\n")
    with pytest.raises(InputError, match=r"dev/text:2: utterance .s1-b. is not in utt2spk"):
        import_dir(src, tmp_path / "data", "dev")
    (src / "utt2spk").write_text("s1-a s1\ns1-b s1\n")
    (src / "wav.scp").write_text(f"s1-a {src}/audio/s1-a.wav\ns1-b {src}/audio/missing.wav\n")
    with pytest.raises(InputError, match=r"wav.scp:2: cannot read audio for 's1-b'"):
        import_dir(src, tmp_path / "data", "dev")


@pytest.mark.slow
def test_run_sh_to_features(tmp_path):
    for name in ("train", "dev", "test"):
        make_kaldi_dir(tmp_path / "kaldi" / name, {f"{name}x-1": "HELLO WORLD", f"{name}x-2": "GOOD MORNING"})
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    k = tmp_path / "kaldi"
    r = subprocess.run([str(ROOT / "egs/kaldi_dir/run.sh"), "--train", str(k / "train"), "--dev", str(k / "dev"),
                        "--test", str(k / "test"), "--config", "smoke", "--data", str(tmp_path / "data"),
                        "--stop-stage", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for s in ("train", "dev", "test"):
        assert len(read_data_dir(tmp_path / "data" / s, need_features=True).feats_scp) == 2
        assert (tmp_path / "data" / "log" / f"import_{s}.log").is_file()


def test_words_outside_the_lexicon_are_unk_for_training_and_errors_for_scoring(tone_data_dir, tmp_path, caplog):
    """The OOV rule of every recipe's data path: training and validation read a word outside the
    lexicon as <UNK> (counted in the log) and never stop; the data dir's text stays the original,
    which scoring uses, so the word counts as an error."""
    import logging

    from asrcomp.features import FbankConfig, make_fbank
    from asrcomp.lang import prepare_lang
    from asrcomp.score import compute_wer
    from asrcomp.train import load_ctc_data

    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(), nj=1)
    lang = prepare_lang(["SHOW", "THE"], tmp_path / "lang", "phone")  # SHIPS is in no lexicon
    with caplog.at_level(logging.WARNING):
        data = load_ctc_data(tone_data_dir, tmp_path / "lang", subsampling_factor=1)
    unk = [lang.tokens[t] for t in lang.lexicon["<UNK>"]]
    show_the = lang.words_to_token_ids(["SHOW", "THE"])
    assert len(data.utts) == 6 and all(y == show_the + unk for y in data.targets)
    assert "6 of 18 words (1 types, e.g. SHIPS) are not in" in caplog.text
    assert set(read_table(tone_data_dir / "text", max_fields=None).values()) == {"SHOW THE SHIPS"}
    stats, _ = compute_wer({"u": "SHOW THE SHIPS".split()}, {"u": "SHOW THE <UNK>".split()})
    assert (stats.errors, stats.words) == (1, 3)
