"""WER broken down by speaker group (e.g. children / adults), beside the total.

A data dir may carry ``spk2group`` (``<speaker> <group>``, Kaldi's spk2gender shape); every
scored decode dir of that set (``decode_<set>_<graph>``, TLG only) is split by the group of
each utterance's speaker, from the per-utterance counts scoring writes (``utt_stats``), each
with its 95 % bootstrap interval.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from asrcomp.bootstrap import bootstrap_interval, read_utt_stats
from asrcomp.datadir import read_table
from asrcomp.utils import InputError


def utt2group(data_dir: str | os.PathLike) -> dict[str, str]:
    """``{utt: group}`` from a data dir's ``utt2spk`` and ``spk2group``."""
    d = Path(data_dir)
    spk2group = read_table(d / "spk2group")
    out = {}
    for utt, spk in read_table(d / "utt2spk").items():
        if spk not in spk2group:
            raise InputError(d / "spk2group", f"speaker '{spk}' (of '{utt}') has no group", fix="add a line for it")
        out[utt] = spk2group[spk]
    return out


def wer_by_group(decode_dir: str | os.PathLike, groups: dict[str, str]) -> dict[str, tuple[int, int, float, float]]:
    """``{group: (errors, ref words, ci.lo, ci.hi)}`` of a scored decode dir; key ``all`` is the total."""
    s = read_utt_stats(decode_dir)
    missing = [u for u in s.utts if u not in groups]
    if missing:
        raise InputError(decode_dir, f"{len(missing)} scored utterances have no group, e.g. {missing[0]}",
                         fix="score the decode dir against the data dir whose spk2group is given")
    of = np.array([groups[u] for u in s.utts])
    out = {}
    for g in ["all"] + sorted(set(of)):
        keep = np.ones(len(of), bool) if g == "all" else of == g
        ci = bootstrap_interval(s.errors[keep], s.words[keep])
        out[g] = (int(s.errors[keep].sum()), int(s.words[keep].sum()), ci.lo, ci.hi)
    return out


def group_table(model_dirs: list[str | os.PathLike], data_dirs: list[str | os.PathLike]) -> str:
    """Markdown: one row per model dir, per set the total %WER and each group's (TLG decodes)."""
    sets = [(Path(d).name, utt2group(d)) for d in data_dirs]
    names = {s: ["all"] + sorted(set(g.values())) for s, g in sets}
    head = ["model"] + [f"{s} {g}" for s, _ in sets for g in names[s]]
    rows = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for m in model_dirs:
        cells = [Path(m).name]
        for s, groups in sets:
            decodes = [d for d in sorted(Path(m).glob(f"decode_{s}_*"))
                       if not d.name.endswith("_greedy") and (d / "utt_stats").is_file()]
            res = wer_by_group(decodes[0], groups) if decodes else {}
            for g in names[s]:
                if g in res:
                    e, w, lo, hi = res[g]
                    cells.append(f"{100.0 * e / max(w, 1):.2f} [{lo:.1f}, {hi:.1f}]")
                else:
                    cells.append("")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
