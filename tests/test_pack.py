"""Deep Compression pack/unpack: bit-exact round trip of a pruned, weight-shared model, identical
outputs, a clear error for a damaged file or bad bits, lossless k-means when the values fit the
codebook, exact pruning sparsity, and fine-tuning hooks that keep zeros and tied weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asrcomp.compress.kmeans import kmeans_1d, linear_init, quantize
from asrcomp.compress.pack import PackConfig, pack, unpack
from asrcomp.compress.prune import MaskHooks, magnitude_mask, prune_model, sparsity_of
from asrcomp.compress.share import ShareHooks, SteShareHooks, quantised_names, share_weights
from asrcomp.modeldir import load_model_dir, save_model_dir
from asrcomp.nnet import build_model
from asrcomp.utils import InputError

ARCH = {"type": "tdnn", "hidden_dim": 48, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-3, 0, 3]],
        "subsample_at": 1, "subsampling_factor": 3, "feat_dim": 20, "num_tokens": 11}


@pytest.fixture
def src_dir(tmp_path):
    torch.manual_seed(0)
    model = build_model(ARCH)
    with torch.no_grad():  # non-trivial batchnorm statistics, so float16 rounding has work to do
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    (tmp_path / "lang").mkdir()
    (tmp_path / "lang/tokens.txt").write_text("".join(f"t{i} {i}\n" for i in range(11)))
    return save_model_dir(tmp_path / "src", model, tmp_path / "lang/tokens.txt",
                          features={"num_mel_bins": 20}, history=[{"stage": "train"}])


@pytest.fixture
def packed(src_dir, tmp_path):
    out = pack(src_dir, tmp_path / "packed", PackConfig(bits="layers\\.0=6,default=3", bits_output=2,
                                                       prune_sparsity="layers\\.2=0.7,default=0.5"))
    return out


def test_unpack_is_bit_identical_and_gives_the_same_outputs(packed, src_dir, tmp_path):
    unpacked = unpack(packed / "model.acz", tmp_path / "unpacked")
    m_pack, meta_pack = load_model_dir(packed)
    m_un, meta_un = load_model_dir(unpacked)
    sd_p, sd_u = m_pack.state_dict(), m_un.state_dict()
    assert list(sd_p) == list(sd_u)
    for k in sd_p:
        assert sd_p[k].dtype == sd_u[k].dtype and torch.equal(sd_p[k], sd_u[k]), k
    x = torch.randn(2, 50, 20)
    lens = torch.tensor([50, 37])
    with torch.no_grad():
        a, al = m_pack(x, lens)
        b, bl = m_un(x, lens)
    assert torch.equal(a, b) and torch.equal(al, bl)
    # the quantisation really happened: few distinct values per weight tensor, exact zeros
    names = set(quantised_names(m_pack))
    assert names == {"layers.0.conv.weight", "layers.1.conv.weight", "layers.2.conv.weight", "output.weight"}
    bits = {"layers.0.conv.weight": 6, "layers.1.conv.weight": 3, "layers.2.conv.weight": 3, "output.weight": 2}
    for n in names:
        w = sd_p[n]
        assert len(torch.unique(w[w != 0])) <= 2 ** bits[n]
        assert sparsity_of(w) == pytest.approx(0.7 if n.startswith("layers.2") else 0.5, abs=1e-3)
    # small tensors hold float16 values; the original had bits below float16's precision
    src, _ = load_model_dir(src_dir)
    rv = sd_p["layers.0.bn.running_mean"]
    assert torch.equal(rv.half().float(), rv) and not torch.equal(src.state_dict()["layers.0.bn.running_mean"], rv)
    # model.yaml and the report carry the packed size
    size = (packed / "model.acz").stat().st_size
    assert meta_pack["packed_bytes"] == size == meta_un["packed_bytes"]
    assert meta_un["history"][-1]["stage"] == "pack" and meta_un["history"][0] == {"stage": "train"}
    assert (unpacked / "tokens.txt").read_text() == (src_dir / "tokens.txt").read_text()
    rows = [r.split("\t") for r in (packed / "pack_report.tsv").read_text().splitlines()]
    head, total = rows[0], dict(zip(rows[0], rows[-1]))
    assert total["tensor"] == "TOTAL" and int(total["huffman_B"]) == size
    assert int(total["fp32_B"]) > int(total["pruned_B"]) > int(total["quant_B"]) > size
    assert len(rows) == len(sd_p) + 3 and "idx_entropy_bits" in head


def _report(d):
    rows = [r.split("\t") for r in (d / "pack_report.tsv").read_text().splitlines()]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def test_ans_coder_unpacks_bit_exact_and_both_coders_are_reported(src_dir, tmp_path):
    cfg = dict(bits="layers\\.0=6,default=3", bits_output=2, prune_sparsity="layers\\.2=0.7,default=0.5")
    huf = pack(src_dir, tmp_path / "huf", PackConfig(**cfg))
    ans = pack(src_dir, tmp_path / "ans", PackConfig(**cfg, coder="ans"))
    data = (ans / "model.acz").read_bytes()
    assert data[8:12] == (2).to_bytes(4, "little") and (huf / "model.acz").read_bytes()[8:12] == (1).to_bytes(4, "little")
    unpacked = unpack(ans / "model.acz", tmp_path / "unpacked")
    sd_h, sd_a, sd_u = (load_model_dir(d)[0].state_dict() for d in (huf, ans, unpacked))
    for k in sd_h:  # same weights whichever coder, and the ANS file gives them back bit for bit
        assert torch.equal(sd_h[k], sd_a[k]) and torch.equal(sd_a[k], sd_u[k]), k
    rh, ra = _report(huf), _report(ans)
    th, ta = rh[-1], ra[-1]
    assert th["coder"] == "huffman" and ta["coder"] == "ans"
    assert int(th["huffman_B"]) == (huf / "model.acz").stat().st_size
    assert int(ta["ans_B"]) == len(data)
    for r in (th, ta):  # each report has both coders: ANS is near the entropy, Huffman above it
        assert 1.0 <= float(r["ans_over_entropy"]) <= 1.001 + 64 / float(r["idx_entropy_bits"])
        assert float(r["huffman_over_entropy"]) > float(r["ans_over_entropy"])
        assert int(r["ans_B"]) < int(r["huffman_B"])
    # the other coder's total is the file it would have written, up to the JSON header
    assert abs(int(th["ans_B"]) - len(data)) < 200
    assert abs(int(ta["huffman_B"]) - (huf / "model.acz").stat().st_size) < 200
    for a, b in zip(rh, ra):  # per tensor: the same numbers whichever coder wrote the file
        assert (a["tensor"], a["huffman_B"], a["ans_B"], a["idx_ans_bits"]) == \
            (b["tensor"], b["huffman_B"], b["ans_B"], b["idx_ans_bits"]) or a["kind"] == "meta" or a["tensor"] == "TOTAL"
    assert load_model_dir(ans)[1]["history"][-1]["coder"] == "ans"


def test_damaged_or_truncated_file_is_a_clear_error(packed, tmp_path):
    data = (packed / "model.acz").read_bytes()
    bad = tmp_path / "bad.acz"
    for damaged, msg in ((data[:len(data) // 2], "checksum"), (data[:20], "truncated"),
                         (data[:100] + bytes([data[100] ^ 1]) + data[101:], "checksum"),
                         (b"PK" + data[2:], "not an asrcomp packed model")):
        bad.write_bytes(damaged)
        with pytest.raises(InputError, match=msg) as e:
            unpack(bad, tmp_path / "never")
        assert str(bad) in str(e.value)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("opts", [{"bits": 0}, {"bits": 17}, {"bits": "output=4,default=20"}, {"bits_output": 0},
                                  {"bits": "x"}, {"prune_sparsity": 1.0}, {"coder": "zip"}])
def test_bad_options_are_input_errors(opts):
    with pytest.raises(InputError, match="conf/x.yaml"):
        PackConfig.from_dict(opts, where="conf/x.yaml")


def test_cli_rejects_bits_out_of_range(src_dir, tmp_path, capfd):
    from asrcomp.cli import main

    assert main(["pack", "--bits", "17", str(src_dir), str(tmp_path / "out")]) == 2
    assert "bits must be an integer from 1 to 16, got 17" in capfd.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_pack_unpack(src_dir, tmp_path):
    from asrcomp.cli import main

    assert main(["pack", "--bits", "4", "--bits-output", "3", "--coder", "ans", str(src_dir), str(tmp_path / "p")]) == 0
    assert (tmp_path / "p/pack_report.tsv").read_text().splitlines()[-1].split("\t")[11] == "ans"
    assert main(["unpack", str(tmp_path / "p/model.acz"), str(tmp_path / "u")]) == 0
    a, b = load_model_dir(tmp_path / "p")[0].state_dict(), load_model_dir(tmp_path / "u")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(torch.unique(a["layers.1.conv.weight"])) <= 16 and len(torch.unique(a["output.weight"])) <= 8


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=200),
       st.integers(1, 8), st.integers(0, 50))
def test_kmeans_is_lossless_when_the_values_fit(distinct, bits, repeat):
    vals = np.unique(np.array(distinct, dtype=np.float32))[: 2 ** bits]
    x = np.concatenate([vals, np.resize(vals, repeat)])
    book, idx = quantize(x, bits)
    assert len(book) <= 2 ** bits and np.array_equal(book[idx], x)


def test_kmeans_lossless_case_lloyd_alone_would_miss():
    x = np.array([0.0, 0.1, 0.2, 10.0], dtype=np.float32)  # linear init leaves two clusters empty
    book, idx = quantize(x, 2)
    assert np.array_equal(book[idx], x)


def test_kmeans_matches_sklearn():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.05, 20000), rng.laplace(0, 0.2, 2000)])
    c, a = kmeans_1d(x, 16)
    ours = ((x - c[a]) ** 2).sum()
    km = KMeans(16, init=linear_init(x, 16).reshape(-1, 1), n_init=1, tol=0).fit(x.reshape(-1, 1))
    assert ours <= km.inertia_ * 1.001
    assert np.allclose(np.sort(c), np.sort(km.cluster_centers_.ravel()), atol=1e-3)


@pytest.mark.parametrize("s", [0.0, 0.3, 0.9])
def test_magnitude_pruning_reaches_the_target(s):
    w = torch.randn(37, 23)
    m = magnitude_mask(w, s)
    assert (~m).sum() == round(s * w.numel())
    if s:
        assert w.abs()[~m].max() <= w.abs()[m].min()


def _toy_steps(model, hooks, steps=5):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(steps):
        x = torch.randn(4, 30, 20)
        out, _ = model(x, torch.full((4,), 30))
        loss = -out[..., 1:].mean()
        opt.zero_grad()
        loss.backward()
        hooks.after_backward(model)
        opt.step()
        hooks.after_step(model)


def test_pruned_weights_stay_zero_through_training():
    torch.manual_seed(0)
    model = build_model(ARCH).train()
    names = quantised_names(model)
    masks = prune_model(model, {n: 0.6 for n in names})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _toy_steps(model, MaskHooks(masks))
    for n, p in model.named_parameters():
        if n in masks:
            assert torch.all(p[~masks[n]] == 0) and sparsity_of(p) == pytest.approx(0.6, abs=1e-3)
            assert not torch.equal(p, before[n])  # the kept weights did train


def test_shared_weights_stay_tied_and_centroids_move():
    torch.manual_seed(0)
    model = build_model(ARCH).train()
    names = quantised_names(model)
    prune_model(model, {names[1]: 0.5})
    hooks = share_weights(model, {n: 3 for n in names})
    assert isinstance(hooks, ShareHooks)
    zeros = model.get_parameter(names[1]) == 0
    before = {n: model.get_parameter(n).detach().clone() for n in names}
    _toy_steps(model, hooks)
    for n in names:
        p = model.get_parameter(n).detach()
        a = hooks.assign[n].view_as(p)
        for k in range(hooks.k[n]):
            vals = p[a == k]
            assert vals.numel() == 0 or torch.all(vals == vals[0])  # exactly tied
        assert len(torch.unique(p)) <= 8 + (n == names[1])
        assert not torch.equal(p, before[n])
    assert torch.all(model.get_parameter(names[1])[zeros] == 0)


def test_ste_fine_tuning_moves_weights_across_clusters_and_stays_shared():
    """--finetune-mode ste: latent weights take the gradient, weights change cluster (the tied
    hooks never do), the parameters stay exactly on the codebook, pruned weights stay 0, and a
    checkpointed state restores the latent weights."""
    torch.manual_seed(0)
    model = build_model(ARCH).train()
    names = quantised_names(model)
    prune_model(model, {names[1]: 0.5})
    zeros = model.get_parameter(names[1]) == 0
    hooks = share_weights(model, {n: 2 for n in names}, ste=True)
    assert isinstance(hooks, SteShareHooks)
    first = {n: a.clone() for n, a in hooks.assign.items()}
    state0 = hooks.state_dict()
    _toy_steps(model, hooks)
    moved = sum(int((hooks.assign[n] != first[n]).sum()) for n in names)
    assert moved > 0
    for n in names:
        p = model.get_parameter(n).detach().flatten()
        a, k = hooks.assign[n], hooks.k[n]
        assert torch.equal(p[a < k], hooks.book[n][a[a < k]]) and torch.all(p[a == k] == 0)
        assert torch.equal(a == k, first[n] == k)  # the pruning mask is kept
        assert len(torch.unique(p)) <= 4 + (n == names[1])
        assert not torch.equal(hooks.latent[n], p)  # the latent weights carry what rounding drops
    assert torch.all(model.get_parameter(names[1])[zeros] == 0)
    # the tied hooks from the same start never re-assign
    torch.manual_seed(0)
    tied_model = build_model(ARCH).train()
    prune_model(tied_model, {names[1]: 0.5})
    tied = share_weights(tied_model, {n: 2 for n in names})
    tied_first = {n: a.clone() for n, a in tied.assign.items()}
    _toy_steps(tied_model, tied)
    assert all(torch.equal(tied.assign[n], tied_first[n]) for n in names)
    # resume: the state round-trips
    back = SteShareHooks({n: a.clone() for n, a in first.items()}, dict(hooks.k), {}, {})
    back.load_state_dict(hooks.state_dict())
    assert all(torch.equal(back.latent[n], hooks.latent[n]) and torch.equal(back.assign[n], hooks.assign[n])
               for n in names)
    assert not all(torch.equal(state0["latent"][n], hooks.latent[n]) for n in names)
