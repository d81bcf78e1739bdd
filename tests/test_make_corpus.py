"""The synthetic corpus: deterministic, speaker-disjoint, LM text free of test sentences,
readable by lhotse; and the recipe's stages 0-4 end to end on the quick config."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import lhotse
import pytest

from asrcomp.datadir import read_data_dir
from local.synth import grammar
from local.synth.make_corpus import CorpusConfig, make_corpus, plan_corpus

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("espeak-ng", "flite", "sox")),
                                reason="needs espeak-ng, flite and sox (make setup installs them)")

ROOT = Path(__file__).resolve().parents[1]
TINY = CorpusConfig(seed=5, n_train_speakers=8, n_dev_speakers=2, n_test_speakers=3, utts_per_train_speaker=2,
                    utts_per_dev_speaker=1, utts_per_test_speaker=2, lm_extra_sentences=200)


def _digest(data_dir: Path) -> dict[str, str]:
    d = read_data_dir(data_dir)
    return {u: hashlib.sha256(Path(d.wav_scp[u]).read_bytes()).hexdigest() for u in d.utts}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    hours = make_corpus(TINY, out, nj=2)
    return out, hours


def test_same_seed_same_corpus(corpus, tmp_path):
    out, _ = corpus
    make_corpus(TINY, tmp_path / "again", nj=1)
    for s in ("train", "dev", "test"):
        assert (out / s / "text").read_text() == (tmp_path / "again" / s / "text").read_text()
        assert _digest(out / s) == _digest(tmp_path / "again" / s)
    other, _ = plan_corpus(replace(TINY, seed=6), tmp_path / "w")
    mine, _ = plan_corpus(TINY, tmp_path / "w")
    assert [j.text for j in other["train"]] != [j.text for j in mine["train"]]


def test_held_out_speakers_and_sentences(corpus, tmp_path):
    out, hours = corpus
    sets = {s: read_data_dir(out / s) for s in ("train", "dev", "test")}
    spk = {s: set(d.spk2utt) for s, d in sets.items()}
    assert not spk["test"] & spk["train"] and not spk["dev"] & spk["train"] and not spk["dev"] & spk["test"]
    jobs, _ = plan_corpus(TINY, tmp_path / "w")
    base = {s: {j.speaker.base_voice for j in js} for s, js in jobs.items()}
    assert not base["test"] & base["train"], "test must hold out whole voices"
    assert any(b.startswith("fl-") for b in base["test"]), "test must hold out a flite voice"
    lm_text = set((out / "local" / "lm_text.txt").read_text().splitlines())
    for s in ("dev", "test"):
        assert not set(sets[s].text.values()) & lm_text
    vocab = set((out / "local" / "vocab.txt").read_text().split())
    assert vocab == set(grammar.vocabulary())
    for d in sets.values():
        assert all(w in vocab for t in d.text.values() for w in t.split())
        assert all(4 <= len(t.split()) <= 20 for t in d.text.values())
    assert hours["train"] > 0 and (out / "train" / "utt2dur").is_file()


def test_lhotse_reads_the_data_dirs_back(corpus):
    out, _ = corpus
    for s in ("train", "test"):
        recs, sups, _ = lhotse.kaldi.load_kaldi_data_dir(out / s, sampling_rate=16000)
        d = read_data_dir(out / s)
        assert sorted(recs.ids) == d.utts
        assert {x.id: x.text for x in sups} == d.text
        assert all(r.sampling_rate == 16000 and r.num_channels == 1 for r in recs)
        cuts = lhotse.load_manifest(out / "manifests" / f"synth_{s}_cuts.jsonl.gz")
        assert sorted(c.id for c in cuts) == d.utts


def test_recipe_stages_0_to_4_quick(quick_data):
    """egs/synth/run.sh --config quick ran all stages of the data/lang/graph issue; a rerun skips them."""
    data = quick_data
    for f in ("train/feats.scp", "test/cmvn.scp", "lang_bpe500/L_disambig.fst", "lm/3gram.arpa",
              "lang_bpe500_3gram/TLG.fst", "manifests/synth_dev_cuts.jsonl.gz"):
        assert (data / f).is_file(), f
    ppl = (data / "lm" / "3gram.ppl").read_text()
    # one block per set, dev then test (SRILM's ngram -ppl lines)
    assert ppl.count("0 OOVs") == 2 and "dev_text.txt" in ppl.splitlines()[0] and "test_text.txt" in ppl.splitlines()[2]
    assert all(2 < float(line.split("ppl=")[1]) < 200 for line in ppl.splitlines()[1::2])
    # the config's speed_perturb: train_sp holds train at speeds 0.9, 1.0, 1.1, with features
    train, train_sp = read_data_dir(data / "train"), read_data_dir(data / "train_sp", need_features=True)
    assert len(train_sp.utts) == 3 * len(train.utts)
    assert len(train_sp.spk2utt) == 3 * len(train.spk2utt)
    u = train.utts[0]
    frames = dict(line.split() for line in (data / "train_sp" / "utt2num_frames").read_text().splitlines())
    assert int(frames[f"sp0.9-{u}"]) > int(frames[u]) > int(frames[f"sp1.1-{u}"])
    sp_mtime = (data / "train_sp" / "wav.scp").stat().st_mtime
    feats_mtime = {s: (data / s / "feats.scp").stat().st_mtime for s in ("train", "dev", "test", "train_sp")}
    run = [str(ROOT / "egs/synth/run.sh"), "--config", "quick", "--data", str(data), "--stop-stage", "4"]
    again = subprocess.run(run, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("already complete") >= 5
    assert (data / "train_sp" / "wav.scp").stat().st_mtime == sp_mtime
    assert {s: (data / s / "feats.scp").stat().st_mtime for s in feats_mtime} == feats_mtime  # kept


def test_unknown_corpus_option_names_the_config(tmp_path):
    from asrcomp.utils import InputError

    conf = tmp_path / "c.yaml"
    conf.write_text("corpus:\n  seed: 1\n  n_speakers: 3\n")
    with pytest.raises(InputError, match=r"c.yaml: unknown corpus options \['n_speakers'\]"):
        CorpusConfig.load(conf)
