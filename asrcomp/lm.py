"""N-gram language models: interpolated modified Kneser-Ney training, ARPA I/O, perplexity.

The model trained here is the one SRILM builds with::

    ngram-count -order N -kndiscount -interpolate -gt1min 1 -gt2min 1 ... -gtNmin 1

(Chen & Goodman 1998, "An empirical study of smoothing techniques for
language modeling", section 3; no count cut-offs, see "Differences from
SRILM" below).

Counts
    Every sentence is wrapped as ``<s> w1 ... wk </s>``.  The highest order
    uses raw counts.  A lower-order n-gram ``w1..wk`` (k < N) uses its
    *continuation count* ``N1+(. w1..wk)``: the number of distinct words
    that precede it in the (k+1)-grams of the data.  N-grams that start
    with ``<s>`` cannot be preceded by anything, so they keep their raw
    counts (SRILM does the same).

Discounts
    For every order, from the count-of-counts ``n_r`` (number of n-grams of
    that order whose (possibly continuation) count is exactly r)::

        Y   = n1 / (n1 + 2 n2)
        D1  = 1 - 2 Y n2 / n1
        D2  = 2 - 3 Y n3 / n2
        D3+ = 3 - 4 Y n4 / n3

    *Fallback*: if n1, n2 or n3 is zero, or a discount falls outside
    ``0 < D_r <= r`` (tiny or odd corpora; SRILM refuses to train there),
    that order uses the fixed discounts ``FALLBACK_DISCOUNTS =
    (0.5, 1.0, 1.5)`` (KenLM's ``--discount_fallback`` values) and a
    warning is logged.  n4 = 0 is fine (it gives D3+ = 3).  Discounts are
    therefore never NaN, never negative and never larger than the count
    they discount, so every probability is positive.

Interpolation
    With ``c(h w)`` the count, ``c(h .)`` the total count of context h and
    ``N_r(h .)`` the number of words following h with count r (r = 3 means
    3 or more)::

        p(w | h) = (c(h w) - D(c(h w))) / c(h .) + gamma(h) p(w | h')
        gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / c(h .)

    where h' is h without its first word.  The unigram level interpolates
    with the uniform distribution over the vocabulary events (every vocab
    word, ``</s>`` and ``<unk>`` when a vocab is given; not ``<s>``), as
    SRILM does; vocab words never seen in training get only that share.

ARPA form
    The ARPA file lists every n-gram seen in training (plus every vocab
    word as a unigram, and ``<s>`` with log-prob -99) with its interpolated
    probability, and for each context h the backoff weight
    ``bow(h) = (1 - sum_{w: hw listed} p(w|h)) / (1 - sum_{w: hw listed} p(w|h'))``.
    For this model that ratio equals ``gamma(h)`` exactly (the discounted
    masses of the listed words sum to ``1 - gamma(h)``), so ``gamma(h)`` is
    what is stored: the backoff-form probabilities equal the interpolated
    model and each context's distribution sums to 1.

Differences from SRILM
    * No count cut-offs (SRILM's default ``-gt3min 2`` drops singleton
      trigrams and above; pass ``-gtNmin 1`` to SRILM to compare).
    * Degenerate count-of-counts use the fallback above instead of failing.
    * Empty sentences are skipped.
"""

from __future__ import annotations

import gzip
import logging
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from asrcomp.utils import InputError, atomic_open

logger = logging.getLogger(__name__)

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
#: log10 probability written for ``<s>`` (never predicted).
BOS_LOG10PROB = -99.0
#: Discounts (D1, D2, D3+) used when the count-of-counts cannot give valid ones.
FALLBACK_DISCOUNTS: tuple[float, float, float] = (0.5, 1.0, 1.5)

__all__ = [
    "BOS",
    "EOS",
    "UNK",
    "FALLBACK_DISCOUNTS",
    "NgramLM",
    "estimate_discounts",
    "read_arpa",
    "read_sentences",
    "read_vocab",
    "train_kneser_ney",
    "train_lm_from_text",
]


class NgramLM:
    """A backoff n-gram model as in an ARPA file.

    ``ngrams[n]`` (n = 1 .. order) maps an n-gram (tuple of words) to
    ``(log10prob, log10bow)``; the bow is 0.0 where the file gives none.
    ``vocab`` is the set of unigram words (including ``<s>`` and ``</s>``).
    ``discounts[n]`` holds (D1, D2, D3+) for models made by
    :func:`train_kneser_ney` (empty for models read from a file).
    """

    def __init__(
        self,
        ngrams: Mapping[int, dict[tuple[str, ...], tuple[float, float]]],
        discounts: Mapping[int, tuple[float, float, float]] | None = None,
    ):
        if not ngrams or 1 not in ngrams:
            raise ValueError("an n-gram model needs at least a unigram section")
        self.order: int = max(ngrams)
        if sorted(ngrams) != list(range(1, self.order + 1)):
            raise ValueError(f"n-gram orders must be 1..{self.order}, got {sorted(ngrams)}")
        self.ngrams: dict[int, dict[tuple[str, ...], tuple[float, float]]] = dict(ngrams)
        self.vocab: frozenset[str] = frozenset(k[0] for k in self.ngrams[1])
        self.discounts: dict[int, tuple[float, float, float]] = dict(discounts or {})

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}-grams={len(self.ngrams[n])}" for n in range(1, self.order + 1))
        return f"NgramLM(order={self.order}, {sizes})"

    # ------------------------------------------------------------------ scoring
    def log10prob(self, word: str, context: Sequence[str]) -> float:
        """log10 p(word | context) by the standard ARPA backoff rule.

        Only the last ``order - 1`` words of ``context`` are used.  Context
        words the model does not know simply make the lookup back off.
        Returns ``-inf`` for a word that has no unigram entry.
        """
        ngrams = self.ngrams
        n_ctx = self.order - 1
        if n_ctx <= 0:
            ctx: tuple[str, ...] = ()
        elif len(context) > n_ctx:
            ctx = tuple(context[len(context) - n_ctx:])
        else:
            ctx = tuple(context)
        backoff = 0.0
        for start in range(len(ctx) + 1):
            h = ctx[start:]
            entry = ngrams[len(h) + 1].get(h + (word,))
            if entry is not None:
                return backoff + entry[0]
            if h:
                hb = ngrams[len(h)].get(h)
                if hb is not None:
                    backoff += hb[1]
        return float("-inf")

    def _score(self, words: Sequence[str]) -> tuple[float, int, int]:
        """(log10prob incl. </s>, number of words, number of OOVs) of one sentence."""
        words = _strip_markers(words)
        vocab = self.vocab
        history: list[str] = [BOS]
        total = 0.0
        oovs = 0
        for w in words:
            if w not in vocab or w == BOS:
                oovs += 1  # skipped, as SRILM's ngram -ppl does
            else:
                total += self.log10prob(w, history)
            history.append(w)
        total += self.log10prob(EOS, history)
        return total, len(words), oovs

    def sentence_log10prob(self, words: Sequence[str]) -> float:
        """log10 probability of ``<s> words </s>``, including ``</s>``.

        Out-of-vocabulary words are skipped (they contribute nothing), as in
        :meth:`perplexity`.
        """
        return self._score(words)[0]

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> dict:
        """Score sentences like SRILM's ``ngram -ppl``.

        Returns ``{"ppl", "log10prob", "words", "sentences", "oovs"}`` where
        ``words`` counts all words (OOVs included, ``</s>`` not), OOV words
        (not in the vocabulary) are skipped and counted in ``oovs``, and
        ``ppl = 10 ** (-log10prob / (words - oovs + sentences))``.  Empty
        sentences are skipped.
        """
        total = 0.0
        n_words = n_oovs = n_sents = 0
        for sent in sentences:
            if len(sent) == 0:
                continue
            lp, nw, no = self._score(sent)
            total += lp
            n_words += nw
            n_oovs += no
            n_sents += 1
        denom = n_words - n_oovs + n_sents
        if denom <= 0:
            raise ValueError("perplexity: no sentences to score")
        return {
            "ppl": 10.0 ** (-total / denom),
            "log10prob": total,
            "words": n_words,
            "sentences": n_sents,
            "oovs": n_oovs,
        }

    # ------------------------------------------------------------------ output
    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA file (atomically: temp file + rename).

        A backoff weight is written for every n-gram below the top order that
        is the context of a higher-order n-gram (or whose bow is non-zero).
        """
        path = Path(path)
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write("\n\\data\\\n")
            for n in range(1, self.order + 1):
                f.write(f"ngram {n}={len(self.ngrams[n])}\n")
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                table = self.ngrams[n]
                if n < self.order:
                    contexts = {k[:-1] for k in self.ngrams[n + 1]}
                else:
                    contexts = set()
                lines = []
                for key in sorted(table):
                    lp, bow = table[key]
                    if n < self.order and (key in contexts or bow != 0.0):
                        lines.append(f"{_fmt(lp)}\t{' '.join(key)}\t{_fmt(bow)}\n")
                    else:
                        lines.append(f"{_fmt(lp)}\t{' '.join(key)}\n")
                f.writelines(lines)
            f.write("\n\\end\\\n")
        logger.info("wrote %s (%s)", path, self)


def _checked_lines(f, path: Path):
    """``enumerate(f, 1)`` that turns a decoding error into an :class:`InputError`."""
    lineno = 0
    it = iter(f)
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError as e:
            raise InputError(path, f"not UTF-8 text after line {lineno}: {e}", fix="convert the file to UTF-8") from None
        lineno += 1
        yield lineno, line


def _fmt(x: float) -> str:
    return f"{x:.10g}"


def _strip_markers(words: Sequence[str]) -> list[str]:
    """Drop a leading ``<s>`` / trailing ``</s>``; reject them inside a sentence."""
    words = list(words)
    if words and words[0] == BOS:
        words = words[1:]
    if words and words[-1] == EOS:
        words = words[:-1]
    for w in words:
        if w == BOS or w == EOS:
            raise ValueError(f"sentence contains {w} inside it: {' '.join(words)!r}")
    return words


# ---------------------------------------------------------------------- training
def estimate_discounts(count_of_counts: Mapping[int, int]) -> tuple[tuple[float, float, float], bool]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from count-of-counts.

    Returns ``(discounts, used_fallback)``.  Falls back to
    :data:`FALLBACK_DISCOUNTS` when n1, n2 or n3 is zero or any estimate
    is outside ``0 < D_r <= r``.
    """
    n1, n2, n3, n4 = (int(count_of_counts.get(r, 0)) for r in (1, 2, 3, 4))
    if n1 > 0 and n2 > 0 and n3 > 0:
        y = n1 / (n1 + 2 * n2)
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        if all(0.0 < d_r <= r for r, d_r in zip((1, 2, 3), d)):
            return d, False
    return FALLBACK_DISCOUNTS, True


def _count(sentences: Iterable[Sequence[str]], order: int, vocab: set[str] | None, unk: str):
    """Raw top-order counts, raw counts of ``<s>``-initial lower n-grams, #sentences, #tokens."""
    top: Counter = Counter()
    bos_prefix: list[Counter] = [Counter() for _ in range(order)]  # index k: k-grams starting with <s>
    n_sents = n_tokens = n_mapped = 0
    for sent in sentences:
        words = _strip_markers(sent)
        if not words:
            continue
        if vocab is not None:
            n_mapped += sum(1 for w in words if w not in vocab)
            words = [w if w in vocab else unk for w in words]
        toks = [BOS, *words, EOS]
        n_sents += 1
        n_tokens += len(words)
        if order == 1:
            top.update(toks[1:])
            continue
        top.update(zip(*(toks[i:] for i in range(order))))
        for k in range(1, min(order, len(toks) + 1)):
            bos_prefix[k][tuple(toks[:k])] += 1
    if order == 1:
        top = Counter({(w,): c for w, c in top.items()})
    return top, bos_prefix, n_sents, n_tokens, n_mapped


def train_kneser_ney(
    sentences: Iterable[Sequence[str]],
    order: int = 3,
    vocab: Iterable[str] | None = None,
    *,
    unk: str = UNK,
) -> NgramLM:
    """Train an interpolated modified Kneser-Ney n-gram model (see module doc).

    ``sentences`` are word sequences without ``<s>``/``</s>`` (a leading
    ``<s>`` / trailing ``</s>`` is tolerated and dropped).  If ``vocab`` is
    given, training words outside it are mapped to ``unk``, which is always
    part of the model's vocabulary then; otherwise the vocabulary is the set
    of training words.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    vocab_set: set[str] | None = None
    if vocab is not None:
        vocab_set = {w for w in vocab if w not in (BOS, EOS)}
        vocab_set.add(unk)

    top, bos_prefix, n_sents, n_tokens, n_mapped = _count(sentences, order, vocab_set, unk)
    if n_sents == 0:
        raise ValueError("train_kneser_ney: no non-empty sentences to train on")

    # counts[k]: modified counts of k-grams (raw at the top order, continuation below).
    counts: dict[int, Counter] = {order: top}
    for k in range(order - 1, 0, -1):
        ck: Counter = Counter(key[1:] for key in counts[k + 1])
        ck.update(bos_prefix[k])  # <s>-initial k-grams keep raw counts
        counts[k] = ck

    # Unigram level: events are the vocab words (not <s>) + </s> (+ <unk>).
    c1 = counts[1]
    if vocab_set is not None:
        events = set(vocab_set)
        events.add(EOS)
    else:
        events = {key[0] for key in c1}
    events.discard(BOS)

    discounts: dict[int, tuple[float, float, float]] = {}

    def discounts_for(k: int, values) -> tuple[float, float, float]:
        coc = Counter(v for v in values if v <= 4)
        d, fallback = estimate_discounts(coc)
        if fallback:
            logger.warning(
                "order %d: count-of-counts n1..n4 = %s do not give valid modified Kneser-Ney "
                "discounts; using the fallback %s",
                k, [coc.get(r, 0) for r in (1, 2, 3, 4)], FALLBACK_DISCOUNTS,
            )
        discounts[k] = d
        return d

    uni_counts = {w: c1.get((w,), 0) for w in events}
    d1, d2, d3 = discounts_for(1, [c for c in uni_counts.values() if c > 0])
    dtab = (0.0, d1, d2)
    total = sum(uni_counts.values())
    dsum = sum(d3 if c >= 3 else dtab[c] for c in uni_counts.values())
    gamma0 = dsum / total
    uniform = gamma0 / len(events)
    probs: dict[tuple[str, ...], float] = {}
    for w, c in uni_counts.items():
        probs[(w,)] = (c - (d3 if c >= 3 else dtab[c])) / total + uniform
    ngrams: dict[int, dict[tuple[str, ...], tuple[float, float]]] = {}
    log10 = math.log10
    ngrams[1] = {key: (log10(p), 0.0) for key, p in probs.items()}
    ngrams[1][(BOS,)] = (BOS_LOG10PROB, 0.0)

    for k in range(2, order + 1):
        ck = counts[k]
        d1, d2, d3 = discounts_for(k, ck.values())
        dtab = (0.0, d1, d2)
        tot: dict[tuple[str, ...], int] = defaultdict(int)
        dis: dict[tuple[str, ...], float] = defaultdict(float)
        for key, c in ck.items():
            h = key[:-1]
            tot[h] += c
            dis[h] += d3 if c >= 3 else dtab[c]
        gamma = {h: dis[h] / t for h, t in tot.items()}
        lower = probs
        probs = {}
        for key, c in ck.items():
            h = key[:-1]
            probs[key] = (c - (d3 if c >= 3 else dtab[c])) / tot[h] + gamma[h] * lower[key[1:]]
        # backoff weights of the contexts (order k-1): bow(h) = gamma(h), see module doc
        prev = ngrams[k - 1]
        for h, g in gamma.items():
            prev[h] = (prev[h][0], log10(g))
        ngrams[k] = {key: (log10(p), 0.0) for key, p in probs.items()}

    lm = NgramLM(ngrams, discounts)
    logger.info(
        "trained %d-gram modified Kneser-Ney LM on %d sentences, %d words (%d mapped to %s); "
        "discounts %s; %s",
        order, n_sents, n_tokens, n_mapped, unk, {k: tuple(round(x, 4) for x in d) for k, d in discounts.items()}, lm,
    )
    return lm


# ---------------------------------------------------------------------- ARPA input
_SECTION_RE = re.compile(r"\\(\d+)-grams:")
_COUNT_RE = re.compile(r"ngram\s+(\d+)\s*=\s*(\d+)")


def read_arpa(path: str | Path) -> NgramLM:
    """Read an ARPA file (``.gz`` too).  Malformed input raises :class:`InputError` with the line number."""
    path = Path(path)
    fix = "the file must be an ARPA n-gram model (\\data\\, \\N-grams: sections, \\end\\)"
    declared: dict[int, int] = {}
    ngrams: dict[int, dict[tuple[str, ...], tuple[float, float]]] = {}
    section_line: dict[int, int] = {}
    state = "start"
    cur_n = 0
    table: dict[tuple[str, ...], tuple[float, float]] = {}
    lineno = 0
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        f = opener(path, "rt", encoding="utf-8")
    except OSError as e:
        raise InputError(path, f"cannot read ARPA file: {e.strerror or e}") from e
    with f:
        lines = _checked_lines(f, path)
        for lineno, raw in lines:
            line = raw.strip()
            if state == "start":
                if line == "\\data\\":
                    state = "data"
                continue  # text before \data\ is a free-form header
            if not line:
                continue
            if line == "\\end\\":
                state = "end"
                break
            m = _SECTION_RE.fullmatch(line)
            if m:
                n = int(m.group(1))
                if n not in declared:
                    raise InputError(path, f"section \\{n}-grams: is not declared in \\data\\", line=lineno, fix=fix)
                if n in ngrams:
                    raise InputError(path, f"section \\{n}-grams: appears twice", line=lineno, fix=fix)
                cur_n = n
                table = ngrams[n] = {}
                section_line[n] = lineno
                state = "grams"
                continue
            if state == "data":
                m = _COUNT_RE.fullmatch(line)
                if not m:
                    raise InputError(path, f"expected 'ngram N=COUNT' in \\data\\, got {line!r}", line=lineno, fix=fix)
                declared[int(m.group(1))] = int(m.group(2))
                continue
            fields = line.split()
            if len(fields) not in (cur_n + 1, cur_n + 2):
                raise InputError(
                    path,
                    f"a {cur_n}-gram line needs a log-prob, {cur_n} word(s) and an optional backoff "
                    f"weight; got {len(fields)} field(s): {line!r}",
                    line=lineno, fix=fix,
                )
            try:
                lp = float(fields[0])
                bow = float(fields[cur_n + 1]) if len(fields) == cur_n + 2 else 0.0
            except ValueError:
                raise InputError(path, f"bad number in {line!r}", line=lineno, fix=fix) from None
            if math.isnan(lp) or math.isnan(bow):
                raise InputError(path, f"NaN in {line!r}", line=lineno, fix=fix)
            key = tuple(fields[1:cur_n + 1])
            if key in table:
                raise InputError(path, f"duplicate {cur_n}-gram {' '.join(key)!r}", line=lineno, fix=fix)
            table[key] = (lp, bow)
    if state == "start":
        raise InputError(path, "no \\data\\ header found", fix=fix)
    if state != "end":
        raise InputError(path, "missing \\end\\ (truncated file?)", line=lineno, fix=fix)
    if not declared:
        raise InputError(path, "\\data\\ declares no n-gram counts", fix=fix)
    order = max(declared)
    for n in range(1, order + 1):
        if n not in declared:
            raise InputError(path, f"\\data\\ declares no count for order {n}", fix=fix)
        if n not in ngrams:
            raise InputError(path, f"missing \\{n}-grams: section", fix=fix)
        if len(ngrams[n]) != declared[n]:
            raise InputError(
                path,
                f"\\data\\ declares {declared[n]} {n}-grams but the section has {len(ngrams[n])}",
                line=section_line[n], fix=fix,
            )
    return NgramLM(ngrams)


# ---------------------------------------------------------------------- text files
_DISAMBIG_RE = re.compile(r"#(\d+|nonterm.*)")
_SKIP_VOCAB = {"<eps>", BOS, EOS}


def read_vocab(path: str | Path) -> list[str]:
    """Words of a vocab file: one word per line, or Kaldi ``words.txt`` (``word id``).

    The first column is taken; ``<eps>``, ``<s>``, ``</s>`` and disambiguation
    symbols (``#0``, ``#1``, ..., ``#nonterm...``) are skipped.
    """
    path = Path(path)
    words: list[str] = []
    seen: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(path, f"cannot read vocab file: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text: {e}", fix="convert the file to UTF-8") from None
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        w = fields[0]
        if w in _SKIP_VOCAB or _DISAMBIG_RE.fullmatch(w) or w in seen:
            continue
        seen.add(w)
        words.append(w)
    if not words:
        raise InputError(path, "vocab file has no words", fix="one word per line, or Kaldi words.txt lines 'word id'")
    return words


def read_sentences(path: str | Path) -> list[list[str]]:
    """Sentences of a text file: one per line, words separated by whitespace.

    Empty lines are skipped; a file without sentences, ``<s>``/``</s>``
    inside a sentence, or non-UTF-8 text raise :class:`InputError`.
    """
    path = Path(path)
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(path, f"cannot read text: {e.strerror or e}") from e
    sentences: list[list[str]] = []
    with f:
        for lineno, line in _checked_lines(f, path):
            words = line.split()
            if not words:
                continue
            try:
                _strip_markers(words)
            except ValueError as e:
                raise InputError(path, str(e), line=lineno, fix="remove <s>/</s> from inside sentences") from None
            sentences.append(words)
    if not sentences:
        raise InputError(path, "text has no sentences", fix="give one sentence per line")
    return sentences


def train_lm_from_text(
    text_path: str | Path,
    arpa_path: str | Path,
    order: int = 3,
    vocab_path: str | Path | None = None,
) -> NgramLM:
    """Train a modified Kneser-Ney LM on a text file and write it as ARPA.

    ``text_path`` has one sentence per line, words separated by whitespace
    (empty lines are skipped).  ``vocab_path`` is read by :func:`read_vocab`;
    words outside it become ``<unk>``, or Kaldi's ``<UNK>`` when the vocab has it
    (a lang dir's ``words.txt``), so that G.fst needs no extra symbol.
    """
    sentences = read_sentences(text_path)
    vocab = read_vocab(vocab_path) if vocab_path is not None else None
    unk = "<UNK>" if vocab is not None and "<UNK>" in vocab else UNK
    lm = train_kneser_ney(sentences, order=order, vocab=vocab, unk=unk)
    lm.write_arpa(arpa_path)
    return lm
