"""Kaldi data directories: read, validate, write; lhotse manifests beside them.

A data dir holds ``wav.scp`` (utt -> wav path), ``text`` (utt -> words),
``utt2spk``, ``spk2utt`` and, once features exist, ``feats.scp`` (+ ``cmvn.scp``).
Every reader checks its input and names the file and line of the first problem.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from asrcomp.utils import InputError, atomic_open, read_text_lines

log = logging.getLogger(__name__)


def read_table(path: str | os.PathLike, *, min_fields: int = 2, max_fields: int | None = 2,
               allow_empty_value: bool = False) -> dict[str, str]:
    """Read a Kaldi table file ``key value...`` into ``{key: value}``, in file order.

    The value is the rest of the line after the first whitespace. Raises
    :class:`InputError` naming the line for a malformed line, a duplicate key
    or (unless ``allow_empty_value``) an empty value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    table: dict[str, str] = {}
    for lineno, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            raise InputError(path, "empty line", lineno, "remove it")
        parts = line.split(maxsplit=1)
        key = parts[0]
        value = parts[1].strip() if len(parts) > 1 else ""
        n = 1 + len(value.split()) if value else 1
        if not value and not allow_empty_value:
            raise InputError(path, f"'{key}' has no value", lineno,
                             "give every key a value, or remove the line")
        if (n < min_fields and value) or (max_fields is not None and n > max_fields):
            want = f"{min_fields}" if max_fields == min_fields else f"{min_fields}..{max_fields or 'N'}"
            raise InputError(path, f"expected {want} fields, got {n}", lineno)
        if key in table:
            raise InputError(path, f"duplicate key '{key}'", lineno, "keys must be unique")
        table[key] = value
    return table


def write_table(path: str | os.PathLike, table: dict[str, str], sort: bool = True) -> None:
    """Write ``{key: value}`` as ``key value`` lines (sorted by key, Kaldi's order), atomically."""
    keys = sorted(table) if sort else list(table)
    with atomic_open(path, "w", encoding="utf-8") as f:
        for k in keys:
            f.write(f"{k} {table[k]}\n")


@dataclass
class DataDir:
    """An in-memory Kaldi data dir. ``wav_scp`` values are paths or ``cmd |`` pipes."""

    path: Path
    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    feats_scp: dict[str, str] = field(default_factory=dict)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for utt in sorted(self.utt2spk):
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return out

    @property
    def utts(self) -> list[str]:
        return sorted(self.utt2spk)


def read_data_dir(path: str | os.PathLike, need_features: bool = False) -> DataDir:
    """Load and validate a Kaldi data dir.

    Checks that ``wav.scp``, ``text`` and ``utt2spk`` exist, that every utterance
    has audio, a non-empty transcript and a speaker, and (``need_features``)
    that ``feats.scp`` covers every utterance.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "data dir not found")
    for name in ("wav.scp", "text", "utt2spk"):
        if not (path / name).is_file():
            raise InputError(path / name, "missing from the data dir",
                             fix="a data dir needs wav.scp, text and utt2spk; rerun data preparation")
    wav_scp = read_table(path / "wav.scp", max_fields=None)
    text = read_table(path / "text", max_fields=None)
    utt2spk = read_table(path / "utt2spk")
    _check_same_keys(path / "text", text, path / "utt2spk", utt2spk)
    _check_same_keys(path / "wav.scp", wav_scp, path / "utt2spk", utt2spk)
    for utt, spk in utt2spk.items():
        if not utt.startswith(spk):
            # Kaldi sorts on utt ids and expects them to sort with speakers.
            raise InputError(path / "utt2spk", f"utterance '{utt}' does not start with its speaker id '{spk}'",
                             _line_of(path / "utt2spk", utt), "prefix utterance ids with the speaker id")
    feats: dict[str, str] = {}
    if need_features:
        fp = path / "feats.scp"
        if not fp.is_file():
            raise InputError(fp, "features are missing",
                             fix="run the feature stage first (steps/make_fbank.sh)")
        feats = read_table(fp)
        missing = [u for u in utt2spk if u not in feats]
        if missing:
            raise InputError(fp, f"{len(missing)} utterances have no features, e.g. '{missing[0]}'",
                             fix="rerun steps/make_fbank.sh on this data dir")
    elif (path / "feats.scp").is_file():
        feats = read_table(path / "feats.scp")
    return DataDir(path, wav_scp, text, utt2spk, feats)


def write_data_dir(path: str | os.PathLike, wav_scp: dict[str, str], text: dict[str, str],
                   utt2spk: dict[str, str]) -> DataDir:
    """Write ``wav.scp``, ``text``, ``utt2spk`` and ``spk2utt``; validate before writing."""
    path = Path(path)
    if set(wav_scp) != set(text) or set(text) != set(utt2spk):
        raise ValueError(f"{path}: wav.scp, text and utt2spk must have the same utterances")
    for utt, words in text.items():
        if not words.strip():
            raise ValueError(f"{path}: empty transcript for '{utt}'")
    path.mkdir(parents=True, exist_ok=True)
    d = DataDir(path, dict(wav_scp), dict(text), dict(utt2spk))
    write_table(path / "wav.scp", d.wav_scp)
    write_table(path / "text", d.text)
    write_table(path / "utt2spk", d.utt2spk)
    write_table(path / "spk2utt", {s: " ".join(u) for s, u in d.spk2utt.items()})
    return d


def write_lhotse_manifests(data: DataDir, out_dir: str | os.PathLike, prefix: str,
                           pipe_sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write lhotse recordings/supervisions/cuts (``<prefix>_*.jsonl.gz``) for a data dir.

    A wav.scp file entry is probed by lhotse; a ``cmd |`` pipe becomes a lhotse ``command``
    source, whose ``(num_samples, sample_rate)`` must be in ``pipe_sizes`` (a pipe cannot be
    probed without running it). Each file is written to a temp name, then renamed. Returns the
    cuts manifest path.
    """
    from lhotse import AudioSource, CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings, supervisions = [], []
    for utt in data.utts:
        src = data.wav_scp[utt].rstrip()
        if src.endswith("|"):
            if not pipe_sizes or utt not in pipe_sizes:
                raise InputError(data.path / "wav.scp", f"'{utt}' is a pipe; lhotse manifests need files",
                                 _line_of(data.path / "wav.scp", utt))
            n, sr = pipe_sizes[utt]
            rec = Recording(id=utt, sources=[AudioSource(type="command", channels=[0], source=src[:-1].strip())],
                            sampling_rate=sr, num_samples=n, duration=n / sr)
        else:
            try:
                rec = Recording.from_file(src, recording_id=utt)
            except Exception as e:  # soundfile's message alone does not name our file
                raise InputError(data.path / "wav.scp", f"cannot read audio '{src}' for '{utt}': {e}",
                                 _line_of(data.path / "wav.scp", utt), "regenerate or fix the path") from e
        recordings.append(rec)
        supervisions.append(SupervisionSegment(id=utt, recording_id=utt, start=0.0, duration=rec.duration,
                                               channel=0, text=data.text[utt], speaker=data.utt2spk[utt],
                                               language="English"))
    recs = RecordingSet.from_recordings(recordings)
    sups = SupervisionSet.from_segments(supervisions)
    # one cut per utterance, named after it (lhotse would append an index)
    cuts = CutSet.from_cuts(c.with_id(c.recording_id) for c in CutSet.from_manifests(recordings=recs,
                                                                                     supervisions=sups))
    paths = {name: out_dir / f"{prefix}_{name}.jsonl.gz" for name in ("recordings", "supervisions", "cuts")}
    for name, manifest in (("recordings", recs), ("supervisions", sups), ("cuts", cuts)):
        tmp = paths[name].with_name(f".tmp_{paths[name].name}")
        manifest.to_file(tmp)
        os.replace(tmp, paths[name])
    return paths["cuts"]


def _check_same_keys(path_a: Path, a: dict, path_b: Path, b: dict) -> None:
    only_a = [k for k in a if k not in b]
    if only_a:
        raise InputError(path_a, f"utterance '{only_a[0]}' is not in {path_b.name}"
                         f" ({len(only_a)} such)", _line_of(path_a, only_a[0]),
                         f"make {path_a.name} and {path_b.name} list the same utterances")
    only_b = [k for k in b if k not in a]
    if only_b:
        raise InputError(path_b, f"utterance '{only_b[0]}' is not in {path_a.name}"
                         f" ({len(only_b)} such)", _line_of(path_b, only_b[0]),
                         f"make {path_a.name} and {path_b.name} list the same utterances")


def _line_of(path: Path, key: str) -> int | None:
    """1-based line number of ``key`` in a table file, for error messages."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.split(maxsplit=1)[:1] == [key]:
                return lineno
    return None
