"""The comparison table (``asrcomp compare``): one row per model dir.

Columns: model, parameters, bytes on disk (``final.pt``, or the packed ``model.acz``
for a packed model: ``packed_bytes`` in model.yaml), MFLOPs per second of audio,
RTF of TLG decoding, per test set the TLG and greedy WER, then the onnxruntime RTF of TLG decoding
(``RTF (ORT)``: from the ``<model>_onnx`` export beside it, or the ONNX dir itself). Printed and written
as markdown, which ``egs/<corpus>/RESULTS.md`` is generated from.

Then the statistics (:mod:`asrcomp.bootstrap`, 1000 seeded utterance resamples): the
row's parent (the model dir it was made from, among the rows), and per test set the 95 %
bootstrap interval of each WER and, for the TLG WER, the paired bootstrap probability
that the row is worse than its parent and than its baseline, marked ``(worse)`` at
>= 0.95 and ``(better)`` at <= 0.05. Parent and baseline come from model.yaml's
``history``: a stage appends one record to its input's history, so the parent is the row
whose history is this row's minus the last record, and the baseline is the row's
ancestor with the shortest history (the trained model the chain started from; for a model
trained from scratch by distillation, its teacher; else the first row).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from asrcomp.bootstrap import bootstrap_interval, prob_worse, read_utt_stats, speaker_clusters
from asrcomp.datadir import read_table
from asrcomp.modeldir import read_model_yaml
from asrcomp.score import parse_wer_line
from asrcomp.utils import InputError, atomic_open, atomic_path

SIGNIFICANT = 0.95  # P(worse) at or above: significantly worse; at or below 1 - this: significantly better


def model_row(model_dir: Path, sets: list[str]) -> dict:
    """Numbers of one model dir; missing decodes are ``None``."""
    cfg = read_model_yaml(model_dir)
    size = (model_dir / "final.pt").stat().st_size if (model_dir / "final.pt").is_file() else None
    row = {"model": model_dir.name, "params": cfg.get("num_params"), "bytes": cfg.get("packed_bytes") or size,
           "mflops": cfg.get("flops_per_second", 0) / 1e6, "rtf": None, "history": cfg.get("history") or [],
           "dirs": {}}
    for s in sets:
        for d in sorted(model_dir.glob(f"decode_{s}_*")):
            # decode_<set>_greedy, or decode_<set>_<graph> (a recipe may decode with several graphs,
            # e.g. WSJ's tgpr and bd_tgpr: each is its own column; (set, "tlg") is the first)
            graph = d.name[len(f"decode_{s}_"):]
            if graph == "greedy":
                kinds = [(s, "greedy")]
            else:
                kinds = [(s, "tlg", graph)] + ([] if (s, "tlg") in row else [(s, "tlg")])
            # a phone model's greedy output is phones: its decode dir has a token error rate (ter)
            for f in ("wer", "ter"):
                if (d / f).is_file():
                    for key in kinds:
                        row[key] = (f, parse_wer_line((d / f).read_text().splitlines()[0]))
                        row["dirs"][key] = d
            if graph != "greedy" and (d / "rtf").is_file() and row["rtf"] is None:
                row["rtf"] = float(re.match(r"RTF\s+([\d.]+)", (d / "rtf").read_text()).group(1))
    row["rtf_ort"] = ort_rtf(model_dir, cfg, sets)  # an ONNX dir (export-onnx): model.onnx bytes, onnxruntime RTF
    if "onnx" in cfg:
        row["bytes"], row["rtf"] = cfg["onnx"].get("bytes"), None
    return row


def ort_rtf(model_dir: Path, cfg: dict, sets: list[str]) -> float | None:
    """onnxruntime RTF (TLG, one thread, batch 1) of a model dir, for ``asrcomp compare``: an ONNX
    dir's own, else that of the export beside it, ``<model-dir>_onnx`` (``steps/export_onnx.sh``)."""
    d = Path(model_dir) if "onnx" in cfg else Path(model_dir).with_name(Path(model_dir).name + "_onnx")
    for s in sets:
        for dd in sorted(d.glob(f"decode_{s}_*")):
            if not dd.name.endswith("_greedy") and (dd / "rtf").is_file():
                return float(re.match(r"RTF\s+([\d.]+)", (dd / "rtf").read_text()).group(1))
    return None


def _stage_names(history: list) -> list[str]:
    return [str(h.get("stage", "")) if isinstance(h, dict) else "" for h in history]


def relations(rows: list[dict], baseline: str | None = None) -> list[tuple[int | None, int | None]]:
    """``(parent, baseline)`` row indices of each row (None: none among the rows).

    A row made only by training (every history record a ``train`` stage) is a baseline
    and gets neither, unless ``baseline`` names the row every other row is compared with.
    """
    names = [r["model"] for r in rows]
    if baseline is not None and baseline not in names:
        raise InputError("--baseline", f"no row named {baseline!r}", fix=f"one of {', '.join(names)}")
    out = []
    for i, r in enumerate(rows):
        h = r["history"]
        parent = next((j for j, o in enumerate(rows) if j != i and len(h) > 1 and o["history"] == h[:-1]), None)
        if parent is None and h and isinstance(h[-1], dict):  # histories rewritten: the recorded source dir
            src = h[-1].get("source") or h[-1].get("src")
            if src:
                parent = next((j for j, o in enumerate(rows) if j != i and o["model"] == Path(src).name), None)
        ancestors = [j for j, o in enumerate(rows) if j != i and o["history"] and len(o["history"]) < len(h)
                     and h[:len(o["history"])] == o["history"]]
        if baseline is not None:
            base = names.index(baseline) if names.index(baseline) != i else None
        elif all(s == "train" for s in _stage_names(h)):
            base = None
        elif ancestors:
            base = min(ancestors, key=lambda j: len(rows[j]["history"]))
        else:
            teacher = next((x.get("teacher") for x in reversed(h) if isinstance(x, dict) and x.get("teacher")), None)
            base = next((j for j, o in enumerate(rows) if j != i and teacher and o["model"] == Path(teacher).name),
                        0 if i != 0 else None)
        out.append((parent, base))
    return out


def _p_cell(p: float | None) -> str:
    if p is None:
        return "–"
    mark = " (worse)" if p >= SIGNIFICANT else " (better)" if p <= 1 - SIGNIFICANT else ""
    return f"{p:.2f}{mark}"


def _utt_stats(d: Path, cache: dict):
    if d not in cache:
        cache[d] = read_utt_stats(d)
    return cache[d]


def _paired(rows, i: int, j: int | None, key, cache: dict, utt2spk: dict | None) -> float | None:
    if j is None or key not in rows[i]["dirs"] or key not in rows[j]["dirs"]:
        return None
    a, b = (_utt_stats(rows[k]["dirs"][key], cache) for k in (j, i))
    if set(a.utts) != set(b.utts):
        return None  # decoded on different utterance sets: not comparable
    ea, wa, eb, wb = a.aligned_with(b)
    return prob_worse(ea, wa, eb, wb, clusters=None if utt2spk is None else speaker_clusters(a.utts, utt2spk))


LEGEND = ("95% CI: bootstrap interval of the WER over utterances (1000 seeded resamples, percentile; "
          "Bisani & Ney 2004). P(worse than parent / baseline): paired bootstrap probability, on the same "
          "resampled utterances, that the row's TLG WER is above that of the model it was made from / of "
          "the trained model its chain started from; (worse) P >= 0.95, (better) P <= 0.05: the difference "
          "is significant; otherwise it is within the noise of this test set.")
SPEAKER_LEGEND = ("Resampled here are whole speakers, not utterances (the cluster bootstrap): the intervals "
                  "and probabilities also carry the spread between voices, so they are wider than the "
                  "utterance-level ones.")


def compare_table(model_dirs: list[str | os.PathLike], sets: list[str], baseline: str | None = None,
                  legend: bool = False, speakers_from: str | os.PathLike | None = None) -> str:
    """Markdown table comparing model dirs on ``sets`` (e.g. ``["test", "dev"]``).

    ``baseline``: the row (model dir name) every other row's P(worse than baseline) is
    computed against; default: each row's own root (see the module docstring).
    ``legend``: add a paragraph after the table saying what the statistics mean.
    ``speakers_from``: a dir with ``<set>/utt2spk``; the statistics then resample speakers.
    """
    rows = []
    for m in model_dirs:
        m = Path(m)
        if not (m / "model.yaml").is_file():
            raise InputError(m, "not a model dir (model.yaml missing)", fix="train or compress a model into it")
        rows.append(model_row(m, sets))
    # per set, its columns: ("TLG", key) for each graph it was decoded with, then ("greedy", key)
    cols = {}
    for s in sets:
        graphs = sorted({k[2] for r in rows for k in r if isinstance(k, tuple) and len(k) == 3 and k[0] == s})
        cols[s] = [("TLG" if len(graphs) <= 1 else f"TLG {g}", (s, "tlg", g)) for g in graphs] or [("TLG", (s, "tlg"))]
        cols[s].append(("greedy", (s, "greedy")))
    head = ["model", "params", "bytes", "MFLOPs/s audio", "RTF (TLG)"]
    for s in sets:
        head += [f"%WER {s} {name}" for name, _ in cols[s]]
    head += ["RTF (ORT)", "parent"]
    for s in sets:
        head += [f"95% CI {s} {name}" for name, _ in cols[s]]
        for name, _ in cols[s][:-1]:
            head += [f"P(worse than parent) {s} {name}", f"P(worse than baseline) {s} {name}"]
    rel = relations(rows, baseline)
    cache: dict = {}
    spk = {s: read_table(Path(speakers_from) / s / "utt2spk") for s in sets} if speakers_from else {}
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |"]
    for i, r in enumerate(rows):
        cells = [r["model"], f"{r['params']:,}" if r["params"] else "–", f"{r['bytes']:,}" if r["bytes"] else "–",
                 f"{r['mflops']:.1f}", f"{r['rtf']:.4f}" if r["rtf"] is not None else "–"]
        for s in sets:
            for _, key in cols[s]:
                w = r.get(key)
                cells.append("–" if w is None else f"{w[1].wer:.2f}" + (" (PER)" if w[0] == "ter" else ""))
        cells.append(f"{r['rtf_ort']:.4f}" if r.get("rtf_ort") is not None else "–")
        parent, base = rel[i]
        cells.append(rows[parent]["model"] if parent is not None else "–")
        for s in sets:
            for _, key in cols[s]:
                d = r["dirs"].get(key)
                if d is None:
                    cells.append("–")
                    continue
                u = _utt_stats(d, cache)
                clusters = speaker_clusters(u.utts, spk[s], d) if s in spk else None
                ci = bootstrap_interval(u.errors, u.words, clusters=clusters)
                cells.append(f"[{ci.lo:.2f}, {ci.hi:.2f}]")
            for _, key in cols[s][:-1]:
                cells += [_p_cell(_paired(rows, i, j, key, cache, spk.get(s))) for j in (parent, base)]
        lines.append("| " + " | ".join(cells) + " |")
    if legend:
        lines += ["", LEGEND + (" " + SPEAKER_LEGEND if spk else "")]
    return "\n".join(lines) + "\n"


def off_chart(wers: list[float], factor: float = 3.0) -> list[bool]:
    """Which WERs the plot leaves off: above ``factor`` times the median and more than 10 points
    above it (a model that failed, such as a from-scratch twin at 93 %, would otherwise squash
    every other point into one line)."""
    med = float(np.median(wers))
    return [w > factor * med and w > med + 10 for w in wers]


def sweep_plot(model_dirs: list[str | os.PathLike], test_set: str, out_prefix: str | os.PathLike) -> str:
    """``PREFIX.md`` (the comparison table) and ``PREFIX.png`` (TLG %WER on ``test_set`` against bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_prefix = Path(out_prefix)
    table = compare_table(model_dirs, [test_set], legend=True)
    rows = [model_row(Path(m), [test_set]) for m in model_dirs]
    pts = [(r["bytes"], r[(test_set, "tlg")][1].wer, r["model"]) for r in rows if r.get((test_set, "tlg"))]
    if not pts:
        raise InputError(model_dirs[0], f"no decode_{test_set}_* results to plot", fix="decode the models first")
    cis = []
    for r in rows:
        if r.get((test_set, "tlg")):
            u = read_utt_stats(r["dirs"][(test_set, "tlg")])
            ci = bootstrap_interval(u.errors, u.words)
            cis.append((ci.wer - ci.lo, ci.hi - ci.wer))
    off = off_chart([p[1] for p in pts])
    shown = [(p, ci) for p, ci, o in zip(pts, cis, off) if not o]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.errorbar([p[0] / 1e6 for p, _ in shown], [p[1] for p, _ in shown], yerr=np.array([c for _, c in shown]).T,
                fmt="o", capsize=3)
    for (b, w, name), _ in shown:
        ax.annotate(name, (b / 1e6, w), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("model bytes (MB, log scale)")
    ax.set_ylabel(f"%WER {test_set} (TLG, 95% CI)")
    if any(off):
        ax.set_title("off the chart: " + ", ".join(f"{p[2]} {p[1]:.2f}" for p, o in zip(pts, off) if o), fontsize=7)
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
