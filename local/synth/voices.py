"""The speakers of the synthetic corpus: which TTS voices work here, and how to draw and split speakers.

A *speaker* is one fixed voice setting: engine, voice (espeak-ng accent or flite
voice), espeak-ng variant, pitch and rate.  Speakers are built on top of the voices
that actually work on this machine, discovered once per process by
:func:`discover_voices`:

* espeak-ng accents: every English voice from ``espeak-ng --voices=en`` (en-gb,
  en-us, en-gb-scotland, en-gb-x-rp, ...).  The ``mb-*`` (mbrola) voices are
  listed too but need the non-free ``mbrola`` binary and voice data, which Debian
  does not ship; the probe finds they fail and they are skipped with a warning.
* espeak-ng variants: every ``espeak-ng --voices=variant`` entry (m1..m8, f1..f5,
  klatt*, croak, ...) plus the plain voice (no variant), probed on one accent.
  Variants are skipped when the probe fails or is silent, when their output is
  byte-identical to the plain voice (no effect, e.g. ``fast``) or to another
  variant (e.g. ``klatt`` = ``klatt6`` = ``caleb``; the first by name is kept), or
  when they are whispered (see :data:`MIN_VOICED_FRACTION`).
* flite voices: every voice from ``flite -lv`` whose probe sentence comes out with
  a plausible duration.  ``awb_time`` is a limited-domain talking-clock voice: an
  ordinary 9-word sentence comes out as ~0.5 s of garbled unit fragments, so it
  is skipped.  ``kal`` is 8 kHz; audio is resampled later anyway.

Speaker ids are Kaldi-safe and all of one shape,
``{engine}-{voice}-{variant}-p{pitch}-s{rate}``, e.g. ``esp-en-us-m3-p45-s160``
and ``fl-slt-none-p+150-s105``, so that sorting groups speakers by engine, voice
and variant, and no id is a prefix of another.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
FLITE = "flite"

#: Sentence used to probe every voice (9 words; ~3 s from any working voice).
PROBE_TEXT = "the quick brown fox jumps over the lazy dog"
#: A probe shorter than this (seconds of audio above the silence threshold) is
#: unusable: awb_time gives ~0.5 s, every working voice gives >= 2.4 s.
MIN_PROBE_SECONDS = 1.5
#: Whispered variants are skipped.  Measured on the probe sentence with en-us, the
#: fraction of active 40 ms frames with a normalised autocorrelation peak > 0.5 in
#: the 50-500 Hz pitch range is 0.00 for ``whisper`` and 0.01 for ``whisperf``,
#: while every other variant is >= 0.23 (creaky ones: Demonic 0.23, grandpa 0.28,
#: croak 0.31, robosoft 0.32; modal ones 0.5-0.9).  Whispered speech carries no F0
#: or harmonics at all: as 2 of ~90 base voices it is a different speaking mode,
#: not a different speaker, and holding one out to a test set would make that
#: set's WER measure the unseen mode rather than the model being compressed.
MIN_VOICED_FRACTION = 0.1

#: Variant placeholder in speaker ids (espeak plain voice, or flite).
NO_VARIANT = "none"
#: flite voices that are another sampling of the same recorded speaker.
FLITE_BASE = {"kal16": "kal", "awb_time": "awb"}

#: Ranges that speakers' pitch and rate are drawn from.
ESPEAK_PITCH = (25, 75)  # espeak-ng -p, 0..99, default 50
ESPEAK_RATE = (135, 205)  # espeak-ng -s, words per minute, default 175
FLITE_PITCH_CENTS = (-150, 150)  # sox pitch shift, step 10 cents; +-3 semitones was unnatural
FLITE_RATE = (88, 115)  # speaking rate in % of natural (duration_stretch = 100/rate)


@dataclass(frozen=True)
class Speaker:
    """One fixed voice setting.

    ``pitch``: espeak-ng ``-p`` (0..99), or for flite a pitch shift in cents applied
    with sox (0 = none).  ``rate``: espeak-ng ``-s`` in words per minute, or for
    flite the speaking rate in percent of natural (100 = natural), applied as
    ``--setf duration_stretch=100/rate``.
    """

    id: str
    engine: str  # "espeak" | "flite"
    voice: str  # espeak-ng accent (-v) or flite voice name
    variant: str  # espeak-ng variant, "" for none / flite
    pitch: int
    rate: int

    def __post_init__(self):
        if self.engine not in ("espeak", "flite"):
            raise ValueError(f"unknown engine {self.engine!r} (expected 'espeak' or 'flite')")
        if not self.id or re.search(r"\s", self.id):
            raise ValueError(f"speaker id {self.id!r} is empty or contains whitespace")

    @property
    def base_voice(self) -> str:
        """The whole-voice identity used for holding voices out of training.

        For espeak-ng the variant (the formant/voice-quality setting, shared across
        accents), e.g. ``esp-m3`` or ``esp-none`` for the plain voice; for flite the
        recorded speaker, e.g. ``fl-slt`` (``kal16`` and ``kal`` are both ``fl-kal``).
        """
        if self.engine == "espeak":
            return f"esp-{_safe(self.variant) if self.variant else NO_VARIANT}"
        return f"fl-{FLITE_BASE.get(self.voice, self.voice)}"


def speaker_id(engine: str, voice: str, variant: str, pitch: int, rate: int) -> str:
    """The Kaldi-safe id of a speaker (see the module docstring for the shape)."""
    var = _safe(variant) if variant else NO_VARIANT
    if engine == "espeak":
        return f"esp-{_safe(voice)}-{var}-p{pitch:02d}-s{rate:03d}"
    if engine == "flite":
        return f"fl-{_safe(voice)}-{var}-p{pitch:+04d}-s{rate:03d}"
    raise ValueError(f"unknown engine {engine!r}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class VoiceInventory:
    """What works on this machine (all tuples sorted)."""

    espeak_accents: tuple[str, ...]  # values for espeak-ng -v, e.g. "en-us"
    espeak_variants: tuple[str, ...]  # "" = plain voice, else a variant name for "+name"
    flite_voices: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (voice, reason)


def _run_listing(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        log.warning("cannot list voices with %s: %s", " ".join(cmd), e)
        return ""
    if res.returncode != 0:
        log.warning("%s failed (exit %d): %s", " ".join(cmd), res.returncode, res.stderr.strip())
        return ""
    return res.stdout


# Pty Language Age/Gender VoiceName File [Other languages]; File may contain a space
# ("!v/Mr serious"), so it is everything up to the optional "(lang prio)" groups.
_ESPEAK_LINE = re.compile(r"^\s*\d+\s+(\S+)\s+\S+\s+\S+\s+(.+?)\s*((\(\S+ \d+\)\s*)*)$")


def list_espeak_accents() -> list[str]:
    """``-v`` values of the English voices in ``espeak-ng --voices=en`` (unprobed).

    Built-in voices are named by language code (``en-gb-x-rp``), mbrola voices by
    their voice file (``mb-en1``) because several share a language code.
    """
    names = set()
    for line in _run_listing([ESPEAK, "--voices=en"]).splitlines()[1:]:
        m = _ESPEAK_LINE.match(line)
        if not m:
            continue
        lang, file = m.group(1), m.group(2)
        if lang == "variant":  # e.g. Storm, also listed by --voices=variant
            continue
        if file.startswith("mb/"):
            names.add(file.split("/", 1)[1])
        elif lang.startswith("en"):
            names.add(lang)
    return sorted(names)


def list_espeak_variants() -> list[str]:
    """Variant names (for ``-v accent+name``) from ``espeak-ng --voices=variant`` (unprobed)."""
    names = set()
    for line in _run_listing([ESPEAK, "--voices=variant"]).splitlines()[1:]:
        m = _ESPEAK_LINE.match(line)
        if m and m.group(2).startswith("!v/"):
            names.add(m.group(2)[3:])
    return sorted(names)


def list_flite_voices() -> list[str]:
    """Voices from ``flite -lv`` (unprobed)."""
    out = _run_listing([FLITE, "-lv"])
    m = re.search(r"Voices available:(.*)", out)
    return sorted(set(m.group(1).split())) if m else []


@dataclass
class _Probe:
    name: str
    ok: bool
    reason: str = ""
    digest: str = ""
    active_s: float = 0.0
    voiced: float = 0.0


def _probe(cmd: list[str], name: str, wav: Path) -> _Probe:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return _Probe(name, False, f"probe failed: {e}")
    if res.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
        err = res.stderr.strip().splitlines()
        if "mbrola" in res.stderr.lower():
            why = "needs the mbrola binary and voice data, which are not installed (Debian lacks mbrola)"
        else:
            why = err[-1] if err else "no audio"
        return _Probe(name, False, f"synthesis failed (exit {res.returncode}): {why}")
    try:
        x, sr = sf.read(wav, dtype="float64", always_2d=True)
    except Exception as e:  # noqa: BLE001 - any unreadable output means the voice is unusable
        return _Probe(name, False, f"unreadable output: {e}")
    x = x[:, 0]
    active_s, voiced = measure_speech(x, sr)
    digest = hashlib.sha1(np.round(x * 32768).astype(np.int32).tobytes()).hexdigest()
    if active_s == 0.0:
        return _Probe(name, False, "produced silence", digest)
    if active_s < MIN_PROBE_SECONDS:
        return _Probe(name, False,
                      f"only {active_s:.2f} s of audio for the {len(PROBE_TEXT.split())}-word probe "
                      f"sentence (< {MIN_PROBE_SECONDS} s: limited-domain voice?)", digest, active_s)
    return _Probe(name, True, "", digest, active_s, voiced)


def measure_speech(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(seconds of non-silent audio, voiced fraction of the non-silent 40 ms frames)."""
    flen, hop = int(0.04 * sr), int(0.01 * sr)
    if len(x) < flen or not np.any(x):
        return 0.0, 0.0
    idx = np.arange(flen)[None, :] + hop * np.arange((len(x) - flen) // hop + 1)[:, None]
    frames = x[idx]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(frames ** 2, axis=1)
    active = energy > energy.max() * 10 ** (-50 / 10)
    if energy.max() < flen * 1e-8:  # below ~-80 dBFS everywhere: silence
        return 0.0, 0.0
    fr = frames[active]
    spec = np.fft.rfft(fr, n=2 * flen, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :flen]
    lo, hi = int(sr / 500), min(int(sr / 50), flen - 1)
    peak = ac[:, lo:hi].max(axis=1) / np.maximum(ac[:, 0], 1e-12)
    voiced = float(np.mean(peak > 0.5))
    first, last = np.flatnonzero(active)[[0, -1]]
    return (last - first) * hop / sr + flen / sr, voiced


def _flite_probes(voices, tmp: Path, text_file: Path):
    for v in voices:
        wav = tmp / f"fl-{_safe(v)}.wav"
        yield [FLITE, "-voice", v, "-f", str(text_file), "-o", str(wav)], v, wav


def _espeak_probes(names, tmp: Path, text_file: Path, tag: str):
    for v in names:
        wav = tmp / f"esp-{tag}-{_safe(v)}.wav"
        yield [ESPEAK, "-v", v, "-f", str(text_file), "-w", str(wav)], v, wav


def _run_probes(jobs) -> list[_Probe]:
    jobs = list(jobs)
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=max(2, min(8, 2 * (os.cpu_count() or 1)))) as ex:
        return list(ex.map(lambda j: _probe(*j), jobs))


@functools.lru_cache(maxsize=None)
def discover_voices() -> VoiceInventory:
    """Probe every English espeak-ng accent and variant and every flite voice (cached per process).

    Each voice synthesises :data:`PROBE_TEXT`; voices that fail, are silent, are
    implausibly short, duplicate another voice or are whispered are skipped, with
    one ``logging`` warning per reason.  Takes ~2 s on 2 cores.
    """
    skipped: list[tuple[str, str]] = []
    accents: list[str] = []
    variants: list[str] = []
    flite: list[str] = []
    with tempfile.TemporaryDirectory(prefix="voice-probe-") as d:
        tmp = Path(d)
        text_file = tmp / "probe.txt"
        text_file.write_text(PROBE_TEXT + "\n", encoding="utf-8")

        have_espeak = shutil.which(ESPEAK) is not None
        have_flite = shutil.which(FLITE) is not None
        if not have_espeak:
            log.warning("%s not found: no espeak-ng speakers", ESPEAK)
        if not have_flite:
            log.warning("%s not found: no flite speakers", FLITE)

        acc_names = list_espeak_accents() if have_espeak else []
        fl_names = list_flite_voices() if have_flite else []
        n_acc = len(acc_names)
        probes = _run_probes([*_espeak_probes(acc_names, tmp, text_file, "acc"),
                              *_flite_probes(fl_names, tmp, text_file)])
        acc_probes, fl_probes = probes[:n_acc], probes[n_acc:]

        seen: dict[str, str] = {}
        for p in acc_probes:
            if not p.ok:
                skipped.append((f"espeak-ng {p.name}", p.reason))
            elif p.digest in seen:
                skipped.append((f"espeak-ng {p.name}", f"identical output to {seen[p.digest]}"))
            else:
                seen[p.digest] = p.name
                accents.append(p.name)
        for p in fl_probes:
            if p.ok:
                flite.append(p.name)
            else:
                skipped.append((f"flite {p.name}", p.reason))

        if accents:
            host = "en-us" if "en-us" in accents else accents[0]
            plain = next(p for p in acc_probes if p.name == host)
            var_names = list_espeak_variants()
            var_probes = _run_probes(_espeak_probes([f"{host}+{v}" for v in var_names], tmp, text_file, "var"))
            seen = {plain.digest: "the plain voice"}
            variants.append("")
            for v, p in zip(var_names, var_probes):
                label = f"espeak-ng variant {v}"
                if not p.ok:
                    skipped.append((label, p.reason))
                elif p.digest in seen:
                    skipped.append((label, f"identical output to {seen[p.digest]} (no distinct voice)"))
                elif p.voiced < MIN_VOICED_FRACTION:
                    skipped.append((label, f"whispered: voiced fraction {p.voiced:.2f} < {MIN_VOICED_FRACTION}"))
                else:
                    seen[p.digest] = f"variant {v}"
                    variants.append(v)

    by_reason: dict[str, list[str]] = defaultdict(list)
    for name, reason in skipped:  # one warning per reason, e.g. all mbrola voices together
        by_reason[reason].append(name)
    for reason, names in by_reason.items():
        log.warning("skipping %s: %s", ", ".join(names), reason)
    return VoiceInventory(tuple(sorted(accents)), tuple(sorted(variants)), tuple(sorted(flite)),
                          tuple(skipped))


# --------------------------------------------------------------------------- speakers


def make_speakers(n: int, seed: int, *, flite_fraction: float = 0.2,
                  inventory: VoiceInventory | None = None) -> list[Speaker]:
    """``n`` distinct speakers drawn deterministically from the working voices, sorted by id.

    About ``flite_fraction`` of them are flite speakers, spread round-robin over the
    flite base voices (kal/kal16 count as one); the rest are espeak-ng speakers
    spread round-robin over the variants (each used once before any is reused) and,
    independently, over the accents.  Pitch and rate are drawn uniformly per speaker
    from :data:`ESPEAK_PITCH`/:data:`ESPEAK_RATE` or
    :data:`FLITE_PITCH_CENTS`/:data:`FLITE_RATE`.  ``inventory`` defaults to
    :func:`discover_voices`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= flite_fraction <= 1.0:
        raise ValueError(f"flite_fraction must be in [0, 1], got {flite_fraction}")
    inv = inventory if inventory is not None else discover_voices()
    have_esp = bool(inv.espeak_accents and inv.espeak_variants)
    have_fl = bool(inv.flite_voices)
    if n and not (have_esp or have_fl):
        raise ValueError("no working espeak-ng or flite voice on this machine (see the warnings)")
    rng = random.Random(seed)

    if not have_fl:
        n_fl = 0
    elif not have_esp:
        n_fl = n
    else:
        n_fl = round(n * flite_fraction)
        if n >= 4 and 0 < flite_fraction < 1:  # room for >= 2 flite base voices and some espeak
            n_fl = min(max(n_fl, 2), n - 2)
    n_esp = n - n_fl

    speakers: dict[str, Speaker] = {}

    def add(engine, voice, variant, draw):
        for _ in range(1000):
            pitch, rate = draw()
            sid = speaker_id(engine, voice, variant, pitch, rate)
            if sid not in speakers:
                speakers[sid] = Speaker(sid, engine, voice, variant, pitch, rate)
                return
        raise ValueError(f"cannot draw another distinct speaker for {engine} {voice} {variant}")

    # flite: round-robin over base voices, and over the voices of each base voice
    groups: dict[str, list[str]] = defaultdict(list)
    for v in inv.flite_voices:
        groups[FLITE_BASE.get(v, v)].append(v)
    bases = sorted(groups)
    rng.shuffle(bases)
    members = {b: sorted(groups[b]) for b in bases}
    for b in bases:
        rng.shuffle(members[b])
    for i in range(n_fl):
        b = bases[i % len(bases)]
        v = members[b][(i // len(bases)) % len(members[b])]
        add("flite", v, "", lambda: (rng.randrange(FLITE_PITCH_CENTS[0], FLITE_PITCH_CENTS[1] + 1, 10),
                                     rng.randint(*FLITE_RATE)))

    # espeak: every variant once before any twice; accents cycle, shifted each round
    variants = list(inv.espeak_variants)
    accents = list(inv.espeak_accents)
    rng.shuffle(variants)
    rng.shuffle(accents)
    for i in range(n_esp):
        var = variants[i % len(variants)]
        acc = accents[(i + i // len(variants)) % len(accents)]
        add("espeak", acc, var, lambda: (rng.randint(*ESPEAK_PITCH), rng.randint(*ESPEAK_RATE)))

    return sorted(speakers.values(), key=lambda s: s.id)


def split_speakers(speakers, n_dev: int, n_test: int, seed: int, test_flite: str | None = None,
                   dev_flite: bool = True) -> dict[str, list[Speaker]]:
    """Split speakers into train/dev/test by holding out whole base voices.

    Policy:

    * Speakers are grouped by :attr:`Speaker.base_voice`; a group is never split,
      so dev and test voices are unseen in training (and dev and test are disjoint).
    * test gets one whole flite base voice (chosen at random among those with at
      most ``n_test`` speakers, else the smallest), dev gets another one if at
      least three flite base voices exist (so training keeps one); then both are
      filled with whole espeak-ng (or remaining) base voices, drawn at random, up
      to ``n_test`` / ``n_dev`` speakers.  Group sizes can make a set slightly
      larger than asked, never smaller.
    * train gets every remaining speaker and must keep at least one base voice of
      each engine present.

    ``test_flite`` names the flite base voice test holds out (e.g. ``"fl-kal"``) instead
    of a random one; ``dev_flite=False`` keeps flite voices out of dev, so train keeps
    more of them (egs/synth holds out a male flite voice whose neighbours are in train:
    holding out slt, the only female flite voice, made test mostly a gender mismatch).

    Deterministic given ``seed``; each list is sorted by id.  Raises ValueError
    when the request cannot be met: duplicate ids, fewer than two flite base
    voices, ``n_test < 1``, ``n_dev < 0``, not enough base voices to fill dev and
    test, or nothing (or no engine) left for train.
    """
    speakers = list(speakers)
    if n_test < 1 or n_dev < 0:
        raise ValueError(f"need n_test >= 1 and n_dev >= 0, got n_test={n_test}, n_dev={n_dev}")
    ids = [s.id for s in speakers]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate speaker ids in the input")
    groups: dict[str, list[Speaker]] = defaultdict(list)
    for s in sorted(speakers, key=lambda s: s.id):
        groups[s.base_voice].append(s)
    engine_of = {b: g[0].engine for b, g in groups.items()}
    fl_bases = sorted(b for b in groups if engine_of[b] == "flite")
    if len(fl_bases) < 2:
        raise ValueError(
            f"too few voices to split: test must hold out a whole flite voice and train must keep "
            f"one, but the speakers use {len(fl_bases)} flite base voice(s) {fl_bases}; "
            f"draw more speakers (make_speakers with a larger n or flite_fraction)")
    if n_dev + n_test >= len(speakers):
        raise ValueError(f"too few speakers ({len(speakers)}) for n_dev={n_dev} + n_test={n_test} "
                         f"with any left for train")

    rng = random.Random(seed)
    free = sorted(groups)
    rng.shuffle(free)

    def pick_flite() -> str:
        cands = [b for b in free if engine_of[b] == "flite"]
        return min(cands, key=lambda b: len(groups[b]))  # ties: shuffled order

    def fill(chosen: list[str], target: int, name: str) -> None:
        have = sum(len(groups[b]) for b in chosen)
        for b in list(free):
            if have >= target:
                break
            if engine_of[b] == "espeak" and len(groups[b]) <= target - have:
                chosen.append(b)
                free.remove(b)
                have += len(groups[b])
        while have < target:  # nothing fits exactly: overshoot with the smallest group left
            left = {e: sum(engine_of[c] == e for c in free) for e in ("espeak", "flite")}
            rest = [b for b in free if left[engine_of[b]] > 1]  # keep one of each engine for train
            if not rest:
                raise ValueError(f"too few voices: cannot hold out {target} {name} speakers "
                                 f"as whole base voices and keep voices of every engine for train")
            b = min(rest, key=lambda b: (engine_of[b] != "espeak", len(groups[b])))
            chosen.append(b)
            free.remove(b)
            have += len(groups[b])

    test_b: list[str] = []
    if test_flite is not None:
        if test_flite not in fl_bases:
            raise ValueError(f"test_flite={test_flite!r} is not a flite base voice of these speakers: {fl_bases}")
        b = test_flite
    else:
        fits = [b for b in free if engine_of[b] == "flite" and len(groups[b]) <= n_test]
        b = fits[0] if fits else pick_flite()
    test_b.append(b)
    free.remove(b)
    dev_b: list[str] = []
    if dev_flite and n_dev > 0 and len(fl_bases) >= 3:
        fits = [b for b in free if engine_of[b] == "flite" and len(groups[b]) <= n_dev]
        b = fits[0] if fits else pick_flite()
        dev_b.append(b)
        free.remove(b)
    fill(test_b, n_test, "test")
    fill(dev_b, n_dev, "dev")

    for engine in sorted(set(engine_of.values())):
        if not any(engine_of[b] == engine for b in free):
            raise ValueError(f"too few voices: no {engine} base voice left for train after holding "
                             f"out {n_dev} dev and {n_test} test speakers")

    def collect(bases):
        return sorted((s for b in bases for s in groups[b]), key=lambda s: s.id)

    return {"train": collect(free), "dev": collect(dev_b), "test": collect(test_b)}
