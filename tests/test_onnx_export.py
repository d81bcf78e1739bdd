"""ONNX export of model dirs: onnxruntime equals PyTorch, factorised layers stay factorised, int8/fp16."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from asrcomp.compress.stage import apply_svd, apply_tensorization  # noqa: E402
from asrcomp.modeldir import load_model_dir, save_model_dir  # noqa: E402
from asrcomp.nnet import build_model, count_params  # noqa: E402
from asrcomp.onnx_export import (_session, export_onnx, global_cmvn, quantize, read_metadata, to_fp16,  # noqa: E402
                                 weight_report)
from asrcomp.utils import InputError  # noqa: E402

V = 12
TDNN = dict(type="tdnn", feat_dim=80, num_tokens=V, hidden_dim=48,
            contexts=[[-2, -1, 0, 1, 2], [-1, 0, 1], [-3, 0, 3]], subsample_at=1, subsampling_factor=3)
DNN = dict(type="dnn", feat_dim=80, num_tokens=V, hidden_dim=48, num_layers=2, splice=2, subsampling_factor=3)
TDNNF = dict(type="tdnnf", feat_dim=80, num_tokens=V, hidden_dim=32, bottleneck_dim=8, input_contexts=[[-1, 0, 1]],
             subsample_at=0, subsampling_factor=3, time_strides=[1, 0, 2], prefinal_dim=8)
NO_CMVN = {"cmvn": "none"}


def _tokens(tmp_path):
    p = tmp_path / "lang" / "tokens.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(f"{t} {i}\n" for i, t in enumerate(["<blk>"] + [f"p{i}" for i in range(1, V)] + ["#0"])))
    return p


def _randomise_bn(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _model_dir(tmp_path, arch, name, factorise=None, features=NO_CMVN):
    torch.manual_seed(0)
    model = build_model(arch).eval()
    _randomise_bn(model)
    if factorise:
        factorise(model)
    return save_model_dir(tmp_path / name, model, _tokens(tmp_path), features=features)


def _svd(m):
    apply_svd(m, layers=r"output|layers\.1\.conv", rank=8)


def _tt(m):
    apply_tensorization(m, "tt", layers=r"layers\.[12]\.conv", shapes="8x6,12x12", ranks=6)


def _tt_tap(m):  # in-modes (C, K): the export's tap-major path
    apply_tensorization(m, "tt", layers=r"layers\.[12]\.conv", shapes="8x6,48x3", ranks=6)


def _tt3(m):
    apply_tensorization(m, "tt", layers=r"layers\.[12]\.conv", shapes="4x3x4,4x6x6", ranks=4)


def _dnn_tt(m):
    apply_tensorization(m, "tt", layers=r"layers\.1\.linear", shapes="8x6,8x6", ranks=4)


def _tucker(m):
    apply_tensorization(m, "tucker", layers=r"layers\.[12]\.conv", ranks=[16, 16, 3])


def _cp(m):
    apply_tensorization(m, "cp", layers=r"layers\.[12]\.conv", shapes="8x6,12x12", ranks=10)


def _ort_vs_torch(model_dir, onnx_dir, lens=(121, 64, 10)):
    model, _ = load_model_dir(model_dir)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(len(lens), max(lens), 80, generator=g)
    x_lens = torch.tensor(lens)
    with torch.no_grad():
        ref, ref_lens = model(x, x_lens)
    out, out_lens = _session(onnx_dir / "model.onnx").run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
    assert out_lens.tolist() == ref_lens.tolist()
    assert out.shape[2] == V
    return max(float(np.abs(out[n, :k] - ref[n, :k].numpy()).max()) for n, k in enumerate(out_lens.tolist()) if k)


def _runtime_ops(onnx_path, tmp_path) -> Counter:
    """The op types of the graph onnxruntime runs (after its basic optimisations: constants folded)."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node)


@pytest.mark.parametrize("arch,factorise", [(TDNN, None), (DNN, None), (TDNN, _svd), (TDNN, _tt), (TDNN, _tt_tap),
                                            (TDNN, _tt3), (TDNN, _tucker), (TDNN, _cp), (DNN, _dnn_tt)],
                         ids=["tdnn", "dnn", "svd", "tt", "tt-tap", "tt3", "tucker", "cp", "dnn-tt"])
def test_onnx_equals_pytorch_and_stays_factorised(tmp_path, arch, factorise):
    src = _model_dir(tmp_path, arch, "m", factorise)
    out = export_onnx(src, tmp_path / "onnx")
    assert _ort_vs_torch(src, out) < 1e-4
    meta = read_metadata(out / "model.onnx")
    assert meta["model_type"] == "zipformer2_ctc" and int(meta["vocab_size"]) == V
    assert (out / "tokens.txt").read_text() == (src / "tokens.txt").read_text()
    # factorised: the MatMul/Conv weights are the factors, never the dense matrix they stand for
    model, _ = load_model_dir(src)
    rep = weight_report(out / "model.onnx")
    dense = build_model(arch)
    dense_weights = sum(p.numel() for n, p in dense.named_parameters() if n.endswith("weight") and p.dim() > 1)
    model_weights = count_params(model) - sum(p.numel() for n, p in model.named_parameters()
                                              if "bn." in n or n.endswith("bias"))
    if factorise is _cp:  # the graph multiplies by the Khatri-Rao products of the factors: (in x R), (R x out)
        r, rows, cols = 10, [8, 6], [12, 12]
        model_weights += 2 * (r * (math.prod(rows) + math.prod(cols)) - r * (sum(rows) + sum(cols) + 1))
    assert rep["weights"] == model_weights
    if factorise:
        assert rep["weights"] < dense_weights
        assert rep["nodes"] > len([m for m in dense.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear))])
    # layers 1 and 2 are 48 x 48 x 3 convs: dense in the baseline, one of them factorised by SVD, both by TT/...
    if arch is TDNN:
        n_dense = sum(math.prod(s) == 48 * 48 * 3 for s in rep["shapes"])
        assert n_dense == (2 if factorise is None else 1 if factorise is _svd else 0)


@pytest.mark.parametrize("arch,factorise", [(TDNN, None), (TDNN, _svd), (TDNN, _tt), (TDNN, _tt_tap), (TDNN, _tt3),
                                            (TDNN, _tucker), (TDNNF, None)],
                         ids=["tdnn", "svd", "tt", "tt-tap", "tt3", "tucker", "tdnnf"])
def test_tdnn_exports_time_major_with_matmuls(tmp_path, arch, factorise):
    """TDNN / TDNN-F graphs are time-major: every conv an im2col + MatMul (no Conv, so dynamic int8 has
    MatMulInteger, not onnxruntime's slow ConvInteger), no layout Transpose (a TT layer keeps its
    chain's, one per core, or one per layer where its in-modes are (C, K) and the first core reads the
    tap-major im2col rows as they are), and a padded batch with 1- and 0-frame rows is PyTorch's."""
    src = _model_dir(tmp_path, arch, "m", factorise)
    out = export_onnx(src, tmp_path / "onnx")
    assert _ort_vs_torch(src, out, lens=(50, 1, 0)) < 1e-4
    ops = _runtime_ops(out / "model.onnx", tmp_path)
    rep = weight_report(out / "model.onnx")
    assert ops["Conv"] == 0 and ops["MatMul"] + ops["Gemm"] == rep["nodes"]
    if factorise is not _tucker:  # (Tucker's mode products are Transposes)
        assert ops["Transpose"] == {_tt: 4, _tt_tap: 2, _tt3: 6}.get(factorise, 0)  # 2 TT layers x one per core
    q = quantize(out, tmp_path / "int8")  # the output layer (1 MatMul, 2 after SVD) stays float32
    n_out = sum(n.name.startswith("/net/output/") for n in onnx.load(str(out / "model.onnx")).graph.node
                if n.op_type in ("MatMul", "Gemm"))
    qops = _runtime_ops(q / "model.onnx", tmp_path)
    assert qops["ConvInteger"] == 0 and n_out == (2 if factorise is _svd else 1)
    assert qops["MatMulInteger"] == rep["nodes"] - n_out and rep["nodes"] == weight_report(q / "model.onnx")["nodes"]
    qall = quantize(out, tmp_path / "int8_all", float_nodes="")
    assert _runtime_ops(qall / "model.onnx", tmp_path)["MatMulInteger"] == rep["nodes"]


def test_out_frames_is_pytorch_conv_length():
    """The few-node length arithmetic of the time-major export is PyTorch's conv output length, 0 included."""
    from asrcomp.nnet.tdnn import conv_out_lens
    from asrcomp.onnx_export import _out_frames

    lens = torch.arange(0, 40)
    for kernel, dilation, stride, pad in [(5, 1, 1, (2, 2)), (3, 3, 1, (3, 3)), (3, 1, 3, (1, 1)), (2, 2, 1, (2, 0)),
                                          (1, 1, 3, (0, 0)), (3, 2, 2, (0, 0)), (3, 1, 4, (1, 1))]:
        want = conv_out_lens(lens + pad[0] + pad[1], kernel, stride, dilation, 0)
        got = _out_frames(lens, kernel, dilation, stride, pad)
        assert torch.equal(got, want), (kernel, dilation, stride, pad)


def test_global_cmvn_is_baked_in(tmp_path):
    """A model trained with per-speaker CMVN takes raw fbank: the graph applies the global CMVN of the
    training data (summed per-speaker stats)."""
    import kaldiio

    data = tmp_path / "train"
    data.mkdir()
    rng = np.random.default_rng(0)
    stats = {}
    frames = []
    for spk in ("a", "b"):
        x = rng.normal(3.0 if spk == "a" else -1.0, 2.0, size=(50, 80))
        frames.append(x)
        stats[spk] = np.stack([np.r_[x.sum(0), len(x)], np.r_[(x * x).sum(0), 0]])
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/cmvn.ark,{data}/cmvn.scp") as w:
        for k, v in stats.items():
            w(k, v)
    allx = np.concatenate(frames)
    mean, std, n = global_cmvn(data)
    assert n == 100 and np.allclose(mean, allx.mean(0)) and np.allclose(std, allx.std(0))
    src = _model_dir(tmp_path, TDNN, "m", features={"cmvn": "speaker", "norm_vars": True})
    out = export_onnx(src, tmp_path / "onnx", cmvn_dir=data)
    model, _ = load_model_dir(src)
    x = rng.normal(1.0, 2.5, size=(1, 40, 80)).astype(np.float32)
    with torch.no_grad():
        ref, _ = model(torch.from_numpy(((x - mean) / std).astype(np.float32)), torch.tensor([40]))
    got = _session(out / "model.onnx").run(None, {"x": x, "x_lens": np.array([40])})[0]
    assert np.abs(got - ref.numpy()).max() < 1e-4



def test_utterance_cmvn_is_baked_in(tmp_path):
    """--cmvn utterance: the graph normalises each utterance by its own valid frames' mean and
    variance, so a per-utterance channel offset and gain cancel, and padding changes nothing."""
    from asrcomp.onnx_export import utterance_cmvn

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(2.0, 3.0, size=(2, 30, 80)).astype(np.float32))
    lens = torch.tensor([30, 17])
    y = utterance_cmvn(x, lens)
    for n, k in enumerate(lens.tolist()):
        v = x[n, :k].numpy()
        assert np.allclose(y[n, :k].numpy(), (v - v.mean(0)) / v.std(0), atol=1e-4)
    assert torch.isfinite(y).all()
    src = _model_dir(tmp_path, TDNN, "m", features={"cmvn": "speaker", "norm_vars": True})
    out = export_onnx(src, tmp_path / "onnx", cmvn="utterance")  # no training data dir needed
    assert read_metadata(out / "model.onnx")["cmvn"] == "utterance"
    model, _ = load_model_dir(src)
    sess = _session(out / "model.onnx")
    v = x[1:, :17].numpy()
    with torch.no_grad():
        ref, _ = model(torch.from_numpy((v - v.mean(1)) / v.std(1)), torch.tensor([17]))
    alone = sess.run(None, {"x": v, "x_lens": np.array([17])})[0]
    shifted = sess.run(None, {"x": v * 1.7 - 4.0, "x_lens": np.array([17])})[0]  # another channel / speaker level
    padded = sess.run(None, {"x": x.numpy(), "x_lens": lens.numpy()})[0][1, :alone.shape[1]]
    assert np.abs(alone - ref.numpy()).max() < 1e-4
    assert np.abs(shifted - alone).max() < 1e-3 and np.abs(padded - alone[0]).max() < 1e-4
    with pytest.raises(ValueError, match="global or utterance"):
        export_onnx(src, tmp_path / "o", cmvn="speaker")
    # a model trained with cmvn: utterance gets its own CMVN in the graph, whatever --cmvn says
    own = _model_dir(tmp_path, TDNN, "u", features={"cmvn": "utterance", "norm_vars": True})
    assert read_metadata(export_onnx(own, tmp_path / "onnx_u") / "model.onnx")["cmvn"] == "utterance"

def test_export_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such model dir"):
        export_onnx(tmp_path / "nope", tmp_path / "o")
    src = _model_dir(tmp_path, TDNN, "m", features={"cmvn": "speaker"})
    with pytest.raises(InputError, match="cmvn-dir"):
        export_onnx(src, tmp_path / "o")  # per-speaker CMVN model, no training dir known
    with pytest.raises(InputError, match="not an exported ONNX dir"):
        quantize(src, tmp_path / "q")


def test_int8_and_fp16(tmp_path):
    arch = dict(TDNN, hidden_dim=256)  # big enough that weights dominate the file
    src = _model_dir(tmp_path, arch, "m")
    out = export_onnx(src, tmp_path / "onnx")
    q = quantize(out, tmp_path / "int8")
    h = to_fp16(out, tmp_path / "fp16")
    b32, b8, b16 = [(d / "model.onnx").stat().st_size for d in (out, q, h)]
    assert b32 / b8 >= 3.5, (b32, b8)
    assert 1.9 <= b32 / b16 <= 2.1, (b32, b16)
    model, _ = load_model_dir(src)
    x = np.random.default_rng(1).normal(size=(1, 90, 80)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.tensor([90]))[0].numpy()
    for d, tol in ((h, 5e-2), (q, 0.5)):
        got = _session(d / "model.onnx").run(None, {"x": x, "x_lens": np.array([90])})[0]
        assert np.abs(np.exp(got) - np.exp(ref)).max() < tol  # posteriors close
        assert (got.argmax(-1) == ref.argmax(-1)).mean() > 0.8
    assert weight_report(q / "model.onnx")["nodes"] == weight_report(out / "model.onnx")["nodes"]


def test_export_of_a_packed_file_keeps_its_dirs_lexicon(tmp_path):
    """A phone model's greedy output is scored with the model dir's lexicon.txt: export-onnx of a
    model.acz takes the one beside it, and the int8 variant keeps it."""
    from asrcomp.compress.pack import PackConfig, pack

    src = _model_dir(tmp_path, TDNN, "m")
    (src / "lexicon.txt").write_text("A t1 t2\n")
    packed = pack(src, tmp_path / "p", PackConfig(bits=4))
    assert (packed / "lexicon.txt").is_file()
    out = export_onnx(packed / "model.acz", tmp_path / "onnx")
    q = quantize(out, tmp_path / "int8")
    assert (out / "lexicon.txt").read_text() == (q / "lexicon.txt").read_text() == "A t1 t2\n"


def test_int8_static_calibrated_on_features(tmp_path, tone_data_dir):
    """Static QDQ int8: activation ranges from the data dir's features; decodes like the float model."""
    from asrcomp.features import FbankConfig, make_fbank

    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(cmvn="speaker"), nj=1)
    src = _model_dir(tmp_path, dict(TDNN, hidden_dim=256), "m", features={"cmvn": "speaker", "norm_vars": True})
    out = export_onnx(src, tmp_path / "onnx", cmvn_dir=tone_data_dir)
    with pytest.raises(InputError, match="calib"):
        quantize(out, tmp_path / "s", mode="static")
    q = quantize(out, tmp_path / "s", mode="static", calib_dir=tone_data_dir, calib_utts=4)
    assert (out / "model.onnx").stat().st_size / (q / "model.onnx").stat().st_size >= 3.5
    import kaldiio

    x = np.asarray(next(iter(kaldiio.load_scp(str(tone_data_dir / "feats.scp")).values())), dtype=np.float32)[None]
    ref = _session(out / "model.onnx").run(None, {"x": x, "x_lens": np.array([x.shape[1]])})[0]
    got = _session(q / "model.onnx").run(None, {"x": x, "x_lens": np.array([x.shape[1]])})[0]
    assert np.abs(np.exp(got) - np.exp(ref)).max() < 0.5
    import yaml

    meta = yaml.safe_load((q / "model.yaml").read_text())
    assert meta["onnx"]["quantization"].startswith("int8-static") and meta["onnx"]["calibration"]["utterances"] == 4
