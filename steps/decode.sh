#!/usr/bin/env bash
# Usage: steps/decode.sh [--nj 2] [--cmd ""] [--graph-dir DIR] [--beam 16] [--acoustic-scale 1.0]
#                        [--blank-penalty 0.0] [--max-active 7000] [--skip-done false] <model-dir> <data-dir>
# TLG (kaldi-decoder FasterDecoder) and greedy CTC decoding, split into --nj jobs run
# through --cmd (Kaldi's cmd.sh convention: empty = local processes, e.g. "srun" on slurm),
# then scoring: <model-dir>/decode_<set>_<graph>/{wer,errs,hyp.txt,rtf,decode_opts} and
# decode_<set>_greedy/. --skip-done true: do nothing if the TLG decode dir is scored, newer than
# the model's final.pt, and was searched with these options (its decode_opts), so a recipe rerun
# after a change of its decode options decodes again.
set -euo pipefail
echo "$0 $*"
nj=2; cmd=""; graph_dir=""; beam=16; max_active=7000; acoustic_scale=1.0; blank_penalty=0.0; skip_done=false
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] || { echo "usage: $0 [options] <model-dir> <data-dir>" >&2; exit 1; }
model=$1; data=$2; name=$(basename "$data")
opts="beam=$beam max_active=$max_active acoustic_scale=$acoustic_scale blank_penalty=$blank_penalty"
tlg=${graph_dir:+$model/decode_${name}_$(basename "$graph_dir")}
if [ "$skip_done" = true ] && [ -n "$tlg" ] && [ -f "$tlg/wer" ] && [ "$tlg/wer" -nt "$model/final.pt" ] &&
   [ "$(cat "$tlg/decode_opts" 2>/dev/null)" = "$opts" ]; then
  echo "$0: $model on $name already decoded ($opts)"
  exit 0
fi
logdir=$model/log/decode_$name
mkdir -p "$logdir"
pids=()
for j in $(seq 1 "$nj"); do
  $cmd asrcomp decode --nj "$nj" --job "$j" ${graph_dir:+--graph-dir "$graph_dir"} \
    --beam "$beam" --max-active "$max_active" --acoustic-scale "$acoustic_scale" \
    --blank-penalty "$blank_penalty" "$model" "$data" > "$logdir/decode.$j.log" 2>&1 &
  pids+=($!)
done
failed=0
for j in "${!pids[@]}"; do wait "${pids[$j]}" || { echo "$0: job $((j+1)) failed, see $logdir/decode.$((j+1)).log" >&2; tail -3 "$logdir/decode.$((j+1)).log" >&2; failed=1; }; done
[ $failed -eq 0 ] || exit 1
asrcomp --log-file "$logdir/score.log" decode-score --nj "$nj" ${graph_dir:+--graph-dir "$graph_dir"} "$model" "$data"
[ -z "$tlg" ] || echo "$opts" > "$tlg/decode_opts"
