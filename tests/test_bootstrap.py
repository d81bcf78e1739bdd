import numpy as np
import pytest

from asrcomp.bootstrap import (bootstrap_interval, compare_decodes, prob_worse, ratio_interval, read_utt_stats,
                               speaker_clusters, write_bootci)
from asrcomp.score import write_scoring
from asrcomp.utils import InputError


def _test_set(n, rate=0.05, seed=1):
    """n utterances of 4-20 words, errors binomial at ``rate`` per word."""
    rng = np.random.default_rng(seed)
    words = rng.integers(4, 21, size=n)
    return rng.binomial(words, rate), words


def test_interval_contains_the_estimate_and_shrinks_with_more_utterances():
    widths = []
    for n in (100, 400, 1600):
        e, w = _test_set(n)
        ci = bootstrap_interval(e, w)
        assert ci.wer == pytest.approx(100 * e.sum() / w.sum())
        assert ci.lo < ci.wer < ci.hi
        assert ci.mean == pytest.approx(ci.wer, abs=0.1 * (ci.hi - ci.lo))
        widths.append(ci.hi - ci.lo)
    # the standard error falls as 1/sqrt(n): 4x the utterances, about half the width
    assert widths[0] > widths[1] > widths[2]
    assert widths[1] / widths[0] == pytest.approx(0.5, abs=0.12)
    assert widths[2] / widths[1] == pytest.approx(0.5, abs=0.12)


def test_interval_matches_the_binomial_standard_error():
    # 2000 utterances of 10 words, independent errors at 5 %: se = sqrt(p(1-p)/N) over N = 20000 words
    rng = np.random.default_rng(3)
    w = np.full(2000, 10)
    e = rng.binomial(w, 0.05)
    ci = bootstrap_interval(e, w, n_boot=2000)
    p = e.sum() / w.sum()
    se = 100 * np.sqrt(p * (1 - p) / w.sum())
    assert (ci.hi - ci.lo) / 2 == pytest.approx(1.96 * se, rel=0.12)


def test_interval_is_seeded_and_degenerate_sets_are_exact():
    e, w = _test_set(50)
    assert bootstrap_interval(e, w, seed=5) == bootstrap_interval(e, w, seed=5)
    assert bootstrap_interval(e, w, seed=5).lo != bootstrap_interval(e, w, seed=6).lo
    ci = bootstrap_interval(np.zeros(30, int), np.full(30, 7))
    assert (ci.lo, ci.wer, ci.hi) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_interval([], [])


def test_ratio_interval_of_decode_times():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 2.0, size=500)  # seconds per utterance, one model
    # exactly 0.9 of the time on every utterance: no spread whatever is drawn
    assert ratio_interval(0.9 * base, base) == pytest.approx((0.9, 0.9))
    # 0.9 on average with per-utterance noise: an interval around it, below 1, narrowing with n
    noisy = 0.9 * base * rng.uniform(0.7, 1.3, size=500)
    lo, hi = ratio_interval(noisy, base)
    assert lo < noisy.sum() / base.sum() < hi < 1.0
    lo4, hi4 = ratio_interval(np.tile(noisy, 4), np.tile(base, 4))
    assert hi4 - lo4 == pytest.approx((hi - lo) / 2, rel=0.25)
    assert ratio_interval(noisy, base) == (lo, hi)  # seeded
    # WER's interval is this ratio of sums, times 100
    e, w = _test_set(300)
    ci = bootstrap_interval(e, w)
    assert 100 * np.array(ratio_interval(e, w)) == pytest.approx((ci.lo, ci.hi))
    with pytest.raises(ValueError, match="equally many"):
        ratio_interval([1.0, 2.0], [1.0])


def test_paired_probability():
    e, w = _test_set(300)
    assert prob_worse(e, w, e, w) == 0.5  # identical systems: every replicate ties
    worse = e + 1  # one more error on every utterance
    assert prob_worse(e, w, worse, w) == 1.0
    assert prob_worse(worse, w, e, w) == 0.0
    # one extra error in 300 utterances is no evidence: the sampled utterance is drawn or not
    one = e.copy()
    one[0] += 1
    assert 0.5 < prob_worse(e, w, one, w) < 0.95
    # a paired test sees a small consistent difference that overlapping intervals hide
    rng = np.random.default_rng(7)
    b = e + (rng.random(300) < 0.15)  # ~45 more errors, spread over the set
    ca, cb = bootstrap_interval(e, w), bootstrap_interval(b, w)
    assert cb.lo < ca.hi  # the intervals overlap
    assert prob_worse(e, w, b, w) >= 0.95


def _score(d, refs, hyps):
    write_scoring(d, {u: r.split() for u, r in refs.items()}, {u: h.split() for u, h in hyps.items()})
    return d


def test_decode_dir_files_and_comparison(tmp_path):
    refs = {f"u{i:03d}": "the cat sat on the mat today" for i in range(40)}
    good = dict(refs, u000="the cat sat on a mat today")  # 1 sub
    bad = {u: "the cat sat mat today extra" for u in refs}  # 2 del + 1 ins... per utterance
    a = _score(tmp_path / "a", refs, good)
    b = _score(tmp_path / "b", refs, bad)
    sa = read_utt_stats(a)
    assert sa.errors.sum() == 1 and sa.words.sum() == 7 * 40 and sa.utts[0] == "u000"
    line = (b / "wer_bootci").read_text()
    wer_line = (b / "wer").read_text()
    assert line.startswith(wer_line.split("[")[0] + "[95% CI ")
    assert "bootstrap 1000 x 40 utterances, seed 0" in line
    ins, dele, sub = map(int, (b / "utt_stats").read_text().split()[3:6])
    assert ins + dele + sub == read_utt_stats(b).errors[0] and read_utt_stats(b).errors[0] == 3
    assert compare_decodes(a, b) == 1.0 and compare_decodes(b, a) == 0.0
    assert compare_decodes(a, a) == 0.5
    # a decode dir scored before utt_stats existed: the errs file gives the same numbers
    (b / "utt_stats").unlink()
    from_errs = read_utt_stats(b)
    assert from_errs.errors.tolist() == [3] * 40 and from_errs.words.tolist() == [7] * 40
    assert write_bootci(b).line() == line.strip()
    # different test sets cannot be paired
    c = _score(tmp_path / "c", {"x1": "a b"}, {"x1": "a"})
    with pytest.raises(InputError, match="different utterances"):
        compare_decodes(a, c)
    with pytest.raises(InputError, match="not a scored decode dir"):
        read_utt_stats(tmp_path / "nothing")


def _model_dir(root, name, history, refs, hyps):
    import yaml

    d = root / name
    d.mkdir()
    (d / "model.yaml").write_text(yaml.safe_dump({"arch": {}, "tokens": {}, "subsampling_factor": 3,
                                                  "num_params": 10, "history": history}))
    (d / "final.pt").write_bytes(b"x" * 100)
    _score(d / "decode_test_lang_3gram", refs, hyps)
    _score(d / "decode_test_greedy", refs, hyps)
    return d


def test_compare_table_marks_significant_differences(tmp_path):
    from asrcomp.compare import LEGEND, SPEAKER_LEGEND, compare_table, sweep_plot

    refs = {f"u{i:03d}": "a b c d e f g h i j" for i in range(200)}
    rng = np.random.default_rng(0)

    def hyps(p_err):  # each utterance loses its last word with probability p_err
        return {u: "a b c d e f g h i" if rng.random() < p_err else r for u, r in refs.items()}

    base_h = hyps(0.05)
    train = {"stage": "train", "train_dir": "data/train"}
    svd = {"stage": "svd", "source": "exp/tdnn"}
    pack = {"stage": "pack", "src": "exp/tdnn_svd"}
    dirs = [_model_dir(tmp_path, "tdnn", [train], refs, base_h),
            _model_dir(tmp_path, "dnn", [dict(train, arch="dnn")], refs, hyps(0.3)),
            _model_dir(tmp_path, "tdnn_svd", [train, svd], refs, base_h),  # same output as its parent
            _model_dir(tmp_path, "tdnn_svd_pack", [train, svd, pack], refs,
                       {u: "a b c d e f g h" for u in refs}),  # worse on every utterance
            _model_dir(tmp_path, "scratch", [{"stage": "distill", "teacher": "exp/tdnn"}], refs,
                       {u: refs[u] for u in refs})]  # perfect: better than its teacher
    table = compare_table(dirs, ["test"])
    head, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()]
    cells = {r[0]: dict(zip(head, r)) for r in rows}
    assert head[:7] == ["model", "params", "bytes", "MFLOPs/s audio", "RTF (TLG)", "%WER test TLG",
                        "%WER test greedy"]
    assert [cells[m]["parent"] for m in ("tdnn", "dnn", "tdnn_svd", "tdnn_svd_pack", "scratch")] == \
        ["–", "–", "tdnn", "tdnn_svd", "–"]
    for m in cells:  # every WER has an interval around it
        lo, hi = map(float, cells[m]["95% CI test TLG"].strip("[]").split(","))
        assert lo <= float(cells[m]["%WER test TLG"]) <= hi
        assert cells[m]["95% CI test greedy"] == cells[m]["95% CI test TLG"]
    par, bas = "P(worse than parent) test TLG", "P(worse than baseline) test TLG"
    assert cells["tdnn"][par] == cells["tdnn"][bas] == cells["dnn"][bas] == "–"  # baselines
    assert cells["tdnn_svd"][par] == cells["tdnn_svd"][bas] == "0.50"  # identical decodes
    assert cells["tdnn_svd_pack"][par] == cells["tdnn_svd_pack"][bas] == "1.00 (worse)"
    assert cells["scratch"][bas] == "0.00 (better)"  # compared with its teacher
    # an explicit baseline row: every other row against it
    cells = {r.split("|")[1].strip(): r for r in compare_table(dirs, ["test"], baseline="dnn").splitlines()[2:]}
    assert cells["tdnn"].rstrip(" |").endswith("0.00 (better)")
    assert LEGEND in compare_table(dirs, ["test"], legend=True)
    # speakers resampled: 20 speakers of 10 utterances; the pack's CI widens, its P stays 1.00
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "utt2spk").write_text("".join(f"{u} spk{int(u[1:]) // 10}\n" for u in sorted(refs)))
    by_spk = compare_table(dirs, ["test"], legend=True, speakers_from=tmp_path)
    assert SPEAKER_LEGEND in by_spk
    head, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in by_spk.split("\n\n")[0].splitlines()]
    spk_cells = {r[0]: dict(zip(head, r)) for r in rows}
    assert spk_cells["tdnn_svd_pack"][par] == "1.00 (worse)" and spk_cells["tdnn_svd"][par] == "0.50"

    utt_ci = [line for line in table.splitlines() if line.startswith("| dnn |")][0].split("|")[10]
    assert spk_cells["dnn"]["95% CI test TLG"] != utt_ci.strip()
    out = sweep_plot(dirs, "test", tmp_path / "sweep")
    assert (tmp_path / "sweep.png").stat().st_size > 1000 and "95% CI test TLG" in out


def test_off_chart_leaves_out_only_a_failed_model():
    from asrcomp.compare import off_chart

    # the synthetic chain: 12 rows at 2.8-4.2 % and a from-scratch twin at 93 %
    wers = [2.82, 4.18, 3.40, 2.79, 2.95, 2.98, 4.02, 93.23, 3.14, 3.17, 2.82, 2.85, 2.79]
    assert off_chart(wers) == [w == 93.23 for w in wers]
    assert not any(off_chart([5.0, 12.0, 18.0]))  # a spread of real models stays on the chart
    assert not any(off_chart([80.0, 90.0, 95.0]))  # a chain of bad models too


def test_cli_bootci_and_compare(tmp_path, capsys):
    from asrcomp.cli import main

    refs = {f"u{i}": "x y z" for i in range(20)}
    a = _score(tmp_path / "a", refs, refs)
    b = _score(tmp_path / "b", refs, {u: "x y" for u in refs})
    (b / "wer_bootci").unlink()
    assert main(["bootci", "--n-boot", "200", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"{b}: %WER 33.33 [95% CI 33.33, 33.33] bootstrap 200 x 20 utterances" in out
    assert f"P({b} worse than {a}) = 1.000" in out
    assert (b / "wer_bootci").is_file()
    assert main(["bootci", str(tmp_path / "missing")]) == 2
    m = _model_dir(tmp_path, "m", [{"stage": "train"}], refs, refs)
    assert main(["compare", "--baseline", "nope", str(m)]) == 2
    assert main(["compare", "--out", str(tmp_path / "t.md"), str(m)]) == 0
    assert "95% CI test TLG" in (tmp_path / "t.md").read_text()


def test_compare_table_has_a_column_per_graph(tmp_path):
    """WSJ decodes each test set with two graphs (tgpr, bd_tgpr): both WERs are columns, not one of them."""
    from asrcomp.compare import compare_table

    refs = {f"u{i}": "a b c d" for i in range(10)}
    base = _model_dir(tmp_path, "tdnn", [{"stage": "train"}], refs, refs)
    svd = _model_dir(tmp_path, "tdnn_svd", [{"stage": "train"}, {"stage": "svd"}], refs, refs)
    for d in (base, svd):  # the second graph: every utterance loses a word
        _score(d / "decode_test_lang_bd", refs, {u: "a b c" for u in refs})
    table = compare_table([base, svd], ["test"])
    head, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()]
    cells = {r[0]: dict(zip(head, r)) for r in rows}
    assert [h for h in head if h.startswith("%WER")] == \
        ["%WER test TLG lang_3gram", "%WER test TLG lang_bd", "%WER test greedy"]
    assert cells["tdnn"]["%WER test TLG lang_3gram"] == "0.00" and cells["tdnn"]["%WER test TLG lang_bd"] == "25.00"
    assert cells["tdnn_svd"]["P(worse than parent) test TLG lang_bd"] == "0.50"


def _one_hard_voice(n_spk=10, per_spk=20):
    """``n_spk`` speakers of ``per_spk`` 10-word utterances; only speaker 0 has errors (3 per utterance)."""
    clusters = np.repeat(np.arange(n_spk), per_spk)
    return np.where(clusters == 0, 3, 0), np.full(n_spk * per_spk, 10), clusters


def test_speaker_bootstrap_resamples_whole_speakers():
    e, w, clusters = _one_hard_voice()
    by_utt = bootstrap_interval(e, w, n_boot=2000)
    by_spk = bootstrap_interval(e, w, n_boot=2000, clusters=clusters)
    assert by_utt.wer == by_spk.wer == 3.0 and by_utt.unit == "utterances" and by_spk.unit == "speakers"
    assert by_spk.n_utts == 10 and "x 10 speakers" in by_spk.line()
    # a draw of 10 speakers misses the hard one with P 0.9^10 = 0.35: the interval reaches 0;
    # 200 independent utterances with 20 bad ones never come out clean
    assert by_spk.lo == 0.0 < by_utt.lo and by_spk.hi > by_utt.hi
    # one utterance per speaker is the utterance bootstrap, draw for draw
    one = bootstrap_interval(e, w, n_boot=500, clusters=7 * np.arange(len(e)) + 3)  # labels need not be 0..n-1
    assert (one.lo, one.hi, one.mean) == pytest.approx(tuple(getattr(bootstrap_interval(e, w, n_boot=500), k)
                                                             for k in ("lo", "hi", "mean")))


def test_speaker_bootstrap_is_less_sure_of_a_one_voice_difference():
    e_a, w, clusters = _one_hard_voice()
    e_b = e_a * 2  # B doubles the errors of the one hard voice, equal elsewhere
    assert prob_worse(e_a, w, e_b, w) == 1.0
    p = prob_worse(e_a, w, e_b, w, clusters=clusters)  # speaker 0 is in 65 % of the draws; elsewhere a tie
    assert 0.75 < p < 0.9
    b_everywhere = e_a + np.where(np.arange(len(w)) % 20 == 0, 1, 0)  # one more error for every speaker
    assert prob_worse(e_a, w, b_everywhere, w, clusters=clusters) == 1.0
    with pytest.raises(ValueError, match="one cluster index"):
        prob_worse(e_a, w, e_b, w, clusters=clusters[:-1])


def test_speaker_clusters_and_the_cli(tmp_path, capsys):
    from asrcomp.cli import main

    refs = {f"s{s}_u{i}": "x y z" for s in range(6) for i in range(5)}
    utt2spk = {u: u.split("_")[0] for u in refs}
    assert list(speaker_clusters(sorted(refs)[:7], utt2spk)) == [0] * 5 + [1] * 2
    with pytest.raises(InputError, match="1 scored utterances have no speaker, e.g. extra"):
        speaker_clusters(["s0_u0", "extra"], utt2spk)
    a = _score(tmp_path / "a", refs, refs)
    b = _score(tmp_path / "b", refs, {u: "x y" if u.startswith("s0") else r for u, r in refs.items()})
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    assert main(["bootci", "--n-boot", "400", "--utt2spk", str(tmp_path / "utt2spk"), str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"P({b} worse than {a}) = 1.000 (paired bootstrap)" in out
    # speaker s0 (the only one B gets wrong) is missed by 6 draws of 6 speakers with P (5/6)^6 = 0.33
    p = float(out.split("(paired bootstrap over speakers)")[0].rsplit("= ", 1)[1])
    assert 0.75 < p < 0.92
    assert f"{b}: %WER 5.56 [95% CI 0.00, " in out and "x 6 speakers" in out
