"""SVD, TT, Tucker and CP factorisation of layers: exactness at full rank, rank choice,
honest FLOPs, model dirs that round-trip and decode, and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorly as tl
import torch
from torch import nn

from asrcomp.compress import cp, svd, tt, tucker
from asrcomp.compress.dense import factor_dims, parse_shapes
from asrcomp.compress.stage import apply_svd, apply_tensorization, compress_model_dir
from asrcomp.modeldir import load_model_dir
from asrcomp.nnet import build_model, flops_per_second
from asrcomp.nnet.factorized import CpDense, LowRankLinear, TtDense, TuckerDense, tt_full_ranks
from asrcomp.train import TrainConfig
from asrcomp.utils import InputError

from conftest import QUICK_DECODE

torch.manual_seed(0)


def _conv():
    return nn.Conv1d(12, 8, 3, stride=2, dilation=2, padding=2)


@pytest.mark.parametrize("layer", [nn.Linear(20, 12), _conv()])
def test_svd_at_full_rank_reproduces_the_layer(layer):
    w = svd.weight_matrix(layer)
    new, kept = svd.factorize_layer(layer, min(w.shape))
    x = torch.randn(3, 20) if isinstance(layer, nn.Linear) else torch.randn(3, 12, 17)
    assert kept == pytest.approx(1.0)
    torch.testing.assert_close(new(x), layer(x), atol=1e-5, rtol=1e-5)


def test_truncated_svd_is_the_best_rank_k_approximation():
    layer = nn.Linear(30, 10)
    new, kept = svd.factorize_layer(layer, 4)
    s = torch.linalg.svdvals(layer.weight.detach().double())
    err = torch.linalg.norm((new.a.weight @ new.b.weight - layer.weight).detach().double())
    assert float(err) == pytest.approx(float(s[4:].pow(2).sum().sqrt()), rel=1e-4)  # Eckart-Young
    assert kept == pytest.approx(float(s[:4].pow(2).sum() / s.pow(2).sum()), rel=1e-6)


def test_energy_threshold_rank_matches_a_hand_computed_case():
    s = torch.tensor([3.0, 2.0, 1.0])  # energies 9, 4, 1 of 14: cumulative 0.643, 0.929, 1
    assert svd.rank_for_energy(s, 0.6) == 1
    assert svd.rank_for_energy(s, 9 / 14) == 1
    assert svd.rank_for_energy(s, 0.65) == 2
    assert svd.rank_for_energy(s, 0.93) == 3
    assert svd.rank_for_energy(s, 1.0) == 3
    # and through a layer whose weight has exactly these singular values
    layer = nn.Linear(3, 3, bias=False)
    q1, _ = torch.linalg.qr(torch.randn(3, 3))
    q2, _ = torch.linalg.qr(torch.randn(3, 3))
    layer.weight.data = q1 @ torch.diag(s) @ q2
    assert svd.choose_rank(layer, energy_threshold=0.9) == 2


def test_shrinkage_threshold_leaves_a_layer_alone():
    model = nn.Sequential()
    model.output = nn.Linear(10, 10)
    reports = apply_svd(model, "output", rank=6, shrinkage_threshold=1.0)  # 6 * 20 = 120 > 100 weights
    assert "skipped" in reports[0] and type(model.output) is nn.Linear
    reports = apply_svd(model, "output", rank=2, shrinkage_threshold=0.5)  # 40 <= 50
    assert "skipped" not in reports[0] and isinstance(model.output, LowRankLinear)


def test_factor_dims_and_shapes():
    assert factor_dims(1152, 3) == [12, 12, 8] and math.prod(factor_dims(384, 3)) == 384
    assert factor_dims(41, 2) == [41, 1]
    assert parse_shapes("8x8x6,12x12x8") == ([8, 8, 6], [12, 12, 8])
    with pytest.raises(ValueError):
        parse_shapes("8x8x6")


def test_tt_svd_at_full_ranks_reproduces_the_weight():
    w = torch.randn(24, 30)
    rs, cs = [4, 6], [5, 6]
    cores = tt.tt_svd(w, rs, cs, tt_full_ranks(rs, cs))
    np.testing.assert_allclose(tt.cores_to_matrix(cores), w.double().numpy(), atol=1e-10)
    low = tt.tt_svd(w, rs, cs, [1, 3, 1])
    assert np.linalg.norm(tt.cores_to_matrix(low) - w.double().numpy()) > 0.1 * float(w.norm())


@pytest.mark.parametrize("base", [nn.Linear(30, 24), nn.Conv1d(10, 24, 3, stride=3, dilation=1, padding=1)])
def test_tt_layer_forward_equals_the_dense_layer_built_from_its_cores(base):
    rs, cs = [4, 3, 2], [5, 3, 2]
    m = TtDense.from_spec(base, {"row_shape": rs, "col_shape": cs, "ranks": [1, 3, 2, 1]})
    with torch.no_grad():
        for p in m.cores:
            p.normal_()
        m.bias.normal_()
    dense = torch.from_numpy(tt.cores_to_matrix([p.detach().double().numpy() for p in m.cores])).float()
    ref = type(base)(*([30, 24] if isinstance(base, nn.Linear) else [10, 24, 3]),
                     **({} if isinstance(base, nn.Linear) else {"stride": 3, "padding": 1}))
    ref.weight.data = dense.reshape(ref.weight.shape)
    ref.bias.data = m.bias.detach().clone()
    x = torch.randn(2, 30) if isinstance(base, nn.Linear) else torch.randn(2, 10, 20)
    torch.testing.assert_close(m(x), ref(x), atol=1e-4, rtol=1e-4)
    # FLOPs are those of the contraction, not of the dense matrix
    expected = 0
    c_rest, o_done = 30, 1
    for k, (o, c) in enumerate(zip(rs, cs)):
        c_rest //= c
        expected += 2 * c_rest * o_done * m.ranks[k] * c * o * m.ranks[k + 1]
        o_done *= o
    y = m(x)
    assert m.flops((x,), y) == (y.numel() // 24) * (expected + 24)


def test_tucker_and_cp_layers_equal_tensorly_reconstructions():
    w = torch.randn(24, 30)
    rs, cs = [4, 6], [5, 6]
    core, factors = tucker.tucker_factors(w, rs, cs, [4, 6, 5, 6])  # full ranks: exact
    m = TuckerDense(30, 24, False, None, rs, cs, [4, 6, 5, 6])
    m.set_factors(core, factors)
    torch.testing.assert_close(m.weight(), w, atol=1e-4, rtol=1e-4)
    weights, factors = cp.cp_factors(w, rs, cs, 5, n_iter_max=20)
    c = CpDense(30, 24, False, None, rs, cs, 5)
    c.set_factors(weights, factors)
    ref = tl.cp_to_tensor((weights, factors)).reshape(24, 30)
    np.testing.assert_allclose(c.weight().detach().double().numpy(), ref, atol=1e-4)
    x = torch.randn(7, 30)
    torch.testing.assert_close(c(x), x @ torch.from_numpy(ref).float().T, atol=1e-4, rtol=1e-4)


def test_tucker2_of_a_conv_kernel_keeps_its_taps_and_is_cheaper():
    conv = nn.Conv1d(32, 32, 3, padding=1)
    model = nn.Module()
    model.conv = conv
    dense_flops = 2 * 32 * 96
    reports = apply_tensorization(model, "tucker", "conv", ranks=8)
    assert reports[0]["modes"] == "32,32x3" and reports[0]["rank"] == "8:8:3"
    assert model.conv.row_flops() < dense_flops / 2
    assert reports[0]["params_after"] < reports[0]["params_before"] / 3


def _tiny_train_cfg(epochs=0):
    return TrainConfig(epochs=epochs, max_frames=3000, lr=1e-3, warmup_steps=5, avg=1, num_threads=1,
                       device="cpu")


def test_factorised_model_dir_round_trips_and_decodes(quick_tdnn, quick_data, tmp_path):
    from functools import partial

    from asrcomp.decode_dir import decode

    args = (quick_data / "train", quick_data / "dev", quick_data / "lang_bpe500")
    svd_dir = compress_model_dir(quick_tdnn, tmp_path / "svd", partial(apply_svd, rank=16), {"stage": "svd"},
                                 *args, _tiny_train_cfg(epochs=1))
    tt_dir = compress_model_dir(svd_dir, tmp_path / "tt", partial(
        apply_tensorization, method="tt", layers=r"layers\.[12]\.conv", ranks=4), {"stage": "tt"},
        *args, _tiny_train_cfg())
    model, meta = load_model_dir(tt_dir)
    assert set(meta["arch"]["factorized"]) == {"output", "layers.1.conv", "layers.2.conv"}
    assert [h["stage"] for h in meta["history"]] == ["train", "svd", "tt"]
    assert meta["history"][1]["layers"][0]["rank"] == 16
    again = build_model(meta["arch"])
    again.load_state_dict(torch.load(tt_dir / "final.pt", weights_only=True))
    again.eval()
    x, lens = torch.randn(2, 50, 80), torch.tensor([50, 41])
    torch.testing.assert_close(again(x, lens)[0], model(x, lens)[0])
    base, _ = load_model_dir(quick_tdnn)
    assert meta["num_params"] < sum(p.numel() for p in base.parameters())
    assert meta["flops_per_second"] == flops_per_second(model, 100.0)
    res = decode(tt_dir, quick_data / "test", quick_data / "lang_bpe500_3gram", QUICK_DECODE)
    assert (res["tlg"]["dir"] / "wer").read_text().startswith("%WER")


@pytest.mark.parametrize("transform, message", [
    (lambda m: apply_svd(m, "output", rank=10_000), "larger than min"),
    (lambda m: apply_svd(m, "no_such_layer", rank=4), "matches no"),
    (lambda m: apply_tensorization(m, "tt", r"layers\.1\.conv", shapes="4x4x2,8x8x3", ranks=4), "multiply to"),
])
def test_bad_options_are_clear_errors_and_write_nothing(quick_tdnn, quick_data, tmp_path, transform, message):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        compress_model_dir(quick_tdnn, out, transform, {"stage": "x"}, quick_data / "train", quick_data / "dev",
                           quick_data / "lang_bpe500", _tiny_train_cfg())
    assert not out.exists()


def test_compress_cli_svd_energy_threshold(quick_tdnn, quick_data, tmp_path):
    from asrcomp.cli import main

    out = tmp_path / "svd_e"
    assert main(["compress", "svd", "--energy-threshold", "0.5", "--epochs", "0", str(quick_tdnn), str(out),
                 str(quick_data / "train"), str(quick_data / "dev"), str(quick_data / "lang_bpe500")]) == 0
    _, meta = load_model_dir(out)
    rank = meta["history"][-1]["layers"][0]["rank"]
    base, _ = load_model_dir(quick_tdnn)
    s = torch.linalg.svdvals(base.output.weight.detach().double())
    assert rank == svd.rank_for_energy(s, 0.5) and 1 <= rank < 64
    assert main(["compress", "svd", "--epochs", "0", str(quick_tdnn), str(tmp_path / "x"),
                 str(quick_data / "train"), str(quick_data / "dev"), str(quick_data / "lang_bpe500")]) != 0
