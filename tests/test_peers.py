"""fp16 + zstd and int8 per-channel + zstd peers of pack: decodable model dirs whose shipped file
reads back into exactly their weights."""

import pytest
import torch

from asrcomp.compress.peers import load_peer, make_peer
from asrcomp.modeldir import load_model_dir, read_model_yaml
from asrcomp.utils import InputError
from tests.tiny_corpus import make_random_model_dir, reference_forward


@pytest.fixture
def src_dir(tmp_path):
    return make_random_model_dir(tmp_path)


def test_fp16_and_int8_peers(src_dir, tmp_path):
    _, sd, x, lens, ref = reference_forward(src_dir)
    sizes = {}
    for kind in ("fp16", "int8"):
        out = make_peer(src_dir, tmp_path / kind, kind)
        model, meta = load_model_dir(out)
        got = model.state_dict()
        f = out / f"model.{kind}.zst"
        assert meta["packed_bytes"] == f.stat().st_size == sizes.setdefault(kind, f.stat().st_size)
        assert meta["peer_bytes_before_zstd"] > meta["packed_bytes"]
        assert meta["history"] == [{"stage": "train"}, {"stage": f"peer-{kind}", "src": str(src_dir), "kind": kind,
                                                        "zstd_level": 19}]
        k, back = load_peer(f)  # the shipped file holds exactly the model dir's weights
        assert k == kind and list(back) == list(got) and all(torch.equal(back[n], got[n]) for n in got)
        for n, w in sd.items():
            g = got[n]
            assert g.dtype == w.dtype and g.shape == w.shape
            if not w.is_floating_point():
                assert torch.equal(g, w)
            elif kind == "fp16":
                assert torch.equal(g, w.half().float())
            elif w.dim() >= 2:  # per output channel: error at most half a step of that channel
                step = w.reshape(len(w), -1).abs().amax(1) / 127
                err = (g - w).reshape(len(w), -1).abs().amax(1)
                assert torch.all(err <= step / 2 * (1 + 1e-5) + 1e-12)
                assert len(torch.unique(g[0])) <= 255
            else:
                assert torch.equal(g, w)  # biases and batchnorm stay float32
        with torch.no_grad():
            y, _ = model(x, lens)
        assert (y - ref).abs().max() < (0.02 if kind == "fp16" else 0.3)
    fp32 = (src_dir / "final.pt").stat().st_size
    assert sizes["int8"] < sizes["fp16"] < 0.6 * fp32
    assert sizes["int8"] < 0.35 * fp32


def test_peer_rows_have_the_baseline_as_parent(src_dir, tmp_path):
    from asrcomp.compare import model_row, relations

    dirs = [src_dir, make_peer(src_dir, tmp_path / "p16", "fp16"), make_peer(src_dir, tmp_path / "p8", "int8")]
    rows = [model_row(d, ["test"]) for d in dirs]
    assert rows[1]["bytes"] == (tmp_path / "p16/model.fp16.zst").stat().st_size
    assert relations(rows) == [(None, None), (0, 0), (0, 0)]


def test_errors(src_dir, tmp_path):
    from asrcomp.cli import main

    with pytest.raises(InputError, match="unknown peer kind"):
        make_peer(src_dir, tmp_path / "x", "int4")
    assert main(["peer", "--kind", "int8", str(src_dir), str(tmp_path / "c")]) == 0
    assert read_model_yaml(tmp_path / "c")["packed_file"] == "model.int8.zst"
    bad = tmp_path / "bad.zst"
    bad.write_bytes((tmp_path / "c/model.int8.zst").read_bytes()[:100])
    with pytest.raises(InputError, match="not a readable peer model"):
        load_peer(bad)
    assert main(["peer", "--kind", "int8", str(src_dir), str(src_dir)]) == 2
