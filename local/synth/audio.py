"""One utterance to a WAV file: TTS, resampling, silence trimming, room, noise.

Pipeline of :func:`synthesize` (two subprocesses per utterance):

1. espeak-ng (``-v accent+variant -p pitch -s rate``) or flite (``-voice NAME
   --setf duration_stretch=100/rate``) writes a WAV in a temporary directory;
2. sox resamples it to ``sample_rate``, mono, 32-bit float on stdout (``-R -D``:
   repeatable, no dither), applying the flite pitch shift in cents and 6 dB of
   headroom so nothing clips;
3. numpy trims leading/trailing silence to :data:`MARGIN_S` seconds, optionally
   convolves with a seeded synthetic room impulse response
   (:func:`room_impulse_response`) and adds seeded noise at ``snr_db``
   (:func:`add_noise`), scales to :data:`TARGET_RMS_DBFS` (lowering the gain if
   the peak would pass :data:`MAX_PEAK`), quantises to 16 bits and writes the WAV
   atomically.

The room and the noise use independent random streams derived from ``seed``, so
one utterance synthesised with and without noise (same seed) differs exactly by
the added noise, up to a gain and 16-bit rounding.  Same inputs and seed give a
byte-identical file.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, lfilter

from asrcomp.utils import atomic_path
from local.synth.voices import ESPEAK, FLITE, Speaker

#: Silence kept before the first and after the last non-silent 10 ms frame.
MARGIN_S = 0.15
#: A frame is silent when its energy is this far below the loudest frame.
SILENCE_DB = -45.0
#: Fade applied at both ends after trimming (avoids clicks where the cut is not in silence).
FADE_S = 0.01
#: Output level (RMS over the whole trimmed utterance) and peak limit.
TARGET_RMS_DBFS = -24.0
MAX_PEAK = 0.89  # -1 dBFS
#: Room effect: RT60 and direct-to-reverberant ratio ranges.
RT60_RANGE_S = (0.2, 0.5)
DRR_RANGE_DB = (0.0, 8.0)
#: Noise below this frequency is removed (keeps brown noise from being all sub-audio rumble).
NOISE_LOW_HZ = 50.0


def synthesize(speaker: Speaker, text: str, out_path, sample_rate: int = 16000,
               snr_db: float | None = None, room: bool = False, seed: int = 0) -> float:
    """Speak ``text`` with ``speaker`` into a 16-bit mono WAV at ``out_path``; return its duration (s).

    ``room``: convolve with a synthetic impulse response (RT60 drawn from
    :data:`RT60_RANGE_S`).  ``snr_db``: add coloured noise at this SNR (signal
    power over the whole trimmed, reverberant utterance).  Both are drawn from
    ``numpy.random.Generator`` streams seeded by ``seed``.  Raises ValueError for
    empty text and RuntimeError (naming the command and its stderr) when
    espeak-ng, flite or sox fails or the result is silent.
    """
    text = " ".join(str(text).split())
    if not text:
        raise ValueError("cannot synthesise empty text")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        x = render(speaker, text, sample_rate, Path(tmp))
    x = trim_silence(x, sample_rate)
    if x is None:
        raise RuntimeError(f"{speaker.engine} produced silence for speaker {speaker.id}: {text!r}")
    room_rng, noise_rng = _rngs(seed)
    if room:
        x = apply_room(x, sample_rate, room_rng)
    if snr_db is not None:
        x = add_noise(x, snr_db, noise_rng, sample_rate)
    pcm = to_int16(normalise(x))
    with atomic_path(out_path) as tmp_out:
        sf.write(tmp_out, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return len(pcm) / sample_rate


def read_wav(path) -> tuple[np.ndarray, int]:
    """(int16 samples, sample rate) of a WAV file; multi-channel files come back as (frames, channels)."""
    x, sr = sf.read(path, dtype="int16")
    return x, sr


# --------------------------------------------------------------------------- TTS + sox


def engine_command(speaker: Speaker, text_file, wav) -> list[str]:
    """The espeak-ng or flite command that writes ``speaker`` reading ``text_file`` to ``wav``."""
    if speaker.engine == "espeak":
        voice = f"{speaker.voice}+{speaker.variant}" if speaker.variant else speaker.voice
        return [ESPEAK, "-v", voice, "-p", str(speaker.pitch), "-s", str(speaker.rate),
                "-f", str(text_file), "-w", str(wav)]
    if speaker.engine == "flite":
        cmd = [FLITE, "-voice", speaker.voice, "-f", str(text_file), "-o", str(wav)]
        if speaker.rate != 100:
            cmd += ["--setf", f"duration_stretch={100.0 / speaker.rate:.4f}"]
        return cmd
    raise ValueError(f"unknown engine {speaker.engine!r}")


def sox_command(speaker: Speaker, wav, sample_rate: int) -> list[str]:
    """sox: ``wav`` to raw mono float32 at ``sample_rate`` on stdout (+ flite pitch shift)."""
    effects = ["vol", "0.5"]  # headroom: resampling/pitch shifting can overshoot full scale
    if speaker.engine == "flite" and speaker.pitch:
        effects += ["pitch", str(speaker.pitch)]
    effects += ["rate", "-h", str(sample_rate)]
    return ["sox", "-R", "-D", "-V1", str(wav),
            "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(sample_rate), "-",
            *effects]


def render(speaker: Speaker, text: str, sample_rate: int, tmpdir: Path) -> np.ndarray:
    """Untrimmed float64 audio of ``speaker`` reading ``text`` at ``sample_rate`` (files in ``tmpdir``)."""
    text_file = tmpdir / "text.txt"
    text_file.write_text(text + "\n", encoding="utf-8")
    wav = tmpdir / "tts.wav"
    _run(engine_command(speaker, text_file, wav))
    if not wav.exists() or wav.stat().st_size <= 44:
        raise RuntimeError(f"{shlex.join(engine_command(speaker, text_file, wav))} wrote no audio")
    out = _run(sox_command(speaker, wav, sample_rate)).stdout
    return np.frombuffer(out, dtype=np.float32).astype(np.float64)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=300)
    except FileNotFoundError as e:
        raise RuntimeError(f"{shlex.join(cmd)}: {cmd[0]} not found ({e})") from e
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{shlex.join(cmd)}: timed out after {e.timeout} s") from e
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {res.returncode}): {err}")
    return res


# --------------------------------------------------------------------------- signal processing


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    room_ss, noise_ss = np.random.SeedSequence(seed).spawn(2)
    return np.random.Generator(np.random.PCG64(room_ss)), np.random.Generator(np.random.PCG64(noise_ss))


def trim_silence(x: np.ndarray, sr: int, margin_s: float = MARGIN_S,
                 silence_db: float = SILENCE_DB, fade_s: float = FADE_S) -> np.ndarray | None:
    """Keep ``margin_s`` seconds around the non-silent part (zero-padded if the input has less).

    Returns None when everything is silent.
    """
    hop = max(1, int(0.01 * sr))
    n_frames = len(x) // hop
    if n_frames == 0:
        return None
    energy = np.sum(x[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1)
    if energy.max() <= hop * 1e-10:  # below -100 dBFS
        return None
    active = np.flatnonzero(energy > energy.max() * 10 ** (silence_db / 10))
    start, end = active[0] * hop, (active[-1] + 1) * hop
    m = int(round(margin_s * sr))
    lo, hi = start - m, end + m
    y = x[max(lo, 0): min(hi, len(x))]
    y = np.concatenate([np.zeros(max(0, -lo)), y, np.zeros(max(0, hi - len(x)))])
    f = min(int(fade_s * sr), len(y) // 2)
    if f > 0:
        ramp = np.linspace(0.0, 1.0, f, endpoint=False)
        y[:f] *= ramp
        y[len(y) - f:] *= ramp[::-1]
    return y


def room_impulse_response(sr: int, rng: np.random.Generator,
                          rt60_range=RT60_RANGE_S, drr_range_db=DRR_RANGE_DB) -> np.ndarray:
    """A synthetic room: a direct path plus exponentially decaying noise.

    RT60 (the time for a 60 dB decay) and the direct-to-reverberant energy ratio
    are drawn uniformly from the ranges; reflections start after a 2-10 ms
    pre-delay, and high frequencies decay faster (a one-pole low-pass of the tail).
    """
    rt60 = rng.uniform(*rt60_range)
    drr_db = rng.uniform(*drr_range_db)
    predelay = int(rng.uniform(0.002, 0.010) * sr)
    n = max(int(rt60 * sr), predelay + 2)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    # air/wall absorption: smooth the tail a little (one-pole low-pass, coefficient a)
    a = 0.4
    tail = _one_pole(tail, a)
    tail[:predelay] = 0.0
    tail *= np.sqrt(1.0 / (np.sum(tail ** 2) * 10 ** (drr_db / 10)))
    tail[0] = 1.0
    return tail


def _one_pole(x: np.ndarray, a: float) -> np.ndarray:
    return lfilter([1.0 - a], [1.0, -a], x)


def apply_room(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` convolved with :func:`room_impulse_response`, cut to the length of ``x``."""
    h = room_impulse_response(sr, rng)
    return fftconvolve(x, h)[: len(x)]


def coloured_noise(n: int, sr: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Unit-power Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    shape = np.zeros_like(f)
    keep = f >= NOISE_LOW_HZ
    shape[keep] = f[keep] ** (-exponent / 2.0)
    y = np.fft.irfft(spec * shape, n)
    p = np.mean(y ** 2)
    return y / np.sqrt(p) if p > 0 else y


def add_noise(signal: np.ndarray, snr_db: float, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """``signal`` plus a random mix of white, pink and brown noise at ``snr_db``.

    SNR = 10 log10(mean(signal**2) / mean(noise**2)) over the whole signal; the mix
    weights are drawn from a flat Dirichlet distribution.
    """
    signal = np.asarray(signal, dtype=np.float64)
    p_sig = np.mean(signal ** 2) if len(signal) else 0.0
    if p_sig <= 0:
        raise ValueError("cannot add noise at a given SNR to a silent signal")
    w = rng.dirichlet(np.ones(3))
    noise = sum(wi * coloured_noise(len(signal), sr, rng, e) for wi, e in zip(w, (0.0, 1.0, 2.0)))
    noise *= np.sqrt(p_sig / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return signal + noise


def normalise(x: np.ndarray, target_rms_dbfs: float = TARGET_RMS_DBFS, max_peak: float = MAX_PEAK) -> np.ndarray:
    """Scale to ``target_rms_dbfs``, or less if the peak would exceed ``max_peak``."""
    rms = np.sqrt(np.mean(x ** 2))
    peak = np.max(np.abs(x))
    if rms <= 0 or peak <= 0:
        return x
    gain = min(10 ** (target_rms_dbfs / 20) / rms, max_peak / peak)
    return x * gain


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
