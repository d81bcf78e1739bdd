"""sherpa-onnx decodes an exported model with the recipe's TLG.fst as asrcomp does; bad inputs fail clearly."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("sherpa_onnx")
pytest.importorskip("onnxruntime")

from asrcomp.compare import compare_table  # noqa: E402
from asrcomp.datadir import read_table  # noqa: E402
from asrcomp.decode_dir import decode  # noqa: E402
from asrcomp.onnx_export import decode_onnx, export_onnx, quantize  # noqa: E402
from asrcomp.sherpa import decode_sherpa, run_sherpa, validate  # noqa: E402
from asrcomp.utils import InputError  # noqa: E402

from conftest import QUICK_DECODE, QUICK_MAX_ACTIVE  # noqa: E402


@pytest.fixture(scope="module")
def quick_onnx(quick_tdnn, tmp_path_factory):
    """The quick TDNN exported (global CMVN from its training data), and its asrcomp decode of test."""
    return export_onnx(quick_tdnn, quick_tdnn.with_name(quick_tdnn.name + "_onnx"))  # where compare looks


def test_sherpa_reproduces_asrcomp(quick_data, quick_tdnn, quick_onnx):
    graph, test = quick_data / "lang_bpe500_3gram", quick_data / "test"
    torch_res = decode(quick_tdnn, test, graph, QUICK_DECODE)["tlg"]  # PyTorch, per-speaker CMVN
    ort_res = decode_onnx(quick_onnx, test, graph, QUICK_DECODE)["tlg"]  # onnxruntime, global CMVN in the graph
    sh = decode_sherpa(quick_onnx, test, graph, QUICK_MAX_ACTIVE)  # sherpa-onnx: its own fbank from the WAVs
    n = ort_res["wer"].words
    assert sh["wer"].words == n > 0
    # same model, same features, same search: sherpa-onnx within 0.2 absolute of onnxruntime + asrcomp's search
    assert abs(sh["wer"].wer - ort_res["wer"].wer) <= 0.2, (sh["wer"].kaldi_line(), ort_res["wer"].kaldi_line())
    hyp_ort = read_table(ort_res["dir"] / "hyp.txt", max_fields=None, allow_empty_value=True)
    hyp_sh = read_table(sh["dir"] / "hyp.txt", max_fields=None, allow_empty_value=True)
    same = sum(hyp_ort[u] == hyp_sh[u] for u in hyp_ort)
    assert same >= 0.95 * len(hyp_ort)
    # the CMVN swap (per speaker -> global) is reported, not asserted: it is what deployment costs
    print(f"\nPyTorch per-speaker CMVN: {torch_res['wer'].kaldi_line()}\nonnxruntime global CMVN: "
          f"{ort_res['wer'].kaldi_line()}\nsherpa-onnx: {sh['wer'].kaldi_line()} RTF {sh['rtf']:.4f}")
    assert (sh["dir"] / "rtf").read_text().startswith("RTF ")
    greedy = decode_sherpa(quick_onnx, test, None)
    assert greedy["dir"].name == "sherpa_test_greedy" and greedy["wer"].words > 0
    # the comparison table: onnxruntime RTF beside PyTorch's; an ONNX dir's bytes are model.onnx's
    table = compare_table([quick_tdnn, quick_onnx], ["test"])
    head, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()]
    cells = {r[0]: dict(zip(head, r)) for r in rows}
    assert float(cells[quick_tdnn.name]["RTF (ORT)"]) == pytest.approx(ort_res["rtf"], abs=1e-4)
    assert float(cells[quick_tdnn.name]["RTF (TLG)"]) == pytest.approx(torch_res["rtf"], abs=1e-4)
    row = cells[quick_onnx.name]
    assert row["bytes"] == f"{(quick_onnx / 'model.onnx').stat().st_size:,}" and row["RTF (TLG)"] == "–"
    assert float(row["%WER test TLG"]) == pytest.approx(ort_res["wer"].wer, abs=0.01)


def test_sherpa_runs_int8(quick_data, quick_onnx, tmp_path):
    """sherpa-onnx runs the dynamic int8 model (MatMulInteger: the TDNN convs export as MatMuls) as onnxruntime does."""
    graph, test = quick_data / "lang_bpe500_3gram", quick_data / "test"
    q = quantize(quick_onnx, tmp_path / "int8")
    ort8 = decode_onnx(q, test, graph, QUICK_DECODE)["tlg"]["wer"]
    sh8 = decode_sherpa(q, test, graph, QUICK_MAX_ACTIVE)["wer"]
    assert abs(sh8.wer - ort8.wer) <= 0.2, (sh8.kaldi_line(), ort8.kaldi_line())


def test_sherpa_bad_inputs_are_clear_errors(quick_data, quick_onnx, tmp_path):
    graph, test = quick_data / "lang_bpe500_3gram", quick_data / "test"
    with pytest.raises(InputError, match="TLG.fst: decoding graph not found"):
        decode_sherpa(quick_onnx, test, tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(quick_onnx, bad)
    (bad / "tokens.txt").write_text("<blk> 0\na 1\n")
    with pytest.raises(InputError, match="tokens"):
        validate(bad, None)
    import onnx

    proto = onnx.load(str(quick_onnx / "model.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(bad / "model.onnx"))
    shutil.copyfile(quick_onnx / "tokens.txt", bad / "tokens.txt")
    with pytest.raises(InputError, match="model_type"):
        validate(bad, graph)
    # what sherpa-onnx does with a broken graph when nothing checks it first: the child dies, we raise
    fake = tmp_path / "fake_graph"
    fake.mkdir()
    (fake / "TLG.fst").write_text("not an fst\n")
    cfg = validate(quick_onnx, None)
    wav_scp = test / "wav.scp"
    utt, spec = next(iter(read_table(wav_scp, max_fields=None).items()))
    with pytest.raises(RuntimeError, match="sherpa-onnx (exited with status|was killed by signal)"):
        run_sherpa(quick_onnx, cfg, [(utt, spec, 1)], wav_scp, fake)
