"""WSJ transcripts: ``.dot`` files and Kaldi's normalisation (egs/wsj/s5/local/normalize_transcript.pl).

A ``.dot`` file holds one session of one speaker (``011c0200.dot`` for utterances
``011c02xx``), one line per utterance::

    Of course there isn\\'t any guarantee the company will keep its hot hand [misc_noise] (011c0201)
"""

from __future__ import annotations

import re
from pathlib import Path

from asrcomp.utils import InputError

NOISE_WORD = "<NOISE>"

_DOT_LINE = re.compile(r"^(.*)\(([^()\s]+)\)\s*$")
_DELETE = [
    re.compile(r"^\[<\w+\]$"),   # [<door_slam]: a noise in the preceding word
    re.compile(r"^\[\w+>\]$"),   # [door_slam>]: a noise in the next word
    re.compile(r"\[\w+/\]$"),    # [phone_ring/]: start of a noise
    re.compile(r"\[/\w+\]$"),    # [/phone_ring]: its end
]
_NOISE = re.compile(r"\[\w+\]")            # [loud_breath] and the like
_VERBAL_DELETION = re.compile(r"^<([\w']+)>$")  # <and>: a deleted but spoken word


def read_dot(path: str | Path) -> dict[str, str]:
    """``{utt_id (lower case): raw transcript}`` of one ``.dot`` file; a malformed line names its line."""
    path = Path(path)
    out: dict[str, str] = {}
    with open(path, encoding="latin-1") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = _DOT_LINE.match(line.rstrip("\r\n"))
            if not m:
                raise InputError(path, f"expected 'transcript (uttid)', got {line.strip()!r}", lineno,
                                 "the .dot file is damaged; copy it again from the disc")
            out[m.group(2).lower()] = m.group(1).strip()
    return out


def normalize_word(w: str, noise_word: str = NOISE_WORD) -> str | None:
    """One word as Kaldi's normalize_transcript.pl writes it (``None``: dropped)."""
    w = w.upper().replace("\\", "")
    if w == "%PERCENT":
        w = "PERCENT"
    elif w == ".POINT":
        w = "POINT"
    if any(p.search(w) for p in _DELETE) or w in ("~", "."):
        return None
    if _NOISE.search(w):
        return noise_word
    m = _VERBAL_DELETION.match(w)
    if m:
        return m.group(1)
    if w == "--DASH":
        return "-DASH"  # CMUdict spells it -DASH
    return w


def normalize_transcript(text: str, noise_word: str = NOISE_WORD) -> str:
    """A raw ``.dot`` transcript normalised: upper case, noises -> ``<NOISE>``, ``<w>`` -> ``W``,
    ``~`` and ``.`` dropped, backslashes removed, verbal punctuation (``,COMMA``) kept."""
    words = (normalize_word(w, noise_word) for w in text.split())
    return " ".join(w for w in words if w)
