"""The uniform grid of pack's ``quantizer: uniform``: levels on the step, error within half a
step, the step halving per width, and a lower error than k-means at equal index entropy on a
bell-shaped tensor (what makes it worth its place beside k-means); pack/unpack stays exact;
``allocation: equal-step`` puts every shared tensor on one grid, the finest that fits the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrcomp.compress.kmeans import quantize
from asrcomp.compress.alloc import plan_step
from asrcomp.compress.pack import PackConfig, pack, unpack
from asrcomp.compress.share import share_tensor
from asrcomp.compress.uniform import quantize_uniform, uniform_step
from asrcomp.modeldir import load_model_dir
from asrcomp.utils import InputError
from tests.test_pack_small import _src


def _entropy(idx):
    _, c = np.unique(idx, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def test_levels_lie_on_the_step_and_values_within_half_of_it():
    x = np.random.default_rng(0).normal(size=5000).astype(np.float32)
    for b in (1, 2, 4, 6):
        book, idx = quantize_uniform(x, b)
        step = uniform_step(x, b)
        assert step == pytest.approx(np.sqrt(np.mean(x.astype(np.float64) ** 2)) * 2.0 ** (2 - b))
        k = book / step
        assert np.allclose(k, np.rint(k), atol=1e-4) and np.all(np.diff(book) > 0)
        assert np.max(np.abs(book[idx] - x)) <= step / 2 * (1 + 1e-5)
    assert uniform_step(x, 3) == pytest.approx(uniform_step(x, 2) / 2)
    with pytest.raises(ValueError, match="layer.w"):
        quantize_uniform(np.array([1.0, np.nan]), 2, name="layer.w")


def test_lower_error_than_kmeans_at_equal_entropy_on_laplacian_weights():
    x = np.random.default_rng(0).laplace(size=50000).astype(np.float32)
    uni = []
    for b in range(1, 7):
        book, idx = quantize_uniform(x, b)
        uni.append((_entropy(idx), float(np.mean((book[idx] - x) ** 2))))
    rates, logerr = np.array([r for r, _ in uni]), np.log([e for _, e in uni])
    for b in (3, 4, 5):  # k-means' entropy-coded rate, and the uniform grid's error at that rate
        book, idx = quantize(x, b)
        rate, err = _entropy(idx), float(np.mean((book[idx] - x) ** 2))
        assert np.exp(np.interp(rate, rates, logerr)) < 0.8 * err, b


def test_uniform_pack_unpacks_bit_exact_and_shares_zeros_kept(tmp_path):
    w = torch.tensor([0.0, 0.0, 0.5, -0.25, 1.0, 0.0, 0.1, -0.9, 0.3, 0.0])
    new, a, k = share_tensor(w, 2, "w", "uniform")
    assert np.all(new[w.numpy() == 0] == 0) and np.all(a[w.numpy() == 0] == k)  # pruned zeros stay out
    assert np.all(a[new == 0] == k) and (new == 0).sum() > (w == 0).sum()  # and so does the grid's zero level
    dense = torch.linspace(-1, 1, 101)
    new, a, k = share_tensor(dense, 3, "d", "uniform")
    assert np.array_equal(a == k, new == 0) and 0 < (new == 0).sum() < 101
    with pytest.raises(ValueError, match="quantizer"):
        share_tensor(w, 2, "w", "lloyd")
    src = _src(tmp_path)
    packed = pack(src, tmp_path / "u", PackConfig(bits=3, bits_output=3, quantizer="uniform"))
    sd_p = load_model_dir(packed)[0].state_dict()
    sd_u = load_model_dir(unpack(packed / "model.acz", tmp_path / "un"))[0].state_dict()
    for n, v in sd_p.items():
        assert torch.equal(v, sd_u[n]), n
    levels = torch.unique(sd_p["layers.0.conv.weight"]).double().numpy()
    k = levels / uniform_step(load_model_dir(src)[0].state_dict()["layers.0.conv.weight"].numpy(), 3)
    assert np.allclose(k, np.rint(k), atol=1e-4)  # no fine-tuning: the levels are the grid's
    assert load_model_dir(packed)[1]["history"][-1]["quantizer"] == "uniform"


def test_plan_step_finds_the_finest_step_that_fits():
    w = [np.linspace(-1, 1, 50), np.full(3, 0.25)]
    calls = []

    def nbytes(step):  # any decreasing size; plan_step only compares it with the target
        calls.append(step)
        return int(1000 / step)

    step, b, trials = plan_step(w, 5000, nbytes)
    assert b == nbytes(step) <= 5000 < nbytes(step * (1 - 2e-4))
    assert trials[0][0] == pytest.approx(2.01) and len(trials) <= 40
    assert plan_step(w, 10 ** 9, nbytes)[0] == trials[1][0]  # everything fits: the finest step tried
    with pytest.raises(ValueError, match="below the smallest file"):
        plan_step(w, 100, nbytes)


def test_equal_step_pack_shares_one_grid_under_the_target(tmp_path):
    src = _src(tmp_path)
    cfg = dict(quantizer="uniform", allocation="equal-step", fold_bn=True, small_bits=8)
    free = (pack(src, tmp_path / "u6", PackConfig(bits=6, bits_output=6, quantizer="uniform")) / "model.acz").stat().st_size
    steps = {}
    for target in (free // 2, free // 3):  # no data needed: nothing is measured
        out = pack(src, tmp_path / f"e{target}", PackConfig(target_bytes=target, **cfg))
        size = (out / "model.acz").stat().st_size
        model, meta = load_model_dir(out)
        step = steps[target] = meta["history"][-1]["grid_step"]
        assert size <= target and meta["bit_allocation"]["packed_bytes"] == size
        assert size > 0.9 * target  # the finest step that fits, not just any
        sd = model.state_dict()
        for n in meta["history"][-1]["bits_per_tensor"]:
            k = sd[n].double().numpy() / step
            assert np.allclose(k, np.rint(k), atol=1e-3), n  # every shared tensor on the one grid
        back = load_model_dir(unpack(out / "model.acz", tmp_path / f"un{target}"))[0].state_dict()
        assert all(torch.equal(v, back[n]) for n, v in sd.items())
    assert steps[free // 3] > steps[free // 2]
    with pytest.raises(InputError, match="below the smallest file"):
        pack(src, tmp_path / "tiny", PackConfig(target_bytes=100, **cfg))
    with pytest.raises(InputError, match="equal-step needs quantizer uniform"):
        PackConfig(target_bytes=free, allocation="equal-step").check()
