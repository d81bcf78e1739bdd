"""Training on the synthesised quick corpus: the loss falls, a killed run resumes from its
last checkpoint and ends where an uninterrupted run ends, DDP keeps ranks identical; and the
trained model dir decodes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asrcomp.modeldir import load_model_dir
import torch

from asrcomp.train import TrainConfig, autocast_dtype, make_batches, param_checksum, train
from asrcomp.utils import InputError

from conftest import QUICK_DECODE

ROOT = Path(__file__).resolve().parents[1]
TINY_TDNN = {"type": "tdnn", "hidden_dim": 64, "contexts": [[-2, -1, 0, 1, 2], [-1, 0, 1], [-1, 0, 1]],
             "subsample_at": 1, "subsampling_factor": 3}


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, max_frames=3000, lr=3e-3, warmup_steps=10, avg=2, num_threads=1, device="cpu",
                arch=TINY_TDNN)
    base.update(kw)
    return TrainConfig(**base)


def _train_args(data: Path) -> tuple[Path, Path, Path]:
    return data / "train", data / "dev", data / "lang_bpe500"


def _history(exp: Path) -> list[dict]:
    rows = (exp / "train.tsv").read_text().splitlines()
    head = rows[0].split("\t")
    return [dict(zip(head, map(float, r.split("\t")))) for r in rows[1:]]


@pytest.fixture(scope="module")
def trained(quick_data, tmp_path_factory):
    exp = tmp_path_factory.mktemp("exp") / "tdnn"
    train(exp, *_train_args(quick_data), _cfg(epochs=4))
    return exp


def test_loss_falls_over_a_few_hundred_steps(trained):
    h = _history(trained)
    assert len(h) == 4
    assert h[-1]["train_loss"] < 0.6 * h[0]["train_loss"]
    assert h[-1]["valid_loss"] < h[0]["valid_loss"]
    assert (trained / "train.png").stat().st_size > 1000
    # final.pt is the average of the last two epochs
    model, cfg = load_model_dir(trained)
    assert cfg["history"][0]["epochs_averaged"] == [3, 4]
    assert cfg["features"]["num_mel_bins"] == 80 and cfg["tokens"]["num_tokens"] == 500


def test_batches_respect_max_frames_and_are_seeded():
    lengths = [100 + (i * 37) % 400 for i in range(200)]
    b1 = make_batches(lengths, 2000, seed=1, epoch=3)
    assert b1 == make_batches(lengths, 2000, seed=1, epoch=3)
    assert b1 != make_batches(lengths, 2000, seed=1, epoch=4)
    assert sorted(i for b in b1 for i in b) == list(range(200))
    assert all(max(lengths[i] for i in b) * len(b) <= 2000 for b in b1)


def test_resume_after_kill_matches_uninterrupted_run(quick_data, tmp_path):
    ref = tmp_path / "ref"
    train(ref, *_train_args(quick_data), _cfg())
    ref_sum = param_checksum(load_model_dir(ref)[0])

    exp = tmp_path / "killed"
    t, v, lang = _train_args(quick_data)
    cmd = [sys.executable, "-m", "asrcomp.cli", "train", "--log-file", str(exp / "log" / "train.log"),
           "--set", f"arch={TINY_TDNN}", *[f"--set={k}={v_}" for k, v_ in
                                           dict(epochs=3, max_frames=3000, lr=3e-3, warmup_steps=10, avg=2,
                                                num_threads=1, device="cpu").items()],
           str(exp), str(t), str(v), str(lang)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (exp / "epoch-1.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (exp / "epoch-1.pt").exists() and not (exp / "final.pt").exists()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stderr
    assert param_checksum(load_model_dir(exp)[0]) == ref_sum
    ref_state, state = (torch.load(d / "final.pt", weights_only=True) for d in (ref, exp))
    assert all(torch.equal(ref_state[k], state[k]) for k in ref_state)  # bit for bit, not just close
    # the same command with another learning rate does not resume that run: it names the key
    (exp / "final.pt").unlink()
    (exp / "epoch-3.pt").unlink()
    r = subprocess.run([c.replace("lr=0.003", "lr=0.001") for c in cmd], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "train.lr: 0.003 -> 0.001" in r.stderr and "--start-epoch 3" in r.stderr


def test_ddp_two_processes(quick_data, tmp_path):
    exp = tmp_path / "ddp"
    t, v, lang = _train_args(quick_data)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           "-m", "asrcomp.cli", "train", "--log-file", str(exp / "log" / "train.log"),
           "--set", f"arch={TINY_TDNN}", "--set", "epochs=2", "--set", "max_frames=2000",
           "--set", "warmup_steps=5", "--set", "lr=0.003", "--set", "avg=1", "--set", "num_threads=1",
           "--set", "device=cpu", str(exp), str(t), str(v), str(lang)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    sums = []
    for f in (exp / "log" / "train.log", exp / "log" / "train.log.rank1"):
        line = [ln for ln in f.read_text().splitlines() if "parameter checksum" in ln][-1]
        sums.append(float(line.rsplit(":", 1)[1]))
    assert sums[0] == sums[1]
    h = _history(exp)
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert (exp / "final.pt").is_file()


@pytest.mark.skipif(autocast_dtype(TrainConfig(amp="bf16"), torch.device("cpu")) is None,
                    reason="this CPU has no native bfloat16")
def test_bf16_mixed_precision_trains_like_float32_and_is_deterministic(trained, quick_data, tmp_path, caplog):
    runs = [tmp_path / "a", tmp_path / "b"]
    with caplog.at_level("INFO", logger="asrcomp.train"):
        for exp in runs:
            train(exp, *_train_args(quick_data), _cfg(epochs=4, amp="bf16"))
    assert "mixed precision torch.bfloat16" in caplog.text
    h, h32 = _history(runs[0]), _history(trained)  # trained: the same run in float32
    assert h[-1]["train_loss"] < 0.6 * h[0]["train_loss"]
    assert h[-1]["valid_loss"] < 1.1 * h32[-1]["valid_loss"]  # bf16 costs at most 10 % of the loss
    assert h[-1]["valid_loss"] != h32[-1]["valid_loss"]  # it did run in bfloat16
    sums = [param_checksum(load_model_dir(exp)[0]) for exp in runs]
    assert sums[0] == sums[1]
    assert load_model_dir(runs[0])[1]["history"][-1]["config"]["amp"] == "bf16"


def test_unknown_amp_is_a_clear_error(quick_data, tmp_path):
    with pytest.raises(InputError, match="amp: unknown value 'fp8'"):
        train(tmp_path / "x", *_train_args(quick_data), _cfg(amp="fp8"))
    assert not (tmp_path / "x").exists()


def test_unknown_option_is_a_clear_error():
    with pytest.raises(InputError, match="unknown training options \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3}, where="conf/x.yaml")


def test_trained_model_decodes_in_jobs(trained, quick_data):
    """Two decoding jobs give the same hypotheses as one; wer/errs/rtf are written."""
    from asrcomp.decode_dir import decode, decode_job, merge_and_score
    from asrcomp.score import read_text

    graph = quick_data / "lang_bpe500_3gram"
    one = decode(trained, quick_data / "test", graph, QUICK_DECODE)
    hyp1 = {k: read_text(r["dir"] / "hyp.txt", allow_empty=True) for k, r in one.items()}
    for j in (1, 2):
        decode_job(trained, quick_data / "test", graph, j, 2, QUICK_DECODE)
    two = merge_and_score(trained, quick_data / "test", graph, 2)
    assert {k: read_text(r["dir"] / "hyp.txt", allow_empty=True) for k, r in two.items()} == hyp1
    for r in two.values():
        assert (r["dir"] / "wer").read_text().startswith("%WER ")
        assert (r["dir"] / "errs").is_file() and r["rtf"] > 0
    assert set(two) == {"tlg", "greedy"} and two["tlg"]["dir"].name == "decode_test_lang_bpe500_3gram"


def test_decode_errors_name_the_problem(trained, quick_data, tmp_path):
    import shutil

    from asrcomp.decode_dir import decode_job

    graph = quick_data / "lang_bpe500_3gram"
    # a data dir whose features are missing: the error names the stage to run
    bare = tmp_path / "test_nofeats"
    bare.mkdir()
    for f in ("wav.scp", "text", "utt2spk", "spk2utt", "fbank.yaml"):
        shutil.copy(quick_data / "test" / f, bare / f)
    with pytest.raises(InputError, match=r"feats.scp: features are missing.*steps/make_fbank.sh"):
        decode_job(trained, bare, graph)
    # a graph whose token set differs from the model's
    other = tmp_path / "graph"
    shutil.copytree(graph, other)
    toks = (other / "tokens.txt").read_text().splitlines()
    toks[5] = "XXX 5"
    (other / "tokens.txt").write_text("\n".join(toks) + "\n")
    with pytest.raises(InputError, match=r"graph/tokens.txt:6: .XXX 5. differs from .*different token sets"):
        decode_job(trained, quick_data / "test", other)
    # a model dir without model.yaml
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    (broken / "model.yaml").unlink()
    with pytest.raises(InputError, match="not a model dir"):
        decode_job(broken, quick_data / "test", graph)


def test_compare_table_reports_the_decodes(trained, quick_data):
    from asrcomp.compare import compare_table
    from asrcomp.decode_dir import decode
    from asrcomp.nnet import count_params

    res = decode(trained, quick_data / "test", quick_data / "lang_bpe500_3gram", QUICK_DECODE)
    table = compare_table([trained], ["test"])
    head, rule, row = table.strip().splitlines()
    cells = [c.strip() for c in row.strip("|").split("|")]
    model = load_model_dir(trained)[0]
    assert cells[0] == trained.name and cells[1] == f"{count_params(model):,}"
    assert cells[2] == f"{(trained / 'final.pt').stat().st_size:,}"
    assert cells[5] == f"{res['tlg']['wer'].wer:.2f}" and cells[6] == f"{res['greedy']['wer'].wer:.2f}"
    assert float(cells[4]) == pytest.approx(res["tlg"]["rtf"], abs=1e-4)
