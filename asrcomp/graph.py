"""Decoding graphs: G.fst from an ARPA LM (kaldilm) and TLG.fst = CTC topology ∘ L ∘ G (kaldifst).

The graph dir ``data/lang_<tokens>_<lm>/`` holds ``G.fst``, ``TLG.fst``, and copies
of ``words.txt`` and ``tokens.txt`` so that a decoder needs nothing else.
Input labels of TLG are token id + 1 (0 is epsilon, 1 is the CTC blank).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from asrcomp.lang import load_lang, read_symbol_table
from asrcomp.lm import read_arpa
from asrcomp.utils import InputError, atomic_path

log = logging.getLogger(__name__)


def make_ctc_topo(num_tokens: int, disambig_ids: range = range(0)):
    """The standard CTC topology T as a ``StdVectorFst``.

    One state per token (state 0: blank seen last); from every state an arc on
    every token k to state k, emitting k unless it repeats the state's own
    token (a CTC repeat collapses). All states are final. Labels are token
    id + 1. ``disambig_ids`` (token ids of #0, #1, ...) get epsilon-input
    self-loops on every state so that L's disambiguation symbols pass through
    the composition.
    """
    import kaldifst

    T = kaldifst.StdVectorFst()
    for _ in range(num_tokens):
        T.set_final(state=T.add_state(), weight=0.0)
    T.start = 0
    for src in range(num_tokens):
        for k in range(num_tokens):
            olabel = 0 if (k == src or k == 0) else k + 1
            T.add_arc(state=src, arc=kaldifst.StdArc(k + 1, olabel, 0.0, k))
        for d in disambig_ids:
            T.add_arc(state=src, arc=kaldifst.StdArc(d + 1, d + 1, 0.0, src))
    return T


def make_g(arpa: str | os.PathLike, words_txt: str | os.PathLike):
    """G.fst from an ARPA LM with kaldilm, ``#0`` on backoff arcs; ``<s>``/``</s>`` become epsilons."""
    import kaldifst
    import kaldilm

    arpa = Path(arpa)
    if not arpa.is_file():
        raise InputError(arpa, "ARPA LM not found", fix="run steps/train_lm.sh")
    words = read_symbol_table(words_txt)
    _check_arpa(arpa, words, words_txt)
    text = kaldilm.arpa2fst(input_arpa=str(arpa), disambig_symbol="#0", read_symbol_table=str(words_txt))
    return kaldifst.compile(s=text, acceptor=False)


def make_tlg(lang_dir: str | os.PathLike, G):
    """Compose T ∘ (L ∘ G), determinise, minimise and arc-sort; returns the TLG ``StdVectorFst``."""
    import kaldifst

    lang = load_lang(lang_dir)
    L = kaldifst.StdVectorFst.read(str(Path(lang_dir) / "L_disambig.fst"))
    disambig = sorted(i for t, i in lang.tokens.items() if t.startswith("#"))
    # Self-loops let G's #0 (backoff) pass through L: token #0 in, word #0 out.
    kaldifst.add_self_loops(L, isyms=[lang.tokens["#0"] + 1], osyms=[lang.words["#0"]])
    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.compose(L, G)
    kaldifst.determinize_star(LG)
    kaldifst.minimize_encoded(LG)
    kaldifst.arcsort(LG, sort_type="ilabel")

    T = make_ctc_topo(lang.num_tokens, range(disambig[0], disambig[-1] + 1))
    kaldifst.arcsort(T, sort_type="olabel")
    TLG = kaldifst.compose(T, LG)
    kaldifst.determinize_star(TLG)
    # Disambiguation symbols have done their job: they become input epsilons,
    # which the decoder follows without consuming a frame.
    first, last = disambig[0] + 1, disambig[-1] + 1
    for state in kaldifst.StateIterator(TLG):
        for arc in kaldifst.ArcIterator(TLG, state):
            if first <= arc.ilabel <= last:
                arc.ilabel = 0
    kaldifst.minimize_encoded(TLG)
    kaldifst.arcsort(TLG, sort_type="ilabel")
    return TLG


def make_graph(lang_dir: str | os.PathLike, arpa: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write ``G.fst`` and ``TLG.fst`` (+ symbol tables) to ``out_dir``; atomic as a whole."""
    lang_dir, out_dir = Path(lang_dir), Path(out_dir)
    G = make_g(arpa, lang_dir / "words.txt")
    log.info("G: %d states", G.num_states)
    TLG = make_tlg(lang_dir, G)
    log.info("TLG: %d states", TLG.num_states)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        G.write(str(tmp / "G.fst"))
        TLG.write(str(tmp / "TLG.fst"))
        for name in ("words.txt", "tokens.txt", "lang.yaml"):
            shutil.copy(lang_dir / name, tmp / name)
        if (lang_dir / "bpe.model").is_file():
            shutil.copy(lang_dir / "bpe.model", tmp / "bpe.model")
    return out_dir / "TLG.fst"


def _check_arpa(arpa: Path, words: dict[str, int], words_txt) -> None:
    """kaldilm aborts the whole process on a bad ARPA; report the file and line instead."""
    vocab = read_arpa(arpa).vocab  # read_arpa names the line of a format error
    specials = {w for w in words if w == "<eps>" or w.startswith("#")}
    unknown = sorted((vocab - set(words)) | (vocab & specials))
    if unknown:
        w = unknown[0]
        line = next((i for i, ln in enumerate(open(arpa, encoding="utf-8"), 1) if w in ln.split()[1:]), None)
        raise InputError(arpa, f"word '{w}' is not a word of {words_txt} ({len(unknown)} such words)", line,
                         "train the LM with the lang dir's word list (steps/train_lm.sh --vocab)")
