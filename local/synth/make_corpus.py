"""Generate the embedded synthetic corpus: Kaldi data dirs + lhotse manifests + LM text.

    python -m local.synth.make_corpus --config conf/quick.yaml --nj 2 data

writes ``data/{train,dev,test}/`` (wav.scp, text, utt2spk, spk2utt, utt2dur),
``data/manifests/synth_<set>_{recordings,supervisions,cuts}.jsonl.gz``,
``data/local/lm_text.txt`` (LM training text: no dev or test sentence occurs in it),
``data/local/vocab.txt`` (the grammar's words) and the audio under ``data/wav/``.

Everything derives from the config's seed; an utterance's audio depends only on
its own id, speaker and text, so a rerun after an interruption resumes and
gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import shlex
import sys
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import yaml

from asrcomp.datadir import write_data_dir, write_lhotse_manifests, write_table
from asrcomp.utils import atomic_open, options_from_dict, run_command, setup_logging
from local.synth import grammar
from local.synth.audio import synthesize
from local.synth.voices import Speaker, make_speakers, split_speakers

log = logging.getLogger("local.synth.make_corpus")

SETS = ("train", "dev", "test")


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 1234
    sample_rate: int = 16000
    n_train_speakers: int = 64
    n_dev_speakers: int = 8
    n_test_speakers: int = 12
    utts_per_train_speaker: int = 60
    utts_per_dev_speaker: int = 25
    utts_per_test_speaker: int = 25
    lm_extra_sentences: int = 20000  # grammar sentences added to the train transcripts for the LM
    noise_prob: float = 0.5  # fraction of utterances with additive noise
    snr_db_min: float = 10.0
    snr_db_max: float = 30.0
    room_prob: float = 0.3  # fraction of utterances with the room effect
    test_flite_voice: str | None = None  # flite base voice held out for test (None: drawn by seed)
    dev_flite: bool = True  # dev also holds out a flite voice

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CorpusConfig":
        d = yaml.safe_load(Path(path).read_text()) or {}
        return options_from_dict(cls, d.get("corpus", d), path, "corpus")


@dataclass(frozen=True)
class UttJob:
    utt: str
    speaker: Speaker
    text: str
    wav: Path
    snr_db: float | None
    room: bool
    seed: int
    sample_rate: int


def utt_seed(seed: int, utt: str) -> int:
    """A per-utterance seed independent of processing order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{utt}".encode()).digest()[:4], "little")


def plan_corpus(cfg: CorpusConfig, wav_dir: Path) -> tuple[dict[str, list[UttJob]], list[str]]:
    """Decide every utterance (speaker, text, effects) and the LM text; nothing is synthesised."""
    rng = random.Random(cfg.seed)
    n_spk = cfg.n_train_speakers + cfg.n_dev_speakers + cfg.n_test_speakers
    split = split_speakers(make_speakers(n_spk, cfg.seed), cfg.n_dev_speakers, cfg.n_test_speakers, cfg.seed,
                           test_flite=cfg.test_flite_voice, dev_flite=cfg.dev_flite)
    per_spk = {"train": cfg.utts_per_train_speaker, "dev": cfg.utts_per_dev_speaker,
               "test": cfg.utts_per_test_speaker}
    n_held = sum(len(split[s]) * per_spk[s] for s in ("dev", "test"))
    n_train = len(split["train"]) * per_spk["train"]
    # Draw from one stream; held-out sentences are unique and never reused for train or the LM.
    pool = grammar.generate_sentences(4 * (n_held + n_train) + cfg.lm_extra_sentences, cfg.seed)
    held_out: list[str] = []
    seen: set[str] = set()
    it = iter(pool)
    for s in it:
        if s not in seen:
            seen.add(s)
            held_out.append(s)
            if len(held_out) == n_held:
                break
    rest = [s for s in it if s not in seen]
    train_sents = rest[:n_train]
    lm_text = rest[n_train:n_train + cfg.lm_extra_sentences]
    if len(train_sents) < n_train:
        raise RuntimeError("grammar produced too few sentences for the requested corpus size")

    jobs: dict[str, list[UttJob]] = {}
    queues = {"train": iter(train_sents), "held": iter(held_out)}
    for name in SETS:
        q = queues["train" if name == "train" else "held"]
        jobs[name] = []
        for spk in sorted(split[name], key=lambda s: s.id):
            for i in range(per_spk[name]):
                utt = f"{spk.id}-{i:04d}"
                noisy = rng.random() < cfg.noise_prob
                snr = round(rng.uniform(cfg.snr_db_min, cfg.snr_db_max), 1) if noisy else None
                room = rng.random() < cfg.room_prob
                text, seed = next(q), utt_seed(cfg.seed, utt)
                # the name carries a digest of everything that shapes the audio, so a resumed run
                # after a config change never reuses a file made for another text or voice
                key = hashlib.sha256(f"{spk.id}|{text}|{snr}|{room}|{seed}|{cfg.sample_rate}".encode())
                wav = wav_dir / name / spk.id / f"{utt}-{key.hexdigest()[:8]}.wav"
                jobs[name].append(UttJob(utt, spk, text, wav, snr, room, seed, cfg.sample_rate))
    lm_sentences = [j.text for j in jobs["train"]] + lm_text
    held = {j.text for n in ("dev", "test") for j in jobs[n]}
    assert not held & set(lm_sentences), "a held-out sentence leaked into the LM text"
    return jobs, lm_sentences


def _synth(job: UttJob) -> tuple[str, float]:
    if job.wav.is_file():  # written atomically, so an existing file is complete
        import soundfile as sf

        return job.utt, sf.info(str(job.wav)).duration
    job.wav.parent.mkdir(parents=True, exist_ok=True)
    dur = synthesize(job.speaker, job.text, job.wav, sample_rate=job.sample_rate, snr_db=job.snr_db,
                     room=job.room, seed=job.seed)
    return job.utt, dur


def make_corpus(cfg: CorpusConfig, out_dir: str | os.PathLike, nj: int = 2) -> dict[str, float]:
    """Synthesise the corpus into ``out_dir``; returns hours of audio per set."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    jobs, lm_sentences = plan_corpus(cfg, out_dir / "wav")
    all_jobs = [j for n in SETS for j in jobs[n]]
    durations: dict[str, float] = {}
    with get_context("fork").Pool(nj) as pool, \
            tqdm(total=len(all_jobs), desc="synthesising", unit="utt", mininterval=5) as bar:
        for utt, dur in pool.imap_unordered(_synth, all_jobs, chunksize=4):
            durations[utt] = dur
            bar.update()
    hours = {}
    for name in SETS:
        js = jobs[name]
        d = write_data_dir(out_dir / name, {j.utt: str(j.wav.resolve()) for j in js},
                           {j.utt: j.text for j in js}, {j.utt: j.speaker.id for j in js})
        write_table(out_dir / name / "utt2dur", {j.utt: f"{durations[j.utt]:.3f}" for j in js})
        write_lhotse_manifests(d, out_dir / "manifests", f"synth_{name}")
        hours[name] = sum(durations[j.utt] for j in js) / 3600
        log.info("%s: %d utterances, %d speakers, %.2f h", name, len(js), len(d.spk2utt), hours[name])
    (out_dir / "local").mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "local" / "lm_text.txt", "w") as f:
        f.writelines(s + "\n" for s in lm_sentences)
    with atomic_open(out_dir / "local" / "vocab.txt", "w") as f:
        f.writelines(w + "\n" for w in grammar.vocabulary())
    with atomic_open(out_dir / "local" / "speakers.yaml", "w") as f:
        spk = {n: sorted({j.speaker.id for j in jobs[n]}) for n in SETS}
        yaml.safe_dump({"hours": {k: round(v, 3) for k, v in hours.items()}, "speakers": spk}, f)
    return hours


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML with a 'corpus:' section")
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--log-file", dest="log", help="also log to this file")
    p.add_argument("out_dir")
    a = p.parse_args(argv)
    setup_logging(a.log)
    log.info("python -m local.synth.make_corpus %s", shlex.join(argv))
    return run_command(lambda: make_corpus(CorpusConfig.load(a.config), a.out_dir, a.nj))


if __name__ == "__main__":
    sys.exit(main())
