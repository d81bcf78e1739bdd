"""speechocean762 (OpenSLR 101) -> Kaldi data dirs ``train``, ``dev``, ``test`` + lhotse manifests.

    python -m local.speechocean762.data_prep --corpus-dir /corpora/speechocean762 data/default
    python -m local.speechocean762.data_prep --download --corpus-dir downloads data/default   # online

The corpus ships Kaldi-style ``train/`` and ``test/`` directories (``wav.scp``, ``text``,
``utt2spk``, ``spk2age``, ``spk2gender``; tab- or space-separated; ``wav.scp`` paths relative
to the corpus root), 125 speakers each, and ``resource/lexicon.txt`` (CMUdict phones with
stress, several pronunciations per word). WAVs in ``WAVE/`` that no ``wav.scp`` lists are
ignored (counted in the log).

Writes ``<out>/{train,dev,test}/`` (wav.scp with absolute paths, text, utt2spk, spk2utt,
spk2age, spk2gender, spk2group), ``<out>/manifests/speechocean762_<set>_*.jsonl.gz``,
``<out>/local/lexicon.txt`` (the corpus lexicon, Kaldi format), ``<out>/local/vocab.txt``
(its words: a closed vocabulary, as WSJ's 5k/20k tasks) and ``<out>/local/lm_text.txt`` (the
``train`` transcripts only: never dev or test text).

- Utterance ids are ``<speaker>-<corpus id>`` (Kaldi wants them prefixed by the speaker).
- ``dev`` holds out ``--dev-speakers`` training speakers, half children and half adults
  (a speaker is a child when younger than ``--child-age``; the corpus has none aged 16-18),
  chosen with ``--seed``; never a test speaker.
- Everything is read and checked before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import random
import shlex
import shutil
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from asrcomp.datadir import write_data_dir, write_lhotse_manifests, write_table
from asrcomp.lang import read_lexicon
from asrcomp.utils import InputError, atomic_open, atomic_path, read_text_lines, run_command, setup_logging

log = logging.getLogger("local.speechocean762.data_prep")

URL = "https://www.openslr.org/resources/101/speechocean762.tar.gz"
SETS = ("train", "test")


@dataclass
class CorpusSet:
    """One of the corpus's own sets, with speaker-prefixed utterance ids and absolute audio paths."""

    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    spk2age: dict[str, int]
    spk2gender: dict[str, str]


def read_corpus_table(path: Path, what: str) -> dict[str, tuple[str, int]]:
    """``{key: (value, line number)}`` of a tab- or space-separated two-column file."""
    if not path.is_file():
        raise InputError(path, f"{what} not found", fix="give --corpus-dir the unpacked speechocean762 directory")
    out: dict[str, tuple[str, int]] = {}
    for lineno, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise InputError(path, f"expected 'key<TAB>value', got {line!r}", lineno, "re-extract the corpus")
        if parts[0] in out:
            raise InputError(path, f"'{parts[0]}' appears twice (first on line {out[parts[0]][1]})", lineno)
        out[parts[0]] = (" ".join(parts[1].split()), lineno)
    return out


def read_corpus_set(corpus_dir: Path, name: str) -> CorpusSet:
    d = corpus_dir / name
    wav = read_corpus_table(d / "wav.scp", f"{name}/wav.scp")
    text = read_corpus_table(d / "text", f"{name}/text")
    utt2spk = read_corpus_table(d / "utt2spk", f"{name}/utt2spk")
    age = read_corpus_table(d / "spk2age", f"{name}/spk2age")
    gender = read_corpus_table(d / "spk2gender", f"{name}/spk2gender")
    for path, table in ((d / "text", text), (d / "utt2spk", utt2spk)):
        for utt, (_, lineno) in table.items():
            if utt not in wav:
                raise InputError(path, f"utterance '{utt}' is not in {d / 'wav.scp'}", lineno)
    s = CorpusSet({}, {}, {}, {}, {})
    for utt, (rel, lineno) in wav.items():
        if utt not in text or utt not in utt2spk:
            raise InputError(d / "wav.scp", f"utterance '{utt}' has no {'text' if utt not in text else 'speaker'}",
                             lineno, f"add it to {name}/{'text' if utt not in text else 'utt2spk'} or drop the line")
        audio = (corpus_dir / rel).resolve()
        if not audio.is_file():
            raise InputError(d / "wav.scp", f"audio file {audio} of '{utt}' not found", lineno,
                             "re-extract the corpus (WAVE/ must sit beside train/ and test/)")
        spk = utt2spk[utt][0]
        if spk not in age or spk not in gender:
            raise InputError(d / ("spk2age" if spk not in age else "spk2gender"), f"speaker '{spk}' missing",
                             fix="re-extract the corpus")
        uid = f"{spk}-{utt}"
        s.wav_scp[uid], s.text[uid], s.utt2spk[uid] = str(audio), text[utt][0].upper(), spk
    for spk in set(s.utt2spk.values()):
        a, lineno = age[spk]
        if not a.isdigit():
            raise InputError(d / "spk2age", f"age of '{spk}' is not a number: {a!r}", lineno)
        s.spk2age[spk], s.spk2gender[spk] = int(a), gender[spk][0]
    return s


def group_of(age: int, child_age: int) -> str:
    return "child" if age < child_age else "adult"


def choose_dev_speakers(train: CorpusSet, n: int, child_age: int, seed: int) -> list[str]:
    """``n`` training speakers, half children and half adults (``n // 2`` children), seeded."""
    rng = random.Random(seed)
    chosen = []
    for group, k in (("child", n // 2), ("adult", n - n // 2)):
        pool = sorted(s for s, a in train.spk2age.items() if group_of(a, child_age) == group)
        if len(pool) <= k:
            raise InputError("--dev-speakers", f"{n} dev speakers need more than {k} {group} speakers in train, "
                             f"which has {len(pool)}", fix="choose fewer dev speakers")
        chosen += rng.sample(pool, k)
    return sorted(chosen)


def write_set(out_dir: Path, name: str, s: CorpusSet, spks: set[str], child_age: int) -> int:
    utts = sorted(u for u, spk in s.utt2spk.items() if spk in spks)
    d = write_data_dir(out_dir / name, {u: s.wav_scp[u] for u in utts}, {u: s.text[u] for u in utts},
                       {u: s.utt2spk[u] for u in utts})
    write_table(d.path / "spk2age", {k: str(s.spk2age[k]) for k in spks})
    write_table(d.path / "spk2gender", {k: s.spk2gender[k] for k in spks})
    write_table(d.path / "spk2group", {k: group_of(s.spk2age[k], child_age) for k in spks})
    write_lhotse_manifests(d, out_dir / "manifests", f"speechocean762_{name}")
    groups = sorted(group_of(s.spk2age[k], child_age) for k in spks)
    log.info("%s: %d utterances, %d speakers (%d children, %d adults)", name, len(utts), len(spks),
             groups.count("child"), groups.count("adult"))
    return len(utts)


def download(target: Path) -> Path:
    """Fetch and unpack the OpenSLR 101 tarball into ``target`` (skipped when already there)."""
    corpus = target / "speechocean762"
    if (corpus / "resource" / "lexicon.txt").is_file():
        return corpus
    target.mkdir(parents=True, exist_ok=True)
    tgz = target / "speechocean762.tar.gz"
    if not tgz.is_file():
        log.info("downloading %s", URL)
        with atomic_path(tgz) as tmp:
            with urllib.request.urlopen(URL) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
    with atomic_path(corpus) as tmp:
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp.parent / f".unpack_{corpus.name}", filter="data")
        (tmp.parent / f".unpack_{corpus.name}" / "speechocean762").rename(tmp)
        shutil.rmtree(tmp.parent / f".unpack_{corpus.name}")
    return corpus


def prepare(corpus_dir: Path, out_dir: Path, dev_speakers: int = 12, child_age: int = 16,
            seed: int = 0) -> dict[str, int]:
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if not corpus_dir.is_dir():
        raise InputError(corpus_dir, "speechocean762 directory not found",
                         fix="give --corpus-dir the directory holding train/ test/ resource/ WAVE/, "
                             "or add --download true when online")
    sets = {name: read_corpus_set(corpus_dir, name) for name in SETS}
    lexicon_path = corpus_dir / "resource" / "lexicon.txt"
    if not lexicon_path.is_file():
        raise InputError(lexicon_path, "the corpus lexicon is missing", fix="re-extract the corpus")
    lexicon = read_lexicon(lexicon_path)  # checks every line has a pronunciation
    shared = set(sets["train"].spk2age) & set(sets["test"].spk2age)
    if shared:
        raise InputError(corpus_dir / "test" / "utt2spk", f"speakers in both train and test: {sorted(shared)[:5]}")
    listed = {Path(p).name for s in sets.values() for p in s.wav_scp.values()}
    unlisted = [p for p in (corpus_dir / "WAVE").rglob("*") if p.suffix.upper() == ".WAV" and p.name not in listed]
    if unlisted:
        log.info("%d WAVs under %s are in no wav.scp (ignored), e.g. %s", len(unlisted), corpus_dir / "WAVE",
                 unlisted[0].name)
    dev = set(choose_dev_speakers(sets["train"], dev_speakers, child_age, seed))
    counts = {
        "train": write_set(out_dir, "train", sets["train"], set(sets["train"].spk2age) - dev, child_age),
        "dev": write_set(out_dir, "dev", sets["train"], dev, child_age),
        "test": write_set(out_dir, "test", sets["test"], set(sets["test"].spk2age), child_age),
    }
    local = out_dir / "local"
    local.mkdir(parents=True, exist_ok=True)
    with atomic_open(local / "lexicon.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{w} {' '.join(p)}\n" for w, p in lexicon)
    train_text = [t for u, t in sorted(sets["train"].text.items()) if sets["train"].utt2spk[u] not in dev]
    with atomic_open(local / "lm_text.txt", "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in train_text)
    vocab = {w for w, _ in lexicon}
    with atomic_open(local / "vocab.txt", "w", encoding="utf-8") as f:
        f.writelines(w + "\n" for w in sorted(vocab))
    train_words = {w for t in train_text for w in t.split()}
    for name in ("dev", "test"):
        s = sets["train" if name == "dev" else "test"]
        words = [w for u, t in s.text.items() if (s.utt2spk[u] in dev) == (name == "dev") for w in t.split()]
        log.info("%s: %d words, %.2f%% outside the lexicon, %.2f%% not in the LM text (train transcripts)",
                 name, len(words), 100.0 * sum(w not in vocab for w in words) / len(words),
                 100.0 * sum(w not in train_words for w in words) / len(words))
    log.info("lexicon %s: %d entries, %d words; LM text: %d train sentences", lexicon_path, len(lexicon),
             len(vocab), len(train_text))
    return counts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", required=True, help="the unpacked corpus (or where --download puts it)")
    p.add_argument("--download", action="store_true", help="fetch the OpenSLR 101 tarball first (online)")
    p.add_argument("--dev-speakers", type=int, default=12, help="training speakers held out as dev")
    p.add_argument("--child-age", type=int, default=16, help="speakers younger than this are children")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-file", dest="log")
    p.add_argument("out_dir")
    a = p.parse_args(argv)
    setup_logging(a.log)
    log.info("python -m local.speechocean762.data_prep %s", shlex.join(argv))

    def go():
        corpus = download(Path(a.corpus_dir)) if a.download else Path(a.corpus_dir)
        return prepare(corpus, Path(a.out_dir), a.dev_speakers, a.child_age, a.seed)
    return run_command(go)


if __name__ == "__main__":
    sys.exit(main())
