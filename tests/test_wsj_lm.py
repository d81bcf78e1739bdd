"""egs/wsj LMs: tgpr = IRSTLM prune-lm --threshold=1e-7 of lm_tg (local/wsj/prune_lm.py is the same
algorithm in Python), and local/wsj/make_lms.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from asrcomp.lm import read_arpa, train_kneser_ney
from local.wsj.make_lms import irstlm_tool
from local.wsj.prune_lm import prune

ROOT = Path(__file__).resolve().parents[1]

# A hand-made trigram: the expected results below are worked out by hand from IRSTLM's
# lmtable::wdprune (weighted difference p(h w) * (log p(w|h) - log bow(h) - log p(w|h'))).
SMALL = """\\data\\
ngram 1=6
ngram 2=6
ngram 3=3

\\1-grams:
-0.8 </s>
-99 <s> -0.5
-0.9 <UNK> -0.2
-0.6 A -0.3
-0.7 B -0.25
-0.75 C -0.1

\\2-grams:
-0.2 <s> A -0.1
-0.5 A B -0.2
-0.9 A C
-0.3 B </s>
-1.2 B A
-0.4 C </s>

\\3-grams:
-0.1 <s> A B
-0.6 A B </s>
-1.5 A B A

\\end\\
"""
# bigrams, weight p(h w) * difference (log10):
#   <s> A : 10^-0.2 * (-0.2 + 0.5 + 0.6)  = 0.568     A B : 10^-1.1 * (-0.5 + 0.3 + 0.7)  = 0.0397
#   A C   : 10^-1.5 * (-0.9 + 0.3 + 0.75) = 0.00474   B </s>: 10^-1.0 * (-0.3 + 0.25 + 0.8) = 0.075
#   B A   : difference -1.2 + 0.25 + 0.6 < 0: removed  C </s>: 10^-1.15 * (-0.4 + 0.1 + 0.8) = 0.0354
# at 1e-7, bow(A) = log10((1 - 10^-0.5 - 10^-0.9) / (1 - 10^-0.7 - 10^-0.75)) = -0.047700,
#   bow(<s>) = log10((1 - 10^-0.2) / (1 - 10^-0.6)) = -0.307296;
# trigrams: <s> A B: 10^-0.3 * (-0.1 + 0.1 + 0.5) > 0 kept; A B </s>: -0.6 + 0.2 + 0.3 < 0 removed;
#   A B A: -1.5 + 0.2 - (bow(B) - 0.6) < 0 removed; bow(<s> A) = log10((1 - 10^-0.1)/(1 - 10^-0.5)) = -0.521737,
#   bow(A B) = log10(1/1) = 0 (no successor left)
# at 0.05, A B, A C, C </s> go too; bow(A) = 0; the trigrams of the removed context A B go with it;
#   bow(<s> A) = log10((1 - 10^-0.1) / (1 - 10^-0.7)) = -0.590172 (p(B|A) now backs off to p(B))
EXPECTED = {
    1e-7: ({1: 6, 2: 5, 3: 1}, {("<s>",): -0.307296, ("A",): -0.047700, ("B",): -0.227122, ("C",): -0.14554,
                                 ("<s>", "A"): -0.521737, ("A", "B"): 0.0}),
    0.05: ({1: 6, 2: 2, 3: 1}, {("<s>",): -0.307296, ("A",): 0.0, ("<s>", "A"): -0.590172}),
}


@pytest.mark.parametrize("threshold", sorted(EXPECTED))
def test_prune_small_by_hand(tmp_path, threshold):
    (tmp_path / "tg.arpa").write_text(SMALL)
    out = prune(read_arpa(tmp_path / "tg.arpa"), threshold)
    counts, bows = EXPECTED[threshold]
    assert {n: len(out.ngrams[n]) for n in out.ngrams} == counts
    for g, b in bows.items():
        assert out.ngrams[len(g)][g][1] == pytest.approx(b, abs=2e-6), g
    assert ("<s>", "A", "B") in out.ngrams[3]
    prune_lm = irstlm_tool("prune-lm")
    if prune_lm:  # and IRSTLM itself agrees
        subprocess.run([prune_lm, f"--threshold={threshold}", str(tmp_path / "tg.arpa"), str(tmp_path / "pr.arpa")],
                       check=True, capture_output=True)
        ref = read_arpa(tmp_path / "pr.arpa")
        assert {n: set(ref.ngrams[n]) for n in ref.ngrams} == {n: set(out.ngrams[n]) for n in out.ngrams}


def _random_lm(tmp_path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    words = [f"W{i}" for i in range(150)]
    p = 1 / np.arange(1, 151) ** 1.1
    p /= p.sum()
    sents = [[words[i] for i in rng.choice(150, size=rng.integers(3, 15), p=p)] for _ in range(3000)]
    path = tmp_path / f"kn{seed}.arpa"
    train_kneser_ney(sents, 3).write_arpa(path)
    return path


@pytest.mark.skipif(irstlm_tool("prune-lm") is None, reason="IRSTLM is not installed (apt-get install irstlm)")
@pytest.mark.parametrize("seed,threshold", [(0, 1e-7), (1, 1e-5), (2, 1e-4)])
def test_prune_matches_irstlm(tmp_path, seed, threshold):
    """The same n-grams as IRSTLM's prune-lm on a Kneser-Ney trigram of random text (38k words)."""
    arpa = _random_lm(tmp_path, seed)
    subprocess.run([irstlm_tool("prune-lm"), f"--threshold={threshold}", str(arpa), str(tmp_path / "ref.arpa")],
                   check=True, capture_output=True)
    ref = read_arpa(tmp_path / "ref.arpa")
    lm = read_arpa(arpa)
    out = prune(lm, threshold)
    if threshold > 1e-7:
        assert len(out.ngrams[3]) < len(lm.ngrams[3]) and len(out.ngrams[2]) < len(lm.ngrams[2])
    for n in (1, 2, 3):
        assert set(out.ngrams[n]) == set(ref.ngrams[n]), n
    for g, (_, b) in ref.ngrams[2].items():
        assert out.ngrams[2][g][1] == pytest.approx(b, abs=1e-4), g


def test_make_lms_sh(tmp_path):
    """local/wsj/make_lms.sh on the output of data prep for the LDC miniature: tgpr from lm_tg, bd_tgpr
    from the LM text (words outside the lang as <UNK>), each skipped when it exists."""
    from local.wsj.data_prep import prepare_wsj
    from tests.ldc_fixture import make_wsj_tree

    tree = tmp_path / "ldc"
    make_wsj_tree(tree)
    data = tmp_path / "data"
    prepare_wsj([tree / "wsj0", tree / "wsj1"], data, sets=["test_eval92"])
    lang = tmp_path / "lang"
    lang.mkdir()
    words = ["<eps>", "<UNK>"] + sorted({"THE", "STOCKS", "FELL", "RATES", "ROSE", "PRICES"})
    (lang / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(words)))
    conf = tmp_path / "conf.yaml"
    conf.write_text("lm:\n  order: 3\n  prune_threshold: 1.0e-7\n  bd: true\n")
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    cmd = [str(ROOT / "local/wsj/make_lms.sh"), "--conf", str(conf), "--data", str(data), "--lang", str(lang)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    tgpr, bd = read_arpa(data / "lm/tgpr.arpa"), read_arpa(data / "lm/bd_tgpr.arpa")
    ref = prune(read_arpa(data / "local/nist_lm/lm_tg.arpa"), 1e-7)
    assert {n: set(tgpr.ngrams[n]) for n in tgpr.ngrams} == {n: set(ref.ngrams[n]) for n in ref.ngrams}
    assert "<UNK>" in bd.vocab and "<unk>" not in bd.vocab and {"THE", "STOCKS"} <= bd.vocab
    assert "MR." not in bd.vocab and "SMITH" not in bd.vocab  # LM-text words outside the lang's words.txt
    assert (data / "lm/bd_tg.arpa").is_file() and not list((data / "lm").glob(".tmp*"))
    assert (data / "lm/log/make_lms.log").is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in (data / "lm/tgpr.arpa", data / "lm/bd_tgpr.arpa")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stderr.count("already complete") == 2
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    conf.write_text("lm:\n  order: 3\n  prune_threshold: 1.0e-7\n  bd: false\n")
    (data / "lm/bd_tgpr.arpa").unlink()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "lm.bd is false" in r.stderr and not (data / "lm/bd_tgpr.arpa").exists()
    r = subprocess.run(cmd[:-2], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "usage:" in r.stderr
