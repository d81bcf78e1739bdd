"""Bring an existing Kaldi data dir (wav.scp, text, utt2spk) into a recipe: validate, copy, lhotse manifests.

    python -m local.kaldi_dir.import_dir --name train /path/to/kaldi/data/train data
    python -m local.kaldi_dir.import_dir --lm-text corpus.txt --vocab-from data/train data   # LM text + word list

writes ``data/<name>/`` (wav.scp text utt2spk spk2utt utt2dur),
``data/manifests/<name>_{recordings,supervisions,cuts}.jsonl.gz``; with ``--lm-text``
also ``data/local/lm_text.txt`` (the LM corpus plus the training transcripts) and
``data/local/vocab.txt`` (their words: the lang dir's word list). wav.scp entries may
be files or ``cmd |`` pipes (their duration is measured by running the pipe once).
A ``segments`` file is not supported yet: cut the audio into one file per utterance first.
"""

from __future__ import annotations

import argparse
import io
import logging
import shlex
import subprocess
import sys
from pathlib import Path

from asrcomp.datadir import DataDir, read_data_dir, read_table, write_data_dir, write_lhotse_manifests, write_table
from asrcomp.utils import InputError, atomic_open, run_command, setup_logging

log = logging.getLogger("local.kaldi_dir.import_dir")


def audio_info(spec: str, utt: str, wav_scp: Path) -> tuple[int, int]:
    """``(num_samples, sample_rate)`` of a wav.scp entry (file or pipe)."""
    import soundfile as sf

    try:
        if spec.rstrip().endswith("|"):
            out = subprocess.run(spec.rstrip()[:-1], shell=True, capture_output=True, check=True).stdout
            info = sf.info(io.BytesIO(out))
        else:
            info = sf.info(spec)
    except (OSError, RuntimeError, subprocess.CalledProcessError, sf.LibsndfileError) as e:
        line = next((i for i, k in enumerate(read_table(wav_scp, max_fields=None), 1) if k == utt), None)
        raise InputError(wav_scp, f"cannot read audio for '{utt}' ({spec}): {e}", line,
                         "fix the path or the command") from e
    return info.frames, info.samplerate


def import_dir(src: Path, out_dir: Path, name: str) -> DataDir:
    src = Path(src)
    if (src / "segments").exists():
        raise InputError(src / "segments", "segments files are not supported",
                         fix="extract one audio file per utterance (e.g. with sox trim) and list those in wav.scp")
    s = read_data_dir(src)  # validates: same utterances everywhere, utt ids prefixed by speaker ids
    infos = {u: audio_info(s.wav_scp[u], u, src / "wav.scp") for u in s.utts}
    d = write_data_dir(out_dir / name, s.wav_scp, s.text, s.utt2spk)
    write_table(out_dir / name / "utt2dur", {u: f"{n / sr:.3f}" for u, (n, sr) in infos.items()})
    write_lhotse_manifests(d, out_dir / "manifests", name, infos)
    log.info("%s -> %s: %d utterances, %d speakers, %.2f h", src, out_dir / name, len(d.utts), len(d.spk2utt),
             sum(n / sr for n, sr in infos.values()) / 3600)
    return d


def write_lm_text(lm_text: Path | None, train_dirs: list[Path], out_dir: Path) -> None:
    """``local/lm_text.txt`` = LM corpus (upper-cased as the transcripts are, if they are) + training
    transcripts; ``local/vocab.txt`` = their words."""
    texts = []
    for d in train_dirs:
        texts += list(read_table(Path(d) / "text", max_fields=None).values())
    upper = all(t == t.upper() for t in texts)
    vocab = {w for t in texts for w in t.split()}
    (out_dir / "local").mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "local" / "lm_text.txt", "w") as f:
        if lm_text is not None:
            if not Path(lm_text).is_file():
                raise InputError(lm_text, "LM text not found", fix="give a file with one sentence per line")
            opener = __import__("gzip").open if str(lm_text).endswith(".gz") else open
            with opener(lm_text, "rt", encoding="utf-8") as g:
                for line in g:
                    line = line.strip()
                    if line:
                        line = line.upper() if upper else line
                        f.write(line + "\n")
                        vocab.update(line.split())
        f.writelines(t + "\n" for t in texts)
    with atomic_open(out_dir / "local" / "vocab.txt", "w") as f:
        f.writelines(w + "\n" for w in sorted(vocab) if not w.startswith("<"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="set name (data/<name>); with a source dir")
    p.add_argument("--lm-text", help="a text corpus for the LM (one sentence per line, .gz too)")
    p.add_argument("--vocab-from", action="append", default=[], help="imported training dir(s) for lm_text/vocab")
    p.add_argument("--log-file", dest="log")
    p.add_argument("src", nargs="?", help="the Kaldi data dir to import")
    p.add_argument("out_dir")
    a = p.parse_args(argv)
    setup_logging(a.log)
    log.info("python -m local.kaldi_dir.import_dir %s", shlex.join(argv))

    def go():
        if a.src:
            import_dir(Path(a.src), Path(a.out_dir), a.name or Path(a.src).name)
        if a.vocab_from:
            write_lm_text(Path(a.lm_text) if a.lm_text else None, [Path(d) for d in a.vocab_from], Path(a.out_dir))
    return run_command(go)


if __name__ == "__main__":
    sys.exit(main())
