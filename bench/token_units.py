"""How fast a TDNN learns CTC over different token sets on the same corpus.

    cd egs/synth && python ../../bench/token_units.py --lang data/default/lang_phone --steps 1000

Trains a 6-layer TDNN (hidden 256, stride 3, Adam 1e-3, batches of 4000 frames, one thread,
no SpecAugment/dropout) and prints the mean train CTC loss per token every 100 steps and the
dev loss every 300. Used to choose egs/synth's default token set (see README).
"""

from __future__ import annotations

import argparse
import time

import torch

from asrcomp.nnet import build_model
from asrcomp.train import batches, collate, ctc_loss_sum, load_ctc_data, validation_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lang", required=True)
    p.add_argument("--data", default="data/default")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = load_ctc_data(f"{a.data}/train", a.lang, 3)
    dev = load_ctc_data(f"{a.data}/dev", a.lang, 3)
    num_tokens = sum(1 for line in open(f"{a.lang}/tokens.txt") if not line.startswith("#"))
    model = build_model(dict(type="tdnn", feat_dim=80, num_tokens=num_tokens, hidden_dim=a.hidden,
                             contexts=[[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1], [-3, 0, 3], [-3, 0, 3],
                                       [-3, 0, 3]], subsample_at=1, subsampling_factor=3))
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    t0, step, acc = time.time(), 0, 0.0
    for epoch in range(1, 1000):
        for b in batches(train, 4000, 0, epoch):
            x, x_lens, y, y_lens = collate(train, b)
            loss = ctc_loss_sum(model, x, x_lens, y, y_lens) / y_lens.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            acc += loss.item()
            step += 1
            if step % 100 == 0:
                print(f"step {step} train {acc / 100:.3f} ({time.time() - t0:.0f} s)", flush=True)
                acc = 0.0
            if step % 300 == 0:
                print(f"step {step} dev {validation_loss(model, dev, 8000, 'cpu'):.3f}", flush=True)
            if step == a.steps:
                return


if __name__ == "__main__":
    main()
