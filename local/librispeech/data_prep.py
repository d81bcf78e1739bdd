"""LibriSpeech (or mini_librispeech) via lhotse's recipe -> Kaldi data dirs + lhotse manifests.

    python -m local.librispeech.data_prep --corpus-dir /corpora/LibriSpeech --parts dev-clean,test-clean data
    python -m local.librispeech.data_prep --download --mini --corpus-dir downloads data     # online

The corpus layout is ``<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` with one
``<spk>-<chapter>.trans.txt`` per chapter. Set names are the part names with ``-``
replaced by ``_`` (``dev_clean``); utterance ids are LibriSpeech's (speaker-prefixed);
wav.scp points at the flac files. ``--lm-text`` (e.g. librispeech-lm-norm.txt.gz) plus
the training transcripts become ``local/lm_text.txt``; their words ``local/vocab.txt``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from asrcomp.datadir import write_data_dir, write_lhotse_manifests
from asrcomp.utils import InputError, run_command, setup_logging
from local.kaldi_dir.import_dir import write_lm_text

log = logging.getLogger("local.librispeech.data_prep")


def prepare(corpus_dir: Path, out_dir: Path, parts: list[str], train_parts: list[str],
            lm_text: Path | None = None, download: bool = False, mini: bool = False) -> dict[str, int]:
    from lhotse.recipes import download_librispeech, prepare_librispeech

    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if download:
        parts_dl = "mini_librispeech" if mini else parts
        corpus_dir = Path(download_librispeech(corpus_dir, dataset_parts=parts_dl))
    if not corpus_dir.is_dir():
        raise InputError(corpus_dir, "LibriSpeech directory not found",
                         fix="give the directory holding dev-clean/ ..., or add --download when online")
    for p in parts:
        if not (corpus_dir / p).is_dir():
            raise InputError(corpus_dir / p, f"part {p} not found",
                             fix=f"unpack {p}.tar.gz into {corpus_dir} (or choose --parts from what is there)")
    manifests = prepare_librispeech(corpus_dir, dataset_parts=parts, num_jobs=1)
    counts = {}
    for part in parts:
        m = manifests[part]
        recs, sups = m["recordings"], m["supervisions"]
        name = part.replace("-", "_")
        wav_scp, text, utt2spk = {}, {}, {}
        for s in sups:
            rec = recs[s.recording_id]
            wav_scp[s.id] = str(Path(rec.sources[0].source).resolve())
            text[s.id] = s.text
            utt2spk[s.id] = s.speaker
        if not text:
            raise InputError(corpus_dir / part, "no utterances found", fix="check the .trans.txt files")
        d = write_data_dir(out_dir / name, wav_scp, text, utt2spk)
        write_lhotse_manifests(d, out_dir / "manifests", f"librispeech_{name}")
        counts[name] = len(d.utts)
        log.info("%s: %d utterances, %d speakers", name, len(d.utts), len(d.spk2utt))
    write_lm_text(lm_text, [out_dir / p.replace("-", "_") for p in train_parts], out_dir)
    return counts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", required=True)
    p.add_argument("--parts", default="train-clean-100,dev-clean,test-clean")
    p.add_argument("--train-parts", default="train-clean-100", help="parts whose transcripts join the LM text")
    p.add_argument("--lm-text", help="extra LM text (librispeech-lm-norm.txt.gz)")
    p.add_argument("--download", action="store_true", help="download the parts first (needs the network)")
    p.add_argument("--mini", action="store_true", help="with --download: mini_librispeech (dev-clean-2, train-clean-5)")
    p.add_argument("--log-file", dest="log")
    p.add_argument("out_dir")
    a = p.parse_args(argv)
    setup_logging(a.log)
    log.info("python -m local.librispeech.data_prep %s", shlex.join(argv))
    return run_command(lambda: prepare(Path(a.corpus_dir), Path(a.out_dir), a.parts.split(","),
                                       a.train_parts.split(","), Path(a.lm_text) if a.lm_text else None,
                                       a.download, a.mini))


if __name__ == "__main__":
    sys.exit(main())
