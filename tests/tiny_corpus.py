"""A tiny corpus for training tests that must stay cheap: random 20-dim features (no audio, no
feature extraction), a hand-written phone lang dir of three words (no CMUdict, no FSTs: what
``load_lang`` needs for training), and a 3-layer TDNN model dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from asrcomp.datadir import write_data_dir
from asrcomp.lang import load_lang
from asrcomp.modeldir import load_model_dir, save_model_dir
from asrcomp.nnet import build_model
from asrcomp.train import TrainConfig

FEAT_DIM = 20
ARCH = {"type": "tdnn", "hidden_dim": 32, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1]],
        "subsample_at": 1, "subsampling_factor": 3, "feat_dim": FEAT_DIM}
LEXICON = {"SHOW": "SH OW", "THE": "DH AH", "SHIPS": "SH IH P S", "<UNK>": "SPN"}
WORDS = ["SHOW", "THE", "SHIPS"]


def write_lang(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    tokens = ["<blk>"] + sorted({p for pron in LEXICON.values() for p in pron.split()}) + ["#0"]
    (d / "tokens.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens)))
    words = ["<eps>"] + sorted(LEXICON) + ["#0", "<s>", "</s>"]
    (d / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(words)))
    (d / "lexicon.txt").write_text("".join(f"{w} {p}\n" for w, p in sorted(LEXICON.items())))
    (d / "lang.yaml").write_text(yaml.safe_dump({"token_type": "phone", "num_tokens": len(tokens) - 1}))
    return d


def write_features_dir(d: Path, n_utts: int, seed: int) -> Path:
    """A data dir whose feats.scp holds random features (cmvn none): what load_ctc_data needs."""
    import kaldiio

    rng = np.random.default_rng(seed)
    utts = [f"spk{i % 2}-{i:03d}" for i in range(n_utts)]
    text = {u: " ".join(rng.choice(WORDS, size=2)) for u in utts}
    write_data_dir(d, {u: f"/nonexistent/{u}.wav" for u in utts}, text, {u: u.split("-")[0] for u in utts})
    with kaldiio.WriteHelper(f"ark,scp:{(d / 'feats.ark').resolve()},{d / 'feats.scp'}") as w:
        for i, u in enumerate(sorted(utts)):  # Kaldi tables are sorted by key
            w(u, rng.standard_normal((60 + 3 * (i % 7), FEAT_DIM)).astype(np.float32))
    (d / "fbank.yaml").write_text(yaml.safe_dump({"num_mel_bins": FEAT_DIM, "cmvn": "none"}))
    return d


def make_tiny_corpus(root: Path) -> dict:
    """``{"train", "valid", "lang", "model"}``: data dirs, a phone lang dir, an untrained model dir."""
    root = Path(root)
    lang = load_lang(write_lang(root / "lang"))
    train = write_features_dir(root / "train", 24, 0)
    valid = write_features_dir(root / "valid", 12, 1)
    torch.manual_seed(0)
    model = build_model(dict(ARCH, num_tokens=lang.num_tokens))
    mdir = save_model_dir(root / "model", model, root / "lang" / "tokens.txt",
                          features={"num_mel_bins": FEAT_DIM, "cmvn": "none"}, history=[{"stage": "train"}])
    return {"train": train, "valid": valid, "lang": root / "lang", "model": mdir}


def tiny_cfg(epochs: int = 1, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": epochs, "max_frames": 400, "lr": 1e-3, "warmup_steps": 2, "avg": 1,
                          "num_threads": 1, "device": "cpu", "spec_augment": False, **kw})


TINY_ARCH = {"type": "tdnn", "hidden_dim": 64, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-3, 0, 3]],
             "subsample_at": 1, "subsampling_factor": 3, "feat_dim": 20, "num_tokens": 11}


def make_random_model_dir(root: Path, loud_channel: bool = False) -> Path:
    """``root/src``: an untrained TDNN of :data:`TINY_ARCH` (seeded) with non-trivial batch-norm
    statistics; with ``loud_channel`` one output channel of layer 1 is 20x the others."""
    torch.manual_seed(0)
    model = build_model(TINY_ARCH)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
        if loud_channel:
            model.layers[1].conv.weight[7] *= 20
    (root / "lang").mkdir(parents=True)
    (root / "lang/tokens.txt").write_text("".join(f"t{i} {i}\n" for i in range(11)))
    return save_model_dir(root / "src", model, root / "lang/tokens.txt", features={"num_mel_bins": 20},
                          history=[{"stage": "train"}])


def reference_forward(model_dir: Path):
    """The model of ``model_dir``, its state dict, a random batch ``x: (2, 60, 20)``, ``lens`` and
    the model's output on it: what a compressed copy of the model is compared with."""
    model, _ = load_model_dir(model_dir)
    x, lens = torch.randn(2, 60, 20), torch.tensor([60, 41])
    with torch.no_grad():
        ref, _ = model(x, lens)
    return model, model.state_dict(), x, lens, ref
