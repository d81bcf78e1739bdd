"""Distillation: the loss mixes CTC and the temperature-softened KL exactly as documented,
teacher/student mismatches are clear errors, and a student trains into a model dir."""

from __future__ import annotations

import pytest
import torch
import yaml

from asrcomp.compress.distill import DistillLoss, kd_loss_sum
from asrcomp.modeldir import load_model_dir
from asrcomp.nnet import build_model
from asrcomp.train import ctc_loss_sum
from asrcomp.utils import InputError

STUDENT = {"type": "tdnn", "hidden_dim": 32, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1]],
           "subsample_at": 1, "subsampling_factor": 3, "feat_dim": 80, "num_tokens": 500}


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 60, 80, generator=g)
    lens = torch.tensor([60, 45])
    y = torch.randint(1, 500, (2, 5), generator=g)
    return x, lens, y, torch.tensor([5, 4])


def test_alpha_zero_is_the_ctc_loss_and_alpha_mixes(quick_tdnn):
    teacher, _ = load_model_dir(quick_tdnn)
    torch.manual_seed(1)
    student = build_model(STUDENT).eval()
    x, lens, y, y_lens = _batch()
    ctc = ctc_loss_sum(student, x, lens, y, y_lens)
    assert torch.equal(DistillLoss(teacher, 0.0, 2.0)(student, x, lens, y, y_lens), ctc)
    s_lp, out_lens = student(x, lens)
    t_lp, _ = teacher(x, lens)
    kd = kd_loss_sum(s_lp, t_lp, out_lens, 2.0)
    mixed = DistillLoss(teacher, 0.3, 2.0)(student, x, lens, y, y_lens)
    torch.testing.assert_close(mixed, 0.7 * ctc + 0.3 * kd)


def test_kd_term_is_the_softened_kl_over_valid_frames():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(2, 7, 5, generator=g).log_softmax(-1)
    t = torch.randn(2, 7, 5, generator=g).log_softmax(-1)
    lens = torch.tensor([7, 3])
    T = 3.0
    expected = 0.0
    for n in range(2):
        for f in range(int(lens[n])):
            p = torch.softmax(t[n, f] / T, -1)
            q = torch.softmax(s[n, f] / T, -1)
            expected += float((p * (p.log() - q.log())).sum())
    assert float(kd_loss_sum(s, t, lens, T)) == pytest.approx(T * T * expected, rel=1e-5)
    assert float(kd_loss_sum(t, t, lens, T)) == pytest.approx(0.0, abs=1e-6)


def test_mismatched_teacher_and_student_are_clear_errors(quick_tdnn, quick_data, tmp_path):
    from asrcomp.compress.distill import distill
    from asrcomp.train import TrainConfig

    cfg = TrainConfig(epochs=1, max_frames=3000, num_threads=1, device="cpu")
    args = (quick_data / "train", quick_data / "dev", quick_data / "lang_bpe500", cfg)
    with pytest.raises(InputError, match="tokens"):
        distill(tmp_path / "a", quick_tdnn, build_model(dict(STUDENT, num_tokens=41)), *args)
    with pytest.raises(InputError, match="subsampling factor"):
        distill(tmp_path / "b", quick_tdnn, build_model(dict(STUDENT, subsampling_factor=1)), *args)
    with pytest.raises(InputError, match="no layer"):
        distill(tmp_path / "c", quick_tdnn, build_model(STUDENT), *args, hint_layer="layers.9")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_distill_cli_trains_a_student_with_a_hint(quick_tdnn, quick_data, tmp_path):
    from asrcomp.cli import main

    conf = tmp_path / "conf.yaml"
    arch = {k: v for k, v in STUDENT.items() if k not in ("feat_dim", "num_tokens")}
    conf.write_text(yaml.safe_dump({"train": {"max_frames": 3000, "warmup_steps": 5, "avg": 1, "num_threads": 1},
                                    "model": {"small": arch}}))
    out = tmp_path / "student"
    rc = main(["distill", "--conf", str(conf), "--arch", "small", "--teacher", str(quick_tdnn), "--alpha", "0.5",
               "--hint-layer", "layers.1", "--hint-weight", "0.01", "--epochs", "1", "--device", "cpu", str(out),
               str(quick_data / "train"), str(quick_data / "dev"), str(quick_data / "lang_bpe500")])
    assert rc == 0
    model, meta = load_model_dir(out)
    assert meta["history"][-1]["stage"] == "distill" and meta["history"][-1]["alpha"] == 0.5
    assert set(model.state_dict()) == set(build_model(STUDENT).state_dict())  # no hint regressor saved
