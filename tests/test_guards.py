"""Guards: a factorisation that does not shrink its layer is refused naming the numbers (TT,
Tucker, CP, Kaldi's shrinkage rule), a capped rank is logged, a non-finite weight or gradient
stops fit() naming the tensor, and k-means refuses NaN weights naming the tensor."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch

from asrcomp.compress import kmeans
from asrcomp.compress.stage import apply_tensorization, compress_model_dir, largest_shrinking_rank
from asrcomp.guards import NonFiniteError, check_model_finite
from asrcomp.nnet import build_model
from asrcomp.train import FitHooks, fit
from asrcomp.utils import InputError
from tests.tiny_corpus import make_tiny_corpus, tiny_cfg

ARCH = {"type": "tdnn", "hidden_dim": 64, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-3, 0, 3]],
        "subsample_at": 1, "subsampling_factor": 3, "feat_dim": 20, "num_tokens": 11}
LAYER = r"layers\.1\.conv"  # a 64 x (64 * 3) weight: 12,288 weights, modes 4x4x4,8x6x4 (tt, cp), 64,64x3 (tucker)


def _model():
    torch.manual_seed(0)
    return build_model(ARCH)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One tiny corpus (random features, phone lang, untrained TDNN) for the module's fit() runs."""
    return make_tiny_corpus(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("method, ranks, asked, after, best, best_after", [
    # full TT ranks of 4x4x4,8x6x4: min(32, 24 * 16) = 32, min(32 * 24, 16) = 16:
    # 4*8*32 + 32*4*6*16 + 16*4*4 = 13,568 > 12,288; rank 28: 4*8*28 + 28*24*16 + 16*16 = 11,904
    ("tt", 1000, "1000, capped to 1:32:16:1", 13568, 28, 11904),
    ("tt", [40, 20], "40:20, capped to 1:32:16:1", 13568, 28, 11904),
    # Tucker-2 at full ranks 64:64:3: 64*64*3 + 64*64 + 64*64 + 3*3; rank 46: 46*46*3 + 2*64*46 + 9
    ("tucker", 1000, "1000, capped to 64:64:3", 20489, 46, 12245),
    # CP: R * (4+4+4 + 8+6+4 + 1) = 31 R; the largest R with 31 R <= 12,288 is 396
    ("cp", 1000, "1000", 31000, 396, 12276),
])
def test_growing_factorisation_is_refused_naming_the_numbers(method, ranks, asked, after, best, best_after):
    """The error names the layer, the weights before / after and the largest uniform rank that shrinks it."""
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as e:
        apply_tensorization(model, method, LAYER, ranks=ranks)
    msg = str(e.value)
    assert msg.startswith(f"layer layers.1.conv: {method} rank {asked} (modes "), msg
    assert f"gives {after} weights, not fewer than the 12288 of the dense layer" in msg
    assert msg.endswith(f"the largest uniform rank that shrinks it is {best} ({best_after} weights)")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nothing changed


def test_largest_shrinking_rank_is_tight():
    """One more than the reported rank no longer shrinks the layer (and the rank itself does)."""
    from asrcomp.compress.stage import factor_params

    for method, row, col, n in (("tt", [4, 4, 4], [8, 6, 4], 12288), ("tucker", [64], [64, 3], 12288),
                                ("cp", [4, 4, 4], [8, 6, 4], 12288), ("tt", [6, 2], [8, 24], 2304)):
        for thr in (1.0, 0.5, 0.1):
            r = largest_shrinking_rank(method, row, col, thr * n)
            assert r >= 1 and factor_params(method, row, col, r) <= thr * n < factor_params(method, row, col, r + 1)


def test_no_rank_shrinks_a_tiny_layer_and_the_message_says_so():
    """A 4 x 4 Linear as TT 2x2,2x2: rank 1 already has 8 weights; threshold 0.4 allows 6."""
    model = torch.nn.Sequential()
    model.add_module("fc", torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"rank 1 \(modes 2x2,2x2\) gives 8 weights.*no rank shrinks it"):
        apply_tensorization(model, "tt", "fc", shapes="2x2,2x2", ranks=1, shrinkage_threshold=0.4)


def test_shrinkage_threshold_and_rel_error_search_are_checked_too():
    model = _model()
    rep = apply_tensorization(model, "tt", LAYER, ranks=4, shrinkage_threshold=0.1)  # 576 <= 1,228
    assert rep[0]["params_after"] == 576 < 0.1 * 12288
    # rank 12: 4*8*12 + 12*24*12 + 12*16 = 4,032 > 1,228; rank 6: 192 + 864 + 96 = 1,152; rank 7: 1,512
    with pytest.raises(ValueError, match=r"tt rank 12 \(modes 4x4x4,8x6x4\) gives 4032 weights, not fewer than the "
                                         r"12288 of the dense layer \(shrinkage threshold 0\.1: at most 1228\); the "
                                         r"largest uniform rank that shrinks it is 6 \(1152 weights\)"):
        apply_tensorization(_model(), "tt", LAYER, ranks=12, shrinkage_threshold=0.1)
    with pytest.raises(ValueError, match=r"rank 32, capped to 1:32:16:1 \(the smallest within relative error 0\.001\).* gives 13568 "
                                         r"weights.*largest uniform rank that shrinks it is 28"):
        apply_tensorization(_model(), "tt", LAYER, rel_error=0.001)


def test_a_capped_rank_is_logged_and_recorded(caplog):
    model = _model()
    with caplog.at_level(logging.WARNING, logger="asrcomp.compress.stage"):
        rep = apply_tensorization(model, "tt", LAYER, ranks=[100, 8])
    assert rep[0]["rank"] == "1:32:8:1" and rep[0]["rank_asked"] == "100:8"
    assert rep[0]["params_after"] == 4 * 8 * 32 + 32 * 4 * 6 * 8 + 8 * 4 * 4 == 7296
    assert re.search(r"layer layers\.1\.conv: tt ranks 1:100:8:1 capped to 1:32:8:1 \(the most modes "
                     r"4x4x4,8x6x4 allow\)", caplog.text)
    with caplog.at_level(logging.WARNING, logger="asrcomp.compress.stage"):
        caplog.clear()
        rep = apply_tensorization(_model(), "tt", LAYER, ranks=[8, 8])
    assert "capped" not in caplog.text and "rank_asked" not in rep[0]


def test_compress_stage_turns_the_refusal_into_an_input_error_and_writes_nothing(corpus, tmp_path):
    c = corpus
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"layer layers\.1\.conv: tt rank 1000, capped to .* gives \d+ weights, "
                                         r"not fewer than the 3072 of the dense layer"):
        compress_model_dir(c["model"], out, lambda m: apply_tensorization(m, "tt", LAYER, ranks=1000),
                           {"stage": "tt"}, c["train"], c["valid"], c["lang"], tiny_cfg(0))
    assert not out.exists()


# ----------------------------------------------------------------------------- non-finite weights / gradients


def test_check_model_finite_names_the_tensor():
    model = _model()
    check_model_finite(model, grads=False)
    with torch.no_grad():
        model.layers[2].conv.weight[3, 1, 0] = float("nan")
        model.output.bias[0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"non-finite weight layers\.2\.conv\.weight \(64, 64, 3\): "
                                             r"1 NaN and 0 infinite of 12288 elements"):
        check_model_finite(model, grads=False)


def test_nan_weight_stops_fit_at_the_first_step_naming_it(corpus, tmp_path):
    c = corpus
    from asrcomp.modeldir import load_model_dir

    model, _ = load_model_dir(c["model"])
    with torch.no_grad():
        model.layers[1].conv.weight[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"non-finite weight layers\.1\.conv\.weight \(32, 32, 3\) after the "
                                             r"backward pass of step 1: 1 NaN and 0 infinite of 3072 elements"):
        fit(model, tmp_path / "exp", c["train"], c["valid"], c["lang"], tiny_cfg(1))
    assert not (tmp_path / "exp" / "epoch-1.pt").exists() and not (tmp_path / "exp" / "final.pt").exists()


def test_nan_gradient_from_a_hook_stops_fit_naming_the_tensor(corpus, tmp_path):
    """A NaN put into one gradient (here by an after_backward hook) is named before clipping smears it."""
    c = corpus
    from asrcomp.modeldir import load_model_dir

    model, _ = load_model_dir(c["model"])
    calls = []

    def poison(m):
        calls.append(1)
        if len(calls) == 2:
            m.layers[2].bn.weight.grad[5] = float("nan")

    with pytest.raises(NonFiniteError, match=r"non-finite gradient of layers\.2\.bn\.weight \(32,\) after the "
                                             r"backward pass of step 2: 1 NaN and 0 infinite of 32 elements"):
        fit(model, tmp_path / "exp", c["train"], c["valid"], c["lang"], tiny_cfg(2), hooks=FitHooks(after_backward=poison))
    assert len(calls) == 2


def test_nan_written_by_a_step_stops_fit_naming_the_weight(corpus, tmp_path):
    c = corpus
    from asrcomp.modeldir import load_model_dir

    model, _ = load_model_dir(c["model"])

    def poison(m):
        with torch.no_grad():
            m.output.weight[1, 2] = float("inf")

    with pytest.raises(NonFiniteError, match=r"non-finite weight output\.weight .*after optimiser step 1: "
                                             r"0 NaN and 1 infinite"):
        fit(model, tmp_path / "exp", c["train"], c["valid"], c["lang"], tiny_cfg(1), hooks=FitHooks(after_step=poison))


def test_a_clean_fit_passes_the_guard(corpus, tmp_path):
    c = corpus
    from asrcomp.modeldir import load_model_dir

    model, _ = load_model_dir(c["model"])
    out = fit(model, tmp_path / "exp", c["train"], c["valid"], c["lang"], tiny_cfg(1))
    assert (out / "final.pt").is_file()


# ----------------------------------------------------------------------------- k-means


def test_kmeans_refuses_nan_weights_naming_the_tensor():
    w = np.random.default_rng(0).standard_normal(1000)
    w[17] = np.nan
    with pytest.raises(ValueError, match=r"layers\.3\.conv\.weight: 1 NaN and 0 infinite of 1000 weights "
                                         r"\(first at index \(17,\)\).*NaN codebook"):
        kmeans.quantize(w, 4, name="layers.3.conv.weight")
    with pytest.raises(ValueError, match="NaN"):
        kmeans.kmeans_1d(w, 16)


def test_pack_weight_sharing_names_the_nan_tensor():
    from asrcomp.compress.share import share_weights

    model = _model()
    with torch.no_grad():
        model.layers[0].conv.weight[2, 3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"layers\.0\.conv\.weight: 1 NaN .* \(first at index \(\d+,\)\)"):
        share_weights(model, {"output.weight": 4, "layers.0.conv.weight": 4})
