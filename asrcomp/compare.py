"""The comparison table (``asrcomp compare``): one row per model dir.

Columns: model, parameters, bytes on disk (``final.pt``, or the packed ``model.acz``
for a packed model: ``packed_bytes`` in model.yaml), MFLOPs per second of audio,
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
    size = (model_dir / "final.pt").stat().st_size if (model_dir / "final.pt").is_file() else None
    row = {"model": model_dir.name, "params": cfg.get("num_params"), "bytes": cfg.get("packed_bytes") or size,
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
    head = ["model", "params", "bytes", "MFLOPs/s audio", "RTF (TLG)"]
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


def sweep_plot(model_dirs: list[str | os.PathLike], test_set: str, out_prefix: str | os.PathLike) -> str:
    """``PREFIX.md`` (the comparison table) and ``PREFIX.png`` (TLG %WER on ``test_set`` against bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asrcomp.utils import atomic_open, atomic_path

    out_prefix = Path(out_prefix)
    table = compare_table(model_dirs, [test_set])
    rows = [model_row(Path(m), [test_set]) for m in model_dirs]
    pts = [(r["bytes"], r[(test_set, "tlg")][1].wer, r["model"]) for r in rows if r.get((test_set, "tlg"))]
    if not pts:
        raise InputError(model_dirs[0], f"no decode_{test_set}_* results to plot", fix="decode the models first")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot([p[0] / 1e6 for p in pts], [p[1] for p in pts], "o")
    for b, w, name in pts:
        ax.annotate(name, (b / 1e6, w), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("model bytes (MB, log scale)")
    ax.set_ylabel(f"%WER {test_set} (TLG)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_prefix.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    with atomic_open(out_prefix.with_suffix(".md"), "w") as f:
        f.write(table)
    print(table, end="")
    return table
