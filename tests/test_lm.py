"""Tests for asrcomp.lm: interpolated modified Kneser-Ney training, ARPA I/O, perplexity."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import pytest

from asrcomp.lm import (
    BOS,
    EOS,
    FALLBACK_DISCOUNTS,
    UNK,
    NgramLM,
    estimate_discounts,
    read_arpa,
    read_sentences,
    read_vocab,
    train_kneser_ney,
    train_lm_from_text,
)
from asrcomp.utils import InputError

WORDS = [f"w{i:02d}" for i in range(30)]


def markov_corpus(n_sents: int, seed: int, words=WORDS) -> list[list[str]]:
    """Sentences from a sparse second-order Markov chain over ``words``.

    The chain is fixed (seed 1234) so train and held-out sets drawn with
    different ``seed`` values come from the same distribution.
    """
    chain_rng = random.Random(1234)
    succ = {}
    for a in [BOS, *words]:
        for b in [BOS, *words]:
            succ[(a, b)] = chain_rng.sample(words, 3) + [EOS]
    rng = random.Random(seed)
    out = []
    for _ in range(n_sents):
        h = (BOS, BOS)
        sent: list[str] = []
        while True:
            nxt = succ[h]
            w = rng.choices(nxt, weights=[6, 3, 2, 1 if len(sent) > 2 else 0])[0]
            if w == EOS or len(sent) >= 12:
                break
            sent.append(w)
            h = (h[1], w)
        out.append(sent)
    return out


def all_contexts(lm: NgramLM):
    yield ()
    for n in range(1, lm.order):
        yield from lm.ngrams[n]


def events(lm: NgramLM):
    return sorted(lm.vocab - {BOS})


def assert_normalised(lm: NgramLM, tol: float = 1e-6):
    ev = events(lm)
    assert EOS in ev
    n_ctx = 0
    for h in all_contexts(lm):
        total = sum(10.0 ** lm.log10prob(w, h) for w in ev)
        assert abs(total - 1.0) < tol, (h, total)
        n_ctx += 1
    return n_ctx


# ---------------------------------------------------------------- (1) normalisation
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_sums_to_one(order):
    lm = train_kneser_ney(markov_corpus(300, seed=1), order=order)
    n_ctx = assert_normalised(lm)
    assert n_ctx == 1 + sum(len(lm.ngrams[n]) for n in range(1, order))
    assert lm.order == order
    assert lm.vocab == set(WORDS) | {BOS, EOS}
    # <s> is listed with -99 and every listed probability is a real log-prob
    assert lm.ngrams[1][(BOS,)][0] == -99.0
    for n in range(1, order + 1):
        for key, (lp, bow) in lm.ngrams[n].items():
            assert math.isfinite(lp) and math.isfinite(bow)
            assert key == (BOS,) or -99 < lp < 0


def test_vocab_maps_oov_to_unk_and_keeps_unseen_words():
    corpus = markov_corpus(200, seed=2)
    vocab = WORDS[:20] + ["never_seen"]
    lm = train_kneser_ney(corpus, order=3, vocab=vocab)
    assert lm.vocab == set(vocab) | {UNK, BOS, EOS}
    assert (UNK,) in lm.ngrams[1]
    # words outside the vocab were counted as <unk>: <unk> has bigrams and trigrams
    assert any(UNK in key for key in lm.ngrams[2])
    assert not any(w in key for key in lm.ngrams[2] for w in WORDS[20:])
    # an unseen vocab word only gets the uniform share: lowest unigram prob
    lp_unseen = lm.ngrams[1][("never_seen",)][0]
    assert lp_unseen == min(lp for k, (lp, _) in lm.ngrams[1].items() if k != (BOS,))
    assert_normalised(lm)


def test_unk_unigram_exists_when_vocab_given_even_without_oovs():
    lm = train_kneser_ney([["a", "b"], ["b", "a"]], order=2, vocab=["a", "b"])
    assert (UNK,) in lm.ngrams[1]
    assert_normalised(lm)


def test_matches_direct_recursive_definition():
    """Compare with a naive, set-based implementation of interpolated modified KN."""
    corpus = markov_corpus(150, seed=3, words=WORDS[:12])
    order = 3
    lm = train_kneser_ney(corpus, order=order)

    padded = [[BOS, *s, EOS] for s in corpus]
    occurring = {k: set() for k in range(1, order + 1)}
    raw = Counter()
    for t in padded:
        for k in range(1, order + 1):
            for i in range(len(t) - k + 1):
                g = tuple(t[i:i + k])
                occurring[k].add(g)
                raw[g] += 1

    def count(g):
        if len(g) == order or g[0] == BOS:
            return raw[g]
        return len({v for v in WORDS[:12] + [BOS] if (v, *g) in occurring[len(g) + 1]})

    def discounts(k):
        coc = Counter(count(g) for g in occurring[k] if g != (BOS,))
        n1, n2, n3, n4 = (coc[r] for r in (1, 2, 3, 4))
        if not (n1 and n2 and n3):
            return FALLBACK_DISCOUNTS
        y = n1 / (n1 + 2 * n2)
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        return d if all(0 < x <= r for r, x in zip((1, 2, 3), d)) else FALLBACK_DISCOUNTS

    disc = {k: discounts(k) for k in range(1, order + 1)}
    ev = sorted(set(WORDS[:12]) | {EOS})

    def D(k, c):
        return 0.0 if c == 0 else disc[k][min(c, 3) - 1]

    def prob(w, h):
        k = len(h) + 1
        followers = [v for v in ev if (*h, v) in occurring[k]]
        if k > 1 and not followers:
            return prob(w, h[1:])
        cs = {v: count((*h, v)) for v in followers}
        tot = sum(cs.values())
        gamma = sum(D(k, c) for c in cs.values()) / tot
        c = cs.get(w, 0)
        lower = 1.0 / len(ev) if k == 1 else prob(w, h[1:])
        return (c - D(k, c)) / tot + gamma * lower

    for k in range(1, order + 1):
        assert lm.discounts[k] == pytest.approx(disc[k], abs=1e-12)
    rng = random.Random(0)
    histories = [()] + [k for n in (1, 2) for k in lm.ngrams[n]] + [
        tuple(rng.choice(WORDS[:12]) for _ in range(2)) for _ in range(20)
    ]
    for h in histories:
        for w in ev:
            assert lm.log10prob(w, h) == pytest.approx(math.log10(prob(w, h)), abs=1e-9), (w, h)


# ---------------------------------------------------------------- (2) hand-computed case
def test_discount_formula_by_hand():
    # n1=10, n2=5, n3=3, n4=2:  Y = 10 / (10 + 2*5) = 0.5
    # D1  = 1 - 2*0.5*5/10 = 1 - 0.5       = 0.5
    # D2  = 2 - 3*0.5*3/5  = 2 - 0.9       = 1.1
    # D3+ = 3 - 4*0.5*2/3  = 3 - 4/3       = 5/3
    d, fallback = estimate_discounts({1: 10, 2: 5, 3: 3, 4: 2})
    assert not fallback
    assert d == pytest.approx((0.5, 1.1, 5 / 3), abs=1e-12)


@pytest.mark.parametrize(
    "coc",
    [
        {1: 4, 2: 0, 3: 1, 4: 1},  # n2 = 0
        {1: 4, 2: 2, 3: 0, 4: 1},  # n3 = 0
        {1: 0, 2: 2, 3: 1, 4: 1},  # n1 = 0
        {1: 1, 2: 1, 3: 10, 4: 0},  # D2 = 2 - 3*(1/3)*10/1 < 0
        {},
    ],
)
def test_degenerate_count_of_counts_fall_back(coc):
    d, fallback = estimate_discounts(coc)
    assert fallback
    assert d == FALLBACK_DISCOUNTS


def test_hand_computed_tiny_corpus():
    """Three sentences: "a b", "a b", "a a b", order 3.

    Padded: <s> a b </s> (x2), <s> a a b </s>.

    Trigrams (raw counts, top order):
        <s> a b = 2, a b </s> = 3, <s> a a = 1, a a b = 1
        n1=2, n2=1, n3=1, n4=0  ->  Y = 2/(2+2*1) = 1/2
        D1 = 1 - 2*(1/2)*1/2 = 1/2;  D2 = 2 - 3*(1/2)*1/1 = 1/2;  D3+ = 3 - 4*(1/2)*0/1 = 3
    Bigrams (<s>-initial keep raw counts, others: number of distinct left words):
        <s> a = 3 (raw), a b = |{<s>, a}| = 2, b </s> = |{a}| = 1, a a = |{<s>}| = 1
        n1=2, n2=1, n3=1, n4=0  ->  same discounts (1/2, 1/2, 3)
    Unigrams (continuation counts over bigram types):
        a = |{<s>, a}| = 2, b = |{a}| = 1, </s> = |{b}| = 1
        n1=2, n2=1, n3=0  ->  fallback discounts (1/2, 1, 3/2)
    """
    lm = train_kneser_ney([["a", "b"], ["a", "b"], ["a", "a", "b"]], order=3)
    half = Fraction(1, 2)
    assert lm.discounts[3] == (0.5, 0.5, 3.0)
    assert lm.discounts[2] == (0.5, 0.5, 3.0)
    assert lm.discounts[1] == FALLBACK_DISCOUNTS

    # Unigrams: total = 2+1+1 = 4; gamma0 = (D2 + D1 + D1)/4 = (1 + 1/2 + 1/2)/4 = 1/2;
    # uniform over {a, b, </s>} -> gamma0/3 = 1/6
    p_a = Fraction(2 - 1, 4) + Fraction(1, 6)  # = 1/4 + 1/6 = 5/12
    p_b = (1 - half) / 4 + Fraction(1, 6)  # = 1/8 + 1/6 = 7/24
    p_eos = (1 - half) / 4 + Fraction(1, 6)  # = 7/24
    assert (p_a, p_b, p_eos) == (Fraction(5, 12), Fraction(7, 24), Fraction(7, 24))
    assert p_a + p_b + p_eos == 1

    # Bigram context "a": a b = 2, a a = 1; total 3; gamma(a) = (D2 + D1)/3 = 1/3
    gamma_a = (half + half) / 3
    p_b_a = (2 - half) / 3 + gamma_a * p_b  # = 1/2 + 7/72 = 43/72
    p_a_a = (1 - half) / 3 + gamma_a * p_a  # = 1/6 + 5/36 = 11/36
    p_eos_a = gamma_a * p_eos  # = 7/72 (unseen after "a": backoff only)
    assert p_b_a == Fraction(43, 72) and p_a_a == Fraction(11, 36) and p_eos_a == Fraction(7, 72)
    # Bigram context "b": b </s> = 1; gamma(b) = D1/1 = 1/2
    p_eos_b = (1 - half) / 1 + half * p_eos  # = 1/2 + 7/48 = 31/48

    # Trigram context "<s> a": <s> a b = 2, <s> a a = 1; gamma = (D2 + D1)/3 = 1/3
    p_b_sa = (2 - half) / 3 + Fraction(1, 3) * p_b_a  # = 1/2 + 43/216 = 151/216
    # Trigram context "a a": a a b = 1; gamma = D1/1 = 1/2
    p_b_aa = (1 - half) / 1 + half * p_b_a  # = 1/2 + 43/144 = 115/144
    # Trigram context "a b": a b </s> = 3, D3+ = 3 removes it all; gamma = 3/3 = 1
    p_eos_ab = (3 - 3) / Fraction(3) + 1 * p_eos_b  # = 31/48
    assert (p_b_sa, p_b_aa, p_eos_ab) == (Fraction(151, 216), Fraction(115, 144), Fraction(31, 48))

    def check(word, ctx, expected):
        assert lm.log10prob(word, ctx) == pytest.approx(math.log10(expected), abs=1e-12), (word, ctx)

    check("a", [], p_a)
    check("b", [], p_b)
    check(EOS, [], p_eos)
    check("b", ["a"], p_b_a)
    check("a", ["a"], p_a_a)
    check(EOS, ["a"], p_eos_a)  # via backoff weight of "a"
    check(EOS, ["b"], p_eos_b)
    check("b", [BOS, "a"], p_b_sa)
    check("b", ["a", "a"], p_b_aa)
    check(EOS, ["a", "b"], p_eos_ab)
    # backoff weight of context "a" equals gamma(a) = 1/3
    assert lm.ngrams[1][("a",)][1] == pytest.approx(math.log10(1 / 3), abs=1e-12)
    # whole sentence "a b": p(a|<s>) p(b|<s> a) p(</s>|a b); p(a|<s>) = 0 + 1 * p(a) (D3+ = 3 on <s> a = 3)
    expected = math.log10(p_a * p_b_sa * p_eos_ab)
    assert lm.sentence_log10prob(["a", "b"]) == pytest.approx(expected, abs=1e-12)
    assert_normalised(lm, tol=1e-12)


def test_tiny_and_degenerate_corpora_are_finite():
    for corpus in ([["a"]], [["a", "a", "a", "a"]], [["x", "y"], ["y", "x"]]):
        for order in (1, 2, 3, 5):
            lm = train_kneser_ney(corpus, order=order)
            for n in range(1, order + 1):
                for lp, bow in lm.ngrams[n].values():
                    assert math.isfinite(lp) and math.isfinite(bow)
            for d in lm.discounts.values():
                assert all(0 < x <= r for r, x in zip((1, 2, 3), d))
            assert_normalised(lm)


def test_training_rejects_empty_input():
    with pytest.raises(ValueError):
        train_kneser_ney([[], []], order=3)
    with pytest.raises(ValueError):
        train_kneser_ney([["a", EOS, "b"]], order=2)


def test_boundary_markers_are_tolerated():
    a = train_kneser_ney([["a", "b"], ["b"]], order=2)
    b = train_kneser_ney([[BOS, "a", "b", EOS], ["b", EOS]], order=2)
    assert a.ngrams == b.ngrams


# ---------------------------------------------------------------- (3) ARPA round trip
def test_arpa_round_trip(tmp_path):
    lm = train_kneser_ney(markov_corpus(300, seed=4), order=3, vocab=WORDS[:25] + ["zz"])
    path = tmp_path / "lm.arpa"
    lm.write_arpa(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.arpa"]  # no temp file left
    text = path.read_text()
    assert "\\data\\" in text and "\\end\\" in text and "\\3-grams:" in text
    assert f"-99\t{BOS}\t" in text
    lm2 = read_arpa(path)
    assert lm2.order == 3 and lm2.vocab == lm.vocab
    for n in (1, 2, 3):
        assert lm2.ngrams[n].keys() == lm.ngrams[n].keys()
        for key, (lp, bow) in lm.ngrams[n].items():
            lp2, bow2 = lm2.ngrams[n][key]
            assert lp2 == pytest.approx(lp, abs=1e-8) and bow2 == pytest.approx(bow, abs=1e-8)
    for h in list(all_contexts(lm))[:200]:
        for w in events(lm):
            assert lm2.log10prob(w, h) == pytest.approx(lm.log10prob(w, h), abs=1e-8)
    # the re-read model is still normalised, and writes the same file again
    assert_normalised(lm2, tol=1e-6)
    lm2.write_arpa(tmp_path / "again.arpa")
    assert (tmp_path / "again.arpa").read_text() == text


# ---------------------------------------------------------------- (4) kaldilm
def test_kaldilm_converts_arpa_to_fst(tmp_path):
    kaldilm = pytest.importorskip("kaldilm")
    kaldifst = pytest.importorskip("kaldifst")
    corpus = markov_corpus(200, seed=5)
    lm = train_kneser_ney(corpus, order=3, vocab=WORDS)
    arpa = tmp_path / "G.arpa"
    lm.write_arpa(arpa)
    words_txt = tmp_path / "words.txt"
    symbols = ["<eps>", *sorted(lm.vocab - {BOS, EOS}), "#0", BOS, EOS]
    words_txt.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)))
    fst_path = tmp_path / "G.fst"
    text = kaldilm.arpa2fst(
        input_arpa=str(arpa),
        output_fst=str(fst_path),
        disambig_symbol="#0",
        read_symbol_table=str(words_txt),
    )
    assert fst_path.exists() and fst_path.stat().st_size > 0
    assert text.strip()
    fst = kaldifst.StdVectorFst.read(str(fst_path))
    assert fst.num_states > len(lm.ngrams[1])


# ---------------------------------------------------------------- (5) perplexity
def test_perplexity_trigram_beats_unigram_and_counts_oovs():
    train = markov_corpus(1500, seed=6)
    held = markov_corpus(200, seed=7)
    lm1 = train_kneser_ney(train, order=1)
    lm3 = train_kneser_ney(train, order=3)
    r1 = lm1.perplexity(held)
    r3 = lm3.perplexity(held)
    n_words = sum(len(s) for s in held)
    assert r1["words"] == r3["words"] == n_words
    assert r1["sentences"] == r3["sentences"] == 200
    assert r1["oovs"] == r3["oovs"] == 0
    assert r3["ppl"] < 0.5 * r1["ppl"], (r1, r3)
    # ppl is 10 ** (-log10prob / (words - oovs + sentences))
    assert r3["ppl"] == pytest.approx(10 ** (-r3["log10prob"] / (n_words + 200)))
    assert r3["log10prob"] == pytest.approx(sum(lm3.sentence_log10prob(s) for s in held))

    # OOVs are skipped and counted; the denominator excludes them
    with_oov = [s[:1] + ["OOV_WORD"] + s[1:] for s in held[:50]] + held[50:]
    r_oov = lm3.perplexity(with_oov)
    assert r_oov["oovs"] == 50
    assert r_oov["words"] == n_words + 50
    assert r_oov["ppl"] == pytest.approx(10 ** (-r_oov["log10prob"] / (n_words + 50 - 50 + 200)))
    assert math.isfinite(r_oov["log10prob"])
    # skipping an OOV scores the next word with the context after the OOV
    s = ["w01", "OOV_WORD", "w02"]
    expected = (
        lm3.log10prob("w01", [BOS])
        + lm3.log10prob("w02", [])  # context "w01 OOV_WORD" backs off to nothing
        + lm3.log10prob(EOS, ["w02"])
    )
    assert lm3.sentence_log10prob(s) == pytest.approx(expected)
    assert lm3.log10prob("OOV_WORD", ["w01"]) == float("-inf")
    with pytest.raises(ValueError):
        lm3.perplexity([])


# ---------------------------------------------------------------- (6) malformed ARPA
def _valid_arpa(tmp_path):
    lm = train_kneser_ney([["a", "b"], ["b", "c", "a"], ["c"]], order=2)
    path = tmp_path / "ok.arpa"
    lm.write_arpa(path)
    return path.read_text().splitlines()


def _line_of(lines, section):
    return lines.index(section) + 1  # 0-based index of the first entry after the header


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda f: ["oops", *f[1:]],  # not a number
        lambda f: [f[0], *f[1:], "-0.1", "extra"],  # too many fields
        lambda f: [f[0]],  # too few fields (no word)
        lambda f: ["nan", *f[1:]],
    ],
)
def test_malformed_arpa_line_reports_line_number(tmp_path, corrupt):
    lines = _valid_arpa(tmp_path)
    idx = _line_of(lines, "\\2-grams:") + 1  # second bigram entry
    fields = lines[idx].split("\t")
    lines[idx] = "\t".join(corrupt(fields))
    bad = tmp_path / "bad.arpa"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as exc:
        read_arpa(bad)
    assert exc.value.line == idx + 1
    assert f"bad.arpa:{idx + 1}:" in str(exc.value)


def test_malformed_arpa_structure(tmp_path):
    lines = _valid_arpa(tmp_path)
    cases = {
        "no_end.arpa": [ln for ln in lines if ln != "\\end\\"],
        "no_data.arpa": [ln for ln in lines if ln != "\\data\\"],
        "bad_count.arpa": [ln.replace("ngram 1=", "ngram 1=9") if ln.startswith("ngram 1=") else ln for ln in lines],
        "bad_header.arpa": [("ngram two=3" if ln.startswith("ngram 2=") else ln) for ln in lines],
    }
    for name, content in cases.items():
        p = tmp_path / name
        p.write_text("\n".join(content) + "\n")
        with pytest.raises(InputError) as exc:
            read_arpa(p)
        assert name in str(exc.value)
    # bad_header is reported at its own line
    p = tmp_path / "bad_header.arpa"
    with pytest.raises(InputError) as exc:
        read_arpa(p)
    assert exc.value.line == 1 + next(i for i, ln in enumerate(cases["bad_header.arpa"]) if ln == "ngram two=3")


# ---------------------------------------------------------------- text-file front end
def test_train_lm_from_text_with_words_txt(tmp_path):
    corpus = markov_corpus(200, seed=8)
    text = tmp_path / "text"
    text.write_text("\n".join(" ".join(s) for s in corpus[:100]) + "\n\n   \n" + "\n".join(" ".join(s) for s in corpus[100:]) + "\n")
    words = WORDS[:20]
    words_txt = tmp_path / "words.txt"
    syms = ["<eps>", "!SIL", *words, UNK, "#0", "#1", BOS, EOS]
    words_txt.write_text("".join(f"{s} {i}\n" for i, s in enumerate(syms)))
    assert read_vocab(words_txt) == ["!SIL", *words, UNK]
    arpa = tmp_path / "out" / "lm.arpa"
    lm = train_lm_from_text(text, arpa, order=3, vocab_path=words_txt)
    assert arpa.exists()
    assert lm.vocab == {"!SIL", *words, UNK, BOS, EOS}
    assert "#0" not in lm.vocab and "<eps>" not in lm.vocab
    # same model as training in memory with the same vocab (empty lines skipped)
    ref = train_kneser_ney(corpus, order=3, vocab=["!SIL", *words])
    assert lm.ngrams == ref.ngrams
    assert read_arpa(arpa).ngrams[3].keys() == ref.ngrams[3].keys()


def test_train_lm_from_text_plain_vocab_without_vocab(tmp_path):
    text = tmp_path / "text"
    text.write_text("a b c\nc b\n")
    lm = train_lm_from_text(text, tmp_path / "lm.arpa", order=2)
    assert lm.vocab == {"a", "b", "c", BOS, EOS}
    vocab = tmp_path / "vocab"
    vocab.write_text("a\nb\n")
    lm = train_lm_from_text(text, tmp_path / "lm2.arpa", order=2, vocab_path=vocab)
    assert lm.vocab == {"a", "b", UNK, BOS, EOS}


def test_train_lm_from_text_empty_file(tmp_path):
    text = tmp_path / "empty_text"
    text.write_text("\n  \n")
    with pytest.raises(InputError, match="empty_text"):
        train_lm_from_text(text, tmp_path / "lm.arpa")
    assert not (tmp_path / "lm.arpa").exists()
    with pytest.raises(InputError, match="missing_text"):
        train_lm_from_text(tmp_path / "missing_text", tmp_path / "lm.arpa")


def test_train_lm_from_text_marker_inside_sentence(tmp_path):
    text = tmp_path / "text"
    text.write_text("a b\na </s> b\n")
    with pytest.raises(InputError) as exc:
        train_lm_from_text(text, tmp_path / "lm.arpa")
    assert exc.value.line == 2


def test_non_utf8_files_give_input_error(tmp_path):
    bad = tmp_path / "latin1_text"
    bad.write_bytes(b"a b\n\xe9t\xe9 b\n")
    with pytest.raises(InputError, match="latin1_text"):
        train_lm_from_text(bad, tmp_path / "lm.arpa")
    with pytest.raises(InputError, match="latin1_text"):
        read_arpa(bad)
    with pytest.raises(InputError, match="latin1_text"):
        read_vocab(bad)


def test_read_sentences_and_gzipped_arpa(tmp_path):
    import gzip

    text = tmp_path / "held_out"
    text.write_text("w01 w02\n\n<s> w03 </s>\n")
    assert read_sentences(text) == [["w01", "w02"], ["<s>", "w03", "</s>"]]
    lm = train_kneser_ney([["w01", "w02"], ["w03"]], order=2)
    r = lm.perplexity(read_sentences(text))
    assert (r["sentences"], r["words"], r["oovs"]) == (2, 3, 0)
    plain = tmp_path / "lm.arpa"
    lm.write_arpa(plain)
    gz = tmp_path / "lm.arpa.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_arpa(gz).ngrams == read_arpa(plain).ngrams
    (tmp_path / "blank").write_text("\n\n")
    with pytest.raises(InputError, match="blank"):
        read_sentences(tmp_path / "blank")
