"""Speed perturbation of a data dir (Kaldi's ``utils/data/perturb_data_dir_speed_3way.sh``).

Each factor ``f`` gives a copy of every utterance played ``f`` times as fast: sox's ``speed``
effect changes tempo and pitch together (formants move as with a shorter or longer vocal
tract) and resamples back to the original rate. Copies other than ``f = 1`` get utterance and
speaker ids prefixed ``sp<f>-``, so each perturbed speaker has its own CMVN stats; ``wav.scp``
entries become ``sox ... |`` pipes that ``make_fbank`` runs, so no audio is written. The
per-speaker tables (``spk2gender``, ``spk2age``, ``spk2group``) follow each copy's speaker ids, as
Kaldi's script does for ``spk2gender``, so results by group and stratified subsets still work.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from asrcomp.datadir import DataDir, read_data_dir, read_table, write_data_dir, write_table

# per-speaker tables copied to every speed copy's speaker
SPEAKER_TABLES = ("spk2gender", "spk2age", "spk2group")


def speed_prefix(factor: float) -> str:
    """Id prefix of a perturbed copy, Kaldi's spelling: 0.9 -> ``sp0.9-``; 1.0 -> no prefix."""
    return "" if factor == 1.0 else f"sp{factor:g}-"


# -R -D: sox dithers its 16-bit output with a fresh random seed on every run (Kaldi's pipes do
# too), so each feature extraction of a speed copy read other samples and a rerun of a recipe
# trained on other data; -R fixes sox's seeds, -D drops the dither (as local/synth/audio.py)
SOX = "sox -R -D"


def speed_perturbed_spec(spec: str, factor: float) -> str:
    """A ``wav.scp`` value (a file, or a ``cmd |`` pipe) played ``factor`` times as fast, the
    same samples on every read."""
    if factor == 1.0:
        return spec
    if spec.rstrip().endswith("|"):
        return f"{spec.rstrip()} {SOX} -t wav - -t wav - speed {factor:g} |"
    return f"{SOX} {shlex.quote(spec)} -t wav - speed {factor:g} |"


def perturb_data_dir_speed(src: str | os.PathLike, dst: str | os.PathLike,
                           factors: list[float]) -> DataDir:
    """Write ``dst``: the utterances of ``src`` once per speed factor (wav.scp, text, utt2spk, spk2utt,
    and those of :data:`SPEAKER_TABLES` that ``src`` has).

    Factors must be distinct and positive; include 1.0 to keep the original audio (3-way:
    ``[0.9, 1.0, 1.1]``). Features are not copied: run ``make_fbank`` on ``dst``.
    """
    factors = [float(f) for f in factors]
    if not factors or any(f <= 0 for f in factors) or len(set(factors)) != len(factors):
        raise ValueError(f"speed factors must be distinct and positive, got {factors}")
    data = read_data_dir(src)
    wav_scp, text, utt2spk = {}, {}, {}
    for f in factors:
        p = speed_prefix(f)
        for utt in data.utts:
            wav_scp[p + utt] = speed_perturbed_spec(data.wav_scp[utt], f)
            text[p + utt] = data.text[utt]
            utt2spk[p + utt] = p + data.utt2spk[utt]
    out = write_data_dir(dst, wav_scp, text, utt2spk)
    for name in SPEAKER_TABLES:
        if (Path(src) / name).is_file():
            table = read_table(Path(src) / name)
            write_table(Path(dst) / name, {speed_prefix(f) + spk: v for f in factors for spk, v in table.items()})
    return out
