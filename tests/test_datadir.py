import lhotse
import pytest

from asrcomp.datadir import read_data_dir, write_lhotse_manifests
from asrcomp.utils import InputError


def test_round_trip_and_lhotse_reads_it_back(tone_data_dir, tmp_path):
    d = read_data_dir(tone_data_dir)
    assert d.utts == sorted(d.utt2spk) and len(d.utts) == 6
    assert (tone_data_dir / "spk2utt").read_text().splitlines()[0] == "spkA spkA-000 spkA-001 spkA-002"
    write_lhotse_manifests(d, tmp_path / "manifests", "t")
    recs, sups, _ = lhotse.kaldi.load_kaldi_data_dir(tone_data_dir, sampling_rate=16000)
    assert sorted(recs.ids) == d.utts
    assert {s.text for s in sups} == {"SHOW THE SHIPS"}
    cuts = lhotse.load_manifest(tmp_path / "manifests" / "t_cuts.jsonl.gz")
    assert len(cuts) == 6 and abs(cuts[0].duration - 0.5) < 1e-6


def test_empty_transcript_names_file_and_line(tone_data_dir):
    lines = (tone_data_dir / "text").read_text().splitlines()
    lines[2] = lines[2].split()[0]
    (tone_data_dir / "text").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"text:3: 'spkA-002' has no value"):
        read_data_dir(tone_data_dir)


def test_mismatched_utterances_are_reported(tone_data_dir):
    lines = (tone_data_dir / "utt2spk").read_text().splitlines()
    (tone_data_dir / "utt2spk").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(InputError, match=r"text:6: utterance 'spkB-002' is not in utt2spk"):
        read_data_dir(tone_data_dir)


def test_missing_file_and_missing_features(tone_data_dir):
    with pytest.raises(InputError, match="steps/make_fbank.sh"):
        read_data_dir(tone_data_dir, need_features=True)
    (tone_data_dir / "wav.scp").unlink()
    with pytest.raises(InputError, match="wav.scp: missing from the data dir"):
        read_data_dir(tone_data_dir)


def test_utterance_must_start_with_speaker(tone_data_dir):
    p = tone_data_dir / "utt2spk"
    p.write_text(p.read_text().replace("spkA-000 spkA", "spkA-000 spkZ"))
    with pytest.raises(InputError, match=r"utt2spk:1: utterance 'spkA-000' does not start"):
        read_data_dir(tone_data_dir)


def test_a_pipe_needs_its_size(tone_data_dir, tmp_path):
    """A ``cmd |`` entry becomes a lhotse command source given its (samples, rate); without them the
    error names wav.scp and the line."""
    scp = tone_data_dir / "wav.scp"
    lines = scp.read_text().splitlines()
    utt, path = lines[1].split(maxsplit=1)
    lines[1] = f"{utt} cat {path} |"
    scp.write_text("\n".join(lines) + "\n")
    d = read_data_dir(tone_data_dir)
    with pytest.raises(InputError, match=rf"wav.scp:2: '{utt}' is a pipe"):
        write_lhotse_manifests(d, tmp_path / "m", "t")
    file_rec = lhotse.Recording.from_file(path)
    sizes = {utt: (file_rec.num_samples, file_rec.sampling_rate)}
    cuts = lhotse.load_manifest(write_lhotse_manifests(d, tmp_path / "m", "t", sizes))
    by_id = {c.id: c for c in cuts}
    assert by_id[utt].recording.sources[0].type == "command" and by_id[utt].duration == 0.75
    assert (by_id[utt].load_audio() == file_rec.load_audio()).all()  # the pipe runs
    assert not list((tmp_path / "m").glob(".tmp_*"))
