#!/usr/bin/env bash
# Usage: steps/subset_data_dir.sh [--spk-list FILE | --utt-list FILE | --speakers-fraction F [--seed 0]]
#          [--spk2group FILE] <src-data-dir> <out-data-dir>
# Kaldi's utils/subset_data_dir.sh for our data dirs: the chosen speakers' (or utterances') lines of
# every table (source order), spk2utt, cmvn.scp, fbank.yaml and the cut manifest feats_cuts.jsonl.gz
# (features stay in the source's arks). Speakers are chosen by base id: sp0.9-<spk> goes with <spk>.
# --speakers-fraction takes a seeded fraction of the speakers within each spk2group group (the
# source's, or --spk2group: e.g. train's spk2group for train_sp, so both choose the same speakers).
# Writes <out>/subset_speakers.txt and <out>/log/subset.log; an existing <out> is replaced only if
# this script wrote it.
set -euo pipefail
echo "$0 $*"
spk_list=""; utt_list=""; speakers_fraction=""; seed=0; spk2group=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
n=0
for v in "$spk_list" "$utt_list" "$speakers_fraction"; do if [ -n "$v" ]; then n=$((n + 1)); fi; done
[ $# -eq 2 ] && [ $n -eq 1 ] || {
  echo "usage: $0 [--spk-list FILE | --utt-list FILE | --speakers-fraction F [--seed 0]] [--spk2group FILE]" \
    "<src-data-dir> <out-data-dir>" >&2; exit 1; }
exec asrcomp subset-data-dir ${spk_list:+--spk-list "$spk_list"} ${utt_list:+--utt-list "$utt_list"} \
  ${speakers_fraction:+--speakers-fraction "$speakers_fraction"} --seed "$seed" \
  ${spk2group:+--spk2group "$spk2group"} "$1" "$2"
