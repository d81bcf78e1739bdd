"""A tiny corpus for training tests that must stay cheap: random 20-dim features (no audio, no
feature extraction), a phone lang dir of three words, and a 3-layer TDNN model dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from asrcomp.datadir import write_data_dir
from asrcomp.lang import prepare_lang
from asrcomp.modeldir import save_model_dir
from asrcomp.nnet import build_model
from asrcomp.train import TrainConfig

FEAT_DIM = 20
ARCH = {"type": "tdnn", "hidden_dim": 32, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1]],
        "subsample_at": 1, "subsampling_factor": 3, "feat_dim": FEAT_DIM}
WORDS = ["SHOW", "THE", "SHIPS"]


def write_features_dir(d: Path, n_utts: int, seed: int) -> Path:
    """A data dir whose feats.scp holds random features (cmvn none): what load_ctc_data needs."""
    import kaldiio

    rng = np.random.default_rng(seed)
    utts = [f"spk{i % 2}-{i:03d}" for i in range(n_utts)]
    text = {u: " ".join(rng.choice(WORDS, size=2)) for u in utts}
    write_data_dir(d, {u: f"/nonexistent/{u}.wav" for u in utts}, text, {u: u.split("-")[0] for u in utts})
    with kaldiio.WriteHelper(f"ark,scp:{(d / 'feats.ark').resolve()},{d / 'feats.scp'}") as w:
        for i, u in enumerate(utts):
            w(u, rng.standard_normal((60 + 3 * (i % 7), FEAT_DIM)).astype(np.float32))
    (d / "fbank.yaml").write_text(yaml.safe_dump({"num_mel_bins": FEAT_DIM, "cmvn": "none"}))
    return d


def make_tiny_corpus(root: Path) -> dict:
    """``{"train", "valid", "lang", "model"}``: data dirs, a phone lang dir, an untrained model dir."""
    root = Path(root)
    lang = prepare_lang(WORDS, root / "lang", "phone")
    train = write_features_dir(root / "train", 8, 0)
    valid = write_features_dir(root / "valid", 4, 1)
    torch.manual_seed(0)
    model = build_model(dict(ARCH, num_tokens=lang.num_tokens))
    mdir = save_model_dir(root / "model", model, root / "lang" / "tokens.txt",
                          features={"num_mel_bins": FEAT_DIM, "cmvn": "none"}, history=[{"stage": "train"}])
    return {"train": train, "valid": valid, "lang": root / "lang", "model": mdir}


def tiny_cfg(epochs: int = 1, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": epochs, "max_frames": 400, "lr": 1e-3, "warmup_steps": 2, "avg": 1,
                          "num_threads": 1, "device": "cpu", "spec_augment": False, **kw})
