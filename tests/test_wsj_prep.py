"""WSJ data preparation on a generated miniature of the LDC discs (tests/ldc_fixture.py)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asrcomp.datadir import read_data_dir, read_table
from asrcomp.features import read_audio
from asrcomp.sphere import read_header, read_sphere, wav_scp_entry, write_sphere
from asrcomp.utils import InputError
from local.wsj.data_prep import prepare_wsj
from local.wsj.transcripts import normalize_transcript
from tests.ldc_fixture import make_wsj_tree

ROOT = Path(__file__).resolve().parents[1]
SETS = ["train_si84", "train_si284", "test_eval92", "test_dev93", "test_eval93"]


def roots(tree: Path) -> list[Path]:
    return [tree / "wsj0", tree / "wsj1"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tree = tmp_path_factory.mktemp("ldc")
    expected = make_wsj_tree(tree)
    out = tmp_path_factory.mktemp("data")
    logger = logging.getLogger("local.wsj.data_prep")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        prepare_wsj(roots(tree), out)
    finally:
        logger.removeHandler(handler)
    return tree, out, expected, records


def test_sets_ids_speakers_transcripts(prepared):
    _, out, expected, _ = prepared
    for s in SETS:
        d = read_data_dir(out / s)
        assert d.utts == sorted(expected[s]), s
        assert d.utt2spk == {u: expected[s][u][0] for u in expected[s]}
        assert d.text == {u: expected[s][u][1] for u in expected[s]}
        assert read_table(out / s / "spk2utt", max_fields=None) == \
            {spk: " ".join(sorted(u for u in expected[s] if expected[s][u][0] == spk))
             for spk in {v[0] for v in expected[s].values()}}
    si84 = read_data_dir(out / "train_si84")
    assert not any(u.startswith("401") for u in si84.utts), "speaker 401 (11-2.1) must be left out"
    assert set(si84.utts) < set(read_data_dir(out / "train_si284").utts)
    # the eval93 index names disc 13_32_1; the audio is on 13-33.1 (Kaldi's sed fix)
    assert "/13-33.1/" in read_data_dir(out / "test_eval93").wav_scp["4k8c0201"]
    # upper-cased copy (WSJ1/SI_TR_S/4A0/4A0C0101.WV1) gives lower-case ids
    assert read_data_dir(out / "train_si284").wav_scp["4a0c0101"].endswith("4A0C0101.WV1")


def test_audio_reads_back_equal(prepared):
    _, out, expected, _ = prepared
    from lhotse import CutSet

    for s in SETS:
        d = read_data_dir(out / s)
        cuts = CutSet.from_file(out / "manifests" / f"wsj_{s}_cuts.jsonl.gz").to_eager()
        assert sorted(c.id for c in cuts) == d.utts
        for utt, (_, text, x) in expected[s].items():
            y = read_audio(d.wav_scp[utt], utt, out / s / "wav.scp", None, 16000)
            np.testing.assert_array_equal(np.round(y * 32768).astype(np.int16), x)
            c = cuts[utt]
            assert c.supervisions[0].text == text and c.supervisions[0].speaker == utt[:3]
            np.testing.assert_array_equal(np.round(c.load_audio()[0] * 32768).astype(np.int16), x)
        durs = read_table(out / s / "utt2dur")
        assert {u: float(v) for u, v in durs.items()} == pytest.approx(
            {u: len(v[2]) / 16000 for u, v in expected[s].items()}, abs=1e-3)


def test_counts_mismatch_is_reported(prepared):
    _, out, expected, records = prepared
    rows = {line.split()[0]: line.split() for line in (out / "local/wsj/counts.txt").read_text().splitlines()}
    assert rows["train_si284"][1:5] == ["expected", "37416", "found", str(len(expected["train_si284"]))]
    assert rows["test_eval92"][-1] == "MISMATCH" and rows["test_dev93"][2] == "503"
    warned = [r.getMessage() for r in records if r.levelno == logging.WARNING and "count mismatch" in r.getMessage()]
    assert len(warned) == 5 and any("train_si84: 4 utterances, Kaldi's recipe has 7138" in m for m in warned)


def test_strict_counts_fails(prepared, tmp_path):
    tree = prepared[0]
    with pytest.raises(InputError, match="counts differ from Kaldi's"):
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_eval92"], strict_counts=True)


def test_dict_oov_lms(prepared):
    _, out, _, _ = prepared
    lex = (out / "local/dict/lexicon.txt").read_text().splitlines()
    for entry in ("<NOISE> NSN", "<SPOKEN_NOISE> SPN", "<UNK> SPN", "!SIL SIL", "THE DH AH"):
        assert entry in lex
    assert (out / "local/dict/silence_phones.txt").read_text().split() == ["SIL", "SPN", "NSN"]
    rates = {line.split()[0]: line.split() for line in (out / "local/wsj/oov_rates.txt").read_text().splitlines()}
    # si84: 28 running words; <NOISE> is in the lexicon; 'SHARPLY' (quoted), ,COMMA .PERIOD -DASH are not in
    # CMUdict as spelled here... the counts file lists exactly which
    oov = dict(reversed(line.split()) for line in (out / "local/wsj/train_si84.oov_counts").read_text().splitlines())
    assert rates["train_si84"][2] == "28" and int(rates["train_si84"][4]) == sum(map(int, oov.values()))
    assert "<NOISE>" not in oov and "THE" not in oov
    assert rates["test_eval92"][-1] == "0.00%"
    bg = (out / "local/nist_lm/lm_bg.arpa").read_text()
    tg = (out / "local/nist_lm/lm_tg.arpa").read_text()
    assert bg.startswith("\\data\\") and tg.startswith("\\data\\") and "20k open" not in tg
    assert (out / "local/local_lm/lm_text.txt").read_text().splitlines() == \
        ["THE STOCKS FELL", "THE RATES ROSE", "MR. SMITH SAID PRICES ROSE"]
    vocab = set((out / "local/vocab.txt").read_text().split())
    assert {"STOCKS", "RATES", "BONDS", "PRICES"} <= vocab and "<UNK>" not in vocab and "<NOISE>" not in vocab


@pytest.mark.parametrize("raw,norm", [
    ("The [loud_breath] cat\\'s <and> ~ . dog", "THE <NOISE> CAT'S AND DOG"),
    ("[<door_slam] a [door_slam>] b [phone_ring/] c [/phone_ring]", "A B C"),
    ("%percent .point --dash ,COMMA \"DOUBLE-QUOTE", "PERCENT POINT -DASH ,COMMA \"DOUBLE-QUOTE"),
])
def test_normalize_transcript(raw, norm):
    assert normalize_transcript(raw) == norm


def test_missing_disc_is_named(prepared, tmp_path):
    tree = tmp_path / "ldc"
    shutil.copytree(prepared[0], tree)
    shutil.rmtree(tree / "wsj1" / "13-33.1")
    with pytest.raises(InputError, match=r"disc 13-33\.1 \(listed in h1_p0\.ndx line 8\) not found"):
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_eval93"])
    shutil.rmtree(tree / "wsj0" / "11-13.1")
    with pytest.raises(InputError, match=r"disc 11-13\.1 .* not found"):
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_eval92"])


def test_missing_audio_names_ndx_line_and_path(prepared, tmp_path):
    tree = tmp_path / "ldc"
    shutil.copytree(prepared[0], tree)
    (tree / "wsj0/11-13.1/wsj0/si_et_20/440/440c0202.wv1").unlink()
    with pytest.raises(InputError) as e:
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_eval92"])
    msg = str(e.value)
    assert "si_et_20.ndx:9:" in msg and "11-13.1/wsj0/si_et_20/440/440c0202.wv1" in msg and "does not exist" in msg


def test_bad_sphere_header_names_file(prepared, tmp_path):
    tree = tmp_path / "ldc"
    shutil.copytree(prepared[0], tree)
    bad = tree / "wsj1/13-16.1/wsj1/si_dt_20/4k0/4k0c0301.wv1"
    bad.write_bytes(b"RIFF0000WAVE" + bad.read_bytes()[12:])
    with pytest.raises(InputError, match=rf"{bad}: not a NIST SPHERE file"):
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_dev93"])
    bad.write_bytes(b"NIST_1A\n   1024\nsample_rate -i 16000\n".ljust(1024, b" "))
    with pytest.raises(InputError, match=rf"{bad}: SPHERE header has no 'end_head'"):
        read_header(bad)


def test_sphere_roundtrip_both_byte_orders(tmp_path):
    x = (np.arange(-500, 500) * 37).astype(np.int16)
    for be in (False, True):
        write_sphere(tmp_path / "a.sph", x, 8000, big_endian=be)
        y, sr = read_sphere(tmp_path / "a.sph")
        assert sr == 8000 and (y[:, 0] == x).all()


def test_shorten_needs_a_decoder(tmp_path):
    p = tmp_path / "a.wv1"
    write_sphere(p, np.zeros(100, np.int16), 16000, coding="pcm,embedded-shorten-v2.00")
    with pytest.raises(InputError, match="needs sph2pipe or ffmpeg.*install sph2pipe"):
        wav_scp_entry(p, tools={"sph2pipe": None, "ffmpeg": None})
    assert wav_scp_entry(p, tools={"sph2pipe": "/opt/sph2pipe", "ffmpeg": "/usr/bin/ffmpeg"}) == \
        f"/opt/sph2pipe -f wav -p -c 1 {p} |"
    assert wav_scp_entry(p, tools={"sph2pipe": None, "ffmpeg": "ffmpeg"}).startswith(f"tail -c +1025 {p} | ffmpeg ")
    with pytest.raises(InputError, match="cannot be read natively"):
        read_sphere(p)


def test_shorten_files_become_pipes(prepared, tmp_path):
    """Files whose header says shorten become ``sph2pipe ... |`` entries; a stand-in sph2pipe
    (PCM inside, so it can decode it) checks the pipe reaches the features and lhotse."""
    tree = tmp_path / "ldc"
    expected = make_wsj_tree(tree, shorten_utts=("440c0201",))
    fake = tmp_path / "bin" / "sph2pipe"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                    "from asrcomp.sphere import *\nimport soundfile as sf, io\n"
                    "h = read_header(sys.argv[-1]); h.fields['sample_coding'] = 'pcm'\n"
                    "x, sr = read_sphere(sys.argv[-1], h)\nb = io.BytesIO(); sf.write(b, x, sr, format='WAV')\n"
                    "sys.stdout.buffer.write(b.getvalue())\n")
    fake.chmod(0o755)
    out = tmp_path / "data"
    prepare_wsj(roots(tree), out, sets=["test_eval92"], tools={"sph2pipe": str(fake), "ffmpeg": None})
    d = read_data_dir(out / "test_eval92")
    assert d.wav_scp["440c0201"] == f"{fake} -f wav -p -c 1 {tree}/wsj0/11-13.1/wsj0/si_et_20/440/440c0201.wv1 |"
    assert not d.wav_scp["440c0202"].endswith("|")
    from lhotse import CutSet

    cuts = CutSet.from_file(out / "manifests" / "wsj_test_eval92_cuts.jsonl.gz").to_eager()
    for utt in ("440c0201", "440c0202"):
        x = expected["test_eval92"][utt][2]
        y = read_audio(d.wav_scp[utt], utt, out / "test_eval92" / "wav.scp", None, 16000)
        np.testing.assert_array_equal(np.round(y * 32768).astype(np.int16), x)
        np.testing.assert_array_equal(np.round(cuts[utt].load_audio()[0] * 32768).astype(np.int16), x)


def test_run_sh_to_features(prepared, tmp_path):
    tree = prepared[0]
    data = tmp_path / "data"
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    r = subprocess.run([str(ROOT / "egs/wsj/run.sh"), "--wsj0", str(tree / "wsj0"), "--wsj1", str(tree / "wsj1"),
                        "--config", "smoke", "--data", str(data), "--stop-stage", "1"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "MISMATCH" in r.stdout and "oov_rate" in r.stdout
    assert "utterance count mismatch" in (data / "log" / "data_prep.log").read_text()
    for s in ("train_si284", "test_dev93", "test_eval92"):
        d = read_data_dir(data / s, need_features=True)
        assert len(d.feats_scp) == len(d.utts) > 0
        assert (data / "fbank" / "log" / f"make_fbank_{s}.log").is_file()
    assert not (data / "test_eval93" / "feats.scp").exists()
