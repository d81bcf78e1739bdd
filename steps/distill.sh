#!/usr/bin/env bash
# Usage: steps/distill.sh --teacher <model-dir> [--conf conf.yaml] [--arch NAME | --student-dir DIR]
#          [--from-scratch true] [--alpha 0.5] [--temperature 2] [--hint-layer layers.3 --hint-weight 0.01] [--epochs N]
#          [--lr X] [--device auto] <out-model-dir> <train-data> <valid-data> <lang-dir>
# Knowledge distillation: the student (an architecture under the config's 'model:', or an
# existing model dir such as a factorised one) learns from the teacher's temperature-softened
# frame posteriors mixed with CTC on the transcripts (--alpha 0: CTC only).
set -euo pipefail
echo "$0 $*"
teacher=""; conf=""; arch=""; student_dir=""; alpha=0.5; temperature=2.0; hint_layer=""; hint_weight=0.0
epochs=""; lr=""; device=""; from_scratch=false
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 4 ] && [ -n "$teacher" ] || {
  echo "usage: $0 --teacher DIR [options] <out-model-dir> <train> <valid> <lang>" >&2; exit 1; }
dir=$1
mkdir -p "$dir/log"
exec asrcomp distill --log-file "$dir/log/distill.log" --teacher "$teacher" ${conf:+--conf "$conf"} \
  ${arch:+--arch "$arch"} ${student_dir:+--student-dir "$student_dir"} --alpha "$alpha" \
  $( [ "$from_scratch" = true ] && echo --from-scratch ) \
  --temperature "$temperature" ${hint_layer:+--hint-layer "$hint_layer" --hint-weight "$hint_weight"} \
  ${epochs:+--epochs "$epochs"} ${lr:+--lr "$lr"} ${device:+--device "$device"} "$@"
