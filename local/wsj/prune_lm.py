"""Relative-entropy pruning of a backoff ARPA LM (Stolcke 1998; SRILM's ``ngram -prune``).

    python -m local.wsj.prune_lm --threshold 1e-7 lm_tg.arpa lm_tgpr.arpa

Kaldi's WSJ recipe makes ``lm_tgpr`` from the corpus trigram ``tcb20onp`` with IRSTLM's
``prune-lm --threshold=1e-7``; IRSTLM is not a Python package, so this is SRILM's
criterion with the same threshold: an n-gram (n >= 2) is removed when backing off
instead raises the model's perplexity by less than ``threshold`` (relative), where

    dH = -p(h) [ p(w|h) (log p(w|h') + log bow'(h) - log p(w|h)) + B(h) (log bow'(h) - log bow(h)) ]

``p(h)`` is the history's probability under the model, ``B(h)`` the probability mass
of the words that already back off from ``h``, and ``bow'(h)`` the backoff weight
after the removal. Candidates of one order are judged against the unpruned model
(as SRILM does), n-grams that are the context of a kept longer n-gram are kept,
and the backoff weights of every touched context are recomputed afterwards, so each
context's distribution still sums to one.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
from collections import defaultdict
from pathlib import Path

from asrcomp.lm import NgramLM, read_arpa
from asrcomp.utils import run_command, setup_logging

log = logging.getLogger("local.wsj.prune_lm")
LN10 = math.log(10)


def _history_prob(lm: NgramLM, h: tuple[str, ...]) -> float:
    """p(h) by the chain rule; a history starting with <s> has p(<s>) = 1."""
    logp = 0.0
    start = 1 if h and h[0] == "<s>" else 0
    for i in range(start, len(h)):
        logp += lm.log10prob(h[i], h[:i])
    return 10 ** logp


def _bow(lm: NgramLM, h: tuple[str, ...], listed: list[str]) -> float:
    """log10 backoff weight of context h whose listed successors are ``listed``."""
    n = len(h) + 1
    num = 1.0 - sum(10 ** lm.ngrams[n][h + (w,)][0] for w in listed)
    den = 1.0 - sum(10 ** lm.log10prob(w, h[1:]) for w in listed)
    if num <= 0 or den <= 0:
        return 0.0
    return math.log10(num / den)


def prune(lm: NgramLM, threshold: float) -> NgramLM:
    ngrams = {n: dict(t) for n, t in lm.ngrams.items()}
    for n in range(lm.order, 1, -1):
        cur = NgramLM(ngrams)
        succ: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for g in ngrams[n]:
            succ[g[:-1]].append(g[-1])
        contexts = set(ngrams[n + 1]) if n + 1 in ngrams else set()
        keep_ctx = {g[:-1] for g in contexts}
        removed: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for h, words in succ.items():
            ph = _history_prob(cur, h)
            p_listed = sum(10 ** ngrams[n][h + (w,)][0] for w in words)
            q_listed = sum(10 ** cur.log10prob(w, h[1:]) for w in words)
            bo_mass = 1.0 - p_listed  # B(h)
            bow = ngrams[n - 1][h][1] if h in ngrams[n - 1] else 0.0
            for w in words:
                if h + (w,) in keep_ctx:
                    continue
                p = 10 ** ngrams[n][h + (w,)][0]
                q = 10 ** cur.log10prob(w, h[1:])
                num, den = bo_mass + p, 1.0 - q_listed + q
                if num <= 0 or den <= 0:
                    continue
                new_bow = math.log10(num / den)
                dh = -ph * (p * (math.log10(q) + new_bow - math.log10(p)) + bo_mass * (new_bow - bow)) * LN10
                if math.exp(dh) - 1.0 < threshold:
                    removed[h].append(w)
        n_removed = 0
        for h, words in removed.items():
            for w in words:
                del ngrams[n][h + (w,)]
                n_removed += 1
        log.info("order %d: removed %d of %d n-grams", n, n_removed, n_removed + len(ngrams[n]))
        # recompute the backoff weights of the touched contexts against the lower orders
        after = NgramLM(ngrams)
        succ_after: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for g in ngrams[n]:
            succ_after[g[:-1]].append(g[-1])
        for h in removed:
            if h in ngrams[n - 1]:
                ngrams[n - 1][h] = (ngrams[n - 1][h][0], _bow(after, h, succ_after.get(h, [])))
    return NgramLM(ngrams)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threshold", type=float, default=1e-7)
    p.add_argument("--log-file", dest="log")
    p.add_argument("arpa_in")
    p.add_argument("arpa_out")
    a = p.parse_args(argv)
    setup_logging(a.log)
    log.info("python -m local.wsj.prune_lm %s", shlex.join(argv))

    def go():
        lm = read_arpa(a.arpa_in)
        out = prune(lm, a.threshold)
        Path(a.arpa_out).parent.mkdir(parents=True, exist_ok=True)
        out.write_arpa(a.arpa_out)
        log.info("%s -> %s: %r -> %r", a.arpa_in, a.arpa_out, lm, out)
    return run_command(go)


if __name__ == "__main__":
    sys.exit(main())
