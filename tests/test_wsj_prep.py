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
from local.wsj.data_prep import prepare_dict, prepare_wsj
from local.wsj.transcripts import normalize_transcript
from tests.ldc_fixture import UTTS, make_wsj_tree, ndx_line, write_sphere_shorten

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
    # eval92: index without extensions, audio on 11-14.1
    assert read_data_dir(out / "test_eval92").wav_scp["440c0201"].endswith("11-14.1/wsj0/si_et_20/440/440c0201.wv1")
    # the dev93 word outside every lexicon stays in the test transcript (scored against the original text)
    assert read_data_dir(out / "test_dev93").text["4k0c030a"] == "SAATCHI OFFICIALS SAID THE MEGABANK GREW"
    # a .dot line whose utterance no index lists is not an utterance
    assert not any(u.endswith("99") for s in SETS for u in read_data_dir(out / s).utts)


def test_transcripts_are_looked_up_by_the_discs_names(prepared, tmp_path):
    """<session>00.dot is the name on the discs (find_transcripts.pl's (\\w{6})00.dot); a file named
    <session>.dot is not a transcript: its utterances have none, and say so."""
    tree = tmp_path / "ldc"
    shutil.copytree(prepared[0], tree)
    dot = tree / "wsj1/13-34.1/wsj1/trans/wsj1/si_dt_20/4k0/4k0c0300.dot"
    dot.rename(dot.with_name("4k0c03.dot"))
    logger = logging.getLogger("local.wsj.data_prep")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        with pytest.raises(InputError, match="set test_dev93 has no utterances with transcripts"):
            prepare_wsj(roots(tree), tmp_path / "data", sets=["test_dev93"])
    finally:
        logger.removeHandler(handler)
    msgs = [r.getMessage() for r in records]
    assert any("not named <session>00.dot" in m and "4k0c03.dot" in m for m in msgs)
    assert any("no transcript for 4k0c0301" in m and "any 4k0c0300.dot" in m for m in msgs)


def test_upper_case_disc_copy(tmp_path):
    """Kaldi's ndx2flist.pl: disc 13-16.1 came upper-cased on some sites; the index still says
    13_16_1:wsj1/si_dt_20/4k0/4k0c0301.wv1. Paths are matched case-insensitively, ids are lower case."""
    tree = tmp_path / "ldc"
    expected = make_wsj_tree(tree, upper_discs=("13-16.1",))
    assert (tree / "wsj1/13-16.1/WSJ1/SI_DT_20/4K0/4K0C0301.WV1").is_file()
    prepare_wsj(roots(tree), tmp_path / "data", sets=["test_dev93"])
    d = read_data_dir(tmp_path / "data/test_dev93")
    assert d.utts == sorted(expected["test_dev93"]) == ["4k0c0301", "4k0c030a"]
    assert d.wav_scp["4k0c030a"].endswith("13-16.1/WSJ1/SI_DT_20/4K0/4K0C030A.WV1")


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
    """The dictionary as wsj_prepare_dict.sh builds it on the same words: the silence/noise words
    first (!SIL SIL, <SPOKEN_NOISE> SPN, <UNK> SPN, <NOISE> NSN), then CMUdict 0.7a with every
    pronunciation ('WORD(1)' -> 'WORD'), verbal punctuation included; stress removed by default."""
    _, out, _, _ = prepared
    lex = (out / "local/dict/lexicon.txt").read_text(encoding="latin-1").splitlines()
    assert lex[:4] == ["!SIL SIL", "<SPOKEN_NOISE> SPN", "<UNK> SPN", "<NOISE> NSN"]
    for entry in (",COMMA K AA M AH", ".PERIOD P IH R IY AH D", "-DASH D AE SH", '"DOUBLE-QUOTE D AH B AH L K W OW T',
                  "?QUESTION-MARK K W EH S CH AH N M AA R K", "(LEFT-PAREN L EH F T P ER EH N",
                  "'CAUSE K AH Z", "THE DH AH", "THE DH IY", "SAATCHI S AA CH IY"):
        assert entry in lex, entry
    assert [x for x in lex if x.startswith(")RIGHT-PAREN ")] == [")RIGHT-PAREN R AY T P ER EH N",
                                                                   ")RIGHT-PAREN R AY T P EH R AH N"]
    assert not any("(1)" in x.split()[0] for x in lex)
    assert (out / "local/dict/silence_phones.txt").read_text().split() == ["SIL", "SPN", "NSN"]
    assert (out / "local/dict/optional_silence.txt").read_text() == "SIL\n"
    assert len((out / "local/dict/nonsilence_phones.txt").read_text().splitlines()) == 39
    # OOV rates: <NOISE> and the verbal punctuation are words of the lexicon; 'SHARPLY' (quoted) is not
    rates = {line.split()[0]: line.split() for line in (out / "local/wsj/oov_rates.txt").read_text().splitlines()}
    oov = {s: dict(reversed(line.split()) for line in (out / f"local/wsj/{s}.oov_counts").read_text().splitlines())
           for s in SETS}
    assert oov["train_si84"] == {"'SHARPLY'": "1"} and oov["train_si284"] == {"'SHARPLY'": "1"}
    assert oov["test_dev93"] == {"MEGABANK": "1"} and oov["test_eval92"] == {} == oov["test_eval93"]
    assert rates["train_si84"][1:] == ["words", "30", "oov_words", "1", "oov_types", "1", "oov_rate", "3.33%"]
    assert rates["train_si284"][2] == "41" and rates["train_si284"][-1] == "2.44%"
    assert rates["test_dev93"][2] == "10" and rates["test_dev93"][-1] == "10.00%"
    assert rates["test_eval92"][-1] == "0.00%"
    bg = (out / "local/nist_lm/lm_bg.arpa").read_text()
    tg = (out / "local/nist_lm/lm_tg.arpa").read_text()
    assert bg.startswith("\\data\\") and tg.startswith("\\data\\") and "20k open" not in tg
    # np_data/87/870101.z is Unix compress (LZW) data, as on the disc
    assert (prepared[0] / "wsj1/13-32.1/wsj1/doc/lng_modl/lm_train/np_data/87/870101.z").read_bytes()[:2] == b"\x1f\x9d"
    assert (out / "local/local_lm/lm_text.txt").read_text().splitlines() == \
        ["THE STOCKS FELL", "THE RATES ROSE", "MR. SMITH SAID PRICES ROSE"]
    vocab = set((out / "local/vocab.txt").read_text().split())
    assert {"STOCKS", "RATES", "BONDS", "PRICES", ",COMMA"} <= vocab and "<UNK>" not in vocab and "<NOISE>" not in vocab


def test_dict_keeps_stress_as_kaldi(tmp_path):
    """With stress kept, the lexicon is CMUdict's spelling and nonsilence_phones.txt groups each base
    phone with its stress variants on one line, as Kaldi writes it from cmudict.0.7a.symbols."""
    lex = prepare_dict(tmp_path, keep_stress=True)
    assert lex[",COMMA"] == [["K", "AA1", "M", "AH0"]] and lex["<UNK>"] == [["SPN"]]
    lines = (tmp_path / "local/dict/lexicon.txt").read_text(encoding="latin-1").splitlines()
    assert "!EXCLAMATION-POINT EH2 K S K L AH0 M EY1 SH AH0 N P OY2 N T" in lines
    groups = (tmp_path / "local/dict/nonsilence_phones.txt").read_text().splitlines()
    assert "AA AA0 AA1 AA2" in groups and "B" in groups and len(groups) == 39
    q = (tmp_path / "local/dict/extra_questions.txt").read_text().splitlines()
    assert q[0] == "SIL SPN NSN" and len(q) == 5  # then: no stress mark (B, AA ...), stress 0, 1, 2
    assert {"B", "AA"} <= set(q[1].split()) and "AA0" in q[2].split() and "AA1" in q[3].split() and "AA2" in q[4].split()


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
    line = ndx_line(tree, "eval93", "4k8c0201")
    with pytest.raises(InputError, match=rf"disc 13-33\.1 \(listed in h1_p0\.ndx line {line}\) not found"):
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_eval93"])
    shutil.rmtree(tree / "wsj0" / "11-13.1")
    with pytest.raises(InputError, match=r"disc 11-13\.1 .* not found"):
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_eval92"])


def test_missing_audio_names_ndx_line_and_path(prepared, tmp_path):
    tree = tmp_path / "ldc"
    shutil.copytree(prepared[0], tree)
    (tree / "wsj0/11-14.1/wsj0/si_et_20/440/440c0202.wv1").unlink()
    with pytest.raises(InputError) as e:
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_eval92"])
    msg = str(e.value)
    assert f"si_et_20.ndx:{ndx_line(tree, 'eval92', '440c0202')}:" in msg
    assert "11-14.1/wsj0/si_et_20/440/440c0202.wv1" in msg and "does not exist" in msg


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
    write_sphere_shorten(p, np.zeros(100, np.int16))
    with pytest.raises(InputError, match="needs sph2pipe or ffmpeg.*install sph2pipe"):
        wav_scp_entry(p, tools={"sph2pipe": None, "ffmpeg": None})
    assert wav_scp_entry(p, tools={"sph2pipe": "/opt/sph2pipe", "ffmpeg": "/usr/bin/ffmpeg"}) == \
        f"/opt/sph2pipe -f wav -p -c 1 {p} |"
    assert wav_scp_entry(p, tools={"sph2pipe": None, "ffmpeg": "ffmpeg", "python": "py"}) == \
        f"py -m asrcomp.sphere --shorten-for-ffmpeg {p} | ffmpeg -nostdin -loglevel error -f shn -i - -f wav " \
        "-acodec pcm_s16le - |"
    with pytest.raises(InputError, match="cannot be read natively"):
        read_sphere(p)


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")


@needs_ffmpeg
def test_ffmpeg_rejects_the_discs_shorten_stream_as_is(tmp_path):
    """Why the pipe goes through asrcomp.sphere: ffmpeg's shorten decoder wants a verbatim WAV header
    at the start of the stream, and SPHERE-embedded shorten has none."""
    p = tmp_path / "a.wv1"
    write_sphere_shorten(p, (np.arange(3000) % 200 - 100).astype(np.int16))
    r = subprocess.run(f"tail -c +1025 {p} | ffmpeg -nostdin -loglevel error -f shn -i - -f wav -",
                       shell=True, capture_output=True)
    assert r.returncode != 0 and b"missing verbatim section" in r.stderr


@needs_ffmpeg
@pytest.mark.parametrize("big_endian", [False, True])
def test_shorten_roundtrip_through_ffmpeg(tmp_path, big_endian):
    """A shorten file written from the format (DIFF1/DIFF2/ZERO blocks, a short last block, nmean 4)
    decodes bit-exactly through the wav.scp pipe."""
    rng = np.random.default_rng(3)
    x = (np.cumsum(rng.normal(0, 300, 5000)) % 20000 - 10000).astype(np.int16)
    x[256:512] = 0  # an FN_ZERO block
    x[1000] = 32767
    x[1001] = -32768  # full-scale jumps
    p = tmp_path / "a.wv1"
    write_sphere_shorten(p, x, big_endian=big_endian)
    entry = wav_scp_entry(p, tools={"sph2pipe": None, "ffmpeg": shutil.which("ffmpeg")})
    y = read_audio(entry, "a", tmp_path / "wav.scp", None, 16000)
    np.testing.assert_array_equal(np.round(y * 32768).astype(np.int16), x)


@needs_ffmpeg
def test_shorten_files_become_pipes(tmp_path):
    """Shorten-compressed .wv1 files (as on the real discs) become ffmpeg pipes in wav.scp (sph2pipe when
    installed) that the features and lhotse read, sample for sample."""
    tree = tmp_path / "ldc"
    expected = make_wsj_tree(tree, shorten_utts=("440c0201", "4k0c030a"))
    out = tmp_path / "data"
    tools = {"sph2pipe": None, "ffmpeg": shutil.which("ffmpeg")}
    prepare_wsj(roots(tree), out, sets=["test_eval92", "test_dev93"], tools=tools)
    from lhotse import CutSet

    for s, shn, pcm in (("test_eval92", "440c0201", "440c0202"), ("test_dev93", "4k0c030a", "4k0c0301")):
        d = read_data_dir(out / s)
        assert d.wav_scp[shn].endswith("|") and "--shorten-for-ffmpeg" in d.wav_scp[shn]
        assert not d.wav_scp[pcm].endswith("|")
        cuts = CutSet.from_file(out / "manifests" / f"wsj_{s}_cuts.jsonl.gz").to_eager()
        for utt in (shn, pcm):
            x = expected[s][utt][2]
            y = read_audio(d.wav_scp[utt], utt, out / s / "wav.scp", None, 16000)
            np.testing.assert_array_equal(np.round(y * 32768).astype(np.int16), x)
            np.testing.assert_array_equal(np.round(cuts[utt].load_audio()[0] * 32768).astype(np.int16), x)
        assert float(read_table(out / s / "utt2dur")[shn]) == pytest.approx(len(expected[s][shn][2]) / 16000, abs=1e-3)


def test_audio_shorter_than_its_header_is_dropped_and_counted(prepared, tmp_path):
    """A body shorter than the header's sample_count (a cut-short copy; WSJ1 has empty files) is left out
    of the data dir with a warning naming file, sizes and .ndx line, and counted in counts.txt."""
    tree = tmp_path / "ldc"
    shutil.copytree(prepared[0], tree)
    d440 = tree / "wsj0/11-14.1/wsj0/si_et_20/440"
    empty, short, good = d440 / "440c0201.wv1", d440 / "440c0202.wv1", d440 / "440c0203.wv1"
    write_sphere(empty, np.zeros(0, np.int16), 16000)
    write_sphere(short, np.ones(5000, np.int16), 16000)
    short.write_bytes(short.read_bytes()[:1024 + 2 * 100])
    with pytest.raises(InputError, match=rf"{short}: truncated: header says 5000 samples, file holds 100"):
        read_sphere(short)
    write_sphere(good, np.ones(800, np.int16), 16000)
    ndx = tree / "wsj0/11-13.1/wsj0/doc/indices/test/nvp/si_et_20.ndx"
    ndx.write_text(ndx.read_text() + "11_14_1:wsj0/si_et_20/440/440c0203\n")
    with open(d440 / "440c0200.dot", "a") as f:
        f.write("Good audio (440c0203)\n")
    logger = logging.getLogger("local.wsj.data_prep")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        prepare_wsj(roots(tree), tmp_path / "data", sets=["test_eval92"])
    finally:
        logger.removeHandler(handler)
    d = read_data_dir(tmp_path / "data/test_eval92")
    assert d.utts == ["440c0203"]
    row = (tmp_path / "data/local/wsj/counts.txt").read_text().split()
    assert row[row.index("skipped_bad_audio") + 1] == "2"
    bad = (tmp_path / "data/local/wsj/test_eval92.bad_audio").read_text()
    assert "440c0201" in bad and "sample_count 0" in bad
    assert "440c0202" in bad and "body holds 100 samples (200 bytes) but the header says 5000 (10000 bytes)" in bad
    warned = [r.getMessage() for r in records if r.levelno == logging.WARNING and "left out" in r.getMessage()]
    assert any(str(short) in m and "si_et_20.ndx:" in m for m in warned) and len(warned) == 2


@pytest.mark.slow
def test_run_sh_to_features(prepared, tmp_path):
    tree = prepared[0]
    data = tmp_path / "data"
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    r = subprocess.run([str(ROOT / "egs/wsj/run.sh"), "--wsj0", str(tree / "wsj0"), "--wsj1", str(tree / "wsj1"),
                        "--config", "smoke", "--data", str(data), "--stop-stage", "1"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "MISMATCH" in r.stdout and "oov_rate" in r.stdout
    assert "utterance count mismatch" in (data / "log" / "data_prep.log").read_text()
    for s in ("train_si284", "test_dev93", "test_eval92"):
        d = read_data_dir(data / s, need_features=True)
        assert len(d.feats_scp) == len(d.utts) > 0
        assert (data / "fbank" / "log" / f"make_fbank_{s}.log").is_file()
    assert not (data / "test_eval93" / "feats.scp").exists()
