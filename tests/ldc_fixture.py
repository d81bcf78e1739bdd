"""A miniature of the LDC WSJ0 (LDC93S6B) and WSJ1 (LDC94S13B) disc layout, for data-prep tests.

``make_wsj_tree(root)`` writes ``root/wsj0/11-*.1`` and ``root/wsj1/13-*.1`` with real
``.ndx`` syntax (comment headers, ``11_1_1:path`` lines, the eval92 index without
extensions, the eval93 index with the wrong ``13_32_1`` disc id), per-session ``.dot``
transcripts with WSJ markup, PCM SPHERE ``.wv1`` files (little- and big-endian; one
speaker upper-cased as on some copies), the corpus LMs (``bcb20onp.z`` gzip,
``tcb20onp.z`` plain text with a preamble) and LM training text. It returns what the
data prep must produce: per set ``{utt: (speaker, normalised text, int16 samples)}``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from asrcomp.sphere import write_sphere

SR = 16000
NDX_HEADER = (";\n; File: {name}\n; Date: 6/28/93\n;\n; This index file lists the files of the set.\n"
              "; Format: disc_id:path\n;\n")

# (set, disc, directory on the disc, speaker, session, [(raw transcript, normalised)])
UTTS = [
    ("si84", "11-1.1", "wsj0/si_tr_s/011", "011", "011c02", [
        ("The company's [loud_breath] profits rose \\'sharply\\' ,COMMA analysts said .PERIOD",
         "THE COMPANY'S <NOISE> PROFITS ROSE 'SHARPLY' ,COMMA ANALYSTS SAID .PERIOD"),
        ("<and> the index fell ~ three %percent . today",
         "AND THE INDEX FELL THREE PERCENT TODAY"),
    ]),
    ("si84", "11-2.1", "wsj0/si_tr_s/012", "012", "012c03", [
        ("[<door_slam] Stocks fell --dash again [phone_ring/] today [/phone_ring]",
         "STOCKS FELL -DASH AGAIN TODAY"),
        ("Mr. Smith bought shares [door_slam>] .point five", "MR. SMITH BOUGHT SHARES POINT FIVE"),
    ]),
    # speaker 401 on 11-2.1 is listed in the index but excluded (Kaldi's grep -v)
    ("si84_excluded", "11-2.1", "wsj0/si_tr_s/401", "401", "401c02", [
        ("This speaker is left out", "THIS SPEAKER IS LEFT OUT"),
    ]),
    ("si284_wsj1", "13-1.1", "WSJ1/SI_TR_S/4A0", "4a0", "4a0c01", [
        ("Bonds rallied in heavy trading", "BONDS RALLIED IN HEAVY TRADING"),
        ("The dollar [lip_smack] was mixed", "THE DOLLAR <NOISE> WAS MIXED"),
    ]),
    ("eval92", "11-13.1", "wsj0/si_et_20/440", "440", "440c02", [
        ("Interest rates are rising", "INTEREST RATES ARE RISING"),
        ("Banks lent more money", "BANKS LENT MORE MONEY"),
    ]),
    ("dev93", "13-16.1", "wsj1/si_dt_20/4k0", "4k0", "4k0c03", [
        ("Prices of oil climbed", "PRICES OF OIL CLIMBED"),
    ]),
    ("eval93", "13-33.1", "wsj1/si_et_h1/wsj64k/4k8", "4k8", "4k8c02", [
        ("Traders expect a quiet week", "TRADERS EXPECT A QUIET WEEK"),
    ]),
]
# where the eval92 transcripts live: not beside the audio (data prep searches every disc)
DOT_ELSEWHERE = {"440c02": ("11-4.1", "wsj0/transcrp/dots/si_et_20/440")}

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


def utt_samples(utt: str) -> np.ndarray:
    rng = np.random.default_rng(sum(ord(c) * 31 ** i for i, c in enumerate(utt)) % 2**32)
    n = int(SR * (0.3 + 0.1 * rng.random()))
    return (rng.standard_normal(n) * 2000).astype(np.int16)


def _ndx_line(disc: str, path: str, ext: bool = True) -> str:
    did = disc.replace("-", "_").replace(".", "_")
    return f"{did}:{path if ext else path.rsplit('.', 1)[0]}\n"


def make_wsj_tree(root: Path, shorten_utts: tuple[str, ...] = ()) -> dict[str, dict[str, tuple]]:
    """Write the miniature; ``shorten_utts`` get a header claiming shorten coding (PCM data inside),
    to exercise the sph2pipe path with a stand-in decoder. Returns the expected sets."""
    root = Path(root)
    wsj0, wsj1 = root / "wsj0", root / "wsj1"
    for d in [f"11-{i}.1" for i in range(1, 14)]:
        (wsj0 / d).mkdir(parents=True, exist_ok=True)
    for d in [f"13-{i}.1" for i in range(1, 35)]:
        (wsj1 / d).mkdir(parents=True, exist_ok=True)
    disc_dir = {d.name: d for base in (wsj0, wsj1) for d in base.iterdir()}
    ndx: dict[str, list[str]] = {"si84": [], "si284_wsj1": [], "eval92": [], "dev93": [], "eval93": []}
    expected: dict[str, dict[str, tuple]] = {k: {} for k in
                                             ("train_si84", "train_si284", "test_eval92", "test_dev93",
                                              "test_eval93")}
    target = {"si84": ["train_si84", "train_si284"], "si84_excluded": [], "si284_wsj1": ["train_si284"],
              "eval92": ["test_eval92"], "dev93": ["test_dev93"], "eval93": ["test_eval93"]}
    for i, (group, disc, rel, spk, session, lines) in enumerate(UTTS):
        audio_dir = disc_dir[disc] / rel
        audio_dir.mkdir(parents=True, exist_ok=True)
        upper = rel != rel.lower()
        dot_lines = []
        for j, (raw, norm) in enumerate(lines, 1):
            utt = f"{session}{j:02d}"
            name = f"{utt.upper() if upper else utt}.{'WV1' if upper else 'wv1'}"
            x = utt_samples(utt)
            write_sphere(audio_dir / name, x, SR, big_endian=(i + j) % 2 == 0,
                         extra={"speaker_id": spk, "utterance_id": utt},
                         coding="pcm,embedded-shorten-v2.00" if utt in shorten_utts else "pcm")
            dot_lines.append(f"{raw} ({utt.upper() if upper else utt})\n")
            group_key = "si84" if group == "si84_excluded" else group
            if group == "eval93":
                ndx[group_key].append(_ndx_line("13-32.1", f"{rel}/{name}"))  # the wrong disc id, as on the disc
            else:
                ndx[group_key].append(_ndx_line(disc, f"{rel}/{name}", ext=group != "eval92"))
            for s in target[group]:
                expected[s][utt] = (spk, norm, x)
        dot_disc, dot_rel = DOT_ELSEWHERE.get(session, (disc, rel))
        (disc_dir[dot_disc] / dot_rel).mkdir(parents=True, exist_ok=True)
        dot_name = f"{session.upper()}.DOT" if upper else f"{session}.dot"
        (disc_dir[dot_disc] / dot_rel / dot_name).write_text("".join(dot_lines), encoding="latin-1")
    ndx_files = {"si84": ("11-13.1", "wsj0/doc/indices/train/tr_s_wv1.ndx"),
                 "si284_wsj1": ("13-34.1", "wsj1/doc/indices/si_tr_s.ndx"),
                 "eval92": ("11-13.1", "wsj0/doc/indices/test/nvp/si_et_20.ndx"),
                 "dev93": ("13-34.1", "wsj1/doc/indices/h1_p0.ndx"),
                 "eval93": ("13-32.1", "wsj1/doc/indices/wsj1/eval/h1_p0.ndx")}
    for key, (disc, rel) in ndx_files.items():
        p = disc_dir[disc] / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(NDX_HEADER.format(name=p.name) + "".join(ndx[key]), encoding="latin-1")
    lm = disc_dir["13-32.1"] / "wsj1/doc/lng_modl"
    (lm / "base_lm").mkdir(parents=True)
    (lm / "base_lm" / "bcb20onp.z").write_bytes(gzip.compress(ARPA_BG.encode()))
    (lm / "base_lm" / "tcb20onp.z").write_text(ARPA_TG_PREAMBLE + ARPA_BG)
    (lm / "lm_train/np_data/87").mkdir(parents=True)
    (lm / "lm_train/np_data/87" / "870101.z").write_bytes(gzip.compress(LM_TEXT.encode()))
    return expected
