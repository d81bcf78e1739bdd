"""Acoustic models: shapes and lengths, padding invariance, context validation, FLOPs, arch round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from asrcomp.decode_dir import log_probs_of
from asrcomp.nnet import DEFAULT_DNN, DEFAULT_TDNN, Dnn, Tdnn, build_model, count_params, flops_per_second
from asrcomp.nnet.dnn import splice_indices
from asrcomp.nnet.tdnn import context_to_conv

F, V = 8, 6
CTX = [[-2, -1, 0, 1, 2], [-1, 0, 1], [-3, 0, 3], [0]]  # receptive field +-(2 + 1 + 3*3) = +-12 input frames


def tiny_tdnn(subsampling_factor: int = 3, **kw) -> Tdnn:
    torch.manual_seed(0)
    return Tdnn(F, V, hidden_dim=16, contexts=CTX, subsample_at=1, subsampling_factor=subsampling_factor, **kw)


def tiny_dnn(subsampling_factor: int = 1, **kw) -> Dnn:
    torch.manual_seed(0)
    return Dnn(F, V, hidden_dim=16, num_layers=2, splice=3, subsampling_factor=subsampling_factor, **kw)


def randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so eval-mode BatchNorm is not the identity."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def padded_batch(lens: list[int], t_max: int | None = None, pad_value: float = 0.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t_max = t_max or max(lens)
    x = torch.full((len(lens), t_max, F), pad_value)
    for i, n in enumerate(lens):
        x[i, :n] = torch.randn(n, F, generator=g)
    return x, torch.tensor(lens, dtype=torch.int64)


def expected_lens(lens, s):
    return [(n - 1) // s + 1 for n in lens]


@pytest.mark.parametrize("s", [1, 3])
@pytest.mark.parametrize("t", [1, 2, 3, 4, 7, 10, 31])
def test_tdnn_shapes_and_lengths(s, t):
    """T from 1 (far below the +-12 receptive field) to 31; T' = floor((T-1)/s)+1 per utterance."""
    model = tiny_tdnn(s).eval()
    lens = sorted({t, max(1, t - 1), 1}, reverse=True)
    x, x_lens = padded_batch(lens)
    lp, out_lens = model(x, x_lens)
    assert lp.shape == (len(lens), (t - 1) // s + 1, V)
    assert out_lens.tolist() == expected_lens(lens, s)
    assert out_lens.dtype == torch.int64
    assert model.out_lens(x_lens).tolist() == out_lens.tolist()


def test_tdnn_layout():
    model = tiny_tdnn(3)
    assert model.subsampling_factor == 3 and model.num_tokens == V and model.feat_dim == F
    assert [m.conv.stride[0] for m in model.layers] == [1, 3, 1, 1]
    assert [(m.conv.kernel_size[0], m.conv.dilation[0], m.conv.padding[0]) for m in model.layers] == \
        [(5, 1, 2), (3, 1, 1), (3, 3, 3), (1, 1, 0)]
    names = {n for n, _ in model.named_modules()}
    assert {"layers.0.conv", "layers.0.bn", "layers.3.conv", "output"} <= names
    assert isinstance(model.output, nn.Linear)


@pytest.mark.parametrize("s", [1, 3])
def test_dnn_shapes_and_lengths(s):
    model = tiny_dnn(s).eval()
    lens = [10, 9, 4, 1]
    x, x_lens = padded_batch(lens)
    lp, out_lens = model(x, x_lens)
    assert lp.shape == (4, (10 - 1) // s + 1, V)
    assert out_lens.tolist() == expected_lens(lens, s)
    assert model.layers[0].linear.in_features == 7 * F


@pytest.mark.parametrize("make", [tiny_tdnn, tiny_dnn])
def test_log_probs_are_normalised(make):
    model = randomise_bn(make()).eval()
    lp, _ = model(*padded_batch([13, 5]))
    assert torch.allclose(lp.exp().sum(-1), torch.ones(lp.shape[:2]), atol=1e-5)
    assert bool((lp <= 0).all())


@pytest.mark.parametrize("make", [tiny_tdnn, lambda: tiny_tdnn(1), tiny_dnn, lambda: tiny_dnn(3)])
def test_padded_batch_matches_each_utterance_alone(make):
    """What holds: in eval mode every valid output frame, right up to the end, equals
    the utterance run alone, whatever the padding holds (here 1e4), because each
    layer's output is zeroed beyond the utterance's length (DNN: splicing clamps to
    the utterance's own last frame and only valid frames are run)."""
    model = randomise_bn(make()).eval()
    lens = [37, 20, 5, 1]
    x, x_lens = padded_batch(lens, pad_value=1e4)
    with torch.no_grad():
        lp, out_lens = model(x, x_lens)
        for i, n in enumerate(lens):
            alone, alone_len = model(x[i:i + 1, :n], x_lens[i:i + 1])
            assert alone_len.item() == out_lens[i].item()
            m = alone_len.item()
            torch.testing.assert_close(lp[i, :m], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make", [tiny_tdnn, tiny_dnn])
def test_decode_padding_keeps_log_probs(make):
    """Decoding runs each utterance padded to a multiple of ``pad_frames`` frames (fewer input
    shapes for oneDNN to build convolutions for) and returns exactly the unpadded log-posteriors."""
    model = randomise_bn(make()).eval()
    for n in (37, 32, 5, 1):
        x, _ = padded_batch([n], seed=n)
        with torch.no_grad():
            ref, _ = model(x, torch.tensor([n]))
        for pad in (1, 32):
            got = log_probs_of(model, x[0].numpy(), pad_frames=pad)
            assert got.shape == ref[0].shape
            np.testing.assert_allclose(got, ref[0].numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make", [tiny_tdnn, tiny_dnn])
def test_training_batchnorm_ignores_padding(make):
    """Train mode: the amount and content of padding change neither outputs nor running stats."""
    outs, stats = [], []
    for t_max, pad in ((40, 0.0), (57, 1e3)):
        model = make()
        model.train()
        x, x_lens = padded_batch([40, 23, 9], t_max=t_max, pad_value=pad)
        lp, out_lens = model(x, x_lens)
        outs.append([lp[i, :n] for i, n in enumerate(out_lens.tolist())])
        stats.append(model.layers[0].bn.running_mean.clone())
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(stats[0], stats[1])


def test_ctc_loss_and_backward():
    for model in (tiny_tdnn(), tiny_dnn(3)):
        model.train()
        x, x_lens = padded_batch([30, 24])
        lp, out_lens = model(x, x_lens)
        y, y_lens = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
        loss = nn.functional.ctc_loss(lp.transpose(0, 1), y, out_lens, y_lens)
        loss.backward()
        assert torch.isfinite(loss) and model.layers[0].bn.weight.grad is not None


def test_splice_repeats_edge_frames():
    n, j, idx = splice_indices(torch.tensor([4, 2]), 4, splice=2)
    assert n.tolist() == [0, 0, 0, 0, 1, 1] and j.tolist() == [0, 1, 2, 3, 0, 1]
    assert idx.tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [1, 2, 3, 3, 3],
                            [0, 0, 0, 1, 1], [0, 0, 1, 1, 1]]
    _, j, idx = splice_indices(torch.tensor([7]), 7, splice=1, subsampling_factor=3)
    assert j.tolist() == [0, 1, 2] and idx.tolist() == [[0, 0, 1], [2, 3, 4], [5, 6, 6]]


def test_context_to_conv():
    assert context_to_conv([-2, -1, 0, 1, 2]) == (5, 1, 2)
    assert context_to_conv([-3, 0, 3]) == (3, 3, 3)
    assert context_to_conv([0]) == (1, 1, 0)
    assert context_to_conv([-3, -1, 1, 3]) == (4, 2, 3)  # symmetric without 0: frames t-3, t-1, t+1, t+3


def test_context_without_zero_keeps_lengths():
    model = Tdnn(F, V, hidden_dim=4, contexts=[[-1, 1], [-3, -1, 1, 3]], subsample_at=1, subsampling_factor=2)
    lp, out_lens = model(*padded_batch([9, 4]))
    assert lp.shape == (2, 5, V) and out_lens.tolist() == [5, 2]


@pytest.mark.parametrize("ctx, why", [([0, 1], "symmetric"), ([-1, 1, 0], "sorted"), ([-2, 0, 1], "symmetric"),
                                      ([-4, -1, 0, 1, 4], "evenly spaced"), ([-3, -2, 0, 2, 3], "evenly spaced"),
                                      ([], "non-empty"), ([0.0], "integer"), ([-1, -1, 0, 1, 1], "distinct")])
def test_bad_context_is_rejected(ctx, why):
    with pytest.raises(ValueError, match=why):
        Tdnn(F, V, hidden_dim=4, contexts=[[0], ctx])


def test_bad_subsample_at_is_rejected():
    with pytest.raises(ValueError, match="subsample_at"):
        Tdnn(F, V, hidden_dim=4, contexts=[[0], [0]], subsample_at=2, subsampling_factor=3)


def test_flops_tiny_tdnn_by_hand():
    # 1 s at 10 frames/s = 10 frames; contexts +-1 (k=3), +-2 step 2 (k=3, stride 2), [0]
    model = Tdnn(4, 5, hidden_dim=3, contexts=[[-1, 0, 1], [-2, 0, 2], [0]], subsample_at=1,
                 subsampling_factor=2)
    t0, t1 = 10, (10 - 1) // 2 + 1  # frames out of layer 0 and of the strided layer 1 (= 5)
    layer0 = t0 * (2 * 4 * 3 * 3 + 3)  # per output frame: C_in * k * C_out MACs, + C_out bias adds
    layer1 = t1 * (2 * 3 * 3 * 3 + 3)
    layer2 = t1 * (2 * 3 * 1 * 3 + 3)
    output = t1 * (2 * 3 * 5 + 5)
    assert layer0 + layer1 + layer2 + output == 1315
    assert flops_per_second(model, frame_rate=10) == 1315


def test_flops_tiny_dnn_by_hand():
    model = Dnn(4, 5, hidden_dim=3, num_layers=2, splice=1, subsampling_factor=2)
    rows = 5  # frames 0, 2, 4, 6, 8 of 10
    expected = rows * ((2 * 12 * 3 + 3) + (2 * 3 * 3 + 3) + (2 * 3 * 5 + 5))
    assert expected == 655
    assert flops_per_second(model, frame_rate=10) == 655


def test_flops_default_tdnn_is_about_a_third_after_subsampling():
    model = build_model(dict(DEFAULT_TDNN, feat_dim=80, num_tokens=500))
    h, t, t3 = model.hidden_dim, 100, 34
    macs = t * 80 * 5 * h + t3 * (5 * 3 * h * h + h * 500)
    adds = t * h + t3 * (5 * h + 500)
    assert flops_per_second(model) == 2 * macs + adds


class LowRank(nn.Module):
    """Stands in for a factorised layer: counts itself, and its children must not be."""

    def __init__(self, d_in, rank, d_out):
        super().__init__()
        self.a, self.b = nn.Linear(d_in, rank, bias=False), nn.Linear(rank, d_out)
        self.calls = []

    def forward(self, x):
        return self.b(self.a(x))

    def flops(self, inputs, output):
        self.calls.append((tuple(inputs[0].shape), tuple(output.shape)))
        return 1000


def test_custom_flops_module_counts_itself_only():
    model = Tdnn(4, 5, hidden_dim=3, contexts=[[-1, 0, 1], [-2, 0, 2], [0]], subsample_at=1,
                 subsampling_factor=2)
    model.output = LowRank(3, 2, 5)
    assert flops_per_second(model, frame_rate=10) == 1315 - 5 * (2 * 3 * 5 + 5) + 1000
    assert model.output.calls == [((1, 5, 3), (1, 5, 5))]


def test_uncountable_module_is_an_error():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(5))

        def forward(self, x):
            return x * self.w

    model = Tdnn(4, 5, hidden_dim=3, contexts=[[0]], subsampling_factor=1)
    model.output = nn.Sequential(nn.Linear(3, 5), Scale())
    with pytest.raises(NotImplementedError, match="output.1"):
        flops_per_second(model, frame_rate=10)


def test_flops_keeps_training_mode():
    model = tiny_tdnn().train()
    flops_per_second(model)
    assert model.training


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("model", [tiny_tdnn(), tiny_tdnn(1, dropout=0.2), tiny_dnn(3)])
def test_arch_rebuilds_same_shapes(model):
    arch = yaml.safe_load(yaml.safe_dump(model.arch()))  # must survive YAML
    again = build_model(arch)
    assert type(again) is type(model) and again.arch() == model.arch()
    assert shapes(again) == shapes(model)
    assert count_params(again) == count_params(model) == sum(p.numel() for p in model.parameters())


def test_defaults_build():
    tdnn = build_model(dict(DEFAULT_TDNN, feat_dim=80, num_tokens=500))
    dnn = build_model(dict(DEFAULT_DNN, feat_dim=80, num_tokens=500))
    assert tdnn.subsampling_factor == 3 and len(tdnn.layers) == 6 and dnn.subsampling_factor == 3


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model type 'lstm'"):
        build_model({"type": "lstm", "feat_dim": F, "num_tokens": V})
    with pytest.raises(ValueError, match="unknown model type None"):
        build_model({"feat_dim": F, "num_tokens": V})
    with pytest.raises(ValueError, match="unknown option.*hiden_dim"):
        build_model({"type": "tdnn", "feat_dim": F, "num_tokens": V, "hiden_dim": 4})
    with pytest.raises(ValueError, match="missing option.*num_tokens"):
        build_model({"type": "dnn", "feat_dim": F})


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(N, T, 8\)"):
        tiny_tdnn()(torch.zeros(1, 10, 7), torch.tensor([10]))
    with pytest.raises(ValueError, match="out of range"):
        tiny_dnn()(torch.zeros(1, 10, F), torch.tensor([11]))
