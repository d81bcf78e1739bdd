"""Huffman against ANS on the streams of a model shaped like egs/synth's packed default model.

No trained model is needed: it builds the TDNN of egs/synth/conf/default.yaml (feat_dim 80,
41 tokens), factorises it as the default chain does (SVD of the output layer, rank 12; TT
of layers 1-6, shapes 4x96,288x4, rank 56), gives every weight tensor seeded draws from
``--dist`` (laplace: heavy-tailed like trained weights; gauss; init: PyTorch's random init),
and packs it with the config's ``compress.pack`` bits and sparsity (no fine-tuning) once per coder.
Prints, for the index + gap streams, the zero-order entropy, each coder's bits and their
ratio, the file sizes, timings, and whether unpack is bit-exact. Usage::

    python bench/pack_coders.py [--dist laplace] [--seed 0] [--no-factorise]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from asrcomp.compress.pack import PackConfig, pack, unpack
    from asrcomp.compress.stage import apply_svd, apply_tensorization, parse_ranks
    from asrcomp.modeldir import load_model_dir, save_model_dir
    from asrcomp.nnet import build_model, count_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", choices=["laplace", "gauss", "init"], default="laplace")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-factorise", action="store_true", help="the baseline TDNN's shapes instead")
    a = ap.parse_args()
    torch.set_num_threads(1)
    conf = yaml.safe_load((ROOT / "egs/synth/conf/default.yaml").read_text())
    arch = {k: v for k, v in conf["model"]["tdnn"].items() if k != "train"}
    torch.manual_seed(a.seed)
    model = build_model(dict(arch, feat_dim=80, num_tokens=41))
    c = conf["compress"]
    if not a.no_factorise:
        apply_svd(model, layers=c["svd"]["layers"], rank=c["svd"]["rank"])
        t = c["tt"]
        apply_tensorization(model, method=t["method"], layers=t["layers"], modes=t["modes"], shapes=t["shapes"],
                            ranks=parse_ranks(t["rank"]))
    g = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if a.dist == "init" or (p.dim() < 2 and p.numel() <= 1024):
                continue
            std = float(p.std()) or 0.05
            if a.dist == "gauss":
                p.copy_(torch.randn(p.shape, generator=g) * std)
            else:  # Laplace of the same standard deviation
                u = torch.rand(p.shape, generator=g) - 0.5
                p.copy_(-std / 2 ** 0.5 * torch.sign(u) * torch.log1p(-2 * u.abs()))
    pk = c["pack"]
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        (td / "lang").mkdir()
        (td / "lang/tokens.txt").write_text("".join(f"t{i} {i}\n" for i in range(41)))
        src = save_model_dir(td / "src", model, td / "lang/tokens.txt", features={"num_mel_bins": 80})
        print(f"{'factorised (svd+tt)' if not a.no_factorise else 'baseline'} TDNN, {count_params(model):,} params, "
              f"weights {a.dist}, seed {a.seed}; bits {pk['bits']}, output {pk['bits_output']}, "
              f"sparsity {pk['prune_sparsity']}")
        for coder in ("huffman", "ans"):
            cfg = PackConfig(bits=pk["bits"], bits_output=pk["bits_output"], prune_sparsity=pk["prune_sparsity"],
                             coder=coder)
            t0 = time.perf_counter()
            pack(src, td / coder, cfg)
            t1 = time.perf_counter()
            unpack(td / coder / "model.acz", td / f"{coder}_un")
            t2 = time.perf_counter()
            sa, sb = (load_model_dir(td / d)[0].state_dict() for d in (coder, f"{coder}_un"))
            exact = all(torch.equal(sa[k], sb[k]) for k in sa)
            rows = [r.split("\t") for r in (td / coder / "pack_report.tsv").read_text().splitlines()]
            tot = dict(zip(rows[0], rows[-1]))
            ent = float(tot["idx_entropy_bits"])  # TOTAL: index + gap streams
            hb, ab = int(tot["idx_huffman_bits"]), int(tot["idx_ans_bits"])
            nq = sum(r[1] == "quant" for r in rows[1:])
            size = (td / coder / "model.acz").stat().st_size
            if coder == "ans":
                import json
                import struct
                import zlib

                raw = (td / coder / "model.acz").read_bytes()
                hlen = struct.unpack_from("<I", raw, 12)[0]
                head = json.loads(zlib.decompress(raw[16:16 + hlen]))
                ans_words = next(e["idx"]["data"][1] for e in head["tensors"] if e["kind"] == "quant") // 4
            print(f"--coder {coder:7s}: model.acz {size:,} B (report: huffman_B {tot['huffman_B']}, ans_B "
                  f"{tot['ans_B']}); pack {t1 - t0:.2f} s, unpack {t2 - t1:.2f} s, bit-exact {exact}")
        print(f"index+gap streams of {nq} tensors: entropy {ent:,.0f} bits; Huffman {hb:,} (x{hb / ent:.5f}); "
              f"ANS {ab:,} (x{ab / ent:.6f}), {ans_words * 32:,} bits stored (x{ans_words * 32 / ent:.6f})")


if __name__ == "__main__":
    main()
