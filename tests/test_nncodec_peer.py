"""bench/nncodec_peer.py: the NNCodec peer of a model dir round-trips (runs only where NNCodec is installed)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("nncodec.nnc_core")

from asrcomp.modeldir import load_model_dir, read_model_yaml  # noqa: E402
from tests.tiny_corpus import make_random_model_dir, reference_forward  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "bench" / "nncodec_peer.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("nncodec_peer", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def src_dir(tmp_path):
    return make_random_model_dir(tmp_path)


def test_round_trip(bench, src_dir, tmp_path):
    _, sd, x, lens, ref = reference_forward(src_dir)
    sizes = {}
    for qp in (-20, -32):
        out = tmp_path / f"qp{qp}"
        assert bench.main(["--qp", str(qp), str(src_dir), str(out)]) == 0
        model, meta = load_model_dir(out)
        f = out / "model.nnc"
        assert meta["packed_file"] == "model.nnc"
        assert meta["packed_bytes"] == f.stat().st_size == meta["nncodec"]["bitstream_bytes"]
        assert meta["nncodec"]["rest_bytes"] == 0 and not (out / "model.nnc_rest.zst").exists()
        assert meta["history"][:-1] == [{"stage": "train"}]
        assert meta["history"][-1]["stage"] == "peer-nncodec" and meta["history"][-1]["qp"] == qp
        sizes[qp] = f.stat().st_size
        step = bench.step_of(qp, 2)
        got = model.state_dict()
        assert list(got) == list(sd)
        for n, w in sd.items():
            g = got[n]
            assert g.dtype == w.dtype and g.shape == w.shape
            if not w.is_floating_point():
                assert torch.equal(g, w)  # num_batches_tracked: lossless
            elif w.dim() >= 2:
                assert (g - w).abs().max() < 2 * step * (1 + 1e-5)  # dependent quantisation: < 2 steps
                assert not torch.equal(g, w)
            else:
                assert (g - w).abs().max() < 2 * bench.step_of(-75, 2) * (1 + 1e-5) + 1e-6 * w.abs().max()
        # the shipped bitstream decodes to exactly final.pt's weights
        nnc_core, _ = bench.import_nncodec()
        dec, _ = bench.decode(nnc_core, f.read_bytes())
        params, restore, rest = bench.split_state(sd)
        back = bench.restore_state(dec, restore, rest)
        assert all(torch.equal(back[n], got[n]) for n in got)
        with torch.no_grad():
            y, _ = model(x, lens)
        assert y.shape == ref.shape and torch.isfinite(y).all()
        if qp == -32:
            assert (y - ref).abs().max() < 0.3
        log = (out / "log" / "nncodec.log").read_text()
        assert f"--qp {qp}" in log and "packed_bytes" in log and "max abs error" in log
        units = bench.nnr_units(nnc_core, f.read_bytes())
        assert sum(b for _, b in units) == meta["packed_bytes"]
        assert [k for k, _ in units].count("NNR_NDU") == len(sd)
    assert sizes[-20] < sizes[-32] < 0.5 * (src_dir / "final.pt").stat().st_size


def test_rest_and_errors(bench, src_dir, tmp_path, monkeypatch, capsys):
    state = {"w": torch.randn(8, 4), "big": torch.tensor([2 ** 40, 1]), "empty": torch.zeros(0), "n": torch.tensor(7)}
    params, restore, rest = bench.split_state(state)
    assert sorted(params) == ["n", "w"] and sorted(rest) == ["big", "empty"]
    assert params["n"].shape == (1,) and str(params["n"].dtype) == "int32"
    assert bench.step_of(-32, 2) == 2 ** -8 and bench.step_of(-20, 2) == 2 ** -5

    assert bench.main(["--qp", "-26", str(src_dir), str(src_dir)]) == 2
    assert not (src_dir / "log" / "nncodec.log").exists()
    for m in [m for m in sys.modules if m == "nncodec" or m.startswith("nncodec.")]:
        monkeypatch.setitem(sys.modules, m, None)
    monkeypatch.setitem(sys.modules, "nncodec", None)
    with pytest.raises(SystemExit, match=r"pip install --no-deps nncodec"):
        bench.main(["--qp", "-26", str(src_dir), str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
