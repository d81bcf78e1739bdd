"""A generated miniature of speechocean762 (OpenSLR 101), laid out as the corpus ships it.

Written from the corpus's own files, not from our reader:
- ``train/`` and ``test/`` hold ``wav.scp``, ``text``, ``spk2age`` and ``spk2gender`` separated
  by a TAB, ``utt2spk`` and ``spk2utt`` by a space; ``wav.scp`` paths are relative to the
  corpus root (``WAVE/SPEAKER0001/000010011.WAV``, upper-case extension);
- utterance ids are 9 digits, ``0`` + the 4-digit speaker + a 4-digit number, so they are
  *not* prefixed by the speaker id as Kaldi wants;
- ``resource/lexicon.txt`` is ``WORD<TAB>PH PH ...`` with CMUdict stress digits, a word on
  several lines for its variants, and unstressed vowels such as ``IH`` spelled without a digit;
- ``WAVE/`` holds WAVs that no ``wav.scp`` lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

LEXICON = [
    ("A", "AH0"), ("A", "EY0"), ("BEAR", "B EH1 R"), ("CALL", "K AO1 L"), ("IT", "IH1 T"), ("IT", "IH T"),
    ("WE", "W IY1"), ("ZERO", "Z IH1 R OW0"), ("ZERO", "Z IY1 R OW0"), ("THREE", "TH R IY1"), ("FIVE", "F AY1 V"),
    ("MARK", "M AA0 R K"), ("IS", "IH0 Z"), ("GOING", "G OW0 IH0 NG"), ("TO", "T UW0"), ("SEE", "S IY0"),
    ("ELEPHANT", "EH1 L AH0 F AH0 N T"), ("GIRAFFE", "JH ER0 AE1 F"), ("TIGER", "T AY1 G ER0"),
    ("ZEBRA", "Z IY1 B R AH0"), ("PANDA", "P AE1 N D AH0"), ("RABBIT", "R AE1 B AH0 T"),
    ("YUMMY", "Y AH1 M IY0"), ("TODDLE", "T AA1 D AH0 L"),
    ("SHIZI", "SH IY1 Z IY0"),  # not in CMUdict: only the corpus lexicon knows it
]
TRAIN_SENTENCES = ["WE CALL IT BEAR", "ZERO THREE FIVE", "MARK IS GOING TO SEE A BEAR", "IT IS YUMMY",
                   "WE SEE SHIZI"]
# one word per training speaker that only this speaker says: whichever speakers dev holds out,
# their word is in the lexicon but in no training transcript (the LM text)
OWN_WORD = {"0001": "ELEPHANT", "0005": "GIRAFFE", "0006": "TIGER", "0026": "ZEBRA", "0036": "PANDA",
            "0048": "RABBIT"}
TEST_SENTENCES = ["WE SEE A BEAR", "ZERO FIVE THREE", "MARK IS GOING TO TODDLE", "IT IS A FLOOBLE"]
# FLOOBLE: in no lexicon at all, so an error whatever the model says (Kaldi's OOV rule)

# speaker -> (age, gender); train has children (< 16) and adults, test is disjoint
TRAIN_SPEAKERS = {"0001": (8, "m"), "0005": (30, "m"), "0006": (7, "f"), "0026": (21, "f"), "0036": (10, "f"),
                  "0048": (25, "m")}
TEST_SPEAKERS = {"0003": (9, "f"), "0012": (33, "m")}


def _wav(path: Path, seconds: float, freq: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.round(x * 32767).astype(np.int16), 16000, subtype="PCM_16", format="WAV")


def _write(path: Path, rows: list[tuple[str, str]], sep: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}{sep}{v}\n" for k, v in rows), encoding="utf-8")


def make_speechocean762(root: Path, n_unlisted: int = 2) -> Path:
    """Write the miniature under ``root``; returns ``root``."""
    root = Path(root)
    seed = 0
    for name, speakers in (("train", TRAIN_SPEAKERS), ("test", TEST_SPEAKERS)):
        wav, text, u2s, s2u = [], [], [], []
        for spk, _ in sorted(speakers.items()):
            sents = list(TRAIN_SENTENCES) if name == "train" else list(TEST_SENTENCES)
            if name == "train":
                sents.append(f"MARK IS GOING TO SEE {OWN_WORD[spk]}")
            utts = []
            for i, sent in enumerate(sents):
                utt = f"0{spk}{10 * i + 11:04d}"
                rel = f"WAVE/SPEAKER{spk}/{utt}.WAV"
                _wav(root / rel, 0.6 + 0.1 * len(sent.split()), 150 + 40 * i + int(spk), seed)
                seed += 1
                wav.append((utt, rel))
                text.append((utt, sent))
                u2s.append((utt, spk))
                utts.append(utt)
            s2u.append((spk, " ".join(utts)))
        _write(root / name / "wav.scp", wav, "\t")
        _write(root / name / "text", text, "\t")
        _write(root / name / "utt2spk", u2s, " ")
        _write(root / name / "spk2utt", s2u, " ")
        _write(root / name / "spk2age", [(s, str(a)) for s, (a, _) in sorted(speakers.items())], "\t")
        _write(root / name / "spk2gender", [(s, g) for s, (_, g) in sorted(speakers.items())], "\t")
    for i in range(n_unlisted):  # recordings no wav.scp lists (the real corpus has 245)
        _wav(root / f"WAVE/SPEAKER0001/00001{9000 + i}.WAV", 0.5, 300, 1000 + i)
    _write(root / "resource" / "lexicon.txt", LEXICON, "\t")
    return root
