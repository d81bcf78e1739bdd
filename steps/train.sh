#!/usr/bin/env bash
# Usage: steps/train.sh [--conf conf.yaml] [--arch tdnn|dnn] [--nproc 1] [--device auto] [--set key=value]
#                       <exp-dir> <train-data> <valid-data> <lang-dir>
# CTC training into a model dir; resumes from the last epoch checkpoint.
# --nproc N > 1 runs N data-parallel processes under torchrun (gloo on CPU, NCCL on GPUs).
set -euo pipefail
echo "$0 $*"
conf=""; arch=tdnn; nproc=1; device=auto; set=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 4 ] || { echo "usage: $0 [options] <exp-dir> <train-data> <valid-data> <lang-dir>" >&2; exit 1; }
dir=$1
mkdir -p "$dir/log"
extra=()
for kv in $set; do extra+=(--set "$kv"); done
cmd=(asrcomp)
if [ "$nproc" -gt 1 ]; then cmd=(torchrun --standalone --nproc_per_node "$nproc" -m asrcomp.cli); fi
exec "${cmd[@]}" train --log-file "$dir/log/train.log" ${conf:+--conf "$conf"} --arch "$arch" --device "$device" \
  "${extra[@]}" "$@"
