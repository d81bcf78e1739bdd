"""Lang dir, LM, TLG graph and decoding on the synth grammar: one-hot CTC posteriors
of held-out sentences must decode through TLG to exactly those sentences."""

from __future__ import annotations

import numpy as np
import pytest

from asrcomp.decode import TlgDecoder, ctc_greedy, tokens_to_words
from asrcomp.graph import make_ctc_topo, make_graph
from asrcomp.lang import add_disambig, load_lang, prepare_lang, read_lexicon
from asrcomp.lm import train_kneser_ney
from asrcomp.utils import InputError
from local.synth import grammar


def one_hot_posteriors(token_ids: list[int], num_tokens: int, frames_per_token: int = 2) -> np.ndarray:
    """Log-posteriors that spell ``token_ids`` CTC-style: each token held for a few frames,
    a blank between repeats and at the ends."""
    path = [0]
    for i, t in enumerate(token_ids):
        if i and token_ids[i - 1] == t:
            path.append(0)
        path.extend([t] * frames_per_token)
    path.append(0)
    lp = np.full((len(path), num_tokens), np.log(1e-4), dtype=np.float32)
    lp[np.arange(len(path)), path] = np.log(1 - 1e-4 * (num_tokens - 1))
    return lp


@pytest.fixture(scope="module", params=["bpe", "phone"])
def graph(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    sents = grammar.generate_sentences(3000, seed=7)
    held_out = [s for s in grammar.generate_sentences(50, seed=99) if s not in set(sents)][:8]
    text = tmp / "lm_text.txt"
    text.write_text("\n".join(sents) + "\n")
    lang = prepare_lang(grammar.vocabulary(), tmp / "lang", request.param, bpe_vocab_size=300, bpe_text=text)
    vocab = [w for w in lang.words if w not in ("<eps>", "<s>", "</s>") and not w.startswith("#")]
    lm = train_kneser_ney([s.split() for s in sents], order=3, vocab=vocab, unk="<UNK>")
    lm.write_arpa(tmp / "lm.arpa")
    make_graph(tmp / "lang", tmp / "lm.arpa", tmp / "graph")
    return lang, tmp / "graph", held_out


def test_one_hot_posteriors_decode_to_the_sentence(graph):
    lang, graph_dir, held_out = graph
    dec = TlgDecoder(graph_dir)
    assert len(held_out) >= 5
    for sent in held_out:
        ids = lang.words_to_token_ids(sent.split())
        lp = one_hot_posteriors(ids, lang.num_tokens)
        assert dec.decode(lp) == sent.split()
        assert ctc_greedy(lp) == ids
        if lang.token_type == "bpe":
            id2tok = {i: t for t, i in lang.tokens.items()}
            assert tokens_to_words(ctc_greedy(lp), id2tok, "bpe") == sent.split()


def test_graph_labels(graph):
    import kaldifst

    lang, graph_dir, _ = graph
    tlg = kaldifst.StdVectorFst.read(str(graph_dir / "TLG.fst"))
    ilabels = {arc.ilabel for s in kaldifst.StateIterator(tlg) for arc in kaldifst.ArcIterator(tlg, s)}
    # input labels: epsilon, or token id + 1 (blank = 1); no disambiguation symbol survives
    assert max(ilabels) <= lang.num_tokens and 1 in ilabels
    assert tlg.is_ilabel_sorted if isinstance(tlg.is_ilabel_sorted, bool) else tlg.is_ilabel_sorted()


def test_lexicon_and_words(graph):
    lang, _, _ = graph
    assert set(grammar.vocabulary()) <= set(lang.words)
    assert lang.words["<eps>"] == 0 and lang.tokens["<blk>"] == 0
    assert {"#0", "<s>", "</s>", "<UNK>"} <= set(lang.words)
    lex = dict(read_lexicon(lang.path / "lexicon.txt"))
    if lang.token_type == "phone":
        assert lex["SHIPS"] == ["SH", "IH", "P", "S"]  # CMUdict, stress removed
        assert not any(ch.isdigit() for p in lex.values() for ph in p for ch in ph)


def test_add_disambig_follows_kaldi_rules():
    lex = [("A", ["x"]), ("AB", ["x", "y"]), ("B1", ["z"]), ("B2", ["z"]), ("C", ["q"])]
    out, max_k = add_disambig(lex)
    # A's pronunciation is a prefix of AB's; B1/B2 are homophones; C needs nothing
    assert dict(out) == {"A": ["x", "#1"], "AB": ["x", "y"], "B1": ["z", "#1"], "B2": ["z", "#2"], "C": ["q"]}
    assert max_k == 2


def test_ctc_topo_collapses_repeats():
    import kaldifst

    T = make_ctc_topo(3)
    arcs = {(s, a.ilabel): (a.olabel, a.nextstate) for s in kaldifst.StateIterator(T)
            for a in kaldifst.ArcIterator(T, s)}
    assert arcs[(0, 2)] == (2, 1)  # token 1 after blank: emitted
    assert arcs[(1, 2)] == (0, 1)  # token 1 repeated: collapsed
    assert arcs[(1, 1)] == (0, 0)  # blank: nothing emitted


def test_word_not_in_lexicon_names_the_line(graph, tmp_path):
    lang, _, _ = graph
    with pytest.raises(InputError, match=r"data/text:7: word 'FLUBBERGAST' is not in the lexicon"):
        lang.words_to_token_ids(["SHOW", "FLUBBERGAST"], where=(tmp_path / "data" / "text", 7))
    assert lang.words_to_token_ids(["FLUBBERGAST"], map_oov=True) == [lang.tokens[t] for t in
                                                                     lang.lexicon["<UNK>"]]


def test_oov_words_are_reported(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("SHOW THE SHIPS\n")
    lang = prepare_lang(["SHOW", "THE", "SHIPS", "QWXZPLORT"], tmp_path / "lang", "phone")
    assert (tmp_path / "lang" / "oov.txt").read_text().split() == ["QWXZPLORT"]
    assert "QWXZPLORT" not in lang.words and load_lang(tmp_path / "lang").num_tokens == lang.num_tokens


def test_arpa_word_missing_from_words_txt(graph, tmp_path):
    lang, _, _ = graph
    arpa = tmp_path / "bad.arpa"
    arpa.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-99\t<s>\n-1\t</s>\n-1\tZZTOP\n\n\\end\\\n")
    with pytest.raises(InputError, match=r"bad.arpa:7: word 'ZZTOP' is not a word of"):
        make_graph(lang.path, arpa, tmp_path / "g")
    arpa.write_text(arpa.read_text().replace("ZZTOP", "#0"))
    with pytest.raises(InputError, match=r"bad.arpa:7: word '#0' is not a word of"):
        make_graph(lang.path, arpa, tmp_path / "g")
    assert not (tmp_path / "g").exists()
