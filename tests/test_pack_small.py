"""The tensors pack does not share: batch-norm folding keeps eval outputs, the power-of-two
grid is exact on its own values, and ``small_bits: 8`` packs a folded model into a smaller
file that unpacks bit for bit (constants as one value, the rest as 8-bit codes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asrcomp.compress.bn_fold import fold_batch_norms
from asrcomp.compress.pack import PackConfig, pack, unpack
from asrcomp.compress.share import grid_codes, grid_values, quantised_names, round_small
from asrcomp.modeldir import load_model_dir, save_model_dir
from asrcomp.nnet import build_model
from asrcomp.utils import InputError

ARCH = {"type": "tdnn", "hidden_dim": 48, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-3, 0, 3]],
        "subsample_at": 1, "subsampling_factor": 3, "feat_dim": 20, "num_tokens": 11}


def _model():
    torch.manual_seed(0)
    model = build_model(ARCH)
    with torch.no_grad():  # trained-looking statistics and affine parameters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.copy_(10 ** torch.empty_like(m.running_var).uniform_(-2.3, 1.7))  # 0.005-50, as trained
                m.running_var[0] = 1e-5  # a nearly dead channel: its folded scale is ~300
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    return model.eval()


def _outputs(model):
    torch.manual_seed(1)
    x, lens = torch.randn(2, 60, 20), torch.tensor([60, 41])
    with torch.no_grad():
        return model(x, lens)[0]


def test_folding_keeps_eval_outputs_and_leaves_constant_statistics():
    model = _model()
    before = _outputs(model)
    folded = fold_batch_norms(model)
    assert folded == ["layers.0.bn", "layers.1.bn", "layers.2.bn"]
    for name in folded:
        bn = model.get_submodule(name)
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    after = _outputs(model)
    assert torch.allclose(after, before, atol=1e-5, rtol=1e-5)
    assert fold_batch_norms(model) == folded and torch.allclose(_outputs(model), before, atol=1e-5, rtol=1e-5)


def test_folded_8_bit_small_tensors_keep_the_outputs():
    """Batch norms folded and the unshared tensors in 8 bits: outputs within 1 % (the scales stay
    float16; on an absolute grid the ~300 scale of the dead channel would zero all the others)."""
    model = _model()
    ref = _outputs(model)
    fold_batch_norms(model)
    round_small(model, set(quantised_names(model)), 8)
    out = _outputs(model)
    assert (out - ref).abs().mean() < 0.01 * ref.abs().mean()
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.95


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=2, max_size=50),
       st.sampled_from([2, 4, 8]))
def test_grid_is_within_half_a_step_and_exact_on_its_own_values(xs, bits):
    x = np.array(xs, dtype=np.float32)
    e, k0, codes = grid_codes(x, bits)
    y = grid_values(e, k0, codes)
    assert codes.max() <= (1 << bits) - 1 and codes.dtype == np.uint8
    assert np.all(np.abs(y.astype(np.float64) - x) <= 2.0 ** e / 2 * (1 + 1e-6))
    if x.max() > x.min():  # the finest power of two that spans the range in 2**bits levels (+1 for rounding),
        # unless a finer one would not be float32 (below its max's precision or its smallest subnormal, 2**-149)
        assert 2.0 ** (e - 1) * ((1 << bits) - 1) < (x.max() - x.min()) * (1 + 1e-6) or e - 1 < \
            np.frexp(np.abs(x).max())[1] - 24 or e == -149
    assert np.array_equal(grid_values(*grid_codes(y, bits)), y)  # re-coding its values changes nothing


def _src(tmp_path):
    (tmp_path / "lang").mkdir()
    (tmp_path / "lang/tokens.txt").write_text("".join(f"t{i} {i}\n" for i in range(11)))
    return save_model_dir(tmp_path / "src", _model(), tmp_path / "lang/tokens.txt",
                          features={"num_mel_bins": 20}, history=[{"stage": "train"}])


def test_folded_8_bit_small_tensors_pack_smaller_and_unpack_bit_exact(tmp_path):
    src = _src(tmp_path)
    cfg = dict(bits=4, bits_output=4, prune_sparsity=0.5)
    plain = pack(src, tmp_path / "plain", PackConfig(**cfg))
    small = pack(src, tmp_path / "small", PackConfig(**cfg, fold_bn=True, small_bits=8))
    rows = {r.split("\t")[0]: r.split("\t") for r in (small / "pack_report.tsv").read_text().splitlines()}
    kind = {n: r[1] for n, r in rows.items()}
    assert kind["layers.0.bn.running_mean"] == kind["layers.0.bn.running_var"] == "const"
    assert kind["layers.0.bn.num_batches_tracked"] == "const"
    assert kind["layers.0.bn.bias"] == kind["layers.0.conv.bias"] == kind["output.bias"] == "grid"
    assert kind["layers.0.bn.weight"] == "float16"  # a scale: float16 (an absolute grid would zero the small ones)
    # 3 batch norms x 2 statistics x 48 channels x 2 bytes gone, 6 vectors of 48 and one of 11 halved,
    # less the header's growth
    saved = (plain / "model.acz").stat().st_size - (small / "model.acz").stat().st_size
    assert 3 * 2 * 48 * 2 + 4 * 48 < saved < 3 * 2 * 48 * 2 + 6 * 48 + 11 + 3 * 8
    m_small, _ = load_model_dir(small)
    m_un, _ = load_model_dir(unpack(small / "model.acz", tmp_path / "unpacked"))
    for k, v in m_small.state_dict().items():
        assert torch.equal(v, m_un.state_dict()[k]), k
    # what the 8 bits cost, against the float16 file: small next to what 4-bit sharing already does
    src_out, plain_out, small_out = (_outputs(load_model_dir(d)[0].eval()) for d in (src, plain, small))
    assert (small_out - plain_out).abs().mean() < 0.1 * (plain_out - src_out).abs().mean()
    assert load_model_dir(small)[1]["history"][-1]["small_bits"] == 8


def test_small_bits_other_than_16_or_8_is_an_input_error():
    with pytest.raises(InputError, match="small_bits"):
        PackConfig(small_bits=4).check()
