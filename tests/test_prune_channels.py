"""Structured channel pruning (asrcomp prune-channels): removing channels whose batch-norm scale is 0
changes no interior output frame (beta folded into the next bias), the shrunk TDNN has the expected
shapes, fewer FLOPs and an arch that rebuilds it, the selection keeps the asked fraction above a
per-layer floor, factorised models are refused, the L1 penalty drives the scales down, and the CLI
and steps script write a model dir that decodes."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

from asrcomp.cli import main
from asrcomp.compress import channels
from asrcomp.compress.stage import apply_svd, apply_tensorization
from asrcomp.decode_dir import decode_job, merge_and_score
from asrcomp.modeldir import load_model_dir, save_model_dir
from asrcomp.nnet import build_model, count_params, flops_per_second
from asrcomp.nnet.tdnn import context_to_conv
from asrcomp.utils import InputError
from tests.tiny_corpus import TINY_ARCH, make_random_model_dir, make_tiny_corpus, tiny_cfg

ROOT = Path(__file__).resolve().parents[1]
# four layers, the stride-3 one in the middle, a wide-context one after it
ARCH = dict(TINY_ARCH, hidden_dim=24, contexts=[[-2, -1, 0, 1, 2], [-1, 0, 1], [-3, 0, 3], [-1, 0, 1]])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One tiny corpus (random features, phone lang, untrained TDNN) for the module's training runs."""
    return make_tiny_corpus(tmp_path_factory.mktemp("tiny"))


def random_tdnn(seed: int = 0, arch: dict = ARCH):
    """An eval-mode TDNN with random batch-norm statistics, scales and (non-zero) shifts."""
    torch.manual_seed(seed)
    model = build_model(arch)
    with torch.no_grad():
        for layer in model.layers:
            layer.bn.running_mean.normal_()
            layer.bn.running_var.uniform_(0.5, 2.0)
            layer.bn.weight.uniform_(0.5, 1.5)
            layer.bn.bias.normal_()
    return model.eval()


def edge_margin(model) -> int:
    """Output frames at each utterance edge that may see a folded channel through zero padding: every
    layer after the first adds its padding, in output frames (rounded up), plus one for the rounding."""
    rate, margin = 1, 0
    for i, layer in enumerate(model.layers):
        if i > 0:
            margin += math.ceil(layer.padding * rate / model.subsampling_factor)
        rate *= layer.stride
    return margin + 1


def zero_some_gammas(model, seed: int = 1) -> list[torch.Tensor]:
    """Set gamma = 0 for about 40 % of each layer's channels; returns the kept (non-zero) channels."""
    g = torch.Generator().manual_seed(seed)
    kept = []
    with torch.no_grad():
        for layer in model.layers:
            c = layer.bn.num_features
            gone = torch.randperm(c, generator=g)[: int(0.4 * c)]
            layer.bn.weight[gone] = 0.0
            keep = torch.ones(c, dtype=torch.bool)
            keep[gone] = False
            kept.append(keep.nonzero().flatten())
    return kept


def test_removing_zero_gamma_channels_is_exact_on_interior_frames():
    model = random_tdnn()
    kept = zero_some_gammas(model)
    small = channels.shrink_tdnn(model, kept)
    torch.manual_seed(5)
    x, lens = torch.randn(3, 150, 20), torch.tensor([150, 117, 96])
    with torch.no_grad():
        ref, ref_lens = model(x, lens)
        got, got_lens = small(x, lens)
    assert torch.equal(ref_lens, got_lens) and ref.shape == got.shape
    m = edge_margin(model)
    assert 3 <= m < 10
    for n, t in enumerate(got_lens.tolist()):
        torch.testing.assert_close(got[n, m:t - m], ref[n, m:t - m], rtol=1e-4, atol=1e-4)
        # at the edges the folded beta meets zero padding: there the cut model differs (documented)
        assert (got[n, :m] - ref[n, :m]).abs().max() > 1e-3
    # without the fold (the last layer's removed betas dropped instead of moved into the output bias)
    # the interior would differ
    unfolded = channels.shrink_tdnn(model, kept)
    with torch.no_grad():
        unfolded.output.bias.copy_(model.output.bias)
        bad, _ = unfolded(x, lens)
    assert (bad[0, m:-m] - ref[0, m:-m]).abs().max() > 1e-2


def test_output_layer_fold_is_exact_on_every_frame():
    """Channels pruned from the last hidden layer only: the output Linear has no taps, so no edge error."""
    model = random_tdnn(2)
    c = model.layers[-1].bn.num_features
    gone = torch.arange(0, c, 3)
    with torch.no_grad():
        model.layers[-1].bn.weight[gone] = 0.0
    kept = [torch.arange(layer.bn.num_features) for layer in model.layers]
    kept[-1] = channels._complement(gone, c)
    small = channels.shrink_tdnn(model, kept)
    x, lens = torch.randn(2, 61, 20), torch.tensor([61, 40])
    with torch.no_grad():
        ref, out_lens = model(x, lens)
        got, _ = small(x, lens)
    for n, t in enumerate(out_lens.tolist()):
        torch.testing.assert_close(got[n, :t], ref[n, :t], rtol=1e-5, atol=1e-5)


def test_shrunk_model_shapes_flops_params_and_arch_round_trip(tmp_path):
    model = random_tdnn(3)
    scores = channels.channel_scores(model)
    kept = channels.select_channels(scores, 0.5)
    small = channels.shrink_tdnn(model, kept)
    dims = [len(k) for k in kept]
    assert sum(dims) == round(0.5 * 4 * 24) and channels.widths(small) == dims
    taps = [context_to_conv(c)[0] for c in ARCH["contexts"]]
    prev = ARCH["feat_dim"]
    for i, (layer, d) in enumerate(zip(small.layers, dims)):
        assert layer.conv.weight.shape == (d, prev, taps[i]) and layer.conv.bias.shape == (d,)
        for t in (layer.bn.weight, layer.bn.bias, layer.bn.running_mean, layer.bn.running_var):
            assert t.shape == (d,)
        # kept channels keep their weights (in their original order), inputs sliced per tap (dim 1)
        if i == 0:
            assert torch.equal(layer.conv.weight, model.layers[0].conv.weight[kept[0]])
        else:
            assert torch.equal(layer.conv.weight, model.layers[i].conv.weight[kept[i]][:, kept[i - 1]])
        assert torch.equal(layer.bn.running_var, model.layers[i].bn.running_var[kept[i]])
        prev = d
    assert small.output.weight.shape == (ARCH["num_tokens"], dims[-1])
    assert flops_per_second(small) < 0.6 * flops_per_second(model)
    assert count_params(small) < 0.6 * count_params(model)
    # arch: layer_dims only when uneven; old arch dicts (no layer_dims) build as before
    arch = small.arch()
    assert arch["layer_dims"] == dims and "layer_dims" not in model.arch()
    assert build_model({k: v for k, v in ARCH.items()}).arch() == model.arch()
    assert build_model(dict(ARCH, layer_dims=[24] * 4)).arch() == model.arch()
    with pytest.raises(ValueError, match="layer_dims"):
        build_model(dict(ARCH, layer_dims=[8, 8]))
    out = save_model_dir(tmp_path / "m", small, _tokens(tmp_path), features={"num_mel_bins": 20})
    back, meta = load_model_dir(out)
    assert meta["arch"]["layer_dims"] == dims and meta["flops_per_second"] == flops_per_second(small)
    x, lens = torch.randn(2, 50, 20), torch.tensor([50, 33])
    with torch.no_grad():
        assert torch.equal(back(x, lens)[0], small(x, lens)[0])
    assert not small.training and model.layers[0].conv.out_channels == 24  # the source is unchanged


def _tokens(tmp_path: Path) -> Path:
    p = tmp_path / "tokens.txt"
    p.write_text("".join(f"t{i} {i}\n" for i in range(ARCH["num_tokens"])))
    return p


def test_selection_keeps_the_fraction_with_a_per_layer_floor():
    torch.manual_seed(4)
    scores = [torch.rand(40) + 2.0, torch.rand(20) * 1e-3, torch.rand(30) * 0.5 + 0.5, torch.rand(10)]
    kept = channels.select_channels(scores, 0.6, min_layer_keep=0.2)
    assert sum(len(k) for k in kept) == round(0.6 * 100)
    # layer 1's scales are all tiny: only its floor (ceil(0.2 * 20) = 4 largest) survives
    assert len(kept[1]) == 4 and set(kept[1].tolist()) == set(torch.argsort(-scores[1])[:4].tolist())
    assert all(len(k) >= math.ceil(0.2 * len(s)) for k, s in zip(kept, scores))
    assert all(torch.equal(k, k.sort().values) for k in kept)
    # above the floors one global threshold: every removed score is below every kept non-floor score
    thr = channels.global_threshold(scores, kept)
    floors = channels.layer_floors([len(s) for s in scores], 0.2)
    for s, k, f in zip(scores, kept, floors):
        above_floor = s[k].sort(descending=True).values[f:]
        assert bool((above_floor >= thr).all())
    assert len(kept[0]) == 40  # layer 0's scales are the largest: kept whole
    # keep 1 keeps everything; a keep below the floors is a clear error; ties are deterministic
    assert [len(k) for k in channels.select_channels(scores, 1.0)] == [40, 20, 30, 10]
    with pytest.raises(ValueError, match="below the per-layer floor"):
        channels.select_channels(scores, 0.1, min_layer_keep=0.2)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        channels.select_channels(scores, 0.0)
    ties = channels.select_channels([torch.ones(8), torch.ones(8)], 0.5, min_layer_keep=0.0)
    assert [k.tolist() for k in ties] == [list(range(7)), [0]]  # floor 1 each, then earlier layer, lower index


def test_factorised_and_dnn_models_are_refused(tmp_path):
    model = random_tdnn(5)
    apply_svd(model, "output", rank=4)
    with pytest.raises(ValueError, match=r"layer output .*before svd and tt"):
        channels.check_prunable(model)
    model = random_tdnn(6)
    apply_tensorization(model, "tt", r"layers\.2\.conv", modes=2, ranks=2)
    with pytest.raises(ValueError, match=r"layer layers\.2\.conv is a TtDense.*put prune_channels before svd"):
        channels.shrink_tdnn(model, channels.select_channels(channels.channel_scores(model), 0.5))
    src = save_model_dir(tmp_path / "tt", model, _tokens(tmp_path), features={"num_mel_bins": 20})
    with pytest.raises(InputError, match=r"layers\.2\.conv"):
        channels.prune_channels_model_dir(src, tmp_path / "out", 0.5)
    assert not (tmp_path / "out").exists()
    dnn = build_model({"type": "dnn", "feat_dim": 20, "num_tokens": 11, "hidden_dim": 16, "num_layers": 2})
    with pytest.raises(ValueError, match="TDNN models"):
        channels.check_prunable(dnn)


def test_l1_hook_adds_the_subgradient():
    model = random_tdnn(7)
    with torch.no_grad():
        model.layers[1].bn.weight[:3] = torch.tensor([-0.5, 0.0, 2.0])
    x, lens = torch.randn(2, 40, 20), torch.tensor([40, 30])
    model.train()
    model(x, lens)[0].sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    channels.BnL1Hooks(0.25, channels.gamma_names(model)).after_backward(model)
    for n, p in model.named_parameters():
        want = before[n] + 0.25 * torch.sign(p.detach()) if n.endswith("bn.weight") else before[n]
        torch.testing.assert_close(p.grad, want)
    assert float(model.layers[1].bn.weight.grad[1]) == float(before["layers.1.bn.weight"][1])  # sign(0) = 0


def test_l1_penalty_drives_the_scales_down(corpus, tmp_path):
    """Two sparsity epochs with the penalty against the same two without: the scales fall."""
    c = corpus
    args = dict(keep=0.5, sparsity_epochs=2, epochs=0, tcfg=tiny_cfg(2, lr=0.03, warmup_steps=1),
                train_dir=c["train"], valid_dir=c["valid"], lang_dir=c["lang"])
    with_l1 = channels.prune_channels_model_dir(c["model"], tmp_path / "l1", l1=0.5, **args)
    without = channels.prune_channels_model_dir(c["model"], tmp_path / "l0", l1=0.0, **args)
    g1 = torch.cat(channels.channel_scores(load_model_dir(with_l1 / "sparsity")[0]))
    g0 = torch.cat(channels.channel_scores(load_model_dir(without / "sparsity")[0]))
    src = torch.cat(channels.channel_scores(load_model_dir(c["model"])[0]))
    assert float(src.mean()) == 1.0  # untrained batch norm
    assert float(g1.mean()) < 0.85 < float(g0.mean()) - 0.05, (float(g1.mean()), float(g0.mean()))
    rec = load_model_dir(with_l1)[1]["history"][-1]
    assert rec["stage"] == "prune_channels" and rec["sparsity_trained_in"] == str(with_l1 / "sparsity")
    assert sum(rec["widths_after"]) == round(0.5 * sum(rec["widths_before"]))
    assert rec["flops_after"] < rec["flops_before"] and rec["params_after"] < rec["params_before"]


def test_cli_end_to_end_decodes_and_steps_script(corpus, tmp_path):
    c = corpus
    out = tmp_path / "pc"
    opts = ["--set", "max_frames=400", "--set", "num_threads=1", "--set", "spec_augment=false", "--set", "avg=1",
            "--device", "cpu", "--warmup-steps", "2"]
    assert main(["prune-channels", "--keep", "0.6", "--l1", "0.01", "--sparsity-epochs", "1", "--epochs", "1",
                 "--lr", "0.01", *opts, str(c["model"]), str(out), str(c["train"]), str(c["valid"]),
                 str(c["lang"])]) == 0
    model, meta = load_model_dir(out)
    rec = meta["history"][-1]
    assert rec["stage"] == "prune_channels" and rec["config"]["lr"] == 0.01 and rec["epochs_averaged"] == [1]
    assert channels.widths(model) == rec["widths_after"] == meta["arch"]["layer_dims"]
    assert sum(rec["widths_after"]) == round(0.6 * 3 * 32)
    assert meta["flops_per_second"] == rec["flops_after"] < rec["flops_before"]
    assert (out / "sparsity/model.yaml").is_file() and (out / "epoch-1.pt").is_file()
    decode_job(out, c["valid"], None)
    res = merge_and_score(out, c["valid"], None, 1)
    assert set(res) == {"greedy"} and res["greedy"]["wer"].words > 0
    # no data dirs while training is asked: a usage error, nothing written
    assert main(["prune-channels", "--keep", "0.5", "--epochs", "1", str(c["model"]), str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")  # as path.sh sets it
    r = subprocess.run([str(ROOT / "steps/prune_channels.sh"), "--keep", "0.5", "--min-layer-keep", "0.25",
                        str(c["model"]), str(tmp_path / "sh")], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "steps/prune_channels.sh --keep 0.5" in r.stdout
    _, meta = load_model_dir(tmp_path / "sh")
    assert sum(meta["arch"]["layer_dims"]) == 48 and meta["history"][-1]["min_layer_keep"] == 0.25
    log = (tmp_path / "sh/log/prune_channels.log").read_text()
    assert "widths [32, 32, 32] -> " in log and "FLOPs per second of audio" in log


def test_random_model_dir_prunes_without_training(tmp_path):
    """The shared random model dir (non-trivial batch-norm statistics) through the stage with no epochs."""
    src = make_random_model_dir(tmp_path)
    out = channels.prune_channels_model_dir(src, tmp_path / "out", 0.75)
    model, meta = load_model_dir(out)
    assert sum(channels.widths(model)) == round(0.75 * 3 * 64)
    with pytest.raises(InputError, match="output model dir is the input"):
        channels.prune_channels_model_dir(src, src, 0.5)
    with pytest.raises(InputError, match="below the per-layer floor"):
        channels.prune_channels_model_dir(src, tmp_path / "y", 0.05, min_layer_keep=0.2)
    assert not (tmp_path / "y").exists()
