from asrcomp.score import compute_wer, parse_wer_line, read_text, write_scoring


def test_known_wer_and_kaldi_line(tmp_path):
    refs = {"u1": "A B C D".split(), "u2": "E F G".split()}
    hyps = {"u1": "A X C D Y".split(), "u2": "E G".split()}
    stats, _ = compute_wer(refs, hyps)
    # u1: one substitution (B->X), one insertion (Y); u2: one deletion (F)
    assert (stats.subs, stats.ins, stats.dels, stats.errors, stats.words) == (1, 1, 1, 3, 7)
    assert stats.kaldi_line() == "%WER 42.86 [ 3 / 7, 1 ins, 1 del, 1 sub ]"
    written = write_scoring(tmp_path / "decode", refs, hyps)
    line = (tmp_path / "decode" / "wer").read_text().strip()
    assert line == stats.kaldi_line() == written.kaldi_line()
    assert parse_wer_line(line).errors == 3
    errs = (tmp_path / "decode" / "errs").read_text()
    assert "(B->X)" in errs and "(F->*)" in errs and "(*->Y)" in errs
    assert "1   B -> X" in errs
    assert read_text(tmp_path / "decode" / "hyp.txt") == hyps


def test_missing_hypothesis_counts_as_deletions():
    stats, _ = compute_wer({"u1": "A B".split(), "u2": "C".split()}, {"u1": "A B".split()})
    assert stats.dels == 1 and stats.errors == 1 and stats.sentence_errors == 1


def test_utt_stats_sum_to_the_totals(tmp_path):
    refs = {"u1": "A B C D".split(), "u2": "E F G".split(), "u3": "H".split()}
    hyps = {"u1": "A X C D Y".split(), "u2": "E G".split()}
    stats = write_scoring(tmp_path, refs, hyps)
    rows = [line.split() for line in (tmp_path / "utt_stats").read_text().splitlines()]
    assert [r[0] for r in rows] == ["u1", "u2", "u3"]
    cols = [sum(int(r[i]) for r in rows) for i in range(1, 6)]
    assert cols == [stats.errors, stats.words, stats.ins, stats.dels, stats.subs]
    assert rows[2][1:] == ["1", "1", "0", "1", "0"]  # missing hypothesis: one deletion
    assert (tmp_path / "wer_bootci").read_text().startswith("%WER 50.00 [95% CI ")
