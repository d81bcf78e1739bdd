"""The comparison table (``asrcomp compare``): one row per model dir.

Columns: model, parameters, bytes of ``final.pt``, MFLOPs per second of audio,
RTF of TLG decoding, and per test set the TLG and greedy WER. Printed and written
as markdown, which ``egs/<corpus>/RESULTS.md`` is generated from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asrcomp.score import parse_wer_line
from asrcomp.utils import InputError


def model_row(model_dir: Path, sets: list[str]) -> dict:
    """Numbers of one model dir; missing decodes are ``None``."""
    from asrcomp.modeldir import read_model_yaml

    cfg = read_model_yaml(model_dir)
    row = {"model": model_dir.name, "params": cfg.get("num_params"),
           "bytes": (model_dir / "final.pt").stat().st_size if (model_dir / "final.pt").is_file() else None,
           "mflops": cfg.get("flops_per_second", 0) / 1e6, "rtf": None}
    for s in sets:
        for d in sorted(model_dir.glob(f"decode_{s}_*")):
            kind = "greedy" if d.name.endswith("_greedy") else "tlg"
            # a phone model's greedy output is phones: its decode dir has a token error rate (ter)
            for f in ("wer", "ter"):
                if (d / f).is_file():
                    row[(s, kind)] = (f, parse_wer_line((d / f).read_text().splitlines()[0]))
            if kind == "tlg" and (d / "rtf").is_file() and row["rtf"] is None:
                row["rtf"] = float(re.match(r"RTF\s+([\d.]+)", (d / "rtf").read_text()).group(1))
    return row


def compare_table(model_dirs: list[str | os.PathLike], sets: list[str]) -> str:
    """Markdown table comparing model dirs on ``sets`` (e.g. ``["test", "dev"]``)."""
    rows = []
    for m in model_dirs:
        m = Path(m)
        if not (m / "model.yaml").is_file():
            raise InputError(m, "not a model dir (model.yaml missing)", fix="train or compress a model into it")
        rows.append(model_row(m, sets))
    head = ["model", "params", "final.pt bytes", "MFLOPs/s audio", "RTF (TLG)"]
    for s in sets:
        head += [f"%WER {s} TLG", f"%WER {s} greedy"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |"]
    for r in rows:
        cells = [r["model"], f"{r['params']:,}" if r["params"] else "–", f"{r['bytes']:,}" if r["bytes"] else "–",
                 f"{r['mflops']:.1f}", f"{r['rtf']:.4f}" if r["rtf"] is not None else "–"]
        for s in sets:
            for kind in ("tlg", "greedy"):
                w = r.get((s, kind))
                cells.append("–" if w is None else f"{w[1].wer:.2f}" + (" (PER)" if w[0] == "ter" else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
