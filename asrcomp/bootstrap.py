"""Bootstrap confidence intervals for WER (Bisani & Ney, ICASSP 2004; Kaldi's ``compute-wer-bootci``).

The unit of resampling is the utterance: a replicate draws as many utterances as the test
set has, with replacement, and its WER is the replicate's summed errors over its summed
reference words. From ``n_boot`` replicates (default 1000, seeded, so a table is
reproducible):

- :func:`bootstrap_interval`: the 95 % percentile interval of the replicate WERs
  (Kaldi prints mean +- 1.96 standard deviations instead; the percentile interval
  needs no normality and is never wider than the data allow, e.g. below 0);
- :func:`ratio_interval`: the same interval for any ratio of per-utterance sums (decode
  time of one model over another's, ``bench/paired_rtf.py``);
- :func:`prob_worse`: the *paired* bootstrap -- both systems are scored on the same
  resampled utterances -- probability that system B's WER is above system A's
  (Bisani & Ney's "probability of improvement", seen from the other side). Ties count
  one half, so two identical systems give exactly 0.5; B worse than A on every
  utterance gives 1.0. ``P >= 0.95`` is read as "B is significantly worse than A",
  ``P <= 0.05`` as "significantly better".

Utterances of one speaker are not independent draws: a voice the model finds hard makes all
its utterances hard. With ``clusters`` (a speaker index per utterance, e.g. from
:func:`speaker_clusters`) both functions resample whole speakers instead (the cluster or
block bootstrap, Field & Welsh 2007): the interval then says how the WER would move on
another draw of speakers, which is what a test set of few voices is least sure of.

Per-utterance (errors, reference words) come from a decode dir: the ``utt_stats`` file
that scoring writes (``<utt> <errors> <ref-words> <ins> <del> <sub>``) or, for a decode
dir scored before it existed, the per-utterance alignments of ``errs``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrcomp.utils import InputError, atomic_open

N_BOOT = 1000
SEED = 0
CONFIDENCE = 0.95
BOOTCI_NAME = "wer_bootci"
UTT_STATS_NAME = "utt_stats"
_CHUNK = 1 << 22  # resampled indices held at once (32 MB of int64)


@dataclass
class UttStats:
    """Per-utterance errors and reference words of one decode, in ``utts`` order."""

    utts: list[str]
    errors: np.ndarray  # int64
    words: np.ndarray  # int64

    @property
    def wer(self) -> float:
        return 100.0 * float(self.errors.sum()) / max(int(self.words.sum()), 1)

    def aligned_with(self, other: "UttStats", where="") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(errors, words, other_errors, other_words)`` on the same utterances, same order."""
        if self.utts != other.utts:
            a, b = set(self.utts), set(other.utts)
            if a != b:
                only = sorted(a - b)[:3] or sorted(b - a)[:3]
                raise InputError(where or "bootstrap", f"the two decodes score different utterances "
                                 f"({len(a)} vs {len(b)}; e.g. {', '.join(only)})",
                                 fix="compare decodes of the same test set")
            pos = {u: i for i, u in enumerate(other.utts)}
            order = np.array([pos[u] for u in self.utts], dtype=np.int64)
            return self.errors, self.words, other.errors[order], other.words[order]
        return self.errors, self.words, other.errors, other.words


@dataclass
class BootCI:
    wer: float  # the point estimate (all utterances)
    lo: float
    hi: float
    mean: float  # mean of the replicates
    n_boot: int
    n_utts: int  # resampled units: utterances, or speakers when unit == "speakers"
    seed: int
    confidence: float = CONFIDENCE
    unit: str = "utterances"

    def line(self) -> str:
        """``%WER 4.50 [95% CI 3.80, 5.25] bootstrap 1000 x 300 utterances, seed 0``"""
        return (f"%WER {self.wer:.2f} [{100 * self.confidence:g}% CI {self.lo:.2f}, {self.hi:.2f}] "
                f"bootstrap {self.n_boot} x {self.n_utts} {self.unit}, seed {self.seed}")


def _cluster_sums(values: list[np.ndarray], clusters) -> list[np.ndarray]:
    """Each array of per-utterance ``values`` summed per cluster (``clusters``: an index >= 0 per
    utterance); unchanged when ``clusters`` is None."""
    if clusters is None:
        return values
    c = np.asarray(clusters, dtype=np.int64)
    if len(c) != len(values[0]) or (len(c) and c.min() < 0):
        raise ValueError(f"need one cluster index >= 0 per utterance ({len(c)} for {len(values[0])})")
    _, c = np.unique(c, return_inverse=True)
    return [np.bincount(c, weights=v).astype(np.int64) for v in values]


def speaker_clusters(utts: list[str], utt2spk: dict[str, str], where="utt2spk") -> np.ndarray:
    """A speaker index per utterance of ``utts`` (for ``clusters=``); every utterance needs a speaker."""
    missing = [u for u in utts if u not in utt2spk]
    if missing:
        raise InputError(where, f"{len(missing)} scored utterances have no speaker, e.g. {missing[0]}",
                         fix="give the utt2spk of the data dir that was decoded")
    _, idx = np.unique([utt2spk[u] for u in utts], return_inverse=True)
    return idx.astype(np.int64)


def _replicate_sums(values: list[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """For each array in ``values`` (all of length n): its sum over each of ``n_boot`` resamples
    of n indices with replacement -- the same resamples for every array (a paired bootstrap)."""
    n = len(values[0])
    rng = np.random.default_rng(seed)
    out = [np.empty(n_boot, dtype=v.dtype) for v in values]
    step = max(1, _CHUNK // max(n, 1))
    for b0 in range(0, n_boot, step):
        b1 = min(n_boot, b0 + step)
        idx = rng.integers(0, n, size=(b1 - b0, n))
        for v, o in zip(values, out):
            o[b0:b1] = v[idx].sum(axis=1)
    return out


def bootstrap_interval(errors, words, n_boot: int = N_BOOT, seed: int = SEED,
                       confidence: float = CONFIDENCE, clusters=None) -> BootCI:
    """Percentile bootstrap interval of the WER (%) of per-utterance ``errors`` / ``words``;
    with ``clusters`` (an index per utterance) the clusters are resampled, not the utterances."""
    e, w = np.asarray(errors, dtype=np.int64), np.asarray(words, dtype=np.int64)
    if len(e) == 0 or len(e) != len(w):
        raise ValueError(f"need equally many errors and word counts, at least one ({len(e)}, {len(w)})")
    if not 0 < confidence < 1 or n_boot < 1:
        raise ValueError(f"confidence in (0, 1) and n_boot >= 1, got {confidence}, {n_boot}")
    units = _cluster_sums([e, w], clusters)
    se, sw = _replicate_sums(units, n_boot, seed)
    reps = 100.0 * se / np.maximum(sw, 1)
    a = (1 - confidence) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return BootCI(100.0 * float(e.sum()) / max(int(w.sum()), 1), float(lo), float(hi), float(reps.mean()),
                  n_boot, len(units[0]), seed, confidence, "utterances" if clusters is None else "speakers")


def ratio_interval(num, den, n_boot: int = N_BOOT, seed: int = SEED,
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of ``sum(num) / sum(den)`` over resampled utterances
    (``num``, ``den``: ``(N,)`` per-utterance values, e.g. two models' decode seconds)."""
    n, d = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if len(n) == 0 or len(n) != len(d):
        raise ValueError(f"need equally many numerators and denominators, at least one ({len(n)}, {len(d)})")
    sn, sd = _replicate_sums([n, d], n_boot, seed)
    a = (1 - confidence) / 2
    lo, hi = np.quantile(sn / sd, [a, 1 - a])
    return float(lo), float(hi)


def prob_worse(errors_a, words_a, errors_b, words_b, n_boot: int = N_BOOT, seed: int = SEED,
               clusters=None) -> float:
    """Paired bootstrap P(WER of B > WER of A), ties counted one half; utterances aligned by index;
    with ``clusters`` (an index per utterance) whole clusters are resampled.

    The references are the same text, but a phone model's TER and a word model's WER do not
    share word counts, so each system's WER is computed with its own reference counts.
    """
    ea, wa, eb, wb = (np.asarray(x, dtype=np.int64) for x in (errors_a, words_a, errors_b, words_b))
    if not (len(ea) == len(wa) == len(eb) == len(wb)) or len(ea) == 0:
        raise ValueError("paired bootstrap needs the same, non-empty set of utterances for both systems")
    sea, swa, seb, swb = _replicate_sums(_cluster_sums([ea, wa, eb, wb], clusters), n_boot, seed)
    # compare sea/swa with seb/swb exactly in integers
    diff = seb * np.maximum(swa, 1) - sea * np.maximum(swb, 1)
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / n_boot)


# ----------------------------------------------------------------------------- decode dirs


def write_utt_stats(decode_dir: str | os.PathLike, rows: dict[str, tuple[int, int, int, int, int]]) -> None:
    """``utt_stats``: ``<utt> <errors> <ref-words> <ins> <del> <sub>`` per utterance, sorted."""
    with atomic_open(Path(decode_dir) / UTT_STATS_NAME, "w", encoding="utf-8") as f:
        for u in sorted(rows):
            f.write(f"{u} {' '.join(map(str, rows[u]))}\n")


def read_utt_stats(decode_dir: str | os.PathLike) -> UttStats:
    """Per-utterance (errors, ref words) of a scored decode dir (``utt_stats``, else ``errs``)."""
    d = Path(decode_dir)
    p = d / UTT_STATS_NAME
    utts, e, w = [], [], []
    if p.is_file():
        with open(p, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                parts = line.split()
                if len(parts) < 3:
                    raise InputError(p, f"expected '<utt> <errors> <ref-words> ...', got {line.strip()!r}", line=i,
                                     fix="rescore the decode dir (steps/score.sh or asrcomp decode-score)")
                utts.append(parts[0])
                e.append(int(parts[1]))
                w.append(int(parts[2]))
    elif (d / "errs").is_file():
        utts, e, w = _from_errs(d / "errs")
    else:
        raise InputError(d, "no utt_stats or errs file: not a scored decode dir", fix="decode and score it first")
    if not utts:
        raise InputError(p if p.is_file() else d / "errs", "no utterances", fix="rescore the decode dir")
    return UttStats(utts, np.array(e, dtype=np.int64), np.array(w, dtype=np.int64))


_ERR_TOKEN = re.compile(r"^\((.+)->(.+)\)$")


def _from_errs(path: Path) -> tuple[list[str], list[int], list[int]]:
    """The PER-UTT DETAILS section of an ``errs`` file: ``utt:\\tword (ref->hyp) ...``."""
    utts, e, w = [], [], []
    section = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("PER-UTT DETAILS"):
                section = True
                continue
            if not section:
                continue
            if not line.strip():
                break
            utt, sep, rest = line.rstrip("\n").partition(":\t")
            if not sep:
                raise InputError(path, f"malformed per-utterance line {line.strip()!r}", fix="rescore the decode dir")
            errs = words = 0
            for tok in rest.split():
                m = _ERR_TOKEN.match(tok)
                if m is None:
                    words += 1
                    continue
                errs += 1
                words += m.group(1) != "*"
            utts.append(utt)
            e.append(errs)
            w.append(words)
    return utts, e, w


def write_bootci(decode_dir: str | os.PathLike, n_boot: int = N_BOOT, seed: int = SEED) -> BootCI:
    """Write ``wer_bootci`` (one line, :meth:`BootCI.line`) into a scored decode dir."""
    s = read_utt_stats(decode_dir)
    ci = bootstrap_interval(s.errors, s.words, n_boot, seed)
    with atomic_open(Path(decode_dir) / BOOTCI_NAME, "w") as f:
        f.write(ci.line() + "\n")
    return ci


def compare_decodes(dir_a, dir_b, n_boot: int = N_BOOT, seed: int = SEED,
                    utt2spk: dict[str, str] | None = None) -> float:
    """Paired bootstrap P(decode ``dir_b`` is worse than ``dir_a``); over speakers with ``utt2spk``."""
    a, b = read_utt_stats(dir_a), read_utt_stats(dir_b)
    ea, wa, eb, wb = a.aligned_with(b, where=f"{dir_a} vs {dir_b}")
    clusters = None if utt2spk is None else speaker_clusters(a.utts, utt2spk)
    return prob_worse(ea, wa, eb, wb, n_boot, seed, clusters)
