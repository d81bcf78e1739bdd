"""Model dirs: save/load round trip, model.yaml contents, clear errors, token-set check, checkpoint averaging."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from asrcomp.modeldir import average_checkpoints, check_token_set, load_model_dir, read_model_yaml, save_model_dir
from asrcomp.nnet import Dnn, Tdnn, count_params, flops_per_second
from asrcomp.utils import InputError

TOKENS = ["<blk>", "<unk>", "▁A", "▁B", "C", "D"]
FEATURES = {"sample_rate": 16000, "num_mel_bins": 8, "frame_shift_ms": 10.0, "cmvn": "speaker"}


def write_lang(d, tokens=TOKENS, disambig=("#0", "#1"), token_type="bpe"):
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokens.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(list(tokens) + list(disambig))),
                                  encoding="utf-8")
    (d / "lang.yaml").write_text(yaml.safe_dump({"token_type": token_type, "num_tokens": len(tokens)}))
    if token_type == "bpe":
        (d / "bpe.model").write_bytes(b"\x00sentencepiece stand-in")
    return d


def trained_tdnn() -> Tdnn:
    torch.manual_seed(0)
    model = Tdnn(8, len(TOKENS), hidden_dim=16, contexts=[[-1, 0, 1], [-1, 0, 1], [0]], subsampling_factor=3)
    model.train()
    for _ in range(3):  # a few training-mode passes give BatchNorm non-trivial running stats
        model(torch.randn(4, 30, 8) * 2 + 1, torch.tensor([30, 30, 22, 9]))
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    lang = write_lang(tmp_path / "lang_bpe")
    model = trained_tdnn()
    history = [{"stage": "train", "epochs": 2, "lang_dir": lang}]
    d = save_model_dir(tmp_path / "exp" / "tdnn", model, lang / "tokens.txt", FEATURES, history=history,
                       extra={"notes": "unit test"})
    return d, model, lang


def test_round_trip_is_bit_exact(saved):
    d, model, _ = saved
    loaded, meta = load_model_dir(d)
    assert not loaded.training
    x, x_lens = torch.randn(3, 41, 8), torch.tensor([41, 30, 2])
    with torch.no_grad():
        a, a_lens = model(x, x_lens)
        b, b_lens = loaded(x, x_lens)
    assert torch.equal(a, b) and torch.equal(a_lens, b_lens)
    assert not torch.equal(loaded.layers[0].bn.running_mean, torch.zeros(16))  # the stats did travel


def test_model_yaml_fields(saved):
    d, model, lang = saved
    meta = read_model_yaml(d)
    assert meta["arch"] == model.arch()
    assert meta["tokens"] == {"token_type": "bpe", "num_tokens": len(TOKENS)}
    assert meta["features"] == FEATURES
    assert meta["frame_shift_ms"] == 10.0 and meta["subsampling_factor"] == 3
    assert meta["num_params"] == count_params(model)
    assert meta["flops_per_second"] == flops_per_second(model, 100.0) > 0
    assert meta["history"] == [{"stage": "train", "epochs": 2, "lang_dir": str(lang)}]
    assert meta["notes"] == "unit test"
    assert (d / "tokens.txt").read_bytes() == (lang / "tokens.txt").read_bytes()
    assert (d / "bpe.model").read_bytes() == (lang / "bpe.model").read_bytes()
    assert (d / "log").is_dir()
    assert sorted(p.name for p in d.iterdir()) == ["bpe.model", "final.pt", "log", "model.yaml", "tokens.txt"]


def test_phone_model_dir_has_no_bpe_model(tmp_path):
    lang = write_lang(tmp_path / "lang_phone", token_type="phone")
    torch.manual_seed(0)
    model = Dnn(8, len(TOKENS), hidden_dim=8, num_layers=1, splice=1)
    d = save_model_dir(tmp_path / "exp" / "dnn", model, lang / "tokens.txt", FEATURES)
    meta = read_model_yaml(d)
    assert meta["tokens"]["token_type"] == "phone" and meta["history"] == []
    assert not (d / "bpe.model").exists()
    loaded, _ = load_model_dir(d)
    x = torch.randn(1, 12, 8)
    torch.testing.assert_close(loaded(x, torch.tensor([12]))[0], model.eval()(x, torch.tensor([12]))[0],
                               rtol=0, atol=0)


def test_save_rejects_wrong_token_count_and_reserved_extra(tmp_path):
    lang = write_lang(tmp_path / "lang", tokens=TOKENS[:-1])
    with pytest.raises(InputError, match="has 5 tokens but the model outputs 6"):
        save_model_dir(tmp_path / "exp", trained_tdnn(), lang / "tokens.txt", FEATURES)
    lang = write_lang(tmp_path / "lang2")
    with pytest.raises(ValueError, match="num_params"):
        save_model_dir(tmp_path / "exp", trained_tdnn(), lang / "tokens.txt", FEATURES, extra={"num_params": 1})
    assert not (tmp_path / "exp" / "model.yaml").exists()


def test_missing_model_yaml(saved, tmp_path):
    d, _, _ = saved
    (d / "model.yaml").unlink()
    with pytest.raises(InputError, match="not a model dir: run steps/train.sh") as e:
        load_model_dir(d)
    assert str(d) in str(e.value)
    with pytest.raises(InputError, match="not a model dir"):
        read_model_yaml(tmp_path / "nowhere")


def test_missing_final_pt(saved):
    d, _, _ = saved
    (d / "final.pt").unlink()
    with pytest.raises(InputError, match="final.pt") as e:
        load_model_dir(d)
    assert "fix:" in str(e.value)


def test_arch_that_does_not_build(saved):
    d, _, _ = saved
    meta = read_model_yaml(d)
    meta["arch"]["contexts"] = [[0, 1]]
    (d / "model.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(InputError, match="model.yaml.*arch does not build.*symmetric"):
        load_model_dir(d)


def test_weights_that_do_not_match_arch(saved):
    d, _, _ = saved
    meta = read_model_yaml(d)
    meta["arch"]["hidden_dim"] = 12
    (d / "model.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(InputError, match="final.pt"):
        load_model_dir(d)


def test_token_set_check(saved, tmp_path):
    d, _, _ = saved
    same = write_lang(tmp_path / "graph_same", disambig=("#0", "#1", "#2", "#3"))  # other word list: fine
    check_token_set(d, same / "tokens.txt")

    other = list(TOKENS)
    other[3] = "▁X"
    bad = write_lang(tmp_path / "graph_bad", tokens=other)
    with pytest.raises(InputError) as e:
        check_token_set(d, bad / "tokens.txt")
    msg = str(e.value)
    assert e.value.line == 4 and f"{bad / 'tokens.txt'}:4" in msg
    assert str(d / "tokens.txt") in msg and "▁X 3" in msg and "▁B 3" in msg
    assert "rebuild the graph from the lang dir the model was trained with" in msg

    longer = write_lang(tmp_path / "graph_long", tokens=TOKENS + ["E"])
    with pytest.raises(InputError, match="'E 6' has no counterpart") as e:
        check_token_set(d, longer / "tokens.txt")
    assert e.value.line == 7


def state(seed):
    torch.manual_seed(seed)
    bn = nn.BatchNorm1d(3)
    bn.running_mean.normal_()
    bn.num_batches_tracked.fill_(seed)
    return {"w": torch.randn(4, 3), **{f"bn.{k}": v for k, v in bn.state_dict().items()}}


def test_average_checkpoints(tmp_path):
    a, b = state(1), state(2)
    torch.save({"model": a, "epoch": 1}, tmp_path / "epoch-1.pt")
    torch.save(b, tmp_path / "epoch-2.pt")  # a bare state dict is accepted too
    avg = average_checkpoints([tmp_path / "epoch-1.pt", tmp_path / "epoch-2.pt"])
    assert list(avg) == list(a)
    for k in ("w", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        torch.testing.assert_close(avg[k], (a[k].double() + b[k].double()).div(2).float(), rtol=0, atol=0)
        assert avg[k].dtype == torch.float32
    assert not torch.equal(avg["w"], a["w"])
    assert avg["bn.num_batches_tracked"].item() == 2 and avg["bn.num_batches_tracked"].dtype == torch.int64

    one = average_checkpoints([tmp_path / "epoch-1.pt"])
    assert all(torch.equal(one[k], a[k]) for k in a)


def test_average_checkpoints_mismatch(tmp_path):
    torch.save(state(1), tmp_path / "a.pt")
    torch.save({"w": torch.zeros(4, 3)}, tmp_path / "b.pt")
    with pytest.raises(InputError, match="b.pt.*keys differ"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(ValueError):
        average_checkpoints([])


def test_resave_over_existing_dir(saved, tmp_path):
    """A compression stage may rewrite a dir: the new model.yaml and weights replace the old."""
    d, _, lang = saved
    phone = write_lang(tmp_path / "lang_phone", token_type="phone")
    shutil.copy(lang / "tokens.txt", phone / "tokens.txt")
    torch.manual_seed(1)
    model = Dnn(8, len(TOKENS), hidden_dim=8, num_layers=1, splice=1).eval()
    save_model_dir(d, model, phone / "tokens.txt", FEATURES, history=[{"stage": "x"}])
    loaded, meta = load_model_dir(d)
    assert meta["arch"]["type"] == "dnn" and not (d / "bpe.model").exists()
    assert not [p for p in d.iterdir() if p.name.startswith(".")]


def test_phone_model_dir_carries_its_lexicon_and_a_bpe_one_does_not(tmp_path):
    phones = ["<blk>", "AH", "DH", "SPN", "S", "N"]
    lang = write_lang(tmp_path / "lang_phone", tokens=phones, token_type="phone")
    (lang / "lexicon.txt").write_text("<UNK> SPN\nTHE DH AH\nTHE DH IY\nUS AH S\n", encoding="utf-8")
    torch.manual_seed(0)
    model = Tdnn(8, len(phones), hidden_dim=16, contexts=[[-1, 0, 1], [0]], subsampling_factor=3).eval()
    d = save_model_dir(tmp_path / "exp", model, lang / "tokens.txt", FEATURES)
    assert (d / "lexicon.txt").read_bytes() == (lang / "lexicon.txt").read_bytes()
    # a model dir made from a model dir (compression stages, pack) carries it on
    d2 = save_model_dir(tmp_path / "exp2", model, d / "tokens.txt", FEATURES)
    assert (d2 / "lexicon.txt").read_bytes() == (lang / "lexicon.txt").read_bytes()
    # a BPE model written over it: no stale lexicon stays
    bpe = write_lang(tmp_path / "lang_bpe", tokens=phones)
    (bpe / "lexicon.txt").write_text("THE ▁A\n", encoding="utf-8")
    save_model_dir(d, model, bpe / "tokens.txt", FEATURES)
    assert (d / "bpe.model").is_file() and not (d / "lexicon.txt").exists()


def test_moved_phone_model_dir_decodes_and_scores_without_its_lang_dir(tone_data_dir, tmp_path):
    """Issue 14 item 5: exp/ moved elsewhere and the lang dir named in its history deleted,
    TLG and greedy decoding and scoring still work: the model dir holds all they need."""
    from dataclasses import asdict

    from asrcomp.cli import main
    from asrcomp.features import FbankConfig, load_fbank_config, make_fbank
    from asrcomp.graph import make_graph
    from asrcomp.lang import prepare_lang, read_lexicon
    from asrcomp.lm import train_kneser_ney
    from asrcomp.score import read_text

    make_fbank(tone_data_dir, tmp_path / "fbank", FbankConfig(num_mel_bins=8), nj=1)
    words = ["SHOW", "THE", "SHIPS", "NAVY"]
    lang_dir = tmp_path / "data" / "lang_phone"
    lang = prepare_lang(words, lang_dir, "phone")
    lm = train_kneser_ney([s.split() for s in ("SHOW THE SHIPS", "SHOW THE NAVY", "THE SHIPS")], order=2,
                          vocab=words, unk="<UNK>")
    lm.write_arpa(tmp_path / "lm.arpa")
    graph = tmp_path / "data" / "lang_phone_bg"
    make_graph(lang_dir, tmp_path / "lm.arpa", graph)
    torch.manual_seed(0)
    model = Tdnn(8, lang.num_tokens, hidden_dim=16, contexts=[[-1, 0, 1], [-1, 0, 1]], subsampling_factor=3).eval()
    exp = save_model_dir(tmp_path / "exp" / "tdnn", model, lang_dir / "tokens.txt",
                         asdict(load_fbank_config(tone_data_dir)),
                         history=[{"stage": "train", "lang_dir": str(lang_dir), "train_dir": str(tone_data_dir)}])
    lexicon = read_lexicon(exp / "lexicon.txt")
    shutil.rmtree(lang_dir)
    moved = tmp_path / "elsewhere" / "tdnn"
    shutil.move(str(exp.parent), str(moved.parent))
    assert read_model_yaml(moved)["history"][0]["lang_dir"] == str(lang_dir) and not lang_dir.exists()

    data = str(tone_data_dir)
    assert main(["decode", "--graph-dir", str(graph), str(moved), data]) == 0
    assert main(["decode-score", "--graph-dir", str(graph), str(moved), data]) == 0
    tlg, greedy = moved / f"decode_train_{graph.name}", moved / "decode_train_greedy"
    assert (tlg / "wer").read_text().startswith("%WER ") and (greedy / "ter").read_text().startswith("%WER ")
    # the greedy phone output was scored against the references expanded with the copied lexicon
    first = {}
    for w, p in lexicon:
        first.setdefault(w, p)
    n_phones = sum(len(first[w]) for ws in read_text(tone_data_dir / "text").values() for w in ws)
    assert f"/ {n_phones}," in (greedy / "ter").read_text()

    # a model dir written before model dirs held their lexicon, its lang dir gone: a clear error
    from asrcomp.decode_dir import decode

    (moved / "lexicon.txt").unlink()
    with pytest.raises(InputError, match=r"lexicon.txt: a phone model dir needs its lexicon.*copy the lang dir"):
        decode(moved, tone_data_dir, None)
