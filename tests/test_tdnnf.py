"""TDNN-F (``asrcomp/nnet/tdnnf.py``): shapes and lengths, padding invariance, arch round-trip,
parameter and FLOP counts by hand, Kaldi's semi-orthogonal update (exact step and convergence),
fit() applying it, compression layer matching and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrcomp.nnet import arch_of, build_model, count_params, flops_per_second
from asrcomp.nnet.tdnnf import (DEFAULT_TDNNF, ORTHONORMAL_SPEED, TdnnfLayer, Tdnnf, constrain_semi_orthogonal,
                                semi_orthogonality_error)

F, V = 20, 11
TINY = dict(type="tdnnf", feat_dim=F, num_tokens=V, hidden_dim=32, bottleneck_dim=12,
            input_contexts=[[-1, 0, 1], [-2, 0, 2]], subsample_at=1, subsampling_factor=3,
            time_strides=[1, 0, 2, -1], bypass_scale=0.66, dropout=0.1)


def _randomise_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _model(**kw) -> Tdnnf:
    torch.manual_seed(0)
    m = build_model(dict(TINY, **kw))
    _randomise_bn(m)
    return m


@pytest.mark.parametrize("kw", [dict(subsampling_factor=1), dict(subsampling_factor=3, subsample_at=0),
                                dict(subsampling_factor=3, subsample_at=1), dict(subsampling_factor=2),
                                dict(subsampling_factor=4, input_contexts=[[-2, -1, 0, 1, 2]], subsample_at=0)],
                         ids=["k1", "k3-at0", "k3-at1", "k2", "k4-one-input-layer"])
def test_shapes_and_out_lens(kw):
    m = _model(**kw).eval()
    k = m.subsampling_factor
    lens = torch.tensor([50, 37, 12, 1])
    x = torch.randn(4, 50, F)
    with torch.no_grad():
        lp, out_lens = m(x, lens)
    t_out = (50 - 1) // k + 1
    assert lp.shape == (4, t_out, V)
    assert out_lens.tolist() == [(n - 1) // k + 1 for n in lens.tolist()] == m.out_lens(lens).tolist()
    assert torch.allclose(lp.exp().sum(-1), torch.ones(4, t_out), atol=1e-5)
    assert m.subsampling_factor == k and m.num_tokens == V and m.feat_dim == F


def test_padded_batch_equals_each_utterance_alone():
    m = _model(prefinal_dim=8).eval()
    lens = [61, 44, 30, 7, 1]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(lens), max(lens), F, generator=g) * 3  # padding holds garbage, not zeros
    with torch.no_grad():
        lp, out_lens = m(x, torch.tensor(lens))
        for n, t in enumerate(lens):
            alone, alone_len = m(x[n:n + 1, :t], torch.tensor([t]))
            k = int(alone_len)
            assert int(out_lens[n]) == k
            assert (lp[n, :k] - alone[0]).abs().max() < 1e-5, n


def test_masked_batch_norm_statistics_ignore_padding():
    """Training mode: the BatchNorm running statistics of a padded batch are those of the valid
    frames, so appending padding frames to the batch changes nothing."""
    x = torch.randn(3, 40, F)
    lens = torch.tensor([40, 25, 9])
    stats = []
    for pad in (0, 17):
        m = _model(dropout=0.0)
        m.train()
        xp = torch.cat([x, torch.randn(3, pad, F) * 5], dim=1)
        m(xp, lens)
        stats.append(torch.cat([b.running_mean for b in m.modules() if isinstance(b, torch.nn.BatchNorm1d)]))
    assert torch.allclose(stats[0], stats[1], atol=1e-5)


def test_arch_round_trip_gives_identical_outputs():
    m = _model(prefinal_dim=8).eval()
    arch = arch_of(m)
    assert arch["type"] == "tdnnf" and arch["time_strides"] == [1, 0, 2, -1] and arch["prefinal_dim"] == 8
    torch.manual_seed(123)  # another init: only load_state_dict can make them equal
    m2 = build_model(arch)
    m2.load_state_dict(m.state_dict())
    m2.eval()
    x, lens = torch.randn(2, 33, F), torch.tensor([33, 20])
    with torch.no_grad():
        a, b = m(x, lens)[0], m2(x, lens)[0]
    assert torch.equal(a, b)
    assert arch_of(m2) == arch
    with pytest.raises(ValueError, match="bottleneck_dim"):
        build_model(dict(TINY, bottleneck_dim=32))
    with pytest.raises(ValueError, match="subsample_at"):
        build_model(dict(TINY, subsample_at=2))
    with pytest.raises(ValueError, match="time_strides"):
        build_model(dict(TINY, time_strides=[1, 1.5]))


def _hand_params(feat, hid, bott, contexts, strides, prefinal, vocab):
    n = 0
    for i, c in enumerate(contexts):
        n += (feat if i == 0 else hid) * len(c) * hid + hid + 2 * hid  # conv weight + bias, BN scale + shift
    for s in strides:
        taps = 2 if s else 1
        n += hid * taps * bott + bott * taps * hid + hid + 2 * hid  # linear (no bias), affine, BN
    n += hid * prefinal
    return n + (prefinal or hid) * vocab + vocab


@pytest.mark.parametrize("prefinal", [0, 8])
def test_param_count_by_hand(prefinal):
    m = _model(prefinal_dim=prefinal)
    assert count_params(m) == _hand_params(F, 32, 12, TINY["input_contexts"], TINY["time_strides"], prefinal, V)
    # the numbers the synth default config stands on: 80-dim fbank, 41 phone tokens
    d = build_model(dict(DEFAULT_TDNNF, feat_dim=80, num_tokens=41))
    assert count_params(d) == _hand_params(80, 512, 96, [[-2, -1, 0, 1, 2]], DEFAULT_TDNNF["time_strides"], 0, 41) \
        == 2_704_937


def test_flops_by_hand():
    """1 s = 100 frames: the input layers at 100 frames (stride 3 at layer 1 -> 34), the rest at 34."""
    m = _model(prefinal_dim=8)
    h, b = 32, 12
    t0, t1 = 100, 34
    flops = t0 * (2 * F * 3 * h + h) + t1 * (2 * h * 3 * h + h)  # input layers (conv + bias)
    for s in TINY["time_strides"]:
        taps = 2 if s else 1
        flops += t1 * (2 * h * taps * b) + t1 * (2 * b * taps * h + h)  # linear (no bias), affine
    flops += t1 * 2 * h * 8 + t1 * (2 * 8 * V + V)  # prefinal, output
    assert flops_per_second(m) == flops


def _singular(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(w.detach().double().reshape(w.shape[0], -1))


def test_one_update_is_kaldis_step():
    """For M = U diag(sigma) V^T the update maps each sigma to sigma (1 - 4 nu (sigma^2 / s^2 - 1)),
    s^2 = sum sigma^4 / sum sigma^2, nu = 0.125 (halved when sum sigma^4 * r / (sum sigma^2)^2 > 1.02)."""
    g = torch.Generator().manual_seed(0)
    for sigma in ([1.0, 1.02, 0.97, 1.01, 0.99, 1.03], [2.0, 1.0, 0.5, 1.5, 0.8, 1.2]):  # near / far
        sig = torch.tensor(sigma, dtype=torch.float64)
        r, c = len(sigma), 15
        u, _ = torch.linalg.qr(torch.randn(r, r, generator=g, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(c, r, generator=g, dtype=torch.float64))
        w = (u * sig) @ v.T
        for weight in (w.clone(), w.T.clone().contiguous()):  # rows <= cols, and a tall one (constrained by columns)
            s2 = (sig ** 4).sum() / (sig ** 2).sum()
            ratio = (sig ** 4).sum() * r / (sig ** 2).sum() ** 2
            nu = ORTHONORMAL_SPEED / (2 if ratio > 1.02 else 1)
            want = (sig * (1 - 4 * nu * (sig ** 2 / s2 - 1))).sort(descending=True).values
            constrain_semi_orthogonal(weight)
            assert torch.allclose(_singular(weight), want, atol=1e-12, rtol=1e-10)
        assert (ratio > 1.02) == (sigma[0] == 2.0)


def test_constraint_converges_on_random_weights():
    """20 updates from the random init: M M^T within 1e-4 (relative, Frobenius) of c I, from errors
    of order 1; ||M||_F is kept (floating scale, the update is orthogonal to M)."""
    m = _model(prefinal_dim=8)
    before = m.orthogonality_errors()
    assert set(before) == {"layers.2.linear", "layers.3.linear", "layers.4.linear", "layers.5.linear", "prefinal"}
    assert min(before.values()) > 0.5
    norms = {n: float(mod.weight.detach().norm()) for n, mod in m.constrained_layers()}
    for _ in range(20):
        m.apply_constraints()
    after = m.orthogonality_errors()
    assert max(after.values()) < 1e-4, after
    for n, mod in m.constrained_layers():
        assert abs(float(mod.weight.detach().norm()) / norms[n] - 1) < 0.1, n
        s = _singular(mod.weight)
        assert float(s.max() / s.min()) < 1 + 1e-4
    # and a tall Conv1d weight (out > in * kernel) is constrained by its columns
    w = torch.randn(40, 8, 2)
    for _ in range(20):
        constrain_semi_orthogonal(w)
    assert semi_orthogonality_error(w) < 1e-4
    # the step schedule: only every constrain_every-th step
    m2 = _model(constrain_every=4)
    w0 = m2.layers[2].linear.weight.detach().clone()
    for step in (1, 2, 3, 5):
        m2.apply_constraints(step)
    assert torch.equal(m2.layers[2].linear.weight, w0)
    m2.apply_constraints(8)
    assert not torch.equal(m2.layers[2].linear.weight, w0)


def test_fit_applies_the_constraint(tmp_path, monkeypatch):
    from asrcomp.lang import load_lang
    from asrcomp.modeldir import load_model_dir
    from asrcomp.train import fit
    from tests.tiny_corpus import FEAT_DIM, make_tiny_corpus, tiny_cfg

    c = make_tiny_corpus(tmp_path)
    arch = dict(TINY, feat_dim=FEAT_DIM, num_tokens=load_lang(c["lang"]).num_tokens, dropout=0.0)
    torch.manual_seed(0)
    model = build_model(arch)
    fresh = model.orthogonality_errors()
    steps = []
    orig = Tdnnf.apply_constraints

    def counting(self, step=None):
        steps.append(step)
        return orig(self, step)

    monkeypatch.setattr(Tdnnf, "apply_constraints", counting)
    exp = fit(model, tmp_path / "exp", c["train"], c["valid"], c["lang"], tiny_cfg(epochs=2))
    assert len(steps) >= 6 and steps == list(range(len(steps)))  # once per optimiser step, global step numbers
    trained, _ = load_model_dir(exp)
    errs = trained.orthogonality_errors()
    # >= 2 updates (steps 0 and 4) against a few small Adam steps: the error falls well below the init's
    assert all(errs[n] < 0.5 * fresh[n] for n in fresh), (fresh, errs)


def test_compression_stages_find_the_factors():
    from asrcomp.compress.layers import match_layers
    from asrcomp.compress.stage import apply_svd

    m = _model(prefinal_dim=8).eval()
    assert match_layers(m, r"layers\.\d+\.affine") == [f"layers.{i}.affine" for i in range(2, 6)]
    assert match_layers(m, r"layers\.\d+\.(conv|linear)") == ["layers.0.conv", "layers.1.conv"] + [
        f"layers.{i}.linear" for i in range(2, 6)]
    assert match_layers(m, "prefinal|output") == ["prefinal", "output"]
    x, lens = torch.randn(2, 40, F), torch.tensor([40, 29])
    # the 12 x (32 x 2) linear factor at full rank 12: the same function, through the outside padding
    apply_svd(m, layers=r"layers\.2\.linear", rank=12, shrinkage_threshold=2.0)
    with torch.no_grad():
        ref = _model(prefinal_dim=8).eval()(x, lens)[0]
        assert (m(x, lens)[0] - ref).abs().max() < 1e-5
    apply_svd(m, layers=r"layers\.3\.affine", rank=4)
    assert set(m.factorized) == {"layers.2.linear", "layers.3.affine"}
    assert "layers.2.linear" not in dict(m.constrained_layers())  # a replaced factor is left alone
    m.apply_constraints()
    rebuilt = build_model(arch_of(m))
    rebuilt.load_state_dict(m.state_dict())
    rebuilt.eval()
    assert isinstance(rebuilt.layers[2], TdnnfLayer)
    with torch.no_grad():
        assert torch.equal(rebuilt(x, lens)[0], m(x, lens)[0])


def test_onnx_export_equals_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from asrcomp.modeldir import save_model_dir
    from asrcomp.onnx_export import _session, export_onnx

    m = _model(prefinal_dim=8, feat_dim=80).eval()
    tokens = tmp_path / "lang" / "tokens.txt"
    tokens.parent.mkdir()
    tokens.write_text("".join(f"t{i} {i}\n" for i in range(V)))
    src = save_model_dir(tmp_path / "src", m, tokens, features={"num_mel_bins": 80, "cmvn": "none"},
                         history=[{"stage": "train"}])
    out = export_onnx(src, tmp_path / "onnx")
    lens = np.array([121, 64, 10, 1])
    x = np.random.default_rng(7).standard_normal((len(lens), lens.max(), 80)).astype(np.float32)
    lp, lp_lens = _session(out / "model.onnx").run(None, {"x": x, "x_lens": lens})
    with torch.no_grad():
        ref, ref_lens = m(torch.from_numpy(x), torch.from_numpy(lens))
    assert lp_lens.tolist() == ref_lens.tolist()
    err = max(float(np.abs(lp[n, :k] - ref[n, :k].numpy()).max()) for n, k in enumerate(lp_lens.tolist()))
    assert err < 1e-4
