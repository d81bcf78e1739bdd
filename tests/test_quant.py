"""Low-bit linear quantisation (asrcomp quantize): per-channel int8 / int4 within half a step,
ternary with exactly three values per tensor, binary sign x per-channel mean, bit-packed codes
whose size is the expected bits, a decodable model dir whose shipped file reads back exactly,
and STE fine-tuning through fit()'s hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrcomp.compress import codes, quant
from asrcomp.compress.peers import load_peer
from asrcomp.modeldir import load_model_dir, save_model_dir
from asrcomp.utils import InputError
from tests.tiny_corpus import make_random_model_dir, make_tiny_corpus, tiny_cfg


@pytest.fixture
def src_dir(tmp_path):
    # one loud channel: per-channel scales must not let it spoil the rest
    return make_random_model_dir(tmp_path, loud_channel=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One tiny corpus (random features, phone lang, untrained TDNN) for the module's fit() runs."""
    return make_tiny_corpus(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("bits", [8, 4])
def test_int_per_channel_error_is_at_most_half_a_step(bits):
    torch.manual_seed(1)
    w = torch.randn(48, 30, 3) * torch.logspace(-3, 1, 48)[:, None, None]
    w[5] = 0  # an all-zero channel stays zero
    q = quant.fake_quant(w, bits)
    qmax = 2 ** (bits - 1) - 1
    step = w.reshape(48, -1).abs().amax(1) / qmax
    err = (q - w).reshape(48, -1).abs().amax(1)
    assert torch.all(err <= step / 2 * (1 + 1e-6))
    assert torch.all(q[5] == 0)
    for c in range(48):  # at most 2 qmax + 1 levels per channel, on the grid of that channel's step
        if step[c] > 0:
            levels = q[c] / step[c]
            assert len(torch.unique(q[c])) <= 2 * qmax + 1
            torch.testing.assert_close(levels, torch.round(levels), atol=1e-4, rtol=0)
    assert q.abs().reshape(48, -1).amax(1).sub(w.abs().reshape(48, -1).amax(1)).abs().max() < 1e-5  # max is exact


def test_ternary_has_exactly_three_values_per_tensor_at_the_twn_threshold():
    torch.manual_seed(2)
    w = torch.randn(64, 64, 3) + 0.1
    q = quant.fake_quant(w, 2)
    vals = torch.unique(q)
    assert len(vals) == 3 and vals[1] == 0 and vals[0] < 0 < vals[2]
    delta = 0.7 * w.abs().mean()
    assert torch.equal(q == 0, w.abs() <= delta)
    torch.testing.assert_close(vals[2], w[w > delta].mean())  # TTQ's W_p, W_n: the means of each side
    torch.testing.assert_close(-vals[0], w[w < -delta].abs().mean())
    assert vals[2] != -vals[0]  # asymmetric, as TTQ


def test_binary_is_sign_times_the_channel_mean():
    torch.manual_seed(3)
    w = torch.randn(16, 40)
    q = quant.fake_quant(w, 1)
    alpha = w.abs().mean(1)
    torch.testing.assert_close(q, torch.where(w >= 0, 1.0, -1.0) * alpha[:, None])
    assert all(len(torch.unique(q[c])) == 2 for c in range(16))


@pytest.mark.parametrize("levels, n", [(255, 1001), (15, 1001), (3, 1001), (2, 1001), (3, 5), (15, 1)])
def test_code_packing_round_trips_at_the_expected_size(levels, n):
    symbols = np.random.default_rng(levels).integers(0, levels, n)
    data = codes.pack_codes(symbols, levels)
    per = {255: 1, 15: 2, 3: 5, 2: 8}[levels]
    assert data.dtype == np.uint8 and len(data) == -(-n // per)
    assert np.array_equal(codes.unpack_codes(data, levels, n), symbols)


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_quantized_model_dir_reads_back_exactly_and_sizes_are_the_expected_bits(src_dir, tmp_path, bits):
    src, _ = load_model_dir(src_dir)
    sd = src.state_dict()
    out = quant.quantize_model_dir(src_dir, tmp_path / f"q{bits}", bits)
    model, meta = load_model_dir(out)
    got = model.state_dict()
    kind = quant.KINDS[bits]
    f = out / f"model.{kind}.zst"
    assert meta["packed_bytes"] == f.stat().st_size and meta["packed_file"] == f.name
    k, back = load_peer(f)  # the shipped file holds exactly final.pt's weights
    assert k == kind and all(torch.equal(back[n], got[n]) for n in got)
    plan = meta["history"][-1]["bits_per_tensor"]
    if bits <= 2:  # first and last layer at 8 bits (XNOR-Net, TTQ), the rest at `bits`
        assert plan == {n: 8 if n.startswith(("layers.0.", "output.")) else bits
                        for n, p in sd.items() if p.dim() >= 2}
    else:
        assert set(plan.values()) == {bits}
    # the codes take the expected bits: 8, 4, 1.6 (five trits a byte), 1 per weight, per tensor rounded up
    per_byte = {8: 1, 4: 2, 2: 5, 1: 8}
    expected = sum(-(-sd[n].numel() // per_byte[b]) for n, b in plan.items())
    assert meta["quant_code_bytes"] == expected
    n_q = sum(sd[n].numel() for n in plan)
    scales = sum(4 * sd[n].shape[0] for n in plan)
    small = sum(2 * t.numel() for n, t in sd.items() if n not in plan and t.is_floating_point())
    assert meta["quant_weights"] == n_q
    # torch.save's container costs a few hundred bytes per tensor; zstd may only shrink the rest
    assert expected + scales + small < meta["peer_bytes_before_zstd"] < expected + scales + small + 1500 * len(sd)
    assert meta["packed_bytes"] < meta["peer_bytes_before_zstd"]
    for n, w in sd.items():
        g = got[n]
        assert g.dtype == w.dtype and g.shape == w.shape
        if n in plan:
            if plan[n] == 8:
                step = w.reshape(len(w), -1).abs().amax(1) / 127
                assert torch.all((g - w).reshape(len(w), -1).abs().amax(1) <= step / 2 * (1 + 1e-5))
            elif plan[n] == 2:
                assert len(torch.unique(g)) == 3
            elif plan[n] == 1:
                assert all(len(torch.unique(g[c])) == 2 for c in range(len(g)))
        elif w.is_floating_point():
            assert torch.equal(g, w.half().float())  # biases, batchnorm: float16
        else:
            assert torch.equal(g, w)
    x, lens = torch.randn(2, 60, 20), torch.tensor([60, 41])
    with torch.no_grad():
        y, _ = model(x, lens)
    assert torch.isfinite(y).all()
    assert meta["history"][-1]["stage"] == f"quant-{kind}"


def test_keep_none_quantises_first_and_last_layer_too(src_dir, tmp_path):
    out = quant.quantize_model_dir(src_dir, tmp_path / "t", 2, keep="none")
    _, meta = load_model_dir(out)
    assert set(meta["history"][-1]["bits_per_tensor"].values()) == {2}


def test_bad_options_and_nan_weights_are_clear_errors(src_dir, tmp_path):
    with pytest.raises(InputError, match="3 is not one of"):
        quant.quantize_model_dir(src_dir, tmp_path / "x", 3)
    with pytest.raises(InputError, match="fine-tuning needs"):
        quant.quantize_model_dir(src_dir, tmp_path / "x", 4, epochs=1)
    model, _ = load_model_dir(src_dir)
    with torch.no_grad():
        model.layers[2].conv.weight[0, 0, 0] = float("nan")
    bad = save_model_dir(tmp_path / "bad", model, src_dir / "tokens.txt", features={"num_mel_bins": 20})
    with pytest.raises(InputError, match=r"non-finite weight layers\.2\.conv\.weight"):
        quant.quantize_model_dir(bad, tmp_path / "y", 4)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_ste_hooks_move_the_shadow_weights_and_keep_the_model_quantised():
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Linear(6, 3))
    plan = {"0.weight": 2, "1.weight": 4}
    ste = quant.SteHooks(model, plan)
    shadow0 = {n: s.clone() for n, s in ste.shadow.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(32, 8)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        g = {n: p.grad.clone() for n, p in model.named_parameters()}
        before = {n: s.clone() for n, s in ste.shadow.items()}
        opt.step()
        ste.after_step(model)
        for n in plan:  # straight-through: the shadow moves by exactly the update the quantised weight got
            torch.testing.assert_close(ste.shadow[n], before[n] - 0.1 * g[n])
            assert torch.equal(dict(model.named_parameters())[n], quant.fake_quant(ste.shadow[n], plan[n]))
    assert len(torch.unique(model[0].weight)) <= 3
    assert any(not torch.equal(shadow0[n], ste.shadow[n]) for n in plan)


def test_ste_fine_tuning_through_fit_writes_a_quantised_model_dir(corpus, tmp_path):
    c = corpus
    out = quant.quantize_model_dir(c["model"], tmp_path / "q2", 2, epochs=1, tcfg=tiny_cfg(1),
                                   train_dir=c["train"], valid_dir=c["valid"], lang_dir=c["lang"])
    model, meta = load_model_dir(out)
    assert meta["history"][-1]["fine_tuned_in"] == str(out / "ste")
    trained, _ = load_model_dir(out / "ste")
    for n, b in meta["history"][-1]["bits_per_tensor"].items():
        w = dict(model.named_parameters())[n]
        assert len(torch.unique(w)) == 3 if b == 2 else len(torch.unique(w[0])) <= 255
        torch.testing.assert_close(w, dict(trained.named_parameters())[n], rtol=1e-5, atol=1e-6)
    src, _ = load_model_dir(c["model"])
    assert not torch.equal(model.layers[1].conv.weight, quant.fake_quant(src.layers[1].conv.weight, 2))  # it trained


def test_cli_and_steps_script(src_dir, tmp_path):
    """``asrcomp quantize`` and ``steps/quantize.sh`` (the chain's ``quant`` entry) write the model dir."""
    import os
    import subprocess
    from pathlib import Path

    from asrcomp.cli import main

    assert main(["quantize", "--bits", "4", str(src_dir), str(tmp_path / "cli4")]) == 0
    _, meta = load_model_dir(tmp_path / "cli4")
    assert meta["packed_file"] == "model.int4.zst" and meta["history"][-1]["epochs"] == 0
    assert main(["quantize", "--bits", "2", "--epochs", "1", str(src_dir), str(tmp_path / "x")]) == 2  # no data dirs
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PATH=f"{root / '.venv' / 'bin'}:{os.environ['PATH']}")  # as path.sh sets it
    r = subprocess.run([str(root / "steps/quantize.sh"), "--bits", "1", "--keep", "none", str(src_dir),
                        str(tmp_path / "sh1")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    _, meta = load_model_dir(tmp_path / "sh1")
    assert set(meta["history"][-1]["bits_per_tensor"].values()) == {1}
    assert (tmp_path / "sh1/log/quantize.log").read_text().count("binary quantisation of") == 1


class Killed(Exception):
    pass


def test_ste_fine_tuning_killed_and_resumed_equals_uninterrupted(corpus, tmp_path, monkeypatch, caplog):
    """The shadow weights are checkpointed (FitHooks.state): a resumed run ends torch.equal to an uninterrupted one."""
    c = corpus
    args = dict(epochs=2, tcfg=tiny_cfg(2), train_dir=c["train"], valid_dir=c["valid"], lang_dir=c["lang"])
    ref = quant.quantize_model_dir(c["model"], tmp_path / "ref", 2, **args)
    shadow = torch.load(ref / "ste" / "epoch-2.pt", weights_only=False)["hooks"]["ste"]["shadow"]
    assert set(shadow) == set(load_model_dir(ref)[1]["history"][-1]["bits_per_tensor"])
    steps = torch.load(ref / "ste" / "epoch-1.pt", weights_only=False)["scheduler"]["last_epoch"]
    real, n = quant.SteHooks.after_step, [0]

    def dying(self, model):
        n[0] += 1
        if n[0] == steps + 1:  # inside epoch 2
            raise Killed("killed in epoch 2")
        return real(self, model)

    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(quant.SteHooks, "after_step", dying)
        with pytest.raises(Killed):
            quant.quantize_model_dir(c["model"], out, 2, **args)
    assert (out / "ste/epoch-1.pt").is_file() and not (out / "ste/epoch-2.pt").exists()
    with caplog.at_level("INFO", logger="asrcomp.train"):
        quant.quantize_model_dir(c["model"], out, 2, **args)
    assert "resuming from" in caplog.text and "epoch-1.pt (epoch 1 done)" in caplog.text
    a, b = load_model_dir(ref)[0].state_dict(), load_model_dir(out)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (ref / "model.ternary.zst").read_bytes() == (out / "model.ternary.zst").read_bytes()
