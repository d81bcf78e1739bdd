"""The compression chain of a recipe (steps/compress_chain.sh) end to end on the quick corpus:
every stage writes a model dir that decodes, each reads the previous one, and the table has
a row per model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from asrcomp.modeldir import read_model_yaml

from conftest import QUICK_MAX_ACTIVE

ROOT = Path(__file__).resolve().parents[1]


def test_compress_chain_runs_every_stage_and_tabulates(quick_data, quick_tdnn, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(quick_tdnn, exp / "tdnn")
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({
        "train": {"max_frames": 3000, "warmup_steps": 5, "avg": 1, "num_threads": 1},
        "chain": ["svd", "tt", "distill", "pack"],
        "compress": {
            "base": "tdnn",
            "svd": {"rank": 24, "epochs": 1, "during_training_epoch": 1, "during_training_epochs": 1},
            "tt": {"method": "tt", "layers": r"layers\.[12]\.conv", "modes": 2, "rank": 8, "epochs": 0},
            "distill": {"alpha": 0.5, "epochs": 1, "compare": True},
            "pack": {"bits": 5, "bits_output": 4, "prune_sparsity": 0.5, "prune_epochs": 0, "finetune_epochs": 0},
        }}))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = [str(ROOT / "steps/compress_chain.sh"), "--conf", str(conf), "--graph-dir",
           str(quick_data / "lang_bpe500_3gram"), "--decode-sets", str(quick_data / "test"), "--nj", "1",
           "--decode-opts", f"--max-active {QUICK_MAX_ACTIVE}", "--device", "cpu", str(exp),
           str(quick_data / "train"), str(quick_data / "dev"), str(quick_data / "lang_bpe500")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    chain = ["tdnn_svd", "tdnn_svd_tt", "tdnn_svd_tt_distill", "tdnn_svd_tt_distill_pack"]
    extra = ["tdnn_svd_during_training", "tdnn_svd_tt_ctc", "tdnn_svd_tt_scratch"]
    for name in chain + extra:
        assert (exp / name / "decode_test_lang_bpe500_3gram" / "wer").read_text().startswith("%WER"), name
    stages = [h["stage"] for h in read_model_yaml(exp / chain[-1])["history"]]
    assert stages[:4] == ["train", "svd", "tt", "distill"] and "pack" in stages[-1]
    assert (exp / chain[-1] / "model.acz").stat().st_size < (exp / "tdnn" / "final.pt").stat().st_size
    assert read_model_yaml(exp / "tdnn_svd_during_training")["history"][-1]["checkpoint"].endswith("epoch-1.pt")
    table = (exp / "results_all.md").read_text()
    assert all(f"| {name} |" in table for name in chain + extra)
    assert (exp / "results_all.png").stat().st_size > 1000


def test_svd_sweep_mode_writes_one_model_per_rank_and_a_plot(quick_data, quick_tdnn, tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = tmp_path / "svd"
    cmd = [str(ROOT / "steps/compress_svd.sh"), "--ranks", "8,16", "--epochs", "0", "--graph-dir",
           str(quick_data / "lang_bpe500_3gram"), "--decode-sets", str(quick_data / "test"), "--nj", "1",
           "--decode-opts", f"--max-active {QUICK_MAX_ACTIVE}",
           str(quick_tdnn), str(out), str(quick_data / "train"), str(quick_data / "dev"),
           str(quick_data / "lang_bpe500")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ranks = {r: read_model_yaml(tmp_path / f"svd_r{r}")["history"][-1]["layers"][0]["rank"] for r in (8, 16)}
    assert ranks == {8: 8, 16: 16}
    params = [read_model_yaml(tmp_path / f"svd_r{r}")["num_params"] for r in (8, 16)]
    assert params[0] < params[1] < read_model_yaml(quick_tdnn)["num_params"]
    table = (tmp_path / "svd_sweep.md").read_text()
    assert "| svd_r8 |" in table and "| svd_r16 |" in table and f"| {quick_tdnn.name} |" in table
    assert (tmp_path / "svd_sweep.png").stat().st_size > 1000


def test_decode_sh_skips_a_decode_only_when_done_with_the_same_options(quick_data, quick_tdnn, tmp_path):
    """A recipe rerun after a change of its decode options must decode again, not keep the old WER."""
    model = tmp_path / "tdnn"
    shutil.copytree(quick_tdnn, model)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    tlg = model / "decode_test_lang_bpe500_3gram"

    def decode(*opts):
        cmd = [str(ROOT / "steps/decode.sh"), "--nj", "1", "--graph-dir", str(quick_data / "lang_bpe500_3gram"),
               "--max-active", str(QUICK_MAX_ACTIVE), *opts, str(model), str(quick_data / "test")]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return r.stdout, (tlg / "wer").stat().st_mtime_ns

    out, first = decode("--skip-done", "true", "--blank-penalty", "1.0")
    assert (tlg / "decode_opts").read_text().split() == ["beam=16", f"max_active={QUICK_MAX_ACTIVE}",
                                                          "acoustic_scale=1.0", "blank_penalty=1.0"]
    out, again = decode("--skip-done", "true", "--blank-penalty", "1.0")
    assert "already decoded" in out and again == first
    out, changed = decode("--skip-done", "true", "--blank-penalty", "3.0")
    assert "already decoded" not in out and changed > first
    assert (tlg / "decode_opts").read_text().split()[-1] == "blank_penalty=3.0"
    _, forced = decode("--blank-penalty", "3.0")  # without --skip-done it always decodes
    assert forced > changed
    os.utime(model / "final.pt")  # a retrained model: decoded again under the same options
    out, retrained = decode("--skip-done", "true", "--blank-penalty", "3.0")
    assert "already decoded" not in out and retrained > forced
