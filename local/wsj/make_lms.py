"""egs/wsj stage 3: Kaldi's WSJ language models (called by local/wsj/make_lms.sh).

    python -m local.wsj.make_lms --conf conf/default.yaml --data data/default --lang data/default/lang_phone

- ``<data>/lm/tgpr.arpa``: ``prune-lm --threshold=<lm.prune_threshold>`` (Kaldi: 1e-7) of the corpus
  trigram ``<data>/local/nist_lm/lm_tg.arpa`` (tcb20onp), as Kaldi's wsj_data_prep.sh makes lm_tgpr;
- ``<data>/lm/bd_tgpr.arpa`` when the config's ``lm.bd`` is true and ``<data>/local/local_lm/lm_text.txt``
  is not empty: a trigram on the WSJ LM text (words outside ``<lang>/words.txt`` -> ``<UNK>``),
  interpolated modified Kneser-Ney with IRSTLM's ``build-lm.sh -s improved-kneser-ney -p`` (singleton
  trigrams pruned), kept as ``<data>/lm/bd_tg.arpa``, then pruned like tgpr. (Kaldi trains its
  bd_tgpr with kaldi_lm's 3gram-mincount and prunes it with kaldi_lm's own criterion; kaldi_lm is
  not packaged, IRSTLM is.)

IRSTLM (Debian ``irstlm``; tools in ``/usr/lib/irstlm/bin``, or ``$IRSTLM/bin``, or on PATH) does
the work when installed. Without it, pruning is :mod:`local.wsj.prune_lm` (the same algorithm) and
bd_tg is ``asrcomp.lm`` (pure Python: fine for the test miniature, hours and many GB on the real
LM text). Each output is skipped when it exists, written under a temporary name and renamed;
logs go to ``<data>/lm/log/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from asrcomp.utils import InputError, run_command, setup_logging

log = logging.getLogger("local.wsj.make_lms")
SPECIAL = {"<eps>", "<s>", "</s>", "#0", "<blk>"}
UNK_RE = re.compile(r"(?<!\S)<unk>(?!\S)")


def irstlm_tool(name: str) -> str | None:
    """Path of an IRSTLM program: ``$IRSTLM/bin``, then PATH, then Debian's /usr/lib/irstlm/bin."""
    for d in filter(None, [os.environ.get("IRSTLM") and os.path.join(os.environ["IRSTLM"], "bin")]):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    found = shutil.which(name)
    if found:
        return found
    p = os.path.join("/usr/lib/irstlm/bin", name)
    return p if os.access(p, os.X_OK) else None


def _run(cmd: list[str], log_path: Path, env: dict | None = None) -> None:
    log.info("running %s (log: %s)", shlex.join(cmd), log_path)
    with open(log_path, "a") as f:
        f.write(f"# {shlex.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if r.returncode:
        raise InputError(log_path, f"{Path(cmd[0]).name} failed with exit status {r.returncode}",
                         fix="see the log; is there enough disk and memory?")


def _rename_unk(src: Path, dst: Path) -> None:
    """IRSTLM's out-of-vocabulary word is ``<unk>``; the lang dir's is ``<UNK>``."""
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as g:
        for line in f:
            if "<unk>" in line:
                line = UNK_RE.sub("<UNK>", line)
            g.write(line)


def prune_arpa(src: Path, dst: Path, threshold: float, log_path: Path) -> str:
    """``dst`` = src pruned as IRSTLM's prune-lm does; returns the tool used."""
    tmp = dst.with_name(f".tmp_{dst.name}")
    tool = irstlm_tool("prune-lm")
    if tool:
        raw = dst.with_name(f".tmp_raw_{dst.name}")
        _run([tool, f"--threshold={threshold}", str(src), str(raw)], log_path)
        _rename_unk(raw, tmp)
        raw.unlink()
    else:
        log.warning("IRSTLM's prune-lm not found (apt-get install irstlm): pruning %s in Python", src)
        from asrcomp.lm import read_arpa
        from local.wsj.prune_lm import prune

        prune(read_arpa(src), threshold).write_arpa(tmp)
    os.replace(tmp, dst)
    return "prune-lm" if tool else "local.wsj.prune_lm"


def map_text(text: Path, vocab: set[str], dst: Path, unk: str) -> tuple[int, int, int]:
    """``<s> w1 ... </s>`` lines of ``text`` with words outside ``vocab`` as ``unk``; (sentences, words, OOVs)."""
    n_sent = n_words = n_oov = 0
    with open(text, encoding="utf-8", errors="replace") as f, open(dst, "w", encoding="utf-8") as g:
        for line in f:
            words = line.split()
            if not words:
                continue
            mapped = [w if w in vocab else unk for w in words]
            n_oov += sum(1 for w in words if w not in vocab)
            n_sent += 1
            n_words += len(words)
            g.write("<s> " + " ".join(mapped) + " </s>\n")
    return n_sent, n_words, n_oov


def train_bd_tg(text: Path, words_txt: Path, out: Path, order: int, log_path: Path) -> None:
    """The big-dictionary trigram (``order``-gram) on the LM text, restricted to the lang's words."""
    vocab = {line.split()[0] for line in open(words_txt, encoding="utf-8") if line.strip()} - SPECIAL
    tmpdir = out.parent / f".tmp_{out.stem}"
    shutil.rmtree(tmpdir, ignore_errors=True)
    tmpdir.mkdir(parents=True)
    tmp = out.with_name(f".tmp_{out.name}")
    build = irstlm_tool("build-lm.sh")
    t0 = time.time()
    if build:
        mapped = tmpdir / "text.txt"
        n_sent, n_words, n_oov = map_text(text, vocab, mapped, "<unk>")
        log.info("LM text: %d sentences, %d words, %d (%.2f%%) outside %s", n_sent, n_words, n_oov,
                 100 * n_oov / max(n_words, 1), words_txt)
        env = dict(os.environ, IRSTLM=str(Path(build).parent.parent), TMP=str(tmpdir))
        env["PATH"] = f"{Path(build).parent}:{env['PATH']}"
        ilm = tmpdir / "lm.ilm.gz"
        _run([build, "-i", str(mapped), "-n", str(order), "-o", str(ilm), "-k", "1", "-s", "improved-kneser-ney",
              "-p", "-t", str(tmpdir / "stat")], log_path, env)
        _run([irstlm_tool("compile-lm"), "--text=yes", str(ilm), str(tmp)], log_path, env)
    else:
        log.warning("IRSTLM's build-lm.sh not found (apt-get install irstlm): training %s in Python (slow on "
                    "the real LM text)", out)
        from asrcomp.lm import train_kneser_ney

        sents = (line.split() for line in open(text, encoding="utf-8") if line.strip())
        train_kneser_ney(sents, order, vocab | {"<UNK>"}).write_arpa(tmp)
    os.replace(tmp, out)
    shutil.rmtree(tmpdir, ignore_errors=True)
    log.info("%s: trained in %.0f s", out, time.time() - t0)


def make_lms(conf: Path, data: Path, lang: Path) -> list[Path]:
    cfg = yaml.safe_load(open(conf)) or {}
    lm_cfg = cfg.get("lm", {}) or {}
    threshold = float(lm_cfg.get("prune_threshold", 1e-7))
    order = int(lm_cfg.get("order", 3))
    lm_dir = data / "lm"
    (lm_dir / "log").mkdir(parents=True, exist_ok=True)
    made = []
    tg = data / "local" / "nist_lm" / "lm_tg.arpa"
    tgpr = lm_dir / "tgpr.arpa"
    if tgpr.exists():
        log.info("%s already complete", tgpr)
    elif not tg.is_file():
        log.warning("%s not found (disc 13-32.1's tcb20onp): no tgpr", tg)
    else:
        tool = prune_arpa(tg, tgpr, threshold, lm_dir / "log" / "tgpr.log")
        log.info("%s = %s --threshold=%g %s", tgpr, tool, threshold, tg)
    if tgpr.exists():
        made.append(tgpr)
    text = data / "local" / "local_lm" / "lm_text.txt"
    bd = lm_dir / "bd_tgpr.arpa"
    if not lm_cfg.get("bd", False):
        log.info("lm.bd is false in %s: no bd_tgpr", conf)
    elif not text.is_file() or text.stat().st_size == 0:
        log.warning("%s is missing or empty: no bd_tgpr", text)
    elif bd.exists():
        log.info("%s already complete", bd)
        made.append(bd)
    else:
        words = lang / "words.txt"
        if not words.is_file():
            raise InputError(words, "not found", fix="run stage 2 (the lang dir) first")
        bd_tg = lm_dir / "bd_tg.arpa"
        if not bd_tg.exists():
            train_bd_tg(text, words, bd_tg, order, lm_dir / "log" / "bd_tg.log")
        tool = prune_arpa(bd_tg, bd, threshold, lm_dir / "log" / "bd_tgpr.log")
        log.info("%s = %s --threshold=%g %s", bd, tool, threshold, bd_tg)
        made.append(bd)
    return made


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--lang", required=True)
    a = p.parse_args(argv)
    setup_logging(str(Path(a.data) / "lm" / "log" / "make_lms.log"))
    log.info("python -m local.wsj.make_lms %s", shlex.join(argv))
    return run_command(lambda: make_lms(Path(a.conf), Path(a.data), Path(a.lang)))


if __name__ == "__main__":
    sys.exit(main())
