"""A miniature of the LDC WSJ0 (LDC93S6B) and WSJ1 (LDC94S13B) discs, laid out as Kaldi's
``egs/wsj/s5/local/wsj_data_prep.sh`` (with ndx2flist.pl, flist2scp.pl, find_transcripts.pl) reads them.

Written from Kaldi's scripts and from what other WSJ readers hard-code, not from our reader:

- disc directories ``11-1.1`` ... ``11-14.1`` (WSJ0) and ``13-1.1`` ... ``13-34.1`` (WSJ1);
- index files where Kaldi reads them (``11-13.1/wsj0/doc/indices/train/tr_s_wv1.ndx``,
  ``.../test/nvp/si_et_20.ndx``, ``13-34.1/wsj1/doc/indices/{si_tr_s,h1_p0}.ndx``,
  ``13-32.1/wsj1/doc/indices/wsj1/eval/h1_p0.ndx``), with ``;;`` comment headers and
  ``11_1_1:wsj0/si_tr_s/011/011c0201.wv1`` lines (ndx2flist.pl's template); the eval92 index
  without extensions (Kaldi appends ``.wv1``), the eval93 index naming disc ``13_32_1`` for
  audio that is on ``13-33.1`` (Kaldi's sed), speaker 401 listed in the SI-84 index but absent
  from disc 11-2.1 (Kaldi's ``grep -v``);
- audio ``<disc>/wsj0/si_tr_s/<spk>/<utt>.wv1``; eval92 on ``11-14.1/wsj0/si_et_20``, dev93 on
  ``13-16.1/wsj1/si_dt_20``, eval93 on ``13-33.1/wsj1/si_et_h1/wsj64k``; utterance ids of 8
  characters, the last two base-36 (``012c030a``);
- transcripts: one ``<session>00.dot`` per session (find_transcripts.pl accepts only
  ``(\\w{6})00.dot``), lines ``text (uttid)`` with lower-case ids, holding every utterance of the
  session (also ones no index lists). WSJ0 training sessions keep theirs on 11-4.1 under
  ``wsj0/transcrp/dots/si_tr_s/<spk>/``, WSJ1 under ``13-34.1/wsj1/trans/wsj1/<set>/<spk>/``,
  eval92 beside its audio on 11-14.1. (Where eval93's are is not documented in anything we
  could read; here they are beside the audio on 13-33.1. The reader searches every disc, as
  Kaldi's ``find -iname '*.dot'`` does, so this does not change what it finds.)
- the corpus LMs on ``13-32.1/wsj1/doc/lng_modl/base_lm``: ``bcb20onp.z`` gzip (Kaldi copies it to
  ``lm_bg.arpa.gz``), ``tcb20onp.z`` plain text with a preamble before ``\\data\\`` (Kaldi's perl
  one-liner); the LM training text ``lm_train/np_data/87/*.z`` in Unix ``compress`` (LZW) format,
  with SGML-like ``<art>``/``<p>``/``<s>`` markup lines.

``upper_discs`` upper-cases whole disc copies (Kaldi's comments: disc 13-16.1 came upper-cased on
some sites). ``shorten_utts`` are written shorten-compressed (:func:`write_sphere_shorten`) as on
the real discs. :func:`make_wsj_tree` returns what the data prep must produce: per set
``{utt: (speaker, normalised text, int16 samples)}``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from asrcomp.sphere import write_sphere

SR = 16000
WSJ0_DISCS = [f"11-{i}.1" for i in range(1, 15)]
WSJ1_DISCS = [f"13-{i}.1" for i in range(1, 35)]
NDX_HEADER = (";; Index for {what}\n;; File: {name}\n;; Format: disc_id:path (disc 11-1.1 is 11_1_1)\n;;\n")

# (group, audio disc, directory on the disc, speaker, session, [(utt suffix, raw transcript, normalised)],
#  (disc, directory) of the session's .dot file)
UTTS = [
    ("si84", "11-1.1", "wsj0/si_tr_s/011", "011", "011c02", [
        ("01", "The company's [loud_breath] profits rose \\'sharply\\' ,COMMA analysts said .PERIOD",
         "THE COMPANY'S <NOISE> PROFITS ROSE 'SHARPLY' ,COMMA ANALYSTS SAID .PERIOD"),
        ("02", "<and> the index fell ~ three %percent . today \"DOUBLE-QUOTE",
         "AND THE INDEX FELL THREE PERCENT TODAY \"DOUBLE-QUOTE"),
    ], ("11-4.1", "wsj0/transcrp/dots/si_tr_s/011")),
    ("si84", "11-2.1", "wsj0/si_tr_s/012", "012", "012c03", [
        ("01", "[<door_slam] Stocks fell --dash again [phone_ring/] today [/phone_ring]",
         "STOCKS FELL -DASH AGAIN TODAY"),
        ("0a", "Mr. Smith bought shares [door_slam>] .point five ?QUESTION-MARK",
         "MR. SMITH BOUGHT SHARES POINT FIVE ?QUESTION-MARK"),
    ], ("11-4.1", "wsj0/transcrp/dots/si_tr_s/012")),
    ("si284_wsj1", "13-1.1", "wsj1/si_tr_s/4a0", "4a0", "4a0c01", [
        ("01", "Bonds rallied in heavy trading", "BONDS RALLIED IN HEAVY TRADING"),
        ("02", "The dollar [lip_smack] was mixed (LEFT-PAREN", "THE DOLLAR <NOISE> WAS MIXED (LEFT-PAREN"),
    ], ("13-34.1", "wsj1/trans/wsj1/si_tr_s/4a0")),
    ("eval92", "11-14.1", "wsj0/si_et_20/440", "440", "440c02", [
        ("01", "Interest rates are rising", "INTEREST RATES ARE RISING"),
        ("02", "Banks lent more money", "BANKS LENT MORE MONEY"),
    ], ("11-14.1", "wsj0/si_et_20/440")),
    # MEGABANK is in no CMUdict: a dev93 word outside the lexicon
    ("dev93", "13-16.1", "wsj1/si_dt_20/4k0", "4k0", "4k0c03", [
        ("01", "Prices of oil climbed", "PRICES OF OIL CLIMBED"),
        ("0a", "Saatchi officials said the megabank grew", "SAATCHI OFFICIALS SAID THE MEGABANK GREW"),
    ], ("13-34.1", "wsj1/trans/wsj1/si_dt_20/4k0")),
    ("eval93", "13-33.1", "wsj1/si_et_h1/wsj64k/4k8", "4k8", "4k8c02", [
        ("01", "Traders expect a quiet week", "TRADERS EXPECT A QUIET WEEK"),
    ], ("13-33.1", "wsj1/si_et_h1/wsj64k/4k8")),
]
#: speaker 401: listed in tr_s_wv1.ndx, absent from disc 11-2.1 (Kaldi leaves it out with grep -v)
ABSENT_401 = ["11_2_1:wsj0/si_tr_s/401/401c0201.wv1", "11_2_1:wsj0/si_tr_s/401/401c0202.wv1"]
#: a line of a .dot file whose utterance no index lists
UNLISTED = ("99", "An utterance no index lists")

NDX_FILES = {"si84": ("11-13.1", "wsj0/doc/indices/train/tr_s_wv1.ndx", "WSJ0 SI-short Sennheiser training data"),
             "si284_wsj1": ("13-34.1", "wsj1/doc/indices/si_tr_s.ndx", "WSJ1 SI-short training data"),
             "eval92": ("11-13.1", "wsj0/doc/indices/test/nvp/si_et_20.ndx", "Nov'92 20k NVP test"),
             "dev93": ("13-34.1", "wsj1/doc/indices/h1_p0.ndx", "Nov'93 Hub 1 P0 development test"),
             "eval93": ("13-32.1", "wsj1/doc/indices/wsj1/eval/h1_p0.ndx", "Nov'93 Hub 1 P0 evaluation test")}
TARGET = {"si84": ["train_si84", "train_si284"], "si284_wsj1": ["train_si284"], "eval92": ["test_eval92"],
          "dev93": ["test_dev93"], "eval93": ["test_eval93"]}
SETS = ["train_si84", "train_si284", "test_eval92", "test_dev93", "test_eval93"]

ARPA_BG = """\\data\\
ngram 1=8
ngram 2=2

\\1-grams:
-1.0 </s>
-99 <s> -0.3
-1.0 <UNK> -0.3
-1.0 THE -0.3
-1.0 STOCKS -0.3
-1.0 FELL -0.3
-1.0 RATES -0.3
-1.0 ROSE -0.3

\\2-grams:
-0.3 <s> THE
-0.3 THE STOCKS

\\end\\
"""
ARPA_TG_PREAMBLE = "This is the 20k open vocabulary trigram, non-verbalized punctuation.\n(c) 1993\n\n"
LM_TEXT = """<art.870101-0001>
<p>
<s>
the stocks fell. the rates rose
Mr. Smith said prices rose
</s>
</p>
"""


def utt_samples(utt: str, text: str = "") -> np.ndarray:
    """Noise for ``utt``: 0.3-0.4 s plus 60 ms per character of ``text``, so that a CTC model's
    output frames (10 ms frames, subsampled by 3) outnumber the transcript's phones."""
    rng = np.random.default_rng(sum(ord(c) * 31 ** i for i, c in enumerate(utt)) % 2**32)
    n = int(SR * (0.3 + 0.1 * rng.random() + 0.06 * len(text)))
    return (rng.standard_normal(n) * 2000).astype(np.int16)


def lzw_compress(data: bytes, max_bits: int = 16) -> bytes:
    """Unix ``compress`` (.Z) of ``data``: magic 1f 9d, block mode, codes LSB first, never cleared.

    Code ``i`` has the width gzip's ``unlzw`` expects: the smallest of 9..max_bits bits that holds the
    decoder's next free entry (257 before code 0, 256 + i after); when the width grows, the stream
    is padded to the end of the current group of 8 codes (``width`` bytes), as ``compress`` does."""
    table = {bytes([i]): i for i in range(256)}
    next_code, maxmax = 257, 1 << max_bits
    codes: list[int] = []
    w = b""
    for c in data:
        wc = w + bytes([c])
        if wc in table:
            w = wc
            continue
        codes.append(table[w])
        if next_code < maxmax:
            table[wc] = next_code
            next_code += 1
        w = bytes([c])
    if w:
        codes.append(table[w])
    out = bytearray(b"\x1f\x9d" + bytes([0x80 | max_bits]))
    acc = nbits = 0  # pending bits
    n_bits, period_bits = 9, 0  # width, bits written at this width
    for i, code in enumerate(codes):
        free_ent = 257 if i == 0 else min(256 + i, maxmax)
        while n_bits < max_bits and free_ent > (1 << n_bits) - 1:
            pad = -period_bits % (8 * n_bits)
            nbits += pad  # zero bits
            n_bits, period_bits = n_bits + 1, 0
        acc |= code << nbits
        nbits += n_bits
        period_bits += n_bits
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def _bits_writer():
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def uvar(value: int, k: int) -> None:  # Rice code: value >> k in unary (zeros, then a one), k low bits
        bits.extend([0] * (value >> k) + [1])
        if k:
            put(value & ((1 << k) - 1), k)

    def ulong(value: int) -> None:  # shorten's ulong_put: the width, then the value
        k = max(value.bit_length(), 0)
        uvar(k, 2)
        uvar(value, k)

    def svar(value: int, k: int) -> None:  # signed: zigzag into k+1 bits
        uvar((value << 1) if value >= 0 else ((~value) << 1) | 1, k + 1)

    return bits, put, uvar, ulong, svar


def shorten_encode(x: np.ndarray, blocksize: int = 256, big_endian: bool = False) -> bytes:
    """A shorten v2 stream of int16 mono samples, as the WSJ discs embed after the SPHERE header:
    no verbatim section (the SPHERE header describes the audio), nmean 4, blocks of ``blocksize``
    coded as first- or second-order differences (or FN_ZERO for silent blocks) with a Rice
    parameter per block, a last short block announced with FN_BLOCKSIZE, then FN_QUIT.
    Written from the format as shorten 2.x and ffmpeg's decoder read it."""
    x = np.asarray(x, dtype=np.int64)
    bits, put, uvar, ulong, svar = _bits_writer()
    ulong(3 if big_endian else 5)  # internal file type: TYPE_S16HL / TYPE_S16LH
    ulong(1)  # channels
    ulong(blocksize)
    ulong(0)  # maxnlpc
    ulong(4)  # nmean (shorten 2's default)
    ulong(0)  # nskip
    hist = [0, 0, 0]  # x[-1], x[-2], x[-3] (nwrap 3)
    bs = blocksize
    for start in range(0, len(x), blocksize):
        blk = x[start:start + blocksize]
        if len(blk) != bs:
            uvar(5, 2)  # FN_BLOCKSIZE, then the new size as a ulong
            ulong(len(blk))
            bs = len(blk)
        if not blk.any():
            uvar(8, 2)  # FN_ZERO
            hist = [0, 0, 0]
            continue
        order = 1 + (start // blocksize) % 2  # alternate DIFF1 / DIFF2
        full = np.concatenate([np.array(hist[::-1], dtype=np.int64), blk])
        if order == 1:
            res = full[3:] - full[2:-1]
        else:
            res = full[3:] - 2 * full[2:-1] + full[1:-2]
        mean_abs = float(np.abs(res).mean()) if len(res) else 0.0
        k = max(int(np.log2(mean_abs)) if mean_abs >= 1 else 0, 0)
        uvar(order, 2)  # FN_DIFF1 / FN_DIFF2
        uvar(k, 3)  # ENERGYSIZE
        for r in res:
            svar(int(r), k)
        hist = [int(v) for v in full[-1:-4:-1]]
    uvar(4, 2)  # FN_QUIT
    bits.extend([0] * (-len(bits) % 8))
    body = np.packbits(np.array(bits, dtype=np.uint8)).tobytes()
    return b"ajkg" + bytes([2]) + body


def write_sphere_shorten(path: Path, x: np.ndarray, sample_rate: int = SR, big_endian: bool = False,
                         extra: dict | None = None) -> None:
    """A shorten-compressed SPHERE file as on the WSJ discs: a 1024-byte NIST_1A header with
    ``sample_coding -s26 pcm,embedded-shorten-v2.00``, then the shorten stream."""
    fields = [("sample_count", "-i", len(x)), ("sample_rate", "-i", sample_rate), ("channel_count", "-i", 1),
              ("sample_n_bytes", "-i", 2), ("sample_byte_format", "-s2", "10" if big_endian else "01"),
              ("sample_coding", "-s26", "pcm,embedded-shorten-v2.00"), ("sample_sig_bits", "-i", 16)]
    for k, v in (extra or {}).items():
        fields.append((k, "-i" if isinstance(v, int) else f"-s{len(str(v))}", v))
    text = "NIST_1A\n   1024\n" + "".join(f"{k} {t} {v}\n" for k, t, v in fields) + "end_head\n"
    Path(path).write_bytes(text.encode("latin-1").ljust(1024, b" ") + shorten_encode(x, big_endian=big_endian))


def _case(rel: str, upper: bool) -> str:
    return rel.upper() if upper else rel


def make_wsj_tree(root: Path, shorten_utts: tuple[str, ...] = (), upper_discs: tuple[str, ...] = (),
                  lzw_lm_text: bool = True) -> dict[str, dict[str, tuple]]:
    """Write the miniature under ``root/wsj0`` and ``root/wsj1``; return the expected sets."""
    root = Path(root)
    disc_dir = {}
    for base, discs in ((root / "wsj0", WSJ0_DISCS), (root / "wsj1", WSJ1_DISCS)):
        for d in discs:
            disc_dir[d] = base / (d.upper() if d in upper_discs else d)
            disc_dir[d].mkdir(parents=True, exist_ok=True)
    ndx: dict[str, list[str]] = {k: [] for k in NDX_FILES}
    ndx["si84"] += [line + "\n" for line in ABSENT_401]
    expected: dict[str, dict[str, tuple]] = {s: {} for s in SETS}
    for i, (group, disc, rel, spk, session, lines, (dot_disc, dot_rel)) in enumerate(UTTS):
        up = disc in upper_discs
        audio_dir = disc_dir[disc] / _case(rel, up)
        audio_dir.mkdir(parents=True, exist_ok=True)
        dot_lines = []
        for j, (suffix, raw, norm) in enumerate(lines):
            utt = session + suffix
            x = utt_samples(utt, norm)
            path = audio_dir / _case(f"{utt}.wv1", up)
            if utt in shorten_utts:
                write_sphere_shorten(path, x, big_endian=(i + j) % 2 == 0,
                                     extra={"speaker_id": spk, "utterance_id": utt})
            else:
                write_sphere(path, x, SR, big_endian=(i + j) % 2 == 0, extra={"speaker_id": spk, "utterance_id": utt})
            dot_lines.append(f"{raw} ({utt})\n")
            did = ("13-32.1" if group == "eval93" else disc).replace("-", "_").replace(".", "_")
            ndx[group].append(f"{did}:{rel}/{utt}{'' if group == 'eval92' else '.wv1'}\n")
            for s in TARGET[group]:
                expected[s][utt] = (spk, norm, x)
        dot_lines.append(f"{UNLISTED[1]} ({session}{UNLISTED[0]})\n")
        up = dot_disc in upper_discs
        dot_dir = disc_dir[dot_disc] / _case(dot_rel, up)
        dot_dir.mkdir(parents=True, exist_ok=True)
        (dot_dir / _case(f"{session}00.dot", up)).write_text("".join(dot_lines), encoding="latin-1")
    for key, (disc, rel, what) in NDX_FILES.items():
        p = disc_dir[disc] / _case(rel, disc in upper_discs)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(NDX_HEADER.format(what=what, name=p.name) + "".join(ndx[key]), encoding="latin-1")
    lm = disc_dir["13-32.1"] / "wsj1/doc/lng_modl"
    (lm / "base_lm").mkdir(parents=True)
    (lm / "base_lm" / "bcb20onp.z").write_bytes(gzip.compress(ARPA_BG.encode()))
    (lm / "base_lm" / "tcb20onp.z").write_text(ARPA_TG_PREAMBLE + ARPA_BG)
    (lm / "lm_train/np_data/87").mkdir(parents=True)
    (lm / "lm_train/np_data/87" / "870101.z").write_bytes(
        lzw_compress(LM_TEXT.encode()) if lzw_lm_text else gzip.compress(LM_TEXT.encode()))
    return expected


def ndx_line(tree: Path, group: str, utt: str) -> int:
    """1-based line of ``utt`` in the fixture's index file of ``group``."""
    disc, rel, _ = NDX_FILES[group]
    base = tree / ("wsj0" if disc.startswith("11") else "wsj1") / disc / rel
    for n, line in enumerate(base.read_text().splitlines(), 1):
        if utt in line:
            return n
    raise KeyError(utt)
