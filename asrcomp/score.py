"""WER scoring with kaldialign, written the way Kaldi and icefall write it.

Per decode dir: ``wer`` (one line, Kaldi's format), ``errs`` (icefall-style
error stats: per-utterance alignments, then per-word counts), ``hyp.txt``
(Kaldi ``text`` format), ``utt_stats`` (per utterance: errors, reference words, ins,
del, sub) and ``wer_bootci`` (the WER with its 95 % bootstrap interval over
utterances, :mod:`asrcomp.bootstrap`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import kaldialign

from asrcomp.bootstrap import write_bootci, write_utt_stats
from asrcomp.datadir import read_table, write_table
from asrcomp.utils import InputError, atomic_open

EPS = "*"


@dataclass
class WerStats:
    errors: int
    words: int
    ins: int
    dels: int
    subs: int
    sentences: int = 0
    sentence_errors: int = 0

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / max(self.words, 1)

    def kaldi_line(self) -> str:
        """``%WER 4.38 [ 241 / 5500, 30 ins, 50 del, 161 sub ]``"""
        return (f"%WER {self.wer:.2f} [ {self.errors} / {self.words}, {self.ins} ins, "
                f"{self.dels} del, {self.subs} sub ]")

    def ser_line(self) -> str:
        ser = 100.0 * self.sentence_errors / max(self.sentences, 1)
        return f"%SER {ser:.2f} [ {self.sentence_errors} / {self.sentences} ]"


def compute_wer(refs: dict[str, list[str]], hyps: dict[str, list[str]]) -> tuple[WerStats, dict]:
    """WER of ``hyps`` against ``refs`` (both ``{utt: words}``); a missing hyp counts as empty.

    Returns the totals and per-utterance alignments ``{utt: [(ref, hyp), ...]}``.
    """
    tot = WerStats(0, 0, 0, 0, 0)
    aligns = {}
    for utt in sorted(refs):
        ref, hyp = refs[utt], hyps.get(utt, [])
        d = kaldialign.edit_distance(ref, hyp)
        tot.ins += d["ins"]
        tot.dels += d["del"]
        tot.subs += d["sub"]
        tot.errors += d["total"]
        tot.words += len(ref)
        tot.sentences += 1
        tot.sentence_errors += d["total"] > 0
        aligns[utt] = kaldialign.align(ref, hyp, EPS)
    return tot, aligns


def write_scoring(decode_dir: str | os.PathLike, refs: dict[str, list[str]],
                  hyps: dict[str, list[str]]) -> WerStats:
    """Score and write ``wer``, ``errs``, ``hyp.txt``, ``utt_stats`` and ``wer_bootci`` into ``decode_dir``."""
    decode_dir = Path(decode_dir)
    decode_dir.mkdir(parents=True, exist_ok=True)
    stats, aligns = compute_wer(refs, hyps)
    write_table(decode_dir / "hyp.txt", {u: " ".join(hyps.get(u, [])) for u in refs})
    with atomic_open(decode_dir / "errs", "w", encoding="utf-8") as f:
        f.write(stats.kaldi_line() + "\n" + stats.ser_line() + "\n\n")
        f.write("PER-UTT DETAILS: corr or (ref->hyp)\n")
        subs, ins, dels, corr = Counter(), Counter(), Counter(), Counter()
        for utt, ali in aligns.items():
            parts = []
            for r, h in ali:
                if r == h:
                    parts.append(r)
                    corr[r] += 1
                    continue
                parts.append(f"({r}->{h})")
                if r == EPS:
                    ins[h] += 1
                elif h == EPS:
                    dels[r] += 1
                else:
                    subs[(r, h)] += 1
            f.write(f"{utt}:\t{' '.join(parts)}\n")
        f.write("\nSUBSTITUTIONS: count ref -> hyp\n")
        for (r, h), c in subs.most_common():
            f.write(f"{c}   {r} -> {h}\n")
        f.write("\nDELETIONS: count ref\n")
        for w, c in dels.most_common():
            f.write(f"{c}   {w}\n")
        f.write("\nINSERTIONS: count hyp\n")
        for w, c in ins.most_common():
            f.write(f"{c}   {w}\n")
        f.write("\nPER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp\n")
        word_errs = Counter()
        for (r, h), c in subs.items():
            word_errs[r] += c
            word_errs[h] += c
        for w, c in dels.items():
            word_errs[w] += c
        for w, c in ins.items():
            word_errs[w] += c
        ref_count = Counter(w for ws in refs.values() for w in ws)
        hyp_count = Counter(w for u in refs for w in hyps.get(u, []))
        for w in sorted(set(ref_count) | set(hyp_count), key=lambda w: (-word_errs[w], w)):
            f.write(f"{w}   {corr[w]} {word_errs[w]} {ref_count[w]} {hyp_count[w]}\n")
    per_utt = {}
    for utt, ali in aligns.items():
        i = sum(r == EPS for r, _ in ali)
        d = sum(h == EPS for _, h in ali)
        s = sum(r != h and r != EPS and h != EPS for r, h in ali)
        per_utt[utt] = (i + d + s, len(refs[utt]), i, d, s)
    write_utt_stats(decode_dir, per_utt)
    if per_utt:
        write_bootci(decode_dir)
    with atomic_open(decode_dir / "wer", "w") as f:
        f.write(stats.kaldi_line() + "\n")
    return stats


def read_text(path: str | os.PathLike, allow_empty: bool = False) -> dict[str, list[str]]:
    """A Kaldi ``text`` file as ``{utt: words}``; an empty transcript is an error naming the
    line, unless ``allow_empty`` (hypotheses may be empty)."""
    table = read_table(path, max_fields=None, allow_empty_value=allow_empty)
    return {u: t.split() for u, t in table.items()}


def parse_wer_line(line: str) -> WerStats:
    """Read back a ``%WER`` line written by :meth:`WerStats.kaldi_line`."""
    import re

    m = re.match(r"%(?:WER|TER)\s+[\d.]+\s+\[\s*(\d+)\s*/\s*(\d+),\s*(\d+)\s+ins,\s*(\d+)\s+del,\s*(\d+)\s+sub\s*\]", line)
    if not m:
        raise InputError("wer", f"not a %WER line: {line!r}")
    e, n, i, d, s = map(int, m.groups())
    return WerStats(e, n, i, d, s)
