"""egs/speechocean762 on a generated miniature of the corpus's layout (tests/so762_fixture.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from asrcomp.datadir import read_data_dir, read_table
from asrcomp.lang import load_lang, prepare_lang
from asrcomp.utils import InputError
from local.speechocean762.data_prep import prepare
from tests.so762_fixture import LEXICON, OWN_WORD, TEST_SPEAKERS, TRAIN_SPEAKERS, make_speechocean762

ROOT = Path(__file__).resolve().parents[1]


def test_data_prep_layout(tmp_path):
    corpus = make_speechocean762(tmp_path / "so762")
    out = tmp_path / "data"
    counts = prepare(corpus, out, dev_speakers=2, child_age=16, seed=0)
    train, dev, test = (read_data_dir(out / s) for s in ("train", "dev", "test"))
    assert counts == {"train": len(train.utts), "dev": len(dev.utts), "test": len(test.utts)}
    # dev: 2 training speakers, one child and one adult; no test speaker; train keeps the rest
    dev_spk = set(dev.spk2utt)
    groups = read_table(out / "dev" / "spk2group")
    assert len(dev_spk) == 2 and sorted(groups.values()) == ["adult", "child"]
    assert dev_spk < set(TRAIN_SPEAKERS) and not dev_spk & set(train.spk2utt)
    assert set(train.spk2utt) | dev_spk == set(TRAIN_SPEAKERS) and set(test.spk2utt) == set(TEST_SPEAKERS)
    assert read_table(out / "test" / "spk2age")["0003"] == "9" and read_table(out / "test" / "spk2group")["0003"] == "child"
    # Kaldi ids: speaker-prefixed; audio paths absolute and existing; the unlisted WAVs left out
    assert all(u.startswith(spk + "-") for u, spk in train.utt2spk.items())
    assert "0001-000010011" in (train.utts + dev.utts)
    for d in (train, dev, test):
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in d.wav_scp.values())
    listed = {Path(p).name for d in (train, dev, test) for p in d.wav_scp.values()}
    assert "000019000.WAV" not in listed and len(listed) == len(train.utts) + len(dev.utts) + len(test.utts)
    # LM text = train transcripts only; the held-out speakers' own words are absent from it
    lm_text = (out / "local" / "lm_text.txt").read_text().splitlines()
    assert sorted(lm_text) == sorted(train.text.values())
    lm_words = {w for t in lm_text for w in t.split()}
    assert {OWN_WORD[s] for s in dev_spk}.isdisjoint(lm_words)
    assert not any(t in lm_text for t in test.text.values())
    # closed vocabulary: the corpus lexicon's words
    assert (out / "local" / "vocab.txt").read_text().split() == sorted({w for w, _ in LEXICON})
    # lhotse manifests of every set
    from lhotse import CutSet

    cuts = CutSet.from_file(out / "manifests" / "speechocean762_test_cuts.jsonl.gz").to_eager()
    assert sorted(c.id for c in cuts) == test.utts and cuts[test.utts[0]].supervisions[0].speaker in TEST_SPEAKERS


def test_corpus_lexicon_with_variants_and_stress(tmp_path):
    corpus = make_speechocean762(tmp_path / "so762")
    words = sorted({w for w, _ in LEXICON}) + ["FLOOBLE"]
    lang = prepare_lang(words, tmp_path / "lang", "phone", lexicon=corpus / "resource" / "lexicon.txt")
    lex = (tmp_path / "lang" / "lexicon.txt").read_text().splitlines()
    # every variant, in the corpus's order, stress removed; IH1 T and IH T collapse into one
    assert [line for line in lex if line.startswith("ZERO ")] == ["ZERO Z IH R OW", "ZERO Z IY R OW"]
    assert [line for line in lex if line.startswith("IT ")] == ["IT IH T"]
    assert "SHIZI SH IY Z IY" in lex  # not in CMUdict: from the corpus lexicon
    assert lang.lexicon["A"] == ["AH"]  # training uses the first variant
    assert (tmp_path / "lang" / "oov.txt").read_text().split() == ["FLOOBLE"]
    assert not any(t[-1].isdigit() for t in lang.tokens if not t.startswith("#"))
    # keep_stress: stressed phones are tokens of their own
    kept = prepare_lang(words, tmp_path / "lang_stress", "phone", lexicon=corpus / "resource" / "lexicon.txt",
                        keep_stress=True)
    assert kept.lexicon["ZERO"] == ["Z", "IH1", "R", "OW0"] and "IH" in kept.tokens and "IH1" in kept.tokens
    # CMUdict fills only the words the given lexicon lacks
    filled = prepare_lang(["BEAR", "HELLO"], tmp_path / "lang_fill", "phone", lexicon=corpus / "resource/lexicon.txt")
    assert filled.lexicon["HELLO"] in (["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW"])


def test_bad_input_is_named_and_nothing_half_written(tmp_path):
    corpus = make_speechocean762(tmp_path / "so762")
    out = tmp_path / "data"
    with pytest.raises(InputError, match=r"nowhere: speechocean762 directory not found.*--corpus-dir"):
        prepare(tmp_path / "nowhere", out)
    wav_scp = corpus / "test" / "wav.scp"
    lines = wav_scp.read_text().splitlines()
    lines[2] = lines[2].split("\t")[0] + "\tWAVE/SPEAKER0003/missing.WAV"
    wav_scp.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"test/wav.scp:3: audio file .*missing.WAV of '\d+' not found"):
        prepare(corpus, out, dev_speakers=2)
    assert not out.exists()  # everything is checked before anything is written
    lex = tmp_path / "lexicon.txt"
    lex.write_text("BEAR\tB EH1 R\nCALL\n")
    with pytest.raises(InputError, match=r"lexicon.txt:2: a lexicon line needs a word and at least one token"):
        prepare_lang(["BEAR", "CALL"], tmp_path / "lang", "phone", lexicon=lex)
    lex.write_text("BEAR\tB EH1 R\nCALL\tK AO1 LL\n")
    with pytest.raises(InputError, match=r"lexicon.txt:2: phone\(s\) \['LL'\] of 'CALL' are not in the token set"):
        prepare_lang(["BEAR", "CALL"], tmp_path / "lang", "phone", lexicon=lex)
    assert not (tmp_path / "lang").exists()
    lex.write_bytes("BEAR\tB EH1 R\nCAF\xc9\tK AE F\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"lexicon.txt:2: not UTF-8 text"):
        prepare_lang(["BEAR"], tmp_path / "lang", "phone", lexicon=lex)


@pytest.mark.slow
def test_run_sh_stages_0_to_7_quick(tmp_path):
    """The recipe through its baseline table on the miniature: a dev word outside the training
    vocabulary and a test word outside every lexicon stop nothing; the test set is scored against
    its original transcripts, so the OOV word counts as an error."""
    corpus = make_speechocean762(tmp_path / "so762")
    lex = corpus / "resource" / "lexicon.txt"  # FLOOBLE is in no lexicon; SHIZI is in no CMUdict
    data, exp = tmp_path / "data", tmp_path / "exp"
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    r = subprocess.run([str(ROOT / "egs/speechocean762/run.sh"), "--corpus-dir", str(corpus), "--config", "quick",
                        "--dev-speakers", "2", "--data", str(data), "--exp", str(exp), "--stop-stage", "7"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "SHIZI" in lex.read_text()
    lang = load_lang(data / "lang_phone")
    assert lang.lexicon["SHIZI"] == ["SH", "IY", "Z", "IY"] and "FLOOBLE" not in lang.lexicon
    # speed perturbation: 3 copies of train
    assert len(read_data_dir(data / "train_sp").utts) == 3 * len(read_data_dir(data / "train").utts)
    # LM: perplexity and OOV rate of dev and test
    ppl = (data / "lm" / "3gram.ppl").read_text()
    assert "dev_text.txt" in ppl and "test_text.txt: 8 sentences, 32 words, 2 OOVs" in ppl
    oov_rates = (data / "log" / "oov_rates.txt").read_text()
    assert "data/test: 8 utterances, 2 speakers, OOV rate 6.25% (2 of 32 words, 1 types: FLOOBLE)" in oov_rates
    # scoring against the original text: FLOOBLE is in every reference, never in a hypothesis
    for m in ("tdnn", "dnn"):
        d = exp / m / "decode_test_lang_phone_3gram"
        errs = (d / "errs").read_text()
        assert "FLOOBLE" in errs and "FLOOBLE" not in (d / "hyp.txt").read_text()
        assert int(read_table(d / "utt_stats", max_fields=None)["0003-000030041"].split()[0]) >= 1
    table = (exp / "results.md").read_text()
    assert "| tdnn |" in table and "| dnn |" in table
    by_group = [line for line in (exp / "results_by_group.md").read_text().splitlines() if line.startswith("|")]
    assert by_group[0].startswith("| model | test all | test adult | test child | dev all | dev adult | dev child |")
    assert [row.split(" | ")[0] for row in by_group[2:]] == ["| dnn", "| tdnn"]
    # the total is the errors of both groups over the words of both: it lies between them
    tdnn = [float(c.split(" [")[0]) for c in by_group[3].strip("| ").split(" | ")[1:4]]
    assert min(tdnn[1:]) <= tdnn[0] <= max(tdnn[1:])
