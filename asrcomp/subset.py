"""A subset of a Kaldi data dir (Kaldi's ``utils/subset_data_dir.sh``), features and cut manifest included.

The subset is chosen by a speaker list, an utterance list or a seeded random fraction of the
speakers. Speakers are chosen by their *base* id: a speed-perturbed copy ``sp0.9-<spk>`` (see
:mod:`asrcomp.perturb`) goes with ``<spk>``, so every copy of a chosen speaker comes along, and
``train`` and ``train_sp`` give the same base speakers for the same fraction and seed. Where the
speakers have groups (``spk2group``, e.g. child / adult), a fraction is taken within each group
(rounded, at least one speaker per group), so the groups keep their proportions. Within a group
the speakers are shuffled once from ``(seed, group)`` and the first ones taken, so a smaller
fraction with the same seed chooses a subset of a larger one's speakers.

Every table of the source is written filtered, its lines unchanged and in the source's order:
per-utterance tables (``text``, ``utt2spk``, ``wav.scp``, ``feats.scp``, ``segments``, ``utt2*``),
per-speaker tables (``spk2utt`` -- its utterance lists filtered too --, ``cmvn.scp``, ``spk2*``)
and, with ``segments``, per-recording ones (``wav.scp``, ``reco2*``); ``fbank.yaml`` is copied.
The lhotse feature manifest ``feats_cuts.jsonl.gz`` (what training and decoding read, see
:mod:`asrcomp.dataset`) is filtered line by line, so its cuts keep pointing at the same ark
files and keep the source's shuffled order; nothing is copied. A missing or stale source
manifest is left out, and the subset's is then built on first use, as for any data dir.

The subset is built under a temporary name beside ``out`` and renamed into place at the end:
an error leaves nothing half-written. ``out/subset_speakers.txt`` lists the chosen base speakers
and ``out/log/subset.log`` what was kept.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from asrcomp.datadir import read_table
from asrcomp.features import load_fbank_config
from asrcomp.utils import InputError, atomic_path, read_text_lines

log = logging.getLogger(__name__)

SPEED_PREFIX = re.compile(r"^sp[0-9][0-9.]*-")  # asrcomp.perturb.speed_prefix: sp0.9-, sp1.1-
MANIFEST = "feats_cuts.jsonl.gz"  # asrcomp.dataset.CUTS_NAME
MANIFEST_SOURCES = ("feats.scp", "text", "utt2spk", "utt2num_frames", "fbank.yaml")  # asrcomp.dataset.SOURCES
SPEAKERS_FILE = "subset_speakers.txt"
REQUIRED = ("wav.scp", "text", "utt2spk")
COPIED = ("fbank.yaml",)


def base_speaker(spk: str) -> str:
    """The speaker a speed-perturbed copy was made from: ``sp0.9-0001`` -> ``0001``."""
    return SPEED_PREFIX.sub("", spk, count=1)


def choose_speakers(bases, fraction: float, seed: int = 0,
                    groups: dict[str, str] | None = None) -> dict[str, list[str]]:
    """``{group: chosen base speakers}``: ``fraction`` of each group's speakers (rounded half up, at
    least one), seeded; without ``groups`` one group ``""``. The choice depends only on the set of
    speakers, their groups, the fraction and the seed."""
    _check_fraction(fraction)
    by_group: dict[str, list[str]] = {}
    for b in sorted(set(bases)):
        by_group.setdefault(groups[b] if groups else "", []).append(b)
    chosen = {}
    for g, spks in sorted(by_group.items()):
        order = list(spks)
        random.Random(f"{seed}:{g}").shuffle(order)  # a str seed is hashed the same in every process
        n = max(1, math.floor(fraction * len(spks) + 0.5 + 1e-9))
        chosen[g] = sorted(order[:n])
    return chosen


def _check_fraction(fraction: float) -> None:
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise InputError("--speakers-fraction", f"{fraction!r} is not in (0, 1]",
                         fix="give the fraction of the speakers to keep, e.g. 0.5; 1 keeps them all")


@dataclass
class _Count:
    bases: set = field(default_factory=set)
    speakers: set = field(default_factory=set)
    utts: int = 0
    frames: int = 0
    seconds: float = 0.0

    def add(self, base: str, spk: str, frames: int | None, seconds: float | None) -> None:
        self.bases.add(base)
        self.speakers.add(spk)
        self.utts += 1
        self.frames += frames or 0
        self.seconds += seconds or 0.0


@dataclass
class SubsetReport:
    """What a subset kept: the text is what ``out/log/subset.log`` holds."""

    out: Path
    speakers: list[str]  # chosen base speakers, sorted
    utts: list[str]  # kept utterances, in the source's order
    text: str


def subset_data_dir(src: str | os.PathLike, out: str | os.PathLike, *, spk_list: str | os.PathLike | None = None,
                    utt_list: str | os.PathLike | None = None, speakers_fraction: float | None = None,
                    seed: int = 0, spk2group: str | os.PathLike | None = None) -> SubsetReport:
    """Write ``out``: the utterances of ``src`` chosen by exactly one of ``spk_list`` (a file of
    base speakers), ``utt_list`` (a file of utterances) or ``speakers_fraction`` (with ``seed``,
    stratified by the groups of ``spk2group``, default ``src/spk2group`` when present). Returns
    the report also written to ``out/log/subset.log``."""
    src, out = Path(src), Path(out)
    if sum(x is not None for x in (spk_list, utt_list, speakers_fraction)) != 1:
        raise InputError("subset-data-dir", "choose the subset one way",
                         fix="give exactly one of --spk-list, --utt-list and --speakers-fraction")
    if speakers_fraction is not None:
        _check_fraction(speakers_fraction)
    _check_dirs(src, out)

    utt2spk = read_table(src / "utt2spk")
    if not utt2spk:
        raise InputError(src / "utt2spk", "is empty", fix="rerun data preparation")
    spk_of_base: dict[str, list[str]] = {}
    for spk in dict.fromkeys(utt2spk.values()):
        spk_of_base.setdefault(base_speaker(spk), []).append(spk)
    group_file = Path(spk2group) if spk2group is not None else src / "spk2group"
    groups = _base_groups(group_file, spk_of_base) if spk2group is not None or group_file.is_file() else None

    if utt_list is not None:
        listed = _read_list(utt_list, utt2spk, "utterance", src / "utt2spk",
                            "list utterances of the source data dir (the first column of its utt2spk)")
        keep = set(listed)
        chosen = sorted({base_speaker(utt2spk[u]) for u in keep})
        how = f"--utt-list {utt_list}"
    else:
        if spk_list is not None:
            chosen = sorted(set(_read_list(spk_list, spk_of_base, "speaker", src / "utt2spk",
                                           "list speakers of the source data dir (the first column of its "
                                           "spk2utt; a speed copy sp<f>-<spk> stands for <spk>)", base_speaker)))
            how = f"--spk-list {spk_list}"
        else:
            by_group = choose_speakers(spk_of_base, speakers_fraction, seed, groups)
            chosen = sorted(b for bs in by_group.values() for b in bs)
            how = f"--speakers-fraction {speakers_fraction:g} --seed {seed}"
            if groups is not None:
                how += f", stratified by {group_file}"
        chosen_set = set(chosen)
        keep = {u for u, s in utt2spk.items() if base_speaker(s) in chosen_set}
    if not keep:
        raise InputError(utt_list or spk_list, "names no utterance or speaker: the subset would be empty",
                         fix="list at least one id, one a line")
    kept_spks = {utt2spk[u] for u in keep}

    # what is known of each utterance's length, for the report
    frames = _ints(src / "utt2num_frames")
    durs = _floats(src / "utt2dur")
    shift = None
    if frames is not None and (src / "fbank.yaml").is_file():
        shift = load_fbank_config(src).frame_shift_ms / 1000

    with atomic_path(out) as tmp:
        tmp.mkdir()
        tables, left_out = _write_tables(src, tmp, keep, kept_spks)
        for name in COPIED:
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        manifest_note = _write_manifest(src, tmp, keep)  # last: newer than the tables it was made from
        (tmp / SPEAKERS_FILE).write_text("".join(f"{b}\n" for b in chosen), encoding="utf-8")
        utts = [u for u in utt2spk if u in keep]
        text = _report(src, out, how, utt2spk, keep, chosen, groups, frames, durs, shift, tables,
                       manifest_note, left_out)
        (tmp / "log").mkdir()
        (tmp / "log" / "subset.log").write_text(text, encoding="utf-8")
    return SubsetReport(out, chosen, utts, text)


# ----------------------------------------------------------------------------- checks and inputs


def _check_dirs(src: Path, out: Path) -> None:
    if not src.is_dir():
        raise InputError(src, "data dir not found", fix="give an existing data dir as the source")
    for name in REQUIRED:
        if not (src / name).is_file():
            raise InputError(src / name, "missing from the data dir",
                             fix="a data dir needs wav.scp, text and utt2spk; rerun data preparation")
    s, o = src.resolve(), out.resolve()
    if s == o:
        raise InputError(out, "is the source data dir", fix="write the subset to another dir, e.g. data/train_50")
    if o in s.parents:
        raise InputError(out, f"contains the source data dir {src}", fix="write the subset beside the source")
    if out.exists():
        if not out.is_dir():
            raise InputError(out, "exists and is not a directory", fix="remove it or choose another out dir")
        if any(out.iterdir()) and not (out / SPEAKERS_FILE).is_file():
            raise InputError(out, f"exists and was not written by subset-data-dir (no {SPEAKERS_FILE})",
                             fix="remove it or choose another out dir")


def _read_list(path, known, what: str, where: Path, fix: str, normalise=None) -> list[str]:
    """The first field of each non-blank line of a list file, in order; an id not in ``known``
    (after ``normalise``) is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} list not found", fix=f"give a file of {what} ids, one a line")
    ids, bad = [], []
    for lineno, line in enumerate(read_text_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        x = normalise(fields[0]) if normalise else fields[0]
        if x not in known:
            bad.append((lineno, fields[0], x))
        ids.append(x)
    if bad:
        lineno, raw, x = bad[0]
        as_base = f" (base speaker '{x}')" if x != raw else ""
        more = f"; {len(bad) - 1} more lines name unknown {what}s" if len(bad) > 1 else ""
        raise InputError(path, f"{what} '{raw}'{as_base} is not in {where}{more}", lineno, fix)
    return ids


def _base_groups(path: Path, spk_of_base: dict[str, list[str]]) -> dict[str, str]:
    """``{base speaker: group}`` from a ``spk2group`` keyed by base speakers or their speed copies."""
    if not path.is_file():
        raise InputError(path, "speaker groups not found",
                         fix="give a spk2group file (<speaker> <group>), e.g. the unperturbed set's")
    out: dict[str, str] = {}
    for lineno, (spk, g) in enumerate(read_table(path).items(), 1):
        b = base_speaker(spk)
        if out.setdefault(b, g) != g:
            raise InputError(path, f"'{spk}' is in group '{g}' but its base speaker '{b}' is in '{out[b]}'",
                             lineno, "give every speed copy of a speaker its speaker's group")
    missing = [b for b in spk_of_base if b not in out]
    if missing:
        raise InputError(path, f"speaker '{missing[0]}' has no group ({len(missing)} such)",
                         fix=f"add a line '{missing[0]} <group>' for every speaker of the data dir")
    return out


def _ints(path: Path) -> dict[str, int] | None:
    return _numbers(path, int)


def _floats(path: Path) -> dict[str, float] | None:
    return _numbers(path, float)


def _numbers(path: Path, kind) -> dict | None:
    if not path.is_file():
        return None
    out = {}
    for lineno, (k, v) in enumerate(read_table(path).items(), 1):
        try:
            out[k] = kind(v)
        except ValueError:
            raise InputError(path, f"'{k}' has {v!r}, not a number", lineno, "regenerate the table") from None
    return out


# ----------------------------------------------------------------------------- writing


def _kind(name: str, has_segments: bool) -> str | None:
    """What a data dir file is keyed by: utt, spk, reco (with segments), or None (not a table)."""
    if name in ("text", "feats.scp", "segments") or name.startswith("utt2"):
        return "utt"
    if name == "wav.scp":
        return "reco" if has_segments else "utt"
    if name == "cmvn.scp" or name.startswith("spk2"):
        return "spk"
    if name.startswith("reco2"):
        return "reco" if has_segments else "utt"
    return None


def _write_tables(src: Path, tmp: Path, keep: set[str], kept_spks: set[str]) -> tuple[list[str], list[str]]:
    """Write every table of ``src`` filtered into ``tmp``; returns the tables written and the files left out."""
    has_segments = (src / "segments").is_file()
    recos = None
    if has_segments:
        segs = read_table(src / "segments", min_fields=4, max_fields=5)
        recos = {v.split()[0] for u, v in segs.items() if u in keep}
    wanted = {"utt": keep, "spk": kept_spks, "reco": recos}
    tables, left_out = [], []
    for p in sorted(src.iterdir()):
        name = p.name
        if name.startswith(".") or name in COPIED or name in (MANIFEST, SPEAKERS_FILE) or not p.is_file():
            continue  # stage markers, copies, the manifest, dirs (log/)
        kind = _kind(name, has_segments)
        if kind is None:
            left_out.append(name)
            continue
        _filter_table(p, tmp / name, wanted[kind], kind, name == "spk2utt" and keep)
        tables.append(name)
    if left_out:
        log.warning("%s: not a known table, left out of the subset: %s", src, " ".join(left_out))
    return tables, left_out


def _filter_table(path: Path, dst: Path, wanted: set[str], kind: str, utts_of_spk: set[str] | None) -> None:
    """The lines of ``path`` whose key is wanted, unchanged and in order; every wanted key must be
    there once. ``utts_of_spk``: spk2utt, its utterance lists filtered too."""
    seen: set[str] = set()
    with open(dst, "w", encoding="utf-8") as f:
        for lineno, line in enumerate(read_text_lines(path), 1):
            fields = line.split()
            if not fields:
                raise InputError(path, "empty line", lineno, "remove it")
            key = fields[0]
            if key in seen:
                raise InputError(path, f"duplicate key '{key}'", lineno, "keys must be unique")
            if key not in wanted:
                continue
            seen.add(key)
            if utts_of_spk:
                line = " ".join([key] + [u for u in fields[1:] if u in utts_of_spk])
            f.write(line + "\n")
    missing = [k for k in wanted if k not in seen]
    if missing:
        what = {"utt": "utterance", "spk": "speaker", "reco": "recording"}[kind]
        raise InputError(path, f"{what} '{sorted(missing)[0]}' of the subset is not in it ({len(missing)} such)",
                         fix=f"give every {what} of the source a line, or remove the table "
                             "(Kaldi's utils/fix_data_dir.sh)")


def _write_manifest(src: Path, tmp: Path, keep: set[str]) -> str:
    """Filter the source's cut manifest into ``tmp``, line by line; returns a note for the report."""
    path = src / MANIFEST
    if not path.is_file():
        return f"{MANIFEST}: none in the source; built on first use"
    t = path.stat().st_mtime_ns
    newer = [s for s in MANIFEST_SOURCES if (src / s).is_file() and (src / s).stat().st_mtime_ns > t]
    if newer:
        return f"{MANIFEST}: the source's is older than its {' '.join(newer)}; built on first use"
    seen: set[str] = set()
    total = 0
    out = tmp / MANIFEST
    with gzip.open(path, "rt", encoding="utf-8") as f, gzip.open(out, "wt", encoding="utf-8", compresslevel=1) as g:
        for line in _manifest_lines(path, f):
            total += 1
            try:
                cut_id = json.loads(line)["id"]
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(path, f"not a cut ({e})", total, f"remove {path}: it is rebuilt on first use") from e
            if cut_id in keep:
                if cut_id in seen:
                    raise InputError(path, f"cut '{cut_id}' is there twice", total,
                                     f"remove {path}: it is rebuilt on first use")
                seen.add(cut_id)
                g.write(line)
    if seen != keep:
        out.unlink()
        return (f"{MANIFEST}: the source's lacks {len(keep - seen)} kept utterances (does not match its tables); "
                "built on first use")
    return f"{MANIFEST}: {len(seen)} of {total} cuts"


def _manifest_lines(path: Path, f):
    try:
        yield from f
    except (OSError, EOFError, UnicodeDecodeError) as e:  # a truncated or corrupt gzip
        raise InputError(path, f"cannot be read ({e})", fix=f"remove {path}: it is rebuilt on first use") from e


def _report(src, out, how, utt2spk, keep, chosen, groups, frames, durs, shift, tables, manifest_note,
            left_out) -> str:
    def count(utts) -> _Count:
        c = _Count()
        for u in utts:
            s = utt2spk[u]
            c.add(base_speaker(s), s, frames.get(u) if frames else None, durs.get(u) if durs else None)
        return c

    def line(kept: _Count, all_: _Count) -> str:
        s = (f"{len(kept.bases)} of {len(all_.bases)} base speakers ({len(kept.speakers)} of "
             f"{len(all_.speakers)} speakers), {kept.utts} of {all_.utts} utterances")
        if frames is not None:
            s += f", {kept.frames} of {all_.frames} frames"
        if shift is not None:
            s += f" ({kept.frames * shift / 3600:.2f} of {all_.frames * shift / 3600:.2f} h)"
        elif durs is not None:
            s += f", {kept.seconds / 3600:.2f} of {all_.seconds / 3600:.2f} h"
        return s

    kept_utts = [u for u in utt2spk if u in keep]
    lines = [f"subset of {src} in {out}: {how}", f"kept: {line(count(kept_utts), count(utt2spk))}"]
    if groups is not None:
        group_of = {u: groups[base_speaker(s)] for u, s in utt2spk.items()}
        for g in sorted(set(group_of.values())):
            kept_g = count(u for u in kept_utts if group_of[u] == g)
            lines.append(f"  group {g}: {line(kept_g, count(u for u in utt2spk if group_of[u] == g))}")
    copied = [n for n in COPIED if (src / n).is_file()]
    lines.append(f"tables: {' '.join(tables)}" + (f"; copied: {' '.join(copied)}" if copied else ""))
    lines.append(manifest_note)
    if left_out:
        lines.append(f"left out (not a known table): {' '.join(left_out)}")
    lines.append(f"base speakers ({len(chosen)}, {out / SPEAKERS_FILE}): {' '.join(chosen)}")
    return "".join(ln + "\n" for ln in lines)
