"""Safe resume (issue 14, item 4): a checkpoint carries the identity of the run that made it
(training options, architecture, the stage's options, a fingerprint of the initial weights) and
every trainable state (hint projection, pruning masks, k-means assignments); a run killed part-way
and resumed ends with weights torch.equal to an uninterrupted run's -- plain training,
distillation with a hint, pack's prune retraining and k-means fine-tuning; resuming under another
configuration is refused naming the differing keys, and ``start_epoch`` begins a new run.

Everything runs on a tiny generated corpus (tones, a phone lang dir) and tiny TDNNs: no
synthesised speech, a few seconds per run on one thread."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from asrcomp.nnet import build_model
from asrcomp.train import FitHooks, TrainConfig, fit
from asrcomp.utils import InputError

from conftest import write_tone_wav

WORDS = ["SHOW", "THE", "SHIPS", "NAVY", "FLEET", "NORTH"]
ARCH = {"type": "tdnn", "hidden_dim": 24, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1]],
        "subsample_at": 1, "subsampling_factor": 3}


class Killed(RuntimeError):
    """Stands for a SIGKILL part-way through an epoch: nothing after it runs."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """train (10 utts) / dev (3 utts) data dirs with 20-bin fbank, a phone lang dir."""
    from asrcomp.datadir import write_data_dir
    from asrcomp.features import FbankConfig, make_fbank
    from asrcomp.lang import prepare_lang

    root = tmp_path_factory.mktemp("resume_corpus")
    for name, n in (("train", 10), ("dev", 3)):
        wav_scp, text, utt2spk = {}, {}, {}
        for i in range(n):
            spk = f"spk{i % 2}"
            utt = f"{spk}-{name}-{i:03d}"
            wav = root / "wav" / f"{utt}.wav"
            write_tone_wav(wav, 0.8 + 0.1 * (i % 4), 180 + 70 * i + (500 if name == "dev" else 0), seed=i)
            wav_scp[utt], utt2spk[utt] = str(wav), spk
            text[utt] = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(2 + i % 2))
        write_data_dir(root / name, wav_scp, text, utt2spk)
        make_fbank(root / name, root / "fbank" / name, FbankConfig(num_mel_bins=20), nj=1)
    prepare_lang(WORDS, root / "lang", "phone")
    return root


def _args(corpus: Path):
    return corpus / "train", corpus / "dev", corpus / "lang"


def _cfg(**kw) -> TrainConfig:
    # ~4 steps per epoch: a kill can land inside an epoch
    base = dict(epochs=3, max_frames=300, lr=3e-3, warmup_steps=3, avg=2, num_threads=1, device="cpu",
                spec_augment=True, time_width=5)
    base.update(kw)
    return TrainConfig(**base)


def _model(corpus: Path, seed: int = 0, **arch):
    from asrcomp.lang import load_lang

    torch.manual_seed(seed)
    return build_model(dict(ARCH, feat_dim=20, num_tokens=load_lang(corpus / "lang").num_tokens, **arch))


def _killer(after: int):
    """An ``after_step`` hook raising :class:`Killed` at the ``after``-th optimiser step."""
    n = [0]

    def hook(_model):
        n[0] += 1
        if n[0] == after:
            raise Killed(f"killed after step {after}")
    return hook


def _final(exp: Path) -> dict[str, torch.Tensor]:
    return torch.load(exp / "final.pt", map_location="cpu", weights_only=True)


def _assert_equal_states(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    assert not bad, f"differ: {bad}"


def _ckpt(exp: Path, epoch: int) -> dict:
    return torch.load(exp / f"epoch-{epoch}.pt", map_location="cpu", weights_only=False)


# ----------------------------------------------------------------------------- plain training


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(corpus, tmp_path, caplog):
    ref = fit(_model(corpus), tmp_path / "ref", *_args(corpus), _cfg())
    steps = _ckpt(ref, 1)["scheduler"]["last_epoch"]  # optimiser steps per epoch
    assert steps >= 3  # several steps per epoch, so step steps + 2 is inside epoch 2

    exp = tmp_path / "killed"
    with pytest.raises(Killed):
        fit(_model(corpus), exp, *_args(corpus), _cfg(), hooks=FitHooks(after_step=_killer(steps + 2)))
    assert (exp / "epoch-1.pt").is_file() and not (exp / "epoch-2.pt").exists()
    assert not (exp / "final.pt").exists()
    with caplog.at_level("INFO", logger="asrcomp.train"):
        fit(_model(corpus), exp, *_args(corpus), _cfg())
    assert "resuming from" in caplog.text and "epoch-1.pt" in caplog.text
    _assert_equal_states(_final(exp), _final(ref))
    for e in (1, 2, 3):  # every checkpoint too, optimiser moments included
        _assert_equal_states(_ckpt(exp, e)["model"], _ckpt(ref, e)["model"])
    assert _ckpt(exp, 3)["identity"] == _ckpt(ref, 3)["identity"]


def test_another_configuration_is_refused_naming_the_keys(corpus, tmp_path):
    exp = tmp_path / "exp"
    with pytest.raises(Killed):
        fit(_model(corpus), exp, *_args(corpus), _cfg(), hooks=FitHooks(after_step=_killer(6)))
    assert (exp / "epoch-1.pt").is_file()
    before = (exp / "epoch-1.pt").read_bytes()

    with pytest.raises(InputError) as e:
        fit(_model(corpus), exp, *_args(corpus), _cfg(lr=1e-3, warmup_steps=4))
    msg = str(e.value)
    assert "epoch-1.pt" in msg and "train.lr: 0.003 -> 0.001" in msg and "train.warmup_steps: 3 -> 4" in msg
    assert "delete" in msg and "--start-epoch 2" in msg
    with pytest.raises(InputError, match=r"arch\.hidden_dim: 24 -> 16"):  # not a raw load_state_dict error
        fit(_model(corpus, hidden_dim=16), exp, *_args(corpus), _cfg())
    with pytest.raises(InputError, match=r"init_weights: the model this run starts from differs"):
        fit(_model(corpus, seed=1), exp, *_args(corpus), _cfg(seed=0))  # another source model
    with pytest.raises(InputError, match=r"train\.epochs: 3 -> 4"):
        fit(_model(corpus), exp, *_args(corpus), _cfg(epochs=4))
    # options that do not change what is computed resume as they are
    with pytest.raises(Killed):
        fit(_model(corpus), exp, *_args(corpus), _cfg(avg=1, num_threads=2),
            hooks=FitHooks(after_step=_killer(1)))
    assert (exp / "epoch-1.pt").read_bytes() == before  # refusals touched nothing


def test_start_epoch_begins_a_new_run(corpus, tmp_path, caplog):
    exp = tmp_path / "exp"
    fit(_model(corpus), exp, *_args(corpus), _cfg(epochs=2, avg=1))
    old2 = _ckpt(exp, 2)["model"]
    assert (exp / "model.yaml").is_file()

    # --start-epoch 2 under a new lr: epoch 1's weights, a fresh optimiser, the new lr recorded
    with caplog.at_level("WARNING", logger="asrcomp.train"):
        fit(_model(corpus), exp, *_args(corpus), _cfg(epochs=3, avg=1, lr=1e-3, start_epoch=2))
    assert "beginning a new run at epoch 2" in caplog.text and "train.lr: 0.003 -> 0.001" in caplog.text
    new = [_ckpt(exp, e) for e in (1, 2, 3)]
    assert new[0]["config"]["lr"] == 3e-3 and new[1]["config"]["lr"] == new[2]["config"]["lr"] == 1e-3
    assert new[2]["identity"]["train"]["lr"] == 1e-3
    assert not all(torch.equal(old2[k], new[1]["model"][k]) for k in old2)
    assert [h["epoch"] for h in new[2]["history"]] == [1, 2, 3]
    import yaml

    meta = yaml.safe_load((exp / "model.yaml").read_text())
    assert meta["history"][-1]["config"]["lr"] == 1e-3 and meta["history"][-1]["epochs_averaged"] == [3]
    # a plain rerun of the new run's configuration now resumes it (nothing left to do)
    fit(_model(corpus), exp, *_args(corpus), _cfg(epochs=3, avg=1, lr=1e-3))
    _assert_equal_states(_final(exp), new[2]["model"])

    # --start-epoch 1: a new run; the old checkpoints are deleted
    with pytest.raises(Killed):
        fit(_model(corpus), exp, *_args(corpus), _cfg(epochs=2, start_epoch=1), hooks=FitHooks(after_step=_killer(1)))
    assert not list(exp.glob("epoch-*.pt")) and not (exp / "model.yaml").exists()
    with pytest.raises(InputError, match=r"--start-epoch 3 needs this checkpoint"):
        fit(_model(corpus), exp, *_args(corpus), _cfg(start_epoch=3))
    with pytest.raises(InputError, match=r"start_epoch 5 is outside 0..epochs \(3\)"):
        fit(_model(corpus), exp, *_args(corpus), _cfg(start_epoch=5))


# ----------------------------------------------------------------------------- distillation


@pytest.fixture(scope="module")
def teacher(corpus, tmp_path_factory) -> Path:
    """A (briefly trained) teacher model dir with a wider hidden layer than the students'."""
    exp = tmp_path_factory.mktemp("teacher") / "tdnn"
    return fit(_model(corpus, seed=3, hidden_dim=40), exp, *_args(corpus), _cfg(epochs=1, avg=1))


def _distill(corpus, teacher, out, cfg, **kw):
    from asrcomp.compress.distill import distill

    return distill(out, teacher, _model(corpus, seed=7), *_args(corpus), cfg, alpha=0.5, temperature=2.0,
                   hint_layer="layers.1", hint_weight=0.01, **kw)


def test_distillation_with_a_hint_resumes_to_equal_weights(corpus, teacher, tmp_path, monkeypatch):
    from asrcomp.compress import distill as distill_mod

    cfg = _cfg(epochs=2, avg=1)
    torch.manual_seed(123)  # whatever ran before: the hint projection starts from the training seed
    ref = _distill(corpus, teacher, tmp_path / "ref", cfg)
    proj = _ckpt(ref, 2)["hooks"]["hint_regressor"]
    assert set(proj) == {"weight", "bias"} and proj["weight"].shape == (40, 24, 1)
    assert not torch.equal(proj["weight"], _ckpt(ref, 1)["hooks"]["hint_regressor"]["weight"])  # it trains

    calls = [0]
    real = distill_mod.DistillLoss.__call__

    def dying(self, *a):
        calls[0] += 1
        if calls[0] == _ckpt(ref, 1)["scheduler"]["last_epoch"] + 2:
            raise Killed("killed in epoch 2")
        return real(self, *a)

    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(distill_mod.DistillLoss, "__call__", dying)
        with pytest.raises(Killed):
            _distill(corpus, teacher, out, cfg)
    assert (out / "epoch-1.pt").is_file() and not (out / "epoch-2.pt").exists()
    torch.manual_seed(999)
    _distill(corpus, teacher, out, cfg)
    _assert_equal_states(_final(out), _final(ref))
    _assert_equal_states(_ckpt(out, 2)["hooks"]["hint_regressor"], proj)

    # another alpha (a stage option) is another run
    from asrcomp.compress.distill import distill

    (out / "epoch-2.pt").unlink()
    with pytest.raises(InputError, match=r"stage\.alpha: 0\.5 -> 0\.3"):
        distill(out, teacher, _model(corpus, seed=7), *_args(corpus), cfg, alpha=0.3, temperature=2.0,
                hint_layer="layers.1", hint_weight=0.01)


# ----------------------------------------------------------------------------- pack


@pytest.fixture(scope="module")
def src_model(corpus, tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("pack_src") / "tdnn"
    return fit(_model(corpus, seed=11), exp, *_args(corpus), _cfg(epochs=1, avg=1))


def _pack(src, out, corpus, **kw):
    from asrcomp.compress.pack import PackConfig, pack

    opts = dict(bits=3, bits_output=3, prune_sparsity=0.5, prune_epochs=2, finetune_epochs=2)
    opts.update(kw)
    return pack(src, out, PackConfig(**opts), _cfg(epochs=1, avg=1, lr=1e-3), *_args(corpus))


@pytest.mark.parametrize("where", ["prune", "quant"])
def test_pack_retraining_resumes_to_equal_weights(corpus, src_model, tmp_path, monkeypatch, where):
    from asrcomp.compress import prune as prune_mod
    from asrcomp.compress import share as share_mod

    ref = _pack(src_model, tmp_path / "ref", corpus)
    masks = _ckpt(ref / "prune", 2)["hooks"]["masks"]
    share = _ckpt(ref / "quant", 2)["hooks"]["share"]
    assert masks and all(m.dtype == torch.bool and 0.4 < 1 - m.float().mean() < 0.6 for m in masks.values())
    assert set(share["assign"]) and all(a.dtype == torch.int64 for a in share["assign"].values())

    steps = _ckpt(ref / where, 1)["scheduler"]["last_epoch"]
    cls = prune_mod.MaskHooks if where == "prune" else share_mod.ShareHooks
    real, n = cls.after_step, [0]

    def dying(self, model):
        n[0] += 1
        if n[0] == steps + 2:  # inside epoch 2 of that retraining
            raise Killed(f"killed in {where} epoch 2")
        return real(self, model)

    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(cls, "after_step", dying)
        with pytest.raises(Killed):
            _pack(src_model, out, corpus)
    assert (out / where / "epoch-1.pt").is_file() and not (out / where / "epoch-2.pt").exists()
    assert not (out / "model.acz").exists()
    _pack(src_model, out, corpus)
    _assert_equal_states(_final(out), _final(ref))
    from asrcomp.compress.pack_format import read_packed

    _assert_equal_states(read_packed(out / "model.acz")[1], read_packed(ref / "model.acz")[1])
    got = _ckpt(out / "quant", 2)["hooks"]["share"]
    assert got["k"] == share["k"] and all(torch.equal(got["assign"][k], share["assign"][k]) for k in share["assign"])
    _assert_equal_states(_ckpt(out / "prune", 2)["hooks"]["masks"], masks)


def test_pack_refuses_a_stale_retraining(corpus, src_model, tmp_path, monkeypatch):
    from asrcomp.compress import share as share_mod

    out = tmp_path / "p"
    with monkeypatch.context() as m:
        m.setattr(share_mod.ShareHooks, "after_step", lambda self, model: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            _pack(src_model, out, corpus, prune_epochs=1, finetune_epochs=1)
    # another sparsity: the prune retraining's checkpoint is not resumed
    with pytest.raises(InputError, match=r"prune/epoch-1\.pt: .*stage\.sparsity\.layers\.0\.conv\.weight: 0\.5 -> 0\.7"):
        _pack(src_model, out, corpus, prune_sparsity=0.7, prune_epochs=1, finetune_epochs=1)
    # other bits: the k-means fine-tuning's is not
    _pack(src_model, out, corpus, prune_epochs=1, finetune_epochs=2)  # finishes quant epoch 1 and 2
    with pytest.raises(InputError, match=r"quant/epoch-2\.pt: .*stage\.bits\..*: 3 -> 4"):
        _pack(src_model, out, corpus, bits=4, prune_epochs=1, finetune_epochs=2)
    # --start-epoch 2: a new k-means fine-tuning from quant/epoch-1.pt's weights under the new bits
    pack_mod_cfg = dict(bits=4, prune_epochs=1, finetune_epochs=2)
    from asrcomp.compress.pack import PackConfig, pack

    pack(src_model, out, PackConfig(**dict(dict(bits=3, bits_output=3, prune_sparsity=0.5), **pack_mod_cfg)),
         _cfg(epochs=1, avg=1, lr=1e-3, start_epoch=2), *_args(corpus))
    assert _ckpt(out / "quant", 2)["identity"]["stage"]["bits"]["layers.0.conv.weight"] == 4
    assert asdict(TrainConfig())["start_epoch"] == 0


def test_pack_agp_retraining_resumes_to_equal_weights(corpus, src_model, tmp_path, monkeypatch):
    """Gradual pruning: the masks and the step count are checkpointed, so a run killed inside the
    sparsity ramp (at a mask update) resumes to the uninterrupted run's masks and weights."""
    from asrcomp.compress import prune as prune_mod
    from asrcomp.compress.pack_format import read_packed

    kw = dict(prune_schedule="agp", prune_epochs=3, finetune_epochs=1, prune_every=2)
    ref = _pack(src_model, tmp_path / "ref", corpus, **kw)
    steps = _ckpt(ref / "prune", 1)["scheduler"]["last_epoch"]
    hooks = [_ckpt(ref / "prune", e)["hooks"]["masks"] for e in (1, 2, 3)]
    assert [int(h["step"]) for h in hooks] == [steps, 2 * steps, 3 * steps]
    sp = [1 - float(h["masks"]["layers.0.conv.weight"].float().mean()) for h in hooks]
    assert 0 < sp[0] < sp[1] == sp[2] and sp[2] == pytest.approx(0.5, abs=1e-3)  # 2 ramp epochs, then held

    real, n = prune_mod.GradualMaskHooks.after_step, [0]

    def dying(self, model):
        n[0] += 1
        if n[0] == steps + 2:  # inside epoch 2, in the ramp, at a mask update (every 2 steps)
            raise Killed("killed in AGP epoch 2")
        return real(self, model)

    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(prune_mod.GradualMaskHooks, "after_step", dying)
        with pytest.raises(Killed):
            _pack(src_model, out, corpus, **kw)
    assert (out / "prune/epoch-1.pt").is_file() and not (out / "prune/epoch-2.pt").exists()
    _pack(src_model, out, corpus, **kw)
    _assert_equal_states(_final(out), _final(ref))
    _assert_equal_states(read_packed(out / "model.acz")[1], read_packed(ref / "model.acz")[1])
    for e, h in zip((1, 2, 3), hooks):
        got = _ckpt(out / "prune", e)["hooks"]["masks"]
        assert int(got["step"]) == int(h["step"])
        _assert_equal_states(got["masks"], h["masks"])
    # another schedule is another run: the AGP checkpoint is not resumed by a oneshot pack
    (out / "prune/epoch-3.pt").unlink()
    with pytest.raises(InputError, match=r"prune/epoch-2\.pt: .*stage\.prune_schedule"):
        _pack(src_model, out, corpus, prune_epochs=3, finetune_epochs=1)
