"""Pack and unpack speed and size of a random ~3M-parameter TDNN (no fine-tuning).

Builds the TDNN of egs/synth/conf/default.yaml (feat_dim 80, 41 tokens) with random
weights, optionally prunes it, and times ``asrcomp pack`` (k-means + Huffman + file)
and ``asrcomp unpack``; checks the round trip is bit-exact. Usage::

    python bench/pack_speed.py [--sparsity 0.0] [--bits 5] [--bits-output 4] [--threads 1]

Target: each under 10 s on one core. Random weights are Gaussian, so the sizes here say
little about a trained model (trained weights are more peaked: Huffman gains more).
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
    from asrcomp.modeldir import load_model_dir, save_model_dir
    from asrcomp.nnet import build_model, count_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.0)
    ap.add_argument("--bits", default="5")
    ap.add_argument("--bits-output", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="log the per-tensor pack report")
    a = ap.parse_args()
    if a.verbose:
        from asrcomp.utils import setup_logging

        setup_logging()
    torch.set_num_threads(a.threads)
    conf = yaml.safe_load((ROOT / "egs/synth/conf/default.yaml").read_text())
    arch = {k: v for k, v in conf["model"]["tdnn"].items() if k != "train"}
    torch.manual_seed(0)
    model = build_model(dict(arch, feat_dim=80, num_tokens=41))
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        (td / "lang").mkdir()
        (td / "lang/tokens.txt").write_text("".join(f"t{i} {i}\n" for i in range(41)))
        src = save_model_dir(td / "src", model, td / "lang/tokens.txt", features={"num_mel_bins": 80})
        cfg = PackConfig(bits=a.bits, bits_output=a.bits_output, prune_sparsity=a.sparsity)
        t0 = time.perf_counter()
        pack(src, td / "packed", cfg)
        t1 = time.perf_counter()
        unpack(td / "packed/model.acz", td / "unpacked")
        t2 = time.perf_counter()
        m1, _ = load_model_dir(td / "packed")
        m2, meta = load_model_dir(td / "unpacked")
        exact = all(torch.equal(x, y) for x, y in zip(m1.state_dict().values(), m2.state_dict().values()))
        fp32 = (src / "final.pt").stat().st_size
        print(f"params {count_params(model):,}  threads {a.threads}  sparsity {a.sparsity}  bits {a.bits}/"
              f"output {a.bits_output}")
        print(f"pack {t1 - t0:.2f} s  unpack {t2 - t1:.2f} s  (pack includes loading, self-check and saving)")
        print(f"final.pt {fp32:,} B  model.acz {meta['packed_bytes']:,} B  ratio {fp32 / meta['packed_bytes']:.1f}x"
              f"  bit-exact {exact}")
        print((td / "packed/pack_report.tsv").read_text().splitlines()[-1])


if __name__ == "__main__":
    main()
