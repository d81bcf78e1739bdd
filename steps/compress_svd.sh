#!/usr/bin/env bash
# Usage: steps/compress_svd.sh [--conf conf.yaml] [--layers output] [--rank K | --energy-threshold T]
#          [--shrinkage-threshold 1.0] [--epochs N] [--lr X] [--device auto] [--from-checkpoint epoch-N.pt]
#          [--ranks 32,64,128 --graph-dir G --decode-sets "data/test" --decode-opts "..."]
#          <src-model-dir> <out-model-dir> <train-data> <valid-data> <lang-dir>
# Truncated SVD of the layers matching --layers (default: the output layer), then fine-tuning.
# --from-checkpoint: restructure an epoch checkpoint of the source's training and train on
# ("SVD during training"; --epochs then counts the remaining epochs).
# Sweep mode (--ranks a,b,c): one model dir <out>_r<k> per rank, each decoded on --decode-sets,
# and <out>_sweep.{md,png}: WER against size, to pick the operating point.
set -euo pipefail
echo "$0 $*"
conf=""; layers=""; rank=""; energy_threshold=""; shrinkage_threshold=1.0; epochs=""; lr=""; device=""
from_checkpoint=""; ranks=""; graph_dir=""; decode_sets=""; decode_opts=""; nj=2; cmd=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 5 ] || { echo "usage: $0 [options] <src-model-dir> <out-model-dir> <train> <valid> <lang>" >&2; exit 1; }
src=$1; out=$2; shift 2
compress() {  # <out-dir> <rank options...>
  local dir=$1; shift
  if [ -f "$dir/model.yaml" ]; then echo "$0: $dir already complete"; return; fi
  mkdir -p "$dir/log"
  asrcomp compress svd --log-file "$dir/log/compress.log" ${conf:+--conf "$conf"} ${layers:+--layers "$layers"} \
    --shrinkage-threshold "$shrinkage_threshold" ${epochs:+--epochs "$epochs"} ${lr:+--lr "$lr"} \
    ${device:+--device "$device"} ${from_checkpoint:+--from-checkpoint "$from_checkpoint"} "$@" "$src" "$dir" "${args[@]:2}"
}
if [ -z "$ranks" ]; then
  compress "$out" ${rank:+--rank "$rank"} ${energy_threshold:+--energy-threshold "$energy_threshold"}
  exit 0
fi
dirs=()
for k in ${ranks//,/ }; do compress "${out}_r$k" --rank "$k"; dirs+=("${out}_r$k"); done
"$(dirname "$0")/sweep_table.sh" --graph-dir "$graph_dir" --decode-sets "$decode_sets" --decode-opts "$decode_opts" \
  --nj "$nj" --cmd "$cmd" "${out}_sweep" "$src" "${dirs[@]}"
