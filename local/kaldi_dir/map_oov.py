"""Map the words of a data dir's ``text`` that the lang dir does not know to ``<UNK>``.

    python -m local.kaldi_dir.map_oov --lang data/lang_phone data/train_si284

Kaldi maps training OOVs to its oov symbol when it compiles training graphs; asrcomp's
trainer refuses unknown words instead, so recipes map them once here. The original is
kept as ``text.orig`` (written once, never overwritten), the counts go to the log and to
``oov_counts`` in the data dir. Test sets are left alone: their OOVs are real errors.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
from collections import Counter
from pathlib import Path

from asrcomp.datadir import read_table, write_table
from asrcomp.lang import UNK_WORD, read_symbol_table
from asrcomp.utils import atomic_open, run_command, setup_logging

log = logging.getLogger("local.kaldi_dir.map_oov")


def map_oov(data_dir: Path, lang_dir: Path, unk: str = UNK_WORD) -> Counter:
    data_dir, lang_dir = Path(data_dir), Path(lang_dir)
    words = read_symbol_table(lang_dir / "words.txt")
    orig = data_dir / "text.orig"
    if not orig.exists():
        shutil.copyfile(data_dir / "text", orig)
    text = read_table(orig, max_fields=None)
    oov: Counter = Counter()
    out = {}
    for utt, t in text.items():
        ws = t.split()
        oov.update(w for w in ws if w not in words)
        out[utt] = " ".join(w if w in words else unk for w in ws)
    write_table(data_dir / "text", out)
    with atomic_open(data_dir / "oov_counts", "w") as f:
        f.writelines(f"{c} {w}\n" for w, c in oov.most_common())
    n = sum(len(t.split()) for t in text.values())
    log.info("%s: %d of %d words (%.2f%%, %d types) not in %s, mapped to %s", data_dir, sum(oov.values()), n,
             100.0 * sum(oov.values()) / max(n, 1), len(oov), lang_dir / "words.txt", unk)
    return oov


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lang", required=True)
    p.add_argument("--log-file", dest="log")
    p.add_argument("data_dir")
    a = p.parse_args(argv)
    setup_logging(a.log)
    log.info("python -m local.kaldi_dir.map_oov %s", shlex.join(argv))
    return run_command(lambda: map_oov(Path(a.data_dir), Path(a.lang)))


if __name__ == "__main__":
    sys.exit(main())
