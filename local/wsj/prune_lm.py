"""IRSTLM's ``prune-lm`` (weighted-difference pruning) of a backoff ARPA LM, in Python.

    python -m local.wsj.prune_lm --threshold 1e-7 lm_tg.arpa lm_tgpr.arpa

Kaldi's WSJ recipe makes ``lm_tgpr`` with ``prune-lm --threshold=1e-7 lm_tg.arpa.gz`` (IRSTLM).
``local/wsj/make_lms.sh`` runs that tool when it is installed (Debian: ``irstlm``); this module
is the same algorithm for machines without it (IRSTLM's ``lmtable::wdprune``, after Seymore and
Rosenfeld's weighted difference method), so both give the same n-gram counts
(tests/test_wsj_lm.py checks it). One pass per order n = 2 .. N; in pass n:

- an n-gram ``h w`` whose context ``h`` is still in the model is kept when
  ``p(h w) * (log10 p(w|h) - log10 bow(h) - log10 p(w|h'))  >  threshold``,
  where ``p(h w)`` is the product of the listed probabilities of its prefixes (a first word
  ``<s>`` counts 1), ``bow(h)`` the context's backoff weight as read, and ``p(w|h')`` the
  lower-order probability under the model as pruned so far (with backoff); otherwise removed;
- every context ``h`` with successors then gets ``bow(h) = (1 - sum p(w|h)) / (1 - sum p(w|h'))``
  over its kept successors;
- n-grams whose context was removed in an earlier pass are dropped with it.

Unigrams are never removed.
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


def prune(lm: NgramLM, threshold: float | list[float]) -> NgramLM:
    """IRSTLM's weighted-difference pruning; ``threshold`` per order 2, 3, ... (the last one repeats)."""
    thr = [threshold] if isinstance(threshold, (int, float)) else list(threshold)
    ngrams = {n: dict(t) for n, t in lm.ngrams.items()}
    for n in range(2, lm.order + 1):
        t = thr[min(n - 2, len(thr) - 1)]
        succ: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for g in ngrams[n]:
            succ[g[:-1]].append(g[-1])
        cur = NgramLM(ngrams)
        removed = 0
        new_bows = {}
        for h, words in succ.items():
            if h not in ngrams[n - 1]:  # context removed in an earlier pass: its successors go with it
                for w in words:
                    del ngrams[n][h + (w,)]
                removed += len(words)
                continue
            # log10 p(h): the listed probabilities of h's prefixes; a leading <s> counts 1
            tlk = sum(ngrams[i][h[:i]][0] for i in range(1, len(h) + 1) if not (i == 1 and h[0] == "<s>"))
            bo = ngrams[n - 1][h][1]
            ts = tbs = 0.0
            for w in words:
                lk = ngrams[n][h + (w,)][0]
                blk = cur.log10prob(w, h[1:])
                wd = 10 ** (tlk + lk) * (lk - bo - blk)
                if wd > t:
                    ts += 10 ** lk
                    tbs += 10 ** blk
                else:
                    del ngrams[n][h + (w,)]
                    removed += 1
            if ts < 1 and tbs < 1:
                new_bows[h] = math.log10((1 - ts) / (1 - tbs))
        for h, b in new_bows.items():
            ngrams[n - 1][h] = (ngrams[n - 1][h][0], b)
        log.info("order %d: removed %d of %d n-grams (threshold %g)", n, removed, removed + len(ngrams[n]), t)
    return NgramLM(ngrams)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threshold", default="1e-7", help="one value, or comma-separated values for orders 2, 3, ...")
    p.add_argument("--log-file", dest="log")
    p.add_argument("arpa_in")
    p.add_argument("arpa_out")
    a = p.parse_args(argv)
    setup_logging(a.log)
    log.info("python -m local.wsj.prune_lm %s", shlex.join(argv))

    def go():
        lm = read_arpa(a.arpa_in)
        out = prune(lm, [float(x) for x in a.threshold.split(",")])
        Path(a.arpa_out).parent.mkdir(parents=True, exist_ok=True)
        out.write_arpa(a.arpa_out)
        log.info("%s -> %s: %r -> %r", a.arpa_in, a.arpa_out, lm, out)
    return run_command(go)


if __name__ == "__main__":
    sys.exit(main())
