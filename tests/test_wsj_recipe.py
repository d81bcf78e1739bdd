"""egs/wsj/run.sh stages 0-7 on the LDC miniature (tests/ldc_fixture.py): the discs' real names,
Kaldi's dictionary, tgpr/bd_tgpr by local/wsj/make_lms.sh, and a dev93 word outside the lexicon."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from asrcomp.datadir import read_data_dir
from asrcomp.lm import read_arpa
from tests.ldc_fixture import make_wsj_tree

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_sh_stages_0_to_7_smoke(tmp_path):
    tree = tmp_path / "ldc"
    make_wsj_tree(tree, shorten_utts=("4k0c0301",) if _has("ffmpeg") else ())
    data, exp = tmp_path / "data", tmp_path / "exp"
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    r = subprocess.run([str(ROOT / "egs/wsj/run.sh"), "--wsj0", str(tree / "wsj0"), "--wsj1", str(tree / "wsj1"),
                        "--config", "smoke", "--data", str(data), "--exp", str(exp), "--stop-stage", "7"],
                       capture_output=True, text=True, env=env, timeout=3000)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # transcripts found under the discs' <session>00.dot names; the dev93 OOV word kept in the test text
    assert read_data_dir(data / "test_dev93").text["4k0c030a"] == "SAATCHI OFFICIALS SAID THE MEGABANK GREW"
    # the lang dir's pronunciations come from data/local/dict/lexicon.txt (verbal punctuation included)
    lex = (data / "lang_phone" / "lexicon.txt").read_text(encoding="utf-8").splitlines()
    assert any(line.split()[:1] == [",COMMA"] for line in lex)
    assert not any(line.split()[:1] == ["MEGABANK"] for line in lex)
    # both LMs, both graphs
    assert len(read_arpa(data / "lm" / "tgpr.arpa").ngrams[1]) > 0 and (data / "lm" / "bd_tgpr.arpa").is_file()
    for lm in ("tgpr", "bd_tgpr"):
        assert (data / f"lang_phone_{lm}" / "TLG.fst").is_file()
    # every model decoded dev93 and eval92 with both graphs; MEGABANK is in the reference, never a hypothesis
    for m in ("tdnn", "dnn"):
        for lm in ("tgpr", "bd_tgpr"):
            for s in ("test_dev93", "test_eval92"):
                assert (exp / m / f"decode_{s}_lang_phone_{lm}" / "wer").is_file(), (m, lm, s)
        d = exp / m / "decode_test_dev93_lang_phone_tgpr"
        assert "MEGABANK" in (d / "errs").read_text() and "MEGABANK" not in (d / "hyp.txt").read_text()
    assert (exp / "results.md").is_file()


def _has(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None
