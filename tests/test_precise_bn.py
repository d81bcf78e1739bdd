"""Precise BatchNorm statistics: ``recompute_bn_stats``, ``train.bn_recompute_batches`` and
``asrcomp recompute-bn`` (tiny corpus: random features, 3-layer TDNN)."""

from __future__ import annotations

import subprocess
import sys

import torch

from asrcomp.modeldir import load_model_dir, read_model_yaml
from asrcomp.nnet.tdnn import lengths_to_mask
from asrcomp.train import batches, collate, fit, load_ctc_data, recompute_bn_stats
from tests.tiny_corpus import make_tiny_corpus, tiny_cfg


def _corrupt(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.add_(5.0)
                m.running_var.mul_(100.0)


def test_recomputed_stats_are_those_of_the_valid_frames(tmp_path):
    c = make_tiny_corpus(tmp_path)
    model, _ = load_model_dir(c["model"])
    data = load_ctc_data(c["train"], c["lang"], model.subsampling_factor)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    _corrupt(model)
    assert recompute_bn_stats(model, data, 400, 1, "cpu") == 1
    # layer 0's statistics are the mean / unbiased variance of its pre-BN activations on the valid
    # frames of the first batch seed 0 draws
    b = next(iter(batches(data, 400, 0, 0)))
    x, x_lens, _, _ = collate(data, b)
    layer = model.layers[0]
    with torch.no_grad():
        h = x.masked_fill(~lengths_to_mask(x_lens, x.shape[1])[:, :, None], 0.0).transpose(1, 2)
        y = layer.relu(layer.conv(h))
        valid_frames = y.transpose(1, 2)[lengths_to_mask(layer.out_lens(x_lens), y.shape[2])]
    assert torch.allclose(layer.bn.running_mean, valid_frames.mean(0), atol=1e-5)
    assert torch.allclose(layer.bn.running_var, valid_frames.var(0), rtol=1e-4, atol=1e-6)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # weights untouched
    assert not model.training and all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))


def test_fit_recomputes_final_stats_only(tmp_path):
    c = make_tiny_corpus(tmp_path)
    finals = {}
    for n in (0, 3):
        model, _ = load_model_dir(c["model"])
        fit(model, tmp_path / f"exp{n}", c["train"], c["valid"], c["lang"], tiny_cfg(2, bn_recompute_batches=n))
        finals[n] = torch.load(tmp_path / f"exp{n}" / "final.pt", weights_only=True)
    for k, v in finals[0].items():
        same = torch.equal(v, finals[3][k])
        assert same == ("running" not in k and "num_batches" not in k), k


def test_recompute_bn_cli(tmp_path):
    c = make_tiny_corpus(tmp_path)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "asrcomp.cli", "recompute-bn", "--batches", "2", "--max-frames", "400",
                        str(c["model"]), str(out), str(c["train"]), str(c["valid"]), str(c["lang"])],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = read_model_yaml(out)["history"][-1]
    assert rec["stage"] == "recompute_bn" and rec["batches"] == 2
    assert rec["valid_loss_after"] != rec["valid_loss_before"]
    model, _ = load_model_dir(out)
    src, _ = load_model_dir(c["model"])
    assert torch.equal(model.layers[0].conv.weight, src.layers[0].conv.weight)
    assert not torch.equal(model.layers[0].bn.running_var, src.layers[0].bn.running_var)
