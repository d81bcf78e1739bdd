"""asrcomp subset-data-dir (Kaldi's utils/subset_data_dir.sh): every table and the cut manifest
filtered to the chosen speakers, in the source's order; speed copies chosen with their speaker;
a fraction stratified by spk2group, seeded, the same for train and train_sp; the subset read
by the training reader with the source's features; bad input as clear errors, nothing
half-written. On a generated train / train_sp pair with kaldiio features."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from asrcomp import subset
from asrcomp.cli import main
from asrcomp.datadir import read_data_dir, read_table, write_table
from asrcomp.features import FbankConfig, compute_cmvn_stats
from asrcomp.perturb import perturb_data_dir_speed
from asrcomp.subset import base_speaker, choose_speakers, subset_data_dir
from asrcomp.utils import InputError

from tiny_corpus import WORDS, write_lang

ROOT = Path(__file__).resolve().parents[1]
FEAT_DIM = 20
# 4 children, 6 adults: a fraction keeps the 2 : 3 proportion
GROUPS = {**{f"c{i}": "child" for i in range(1, 5)}, **{f"a{i}": "adult" for i in range(1, 7)}}
UTTS_PER_SPK = 3


def _features(d: Path, feat_dir: Path, seed: int) -> None:
    """feats.scp (kaldiio, random), utt2num_frames, fbank.yaml, per-speaker cmvn.scp (the
    project's writer), then the cut manifest by the normal path."""
    import kaldiio

    from asrcomp.dataset import feature_cuts

    rng = np.random.default_rng(seed)
    utts = list(read_table(d / "utt2spk"))  # sorted, as Kaldi keeps them
    feat_dir.mkdir(parents=True, exist_ok=True)
    nframes = {}
    with kaldiio.WriteHelper(f"ark,scp:{feat_dir / f'raw_{d.name}.ark'},{d / 'feats.scp'}") as w:
        for i, u in enumerate(utts):
            x = rng.standard_normal((40 + 7 * (i % 5), FEAT_DIM)).astype(np.float32)
            w(u, x)
            nframes[u] = str(len(x))
    write_table(d / "utt2num_frames", nframes)
    cfg = FbankConfig(num_mel_bins=FEAT_DIM)  # cmvn: speaker
    (d / "fbank.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    compute_cmvn_stats(read_data_dir(d), feat_dir, cfg, d / "feats.scp")
    feature_cuts(d)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """``train`` (10 speakers in 2 groups, spk2group, spk2gender written in reverse order,
    utt2dur) and ``train_sp`` (its 3-way speed copies, with spk2group copied by speed perturbation)."""
    from asrcomp.datadir import write_data_dir

    root = tmp_path_factory.mktemp("subset")
    rng = np.random.default_rng(0)
    wav, text, u2s = {}, {}, {}
    for spk in GROUPS:
        for i in range(UTTS_PER_SPK):
            u = f"{spk}-{i:03d}"
            wav[u], text[u], u2s[u] = f"/nonexistent/{u}.wav", " ".join(rng.choice(WORDS, 2)), spk
    train = root / "data" / "train"
    write_data_dir(train, wav, text, u2s)
    write_table(train / "spk2group", GROUPS)
    (train / "spk2gender").write_text("".join(f"{s} {'mf'[i % 2]}\n" for i, s in enumerate(sorted(GROUPS)[::-1])))
    write_table(train / "utt2dur", {u: f"{0.5 + 0.1 * (i % 4):.2f}" for i, u in enumerate(sorted(u2s))})
    _features(train, root / "fbank", 0)
    train_sp = root / "data" / "train_sp"
    perturb_data_dir_speed(train, train_sp, [0.9, 1.0, 1.1])
    _features(train_sp, root / "fbank", 1)
    return {"root": root, "train": train, "train_sp": train_sp, "lang": write_lang(root / "lang")}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _cut_ids(d: Path) -> list[str]:
    with gzip.open(d / "feats_cuts.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["id"] for line in f]


def _assert_exact_subset(src: Path, out: Path, keep_utts: set[str]) -> None:
    """Every table of src is in out with exactly the kept keys' lines, unchanged, in src's order."""
    utt2spk = read_table(src / "utt2spk")
    keep_spks = {utt2spk[u] for u in keep_utts}
    for name in ("wav.scp", "text", "utt2spk", "feats.scp", "utt2num_frames", "utt2dur", "cmvn.scp", "spk2group",
                 "spk2gender"):
        if not (src / name).is_file():
            assert not (out / name).exists()
            continue
        want = keep_spks if name in ("cmvn.scp", "spk2group", "spk2gender") else keep_utts
        assert _lines(out / name) == [ln for ln in _lines(src / name) if ln.split()[0] in want], name
    spk2utt = [ln.split() for ln in _lines(out / "spk2utt")]
    assert [s[0] for s in spk2utt] == [ln.split()[0] for ln in _lines(src / "spk2utt") if ln.split()[0] in keep_spks]
    assert all(set(s[1:]) == {u for u in keep_utts if utt2spk[u] == s[0]} for s in spk2utt)
    assert (out / "fbank.yaml").read_bytes() == (src / "fbank.yaml").read_bytes()
    # the manifest: the kept cuts, in the source manifest's (shuffled) order, the same lines
    assert _cut_ids(out) == [u for u in _cut_ids(src) if u in keep_utts]
    with gzip.open(src / "feats_cuts.jsonl.gz", "rt") as f:
        src_lines = {json.loads(ln)["id"]: ln for ln in f}
    with gzip.open(out / "feats_cuts.jsonl.gz", "rt") as f:
        assert all(src_lines[json.loads(ln)["id"]] == ln for ln in f)  # same ark:offset, nothing copied


def _utts_of(src: Path, bases: set[str]) -> set[str]:
    return {u for u, s in read_table(src / "utt2spk").items() if base_speaker(s) in bases}


# ----------------------------------------------------------------------------- behaviour


def test_fraction_keeps_exactly_the_chosen_speakers_stratified_by_group(corpus, tmp_path, capsys):
    src, out = corpus["train"], tmp_path / "train_50"
    r = subset_data_dir(src, out, speakers_fraction=0.5, seed=0)
    chosen = set(r.speakers)
    # 2 of 4 children, 3 of 6 adults
    assert sorted(GROUPS[s] for s in chosen) == ["adult"] * 3 + ["child"] * 2
    assert _lines(out / "subset_speakers.txt") == sorted(chosen)
    _assert_exact_subset(src, out, _utts_of(src, chosen))
    assert r.utts == [u for u in read_table(src / "utt2spk") if u in _utts_of(src, chosen)]
    # spk2gender was written in reverse order: the subset keeps that order
    genders = [ln.split()[0] for ln in _lines(out / "spk2gender")]
    assert genders == sorted(genders, reverse=True) and len(genders) == 5
    log = (out / "log" / "subset.log").read_text()
    assert log == r.text
    assert "kept: 5 of 10 base speakers (5 of 10 speakers), 15 of 30 utterances" in log
    assert "  group child: 2 of 4 base speakers" in log and "  group adult: 3 of 6 base speakers" in log
    assert f"base speakers (5, {out / 'subset_speakers.txt'}): {' '.join(sorted(chosen))}" in log
    assert "feats_cuts.jsonl.gz: 15 of 30 cuts" in log
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary dir left


def test_small_fractions_keep_at_least_one_speaker_per_group():
    groups = dict(GROUPS)
    assert {g: len(s) for g, s in choose_speakers(groups, 0.1, 0, groups).items()} == {"adult": 1, "child": 1}
    assert {g: len(s) for g, s in choose_speakers(groups, 0.25, 0, groups).items()} == {"adult": 2, "child": 1}
    assert {g: len(s) for g, s in choose_speakers(groups, 1.0, 0, groups).items()} == {"adult": 6, "child": 4}
    assert [len(s) for s in choose_speakers(groups, 0.5, 0).values()] == [5]  # no groups: one pool


def test_seed_decides_and_smaller_fractions_nest():
    groups = {f"s{i:02d}": "ab"[i % 2] for i in range(40)}
    a = choose_speakers(groups, 0.5, 0, groups)
    assert a == choose_speakers(dict(reversed(groups.items())), 0.5, 0, groups)  # order of the input: no matter
    assert a != choose_speakers(groups, 0.5, 1, groups)
    quarter = choose_speakers(groups, 0.25, 0, groups)
    assert all(set(quarter[g]) <= set(a[g]) for g in a)


def test_train_and_train_sp_choose_the_same_base_speakers(corpus, tmp_path):
    train, train_sp = corpus["train"], corpus["train_sp"]
    for frac in (0.5, 0.25):
        t = subset_data_dir(train, tmp_path / f"t{frac}", speakers_fraction=frac, seed=3)
        # train_sp's own spk2group (speed perturbation copies it to each copy) gives train's strata
        sp = subset_data_dir(train_sp, tmp_path / f"sp{frac}", speakers_fraction=frac, seed=3)
        assert t.speakers == sp.speakers
        # every speed copy of a chosen speaker, all its utterances
        spks = {ln.split()[1] for ln in _lines(tmp_path / f"sp{frac}" / "utt2spk")}
        assert spks == {p + s for s in t.speakers for p in ("", "sp0.9-", "sp1.1-")}
        _assert_exact_subset(train_sp, tmp_path / f"sp{frac}", _utts_of(train_sp, set(t.speakers)))
        assert "group child" in sp.text
    # a train_sp without spk2group (made before speed perturbation copied it): --spk2group gives
    # the groups, keyed by the base speakers or by the speed copies' own ids
    sp_old = tmp_path / "train_sp_old"
    shutil.copytree(train_sp, sp_old)
    (sp_old / "spk2group").unlink()
    sp_groups = tmp_path / "sp_spk2group"
    write_table(sp_groups, {p + s: g for s, g in GROUPS.items() for p in ("", "sp0.9-", "sp1.1-")})
    for groups in (train / "spk2group", sp_groups):
        again = subset_data_dir(sp_old, tmp_path / "again", speakers_fraction=0.25, seed=3, spk2group=groups)
        assert again.speakers == t.speakers
    # without groups on either side, too
    no_groups = tmp_path / "train_nogroups"
    shutil.copytree(train, no_groups)
    (no_groups / "spk2group").unlink()
    a = subset_data_dir(no_groups, tmp_path / "ng", speakers_fraction=0.5, seed=7)
    b = subset_data_dir(sp_old, tmp_path / "ng_sp", speakers_fraction=0.5, seed=7)
    assert a.speakers == b.speakers and len(a.speakers) == 5


def test_spk_list_by_base_speaker_and_utt_list_exactly(corpus, tmp_path):
    train_sp = corpus["train_sp"]
    lst = tmp_path / "spk.txt"
    lst.write_text("sp1.1-a2\nc3\n\n")  # a copy's id stands for its speaker; blank lines ignored
    r = subset_data_dir(train_sp, tmp_path / "by_spk", spk_list=lst)
    assert r.speakers == ["a2", "c3"]
    _assert_exact_subset(train_sp, tmp_path / "by_spk", _utts_of(train_sp, {"a2", "c3"}))

    utts = ["sp0.9-a1-001", "a4-002", "a4-000"]
    (tmp_path / "utt.txt").write_text("".join(f"{u} extra field\n" for u in utts))
    r = subset_data_dir(train_sp, tmp_path / "by_utt", utt_list=tmp_path / "utt.txt")
    assert r.speakers == ["a1", "a4"] and r.utts == ["a4-000", "a4-002", "sp0.9-a1-001"]
    _assert_exact_subset(train_sp, tmp_path / "by_utt", set(utts))
    assert _lines(tmp_path / "by_utt" / "spk2utt") == ["a4 a4-000 a4-002", "sp0.9-a1 sp0.9-a1-001"]


def test_the_subset_is_read_by_training_with_the_sources_features(corpus, tmp_path):
    from asrcomp.dataset import CUTS_NAME, SOURCES, feature_cuts, iter_cut_features, load_ctc_cuts

    assert (subset.MANIFEST, subset.MANIFEST_SOURCES) == (CUTS_NAME, SOURCES)  # the two stay in step
    src, out = corpus["train_sp"], tmp_path / "sp_50"
    subset_data_dir(src, out, speakers_fraction=0.5, seed=0, spk2group=corpus["train"] / "spk2group")
    before = (out / CUTS_NAME).read_bytes()
    assert feature_cuts(out) == out / CUTS_NAME and (out / CUTS_NAME).read_bytes() == before  # not stale: used as is
    data = load_ctc_cuts(out, corpus["lang"], 3)
    kept = read_table(out / "utt2spk")
    assert data.num_utts == len(kept) == 45 and data.dropped == 0
    assert data.num_frames == sum(int(v) for v in read_table(out / "utt2num_frames").values())
    assert sorted(data.cmvn) == sorted(set(kept.values()))
    # a batch of the sampler reads the same (CMVN'd) features as decoding reads from the source
    ref = dict(iter_cut_features(src))
    batch = next(iter(data.sampler(10000, seed=0)))
    x, x_lens, _, _ = data.collate(batch)
    for i, c in enumerate(batch):
        assert np.array_equal(x[i, :x_lens[i]].numpy(), ref[c.id])
    assert all(np.array_equal(x, ref[u]) for u, x in iter_cut_features(out))


def test_a_stale_source_manifest_is_left_to_be_rebuilt(corpus, tmp_path):
    from asrcomp.dataset import feature_cuts

    src = tmp_path / "train"
    shutil.copytree(corpus["train"], src)
    t = (src / "feats_cuts.jsonl.gz").stat().st_mtime_ns
    os.utime(src / "text", ns=(t + 10**9, t + 10**9))
    r = subset_data_dir(src, tmp_path / "out", speakers_fraction=0.5)
    assert "older than its text; built on first use" in r.text
    assert not (tmp_path / "out" / "feats_cuts.jsonl.gz").exists()
    feature_cuts(tmp_path / "out")
    assert sorted(_cut_ids(tmp_path / "out")) == sorted(r.utts)
    # a manifest newer than its tables but lacking cuts (written by hand): left out too
    with gzip.open(src / "feats_cuts.jsonl.gz", "rt") as f:
        lines = f.readlines()
    with gzip.open(src / "feats_cuts.jsonl.gz", "wt") as f:
        f.writelines(lines[:-1])
    # newer than the text touched above however fast this runs
    os.utime(src / "feats_cuts.jsonl.gz", ns=(t + 2 * 10**9, t + 2 * 10**9))
    r = subset_data_dir(src, tmp_path / "out", speakers_fraction=1.0)
    assert "lacks 1 kept utterances" in r.text and not (tmp_path / "out" / "feats_cuts.jsonl.gz").exists()
    (src / "utt2num_frames").write_text("a1-000 many\n")
    _err(r"utt2num_frames:1: 'a1-000' has 'many', not a number", src, tmp_path / "out2", speakers_fraction=1.0)


def test_segments_keep_their_recordings(tmp_path):
    d = tmp_path / "seg"
    d.mkdir()
    (d / "wav.scp").write_text("rec1 /a.wav\nrec2 /b.wav\n")
    (d / "reco2dur").write_text("rec1 9.0\nrec2 8.0\n")
    (d / "segments").write_text("s1-rec1-0 rec1 0.0 1.0\ns1-rec2-0 rec2 0.0 1.0\ns2-rec1-1 rec1 1.0 2.0\n")
    (d / "utt2spk").write_text("s1-rec1-0 s1\ns1-rec2-0 s1\ns2-rec1-1 s2\n")
    (d / "text").write_text("s1-rec1-0 A\ns1-rec2-0 B\ns2-rec1-1 C\n")
    (d / "spk2utt").write_text("s1 s1-rec1-0 s1-rec2-0\ns2 s2-rec1-1\n")
    (d / "notes.md").write_text("hello\n")
    (tmp_path / "l").write_text("s2\n")
    r = subset_data_dir(d, tmp_path / "out", spk_list=tmp_path / "l")
    assert _lines(tmp_path / "out" / "wav.scp") == ["rec1 /a.wav"] and _lines(tmp_path / "out" / "reco2dur") == [
        "rec1 9.0"]
    assert _lines(tmp_path / "out" / "segments") == ["s2-rec1-1 rec1 1.0 2.0"]
    assert "left out (not a known table): notes.md" in r.text and "feats_cuts.jsonl.gz: none" in r.text


def test_cli_and_step_script(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["subset-data-dir", "--speakers-fraction", "0.5", "--seed", "0", str(corpus["train"]), str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "log" / "subset.log").read_text() and "kept: 5 of 10 base speakers" in printed
    # rerunning replaces a subset it wrote
    assert main(["subset-data-dir", "--speakers-fraction", "0.2", str(corpus["train"]), str(out)]) == 0
    assert len(_lines(out / "subset_speakers.txt")) == 2
    assert main(["subset-data-dir", "--speakers-fraction", "2", str(corpus["train"]), str(out)]) == 2
    assert len(_lines(out / "subset_speakers.txt")) == 2  # the failed run left the previous subset alone

    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")  # as path.sh sets it
    r = subprocess.run([str(ROOT / "steps/subset_data_dir.sh"), "--speakers-fraction", "0.5", "--spk2group",
                        str(corpus["train"] / "spk2group"), str(corpus["train_sp"]), str(tmp_path / "sh")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{ROOT / 'steps/subset_data_dir.sh'} --speakers-fraction 0.5")
    assert "kept: 5 of 10 base speakers (15 of 30 speakers), 45 of 90 utterances" in r.stdout
    half = choose_speakers(GROUPS, 0.5, 0, GROUPS)
    assert _lines(tmp_path / "sh" / "subset_speakers.txt") == sorted(s for ss in half.values() for s in ss)
    r = subprocess.run([str(ROOT / "steps/subset_data_dir.sh"), "--spk-list", "x", "--utt-list", "y", "a", "b"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "usage:" in r.stderr


# ----------------------------------------------------------------------------- bad input


def _err(match: str, *args, **kw):
    with pytest.raises(InputError, match=match) as e:
        subset_data_dir(*args, **kw)
    return e.value


def test_bad_input_is_a_clear_error_and_writes_nothing(corpus, tmp_path):
    train, out = corpus["train"], tmp_path / "out"
    _err(r"nope: data dir not found", tmp_path / "nope", out, speakers_fraction=0.5)
    broken = tmp_path / "broken"
    shutil.copytree(train, broken)
    (broken / "text").unlink()
    _err(r"broken/text: missing from the data dir \(fix: .*wav.scp, text and utt2spk", broken, out,
         speakers_fraction=0.5)
    shutil.copy(train / "text", broken / "text")
    (broken / "feats.scp").write_text("".join(ln + "\n" for ln in _lines(train / "feats.scp") if "c2-001" not in ln))
    _err(r"broken/feats.scp: utterance 'c2-001' of the subset is not in it .*fix_data_dir", broken, out,
         spk_list=_write(tmp_path / "l0", "c2\n"))

    lst = _write(tmp_path / "spk.txt", "a1\nzz9\nsp0.9-qq\n")
    e = _err(r"spk.txt:2: speaker 'zz9' is not in .*utt2spk; 1 more lines name unknown speakers "
             r"\(fix: list speakers of the source data dir", train, out, spk_list=lst)
    assert e.line == 2 and e.path == lst
    _err(r"spk.txt:1: speaker 'sp0.9-qq' \(base speaker 'qq'\)", train, out, spk_list=_write(lst, "sp0.9-qq\n"))
    _err(r"utt.txt:3: utterance 'a1-999' is not in .*utt2spk \(fix: list utterances", train, out,
         utt_list=_write(tmp_path / "utt.txt", "a1-000\na1-001\na1-999\n"))
    _err(r"missing.txt: speaker list not found", train, out, spk_list=tmp_path / "missing.txt")
    _err(r"empty.txt: names no utterance or speaker: the subset would be empty", train, out,
         utt_list=_write(tmp_path / "empty.txt", "\n"))
    for f in (0, -0.5, 1.5, float("nan")):
        _err(r"--speakers-fraction: .* is not in \(0, 1\] \(fix: ", train, out, speakers_fraction=f)
    _err(r"exactly one of --spk-list, --utt-list and --speakers-fraction", train, out, speakers_fraction=0.5,
         spk_list=lst)
    _err(r"train: is the source data dir", train, train, speakers_fraction=0.5)
    _err(r"train: is the source data dir", train, train.parent / ".." / "data" / "train", speakers_fraction=0.5)
    _err(r"contains the source data dir", train, train.parent, speakers_fraction=0.5)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious").write_text("x")
    _err(r"busy: exists and was not written by subset-data-dir", train, tmp_path / "busy", speakers_fraction=0.5)
    assert (tmp_path / "busy" / "precious").read_text() == "x"
    _err(r"groups.txt: speaker '\S+' has no group \(9 such\)", train, out, speakers_fraction=0.5,
         spk2group=_write(tmp_path / "groups.txt", "a1 adult\n"))
    _err(r"groups.txt:2: 'sp0.9-a1' is in group 'child' but its base speaker 'a1' is in 'adult'", train, out,
         speakers_fraction=0.5, spk2group=_write(tmp_path / "groups.txt", "a1 adult\nsp0.9-a1 child\n"))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failure_while_writing_leaves_nothing_half_written(corpus, tmp_path, monkeypatch):
    out = tmp_path / "out"
    subset_data_dir(corpus["train"], out, speakers_fraction=0.5)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def boom(*a, **k):
        raise InputError("feats_cuts.jsonl.gz", "simulated failure")

    monkeypatch.setattr(subset, "_write_manifest", boom)
    with pytest.raises(InputError, match="simulated"):
        subset_data_dir(corpus["train"], out, speakers_fraction=0.2)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # the old subset intact
    with pytest.raises(InputError, match="simulated"):
        subset_data_dir(corpus["train"], tmp_path / "new", speakers_fraction=0.2)
    assert not (tmp_path / "new").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
