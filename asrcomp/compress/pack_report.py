"""``pack_report.tsv``: what each Deep Compression step and each entropy coder spends per tensor.

Rows from the statistics :func:`asrcomp.compress.pack_format.encode_state` returns, plus a
header row, a bpe.model row and a TOTAL row; see :func:`report_rows` for the columns.
"""

from __future__ import annotations

from asrcomp.utils import atomic_open


REPORT_COLS = ["tensor", "kind", "shape", "params", "bits", "sparsity", "fp32_B", "pruned_B", "quant_B",
               "huffman_B", "ans_B", "coder", "bits_per_weight", "idx_entropy_bits", "idx_huffman_bits",
               "idx_ans_bits", "gap_bits", "gap_entropy_bits", "gap_huffman_bits", "gap_ans_bits",
               "huffman_over_entropy", "ans_over_entropy", "table_B"]


def report_rows(stats: list[dict], file_bytes: int, head_bytes: int, tokens_bytes: int, pay_bpe: int,
                coder: str = "huffman"):
    """One row per tensor plus header/total rows, bytes after each Deep Compression step.

    pruned_B: the paper's sparse estimate (32-bit value + gap_bits relative index per stored
    entry, fillers included); quant_B: fixed-width ``bits`` indices + gap indices + fp32
    codebook; huffman_B / ans_B: the tensor with each entropy coder (streams, codebook and
    the coder's tables: Huffman's code lengths and block offsets, ANS's symbol counts as
    varints). ``coder`` names the one the file uses: in the TOTAL row its
    column is the file's size, the other coder's is that size with the other streams and
    tables (the JSON header taken as equal). ``*_over_entropy``: index + gap stream bits
    over their zero-order entropy; table_B: the file's coder's tables. In the TOTAL row the
    idx_* bit columns hold index + gap streams together. The ANS streams
    share one stack, whose final state (<= 64 bits) is counted in the header row.
    """
    rows = []
    have_ans = any("idx_ans_bits" in s for s in stats if s["kind"] == "quant")
    for s in stats:
        n = s["params"]
        r = {c: "" for c in REPORT_COLS}
        r.update(tensor=s["tensor"], kind=s["kind"], shape=s["shape"], params=n, fp32_B=s["fp32_B"])
        if s["kind"] == "quant":
            gs, g = s.get("gap_symbols", 0), s.get("gap_bits", 0)
            nnz = round(n * (1 - s["sparsity"]))
            pruned = (gs * (32 + g) + 7) // 8 if g else 4 * n
            quant = ((nnz if g else n) * s["bits"] + gs * g + 7) // 8 + s["codebook_B"]
            keys = ["idx"] + (["gap"] if g else [])
            ent = sum(s[f"{k}_entropy_bits"] for k in keys)
            hb = sum(s[f"{k}_huffman_bits"] for k in keys)
            htab = sum(s[f"{k}_huffman_table_B"] for k in keys)
            huff = sum((s[f"{k}_huffman_bits"] + 7) // 8 for k in keys) + s["codebook_B"] + htab
            r.update(bits=s["bits"], sparsity=s["sparsity"], pruned_B=pruned, quant_B=quant, huffman_B=huff,
                     coder=coder, idx_entropy_bits=s["idx_entropy_bits"], idx_huffman_bits=s["idx_huffman_bits"],
                     huffman_over_entropy=ratio_text(hb, ent), gap_bits=g or "",
                     gap_entropy_bits=s.get("gap_entropy_bits", ""), gap_huffman_bits=s.get("gap_huffman_bits", ""))
            r["_ent"], r["_hb"], r["_tab"] = ent, hb, {"huffman": htab}
            if have_ans:
                ab = sum(s[f"{k}_ans_bits"] for k in keys)
                atab = sum(s[f"{k}_ans_table_B"] for k in keys)
                r.update(ans_B=(ab + 7) // 8 + s["codebook_B"] + atab, idx_ans_bits=s["idx_ans_bits"],
                         gap_ans_bits=s.get("gap_ans_bits", ""), ans_over_entropy=ratio_text(ab, ent))
                r["_ab"], r["_tab"]["ans"] = ab, atab
            r["table_B"] = r["_tab"][coder]
        else:
            width = s.get("bits", 16 if s["kind"] == "float16" else 8 * s["fp32_B"] // max(n, 1))
            r.update(bits=width, pruned_B=s["fp32_B"],
                     quant_B=s["stored_B"], huffman_B=s["stored_B"], ans_B=s["stored_B"] if have_ans else "")
        rows.append(r)
    col = f"{coder}_B"
    data_bytes = sum(r[col] for r in rows)
    other = file_bytes - data_bytes - pay_bpe  # magic, version, zlib'd JSON header, SHA-256 (+ ANS final state)
    for r in rows:
        r["bits_per_weight"] = round(8 * r[col] / max(r["params"], 1), 3)
    params = sum(r["params"] for r in rows)
    fp32 = sum(r["fp32_B"] for r in rows)
    head = {c: "" for c in REPORT_COLS}
    head.update(tensor="(header+checksum)", kind="meta", params=0, fp32_B=0, pruned_B=other, quant_B=other,
                huffman_B=other, ans_B=other if have_ans else "", table_B=head_bytes + 32, bits_per_weight="")
    bpe = {c: "" for c in REPORT_COLS}
    bpe.update(tensor="(bpe.model zlib)", kind="meta", params=0, fp32_B=0, pruned_B=pay_bpe, quant_B=pay_bpe,
               huffman_B=pay_bpe, ans_B=pay_bpe if have_ans else "", bits_per_weight="")
    tot = {c: "" for c in REPORT_COLS}
    q = [r for r in rows if r["kind"] == "quant"]
    ent, hb = sum(r["_ent"] for r in q), sum(r["_hb"] for r in q)
    ab = sum(r["_ab"] for r in q) if have_ans else None
    tot.update(tensor="TOTAL", kind=f"{fp32 / file_bytes:.1f}x", params=params, fp32_B=fp32, coder=coder,
               pruned_B=sum(r["pruned_B"] for r in rows) + other + pay_bpe,
               quant_B=sum(r["quant_B"] for r in rows) + other + pay_bpe,
               huffman_B=sum(r["huffman_B"] for r in rows) + other + pay_bpe,
               bits_per_weight=round(8 * file_bytes / max(params, 1), 3),
               idx_entropy_bits=round(ent, 1), idx_huffman_bits=hb,
               huffman_over_entropy=ratio_text(hb, ent), table_B=sum(r["table_B"] or 0 for r in q))
    if have_ans:
        tot.update(ans_B=sum(r["ans_B"] for r in rows) + other + pay_bpe, ans_over_entropy=ratio_text(ab, ent),
                   idx_ans_bits=ab)
    tot[col] = file_bytes
    for r in rows:
        for k in ("_ent", "_hb", "_ab", "_tab"):
            r.pop(k, None)
    return rows + [head] + ([bpe] if pay_bpe else []) + [tot], {
        "ratio": fp32 / file_bytes, "params": params, "weights_bytes": file_bytes - pay_bpe,
        "entropy_bits": round(ent, 1), "huffman_bits": hb, "ans_bits": ab}


def ratio_text(a, b) -> str:
    return f"{a / b:.4f}" if b else ""


def write_report(path, rows) -> None:
    with atomic_open(path, "w") as f:
        f.write("\t".join(REPORT_COLS) + "\n")
        for r in rows:
            f.write("\t".join(str(r[c]) for c in REPORT_COLS) + "\n")


def format_report(rows) -> list[str]:
    cols = ["tensor", "kind", "params", "bits", "sparsity", "fp32_B", "pruned_B", "quant_B", "huffman_B", "ans_B",
            "bits_per_weight", "huffman_over_entropy", "ans_over_entropy"]
    w = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(w[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).rjust(w[c]) for c in cols) for r in rows]
    return lines
